"""ops.linear per weight type at SmolLM2-135M's shapes, decode (M=1) and
prefill (M=128).

    python bench/bench_qlinear.py                        # every type, 1 thread
    python bench/bench_qlinear.py --types q4_0 q8_0 --m 1 --threads 1 2
    python bench/bench_qlinear.py --configs scalar avx512 avx512+avx512_vnni   # per tier / feature set

Prints a table and writes bench/results/qlinear.json. Times are medians of
interleaved rounds (common.compare). GB/s counts the weight bytes read once
per call (the stored bytes: a 4-bit matrix counts its 4-bit bytes). Calls
cycle through copies of the weight totalling --cold-mb (default 256 MiB),
so the weights come from memory as in a real decode step, not from cache.
For M=1, "of read bw" is that rate over a streaming-read probe of the same
total size: common.read_bandwidth, NumPy uint64 sums split across the
threads (the JSON also keeps a NumPy-copy probe, bytes read + written per
second, for comparison). K-quants need K
to be a multiple of 256, so they run the 1536 -> 576 shape only. Which kernel
variant ran (ops.kernel_dispatch) is recorded with each row. With
--configs, every row is measured on each forced tier[+features] (default:
the active one), and "x scalar" is the speedup over the scalar config's
time for the same row when scalar is among them.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import compare, read_bandwidth, table, threads, write_json  # noqa: E402

from edgecore import ops  # noqa: E402

# (K, N) of SmolLM2-135M: q/o and gate/up (576 -> 1536), down (1536 -> 576), the tied head (576 -> 49152)
SHAPES = [(576, 1536), (1536, 576), (576, 49152)]
M_SIZES = [1, 128]


def weights_for(name: str, n: int, k: int, rng) -> np.ndarray:
    """A weight of type `name`: quantized from random floats where ops has a
    quantizer, else random blocks with sane f16 scales (speed does not
    depend on the values)."""
    info = {t["name"]: t for t in ops.weight_types()}[name]
    w = (rng.standard_normal((n, k)) * 0.05).astype(np.float32)
    if name == "f32":
        return w
    if info["quantize"]:
        return ops.quantize(w, name)
    raw = rng.integers(0, 256, (n, k // info["block_elems"], info["block_bytes"]), dtype=np.uint8)
    scale = np.full(raw.shape[:2], 0.01, np.float16).view(np.uint8).reshape(*raw.shape[:2], 2)
    at = 208 if name == "q6_k" else 0
    raw[:, :, at : at + 2] = scale
    if name in ("q4_k", "q5_k"):
        raw[:, :, 2:4] = scale
    return raw.reshape(n, -1)


def forcing(config: str | None):
    """ops.forced_tier for "tier[+feature...]"; None runs what is active."""
    if config is None:
        return contextlib.nullcontext()
    tier, *features = config.split("+")
    return ops.forced_tier(tier, features)


def copy_bandwidth(nbytes: int) -> float:
    a = np.ones(max(1024, nbytes // 8), np.uint64)
    b = np.empty_like(a)
    t = compare({"copy": lambda: np.copyto(b, a)}, rounds=5, min_time=0.01)["copy"]
    return 2 * a.nbytes / t


def main() -> None:
    names = [t["name"] for t in ops.weight_types()]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--types", nargs="+", default=names, choices=names)
    p.add_argument("--m", nargs="+", type=int, default=M_SIZES)
    p.add_argument("--shapes", nargs="+", default=[f"{k}x{n}" for k, n in SHAPES], help="KxN")
    p.add_argument("--threads", nargs="+", type=int, default=[1])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--configs", nargs="+", default=[None], help="tiers to force, tier[+feature...] (default: active)")
    p.add_argument("--cold-mb", type=float, default=256, help="weight copies cycled per call (0: one, cached)")
    args = p.parse_args()
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes]

    rng = np.random.default_rng(0)
    rows = []
    for n_threads in args.threads:
        for k, n in shapes:
            probe_bytes = max(int(args.cold_mb * 2**20), n * k)
            with threads(n_threads):
                read_bw = read_bandwidth(probe_bytes, n_threads)
            copy_bw = copy_bandwidth(probe_bytes)
            for name in args.types:
                block = {t["name"]: t["block_elems"] for t in ops.weight_types()}[name]
                if k % block:
                    print(f"  {name}: K={k} is not a multiple of its block ({block}); not measured", file=sys.stderr)
                    continue
                w = weights_for(name, n, k, rng)
                copies = [w] + [w.copy() for _ in range(int(args.cold_mb * 2**20 // w.nbytes))]
                turn = itertools.count()
                for m in args.m:
                    x = rng.standard_normal((m, k)).astype(np.float32)
                    out = np.empty((m, n), np.float32)
                    scratch = np.empty(max(1, ops.linear_scratch_bytes(name, m, k)), np.uint8)
                    def weight():
                        return copies[next(turn) % len(copies)]

                    for config in args.configs:
                        cands = {"linear": lambda: ops.linear(x, weight(), wtype=name, out=out, scratch=scratch)}
                        if name == "f32":
                            cands["fused_linear"] = lambda: ops.fused_linear(x, weight(), out=out)
                        with threads(n_threads), forcing(config):
                            t = compare(cands, rounds=args.rounds, min_time=0.005, settle=0.3 if n_threads > 1 else 0.0)
                        with forcing(config):
                            kernel = ops.kernel_dispatch(name)["gemm"]
                        gbs = w.nbytes / t["linear"] / 1e9
                        rows.append({
                            "type": name, "k": k, "n": n, "m": m, "threads": n_threads,
                            "ms": t["linear"] * 1e3, "weight_mb": w.nbytes / 1e6, "gb_s": gbs,
                            "of_read_bw": gbs * 1e9 / read_bw if m == 1 else None,
                            "gmac_s": m * n * k / t["linear"] / 1e9,
                            "fused_linear_ms": t["fused_linear"] * 1e3 if "fused_linear" in t else None,
                            "config": config or "active", "kernel": kernel,
                            "read_bw_gb_s": read_bw / 1e9, "copy_bw_gb_s": copy_bw / 1e9, "weight_copies": len(copies),
                        })
                        label = config or "active"
                        print(f"  {name:5} K={k:5} N={n:6} M={m:4} t={n_threads} {label}: {t['linear'] * 1e3:9.3f} ms",
                              file=sys.stderr)
    scalar_ms = {(r["type"], r["k"], r["n"], r["m"], r["threads"]): r["ms"] for r in rows if r["config"] == "scalar"}
    for r in rows:
        base = scalar_ms.get((r["type"], r["k"], r["n"], r["m"], r["threads"]))
        r["x_scalar"] = base / r["ms"] if base else None
    columns = [("type", "type"), ("config", "config"), ("k", "K"), ("n", "N"), ("m", "M"), ("threads", "thr"),
               ("ms", "ms"),
               ("gb_s", "weight GB/s"), ("of_read_bw", "of read bw"), ("gmac_s", "GMAC/s"),
               ("fused_linear_ms", "fused_linear ms"), ("x_scalar", "x scalar"), ("kernel", "kernel")]
    print(table(rows, columns))
    path = write_json("qlinear", {"probe": "common.read_bandwidth (NumPy uint64 sum); copy_bw: NumPy copy, "
                                           "read + written bytes", "started": time.time(), "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
