"""Shared benchmark plumbing: interleaved timing, medians, machine info,
thread limits for every library, JSON output. Benchmarks print a table and
write JSON; they never assert on time."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def time_call(fn, min_time: float = 0.002) -> float:
    """Seconds per call: calls are batched until a batch takes `min_time`,
    so sub-microsecond calls are not dominated by the clock."""
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t0
        if dt >= min_time or n >= 1 << 20:
            return dt / n
        n *= 2 if dt == 0 else max(2, min(100, int(min_time / dt * 1.5)))


def compare(candidates: dict, rounds: int = 7, min_time: float = 0.002, settle: float = 0.0) -> dict:
    """Median seconds per call for each candidate, measured side by side:
    each round times every candidate once (in rotating order) so drift and
    noise on a shared machine hit all of them alike.

    settle: seconds to sleep before timing each candidate (followed by an
    untimed batch). Multi-threaded libraries keep their workers spinning after a call
    (OpenBLAS for up to ~0.1 s, OpenMP for milliseconds); on a machine with
    as many cores as threads, the previous candidate's spinning workers would
    steal the cores the next one is timed on. Use it for multi-thread runs."""
    names = list(candidates)
    for fn in candidates.values():  # warm up caches, pools, lazy init
        fn()
    samples = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            if settle:
                time.sleep(settle)
                time_call(candidates[name], min_time)  # untimed: wake its workers, refill caches
            samples[name].append(time_call(candidates[name], min_time))
    return {name: statistics.median(v) for name, v in samples.items()}


@contextmanager
def threads(n: int):
    """Limit edgecore, NumPy's BLAS and (if loaded) PyTorch to n threads."""
    from threadpoolctl import threadpool_limits

    import edgecore

    before = edgecore.get_num_threads()
    torch = sys.modules.get("torch")
    torch_before = torch.get_num_threads() if torch else None
    edgecore.set_num_threads(n)
    if torch:
        torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        edgecore.set_num_threads(before)
        if torch:
            torch.set_num_threads(torch_before)


def read_bandwidth(nbytes: int, n_threads: int = 1, rounds: int = 7) -> float:
    """Best sustained read bandwidth (bytes/s) over a buffer of `nbytes`,
    measured with NumPy integer sums (vectorised, far from compute-bound),
    split over n_threads Python threads (NumPy releases the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    words = max(1024, nbytes // 8)
    buf = np.ones(words, np.uint64)
    if n_threads > 1:
        time.sleep(0.3)  # let other libraries' spinning workers park (see compare)
    parts = np.array_split(buf, n_threads)
    with ThreadPoolExecutor(n_threads) as ex:

        def run():
            list(ex.map(np.sum, parts))

        run()
        t = compare({"read": run}, rounds=rounds, min_time=0.01)["read"]
    return buf.nbytes / t


def machine_info() -> dict:
    import edgecore

    info = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "numpy": np.__version__,
        "edgecore": edgecore.__version__,
        "edgecore_tiers": edgecore.capabilities(),
    }
    torch = sys.modules.get("torch")
    if torch:
        info["torch"] = torch.__version__
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def real_model(name: str) -> Path | None:
    """A real model's GGUF file on this machine, found as the tests find it
    (tests/support/real_models: $EDGECORE_TEST_MODELS, else `edgecore pull`'s
    cache); None when it is not here."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from support.real_models import find_real_model

    return find_real_model(name)


def write_json(name: str, payload: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"machine": machine_info(), "unix_time": int(time.time()), **payload}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """Plain-text table (the CLI's renderer)."""
    from edgecore.cli.table import render

    return render(rows, columns)
