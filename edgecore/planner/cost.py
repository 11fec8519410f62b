"""The cost model behind `auto`: predicted seconds per decode step for a plan,
from rates measured once on this device and cached.

Measured in a child process (about a second, once per CPU / kernel tier /
thread count; the probes' buffers must not count against an engine's budget):
- page_in: mapped weights brought back from the page cache after a
  madvise(MADV_DONTNEED) (what re-loading an F32 group costs),
- widen: F16/BF16 -> float32 conversion, in file bytes per second,
- stream: fused_linear on one token over weights larger than the caches
  (decode is bound by reading weights),
- macs: fused_linear throughput when compute-bound (prefill).
"""

from __future__ import annotations

import json
import mmap
import os
import platform
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgecore import __version__, ops
from edgecore._child import python_command
from edgecore.models.graph import LayerGraph


@dataclass(frozen=True)
class DeviceRates:
    page_in_bytes_per_s: float
    widen_bytes_per_s: float
    stream_bytes_per_s: float
    macs_per_s: float
    threads: int
    tier: str


class CostModel:
    def __init__(self, rates: DeviceRates):
        self.rates = rates

    def compute_seconds(self, graph: LayerGraph, layer: int, tokens: int) -> float:
        cost = graph.layers[layer]
        if cost.kind == "embed":
            return 0.0
        active = cost.weight_bytes
        if cost.num_experts and cost.expert_bytes:  # only the routed experts are read
            all_experts = cost.num_experts * cost.expert_bytes
            routed = min(all_experts, tokens * graph.spec.experts_per_token * cost.expert_bytes)
            active = cost.weight_bytes + routed - (0 if cost.experts_cached else all_experts)
        return max(cost.macs_per_token * tokens / self.rates.macs_per_s, active / self.rates.stream_bytes_per_s)

    def load_seconds(self, graph: LayerGraph, layer: int, tokens: int) -> float:
        cost = graph.layers[layer]
        if cost.kind == "embed":
            return 0.0
        if cost.file_bytes >= cost.weight_bytes:  # weights run as stored: mapped in place
            return cost.weight_bytes / self.rates.page_in_bytes_per_s
        return cost.file_bytes / self.rates.widen_bytes_per_s

    def step_seconds(self, plan, graph: LayerGraph, tokens: int = 1) -> float:
        def compute(group):
            return sum(self.compute_seconds(graph, i, tokens) for i in group.layers)

        def load(group):
            return sum(self.load_seconds(graph, i, tokens) for i in group.layers)

        total = sum(compute(g) for g in plan.groups if g.pinned)
        streamed = plan.streamed
        if plan.strategy == "speculative" and len(streamed) > 1:
            # group i computes while group i+1 loads (the first one loads
            # during the previous step's last group)
            total += sum(max(compute(g), load(streamed[(i + 1) % len(streamed)])) for i, g in enumerate(streamed))
        else:
            total += sum(compute(g) + load(g) for g in streamed)
        return total


def cache_dir() -> Path:
    root = os.environ.get("EDGECORE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "edgecore")
    return Path(root)


def device_rates(*, refresh: bool = False) -> DeviceRates:
    """Measured rates for this CPU, tier and thread count (cached on disk)."""
    caps = ops.capabilities()
    key = "-".join([platform.machine(), _cpu_name(), caps["active"], str(ops.get_num_threads()), __version__])
    path = cache_dir() / "calibration.json"
    table = {}
    try:
        table = json.loads(path.read_text())
        if not refresh and key in table:
            return DeviceRates(**table[key])
    except (OSError, ValueError, TypeError):
        table = {}
    rates = _measure_in_child()
    table[key] = asdict(rates)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(table, indent=1))
        os.replace(tmp, path)
    except OSError:
        pass  # an unwritable cache only costs a re-measurement next time
    return rates


def _measure_in_child() -> DeviceRates:
    """Measure in a child process: the probes allocate and map tens of MiB,
    which must not count against the calling engine's memory budget."""
    code = ("import json, dataclasses; from edgecore.planner.cost import measure_rates; "
            "print(json.dumps(dataclasses.asdict(measure_rates())))")
    env = {**os.environ, "EDGECORE_NUM_THREADS": str(ops.get_num_threads()),
           "EDGECORE_ISA": ops.capabilities()["active"]}
    done = subprocess.run(python_command(code), env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"device calibration failed: {done.stderr.strip()[-2000:]}")
    return DeviceRates(**json.loads(done.stdout.strip().splitlines()[-1]))


def measure_rates() -> DeviceRates:
    return DeviceRates(
        page_in_bytes_per_s=_page_in_rate(),
        widen_bytes_per_s=_widen_rate(),
        stream_bytes_per_s=_stream_rate(),
        macs_per_s=_macs_rate(),
        threads=ops.get_num_threads(),
        tier=ops.capabilities()["active"],
    )


def _best(fn, repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return max(best, 1e-9)


def _page_in_rate(nbytes: int = 32 << 20) -> float:
    with tempfile.TemporaryFile() as f:
        f.write(np.ones(nbytes // 4, np.float32).tobytes())
        f.flush()
        with mmap.mmap(f.fileno(), nbytes, prot=mmap.PROT_READ) as mm:
            pages = np.frombuffer(mm, np.uint8)[::mmap.PAGESIZE]  # one byte per page
            int(pages.sum())  # into the page cache
            best = float("inf")
            for _ in range(5):
                mm.madvise(mmap.MADV_DONTNEED)  # out of this process, still cached
                t0 = time.perf_counter()
                int(pages.sum())  # fault every page back in
                best = min(best, time.perf_counter() - t0)
            del pages  # release the buffer export before the mapping closes
    return nbytes / max(best, 1e-9)


def _widen_rate(n: int = 4 << 20) -> float:
    src = np.ones(n, np.uint16)
    out = np.empty(n, np.float32)
    return src.nbytes / _best(lambda: ops.bf16_to_f32(src, out=out))


def _stream_rate() -> float:
    w = np.ones((4096, 4096), np.float32)  # 64 MiB: beyond the caches of small CPUs
    x = np.ones(4096, np.float32)
    out = np.empty(4096, np.float32)
    return w.nbytes / _best(lambda: ops.fused_linear(x, w, out=out), 3)


def _macs_rate() -> float:
    w = np.ones((512, 512), np.float32)
    x = np.ones((64, 512), np.float32)
    out = np.empty((64, 512), np.float32)
    return 64 * 512 * 512 / _best(lambda: ops.fused_linear(x, w, out=out))


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model")):
                return line.split(":", 1)[1].strip().replace(" ", "_")[:40]
    except OSError:
        pass
    return "cpu"
