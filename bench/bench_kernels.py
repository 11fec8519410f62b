"""Kernel benchmarks: edgecore vs NumPy vs PyTorch, side by side in one run.

    python bench/bench_kernels.py                 # everything, 1 and 2 threads
    python bench/bench_kernels.py --only linear --threads 1

Prints tables and writes bench/results/kernels.json. Times are medians of
interleaved rounds (see common.compare); ratios are taken within one run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, compare, read_bandwidth, table, threads, write_json  # noqa: E402

from edgecore import ops  # noqa: E402

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # PyTorch is optional: its columns are left empty
    torch = None

LINEAR_SHAPES = [(2048, 1024), (768, 3072), (3072, 768), (4096, 4096)]
LINEAR_M = [1, 4, 16, 64, 256]


def bench_linear(n_threads: int, shapes, ms, rounds: int) -> list[dict]:
    rows = []
    rng = np.random.default_rng(0)
    for k, n in shapes:
        w = rng.standard_normal((n, k)).astype(np.float32)
        b = rng.standard_normal(n).astype(np.float32)
        with threads(n_threads):
            bw = read_bandwidth(w.nbytes, n_threads)
        for m in ms:
            x = rng.standard_normal((m, k)).astype(np.float32)
            out = np.empty((m, n), np.float32)
            cands = {
                "edgecore": lambda: ops.fused_linear(x, w, b, activation="relu", out=out),
                "numpy": lambda: np.maximum(x @ w.T + b, 0, out=out),
            }
            if torch is not None:
                xt, wt, bt = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)

                def torch_linear():
                    with torch.inference_mode():
                        return torch.relu(F.linear(xt, wt, bt))

                cands["torch"] = torch_linear
            with threads(n_threads):
                t = compare(cands, rounds=rounds, min_time=0.005, settle=0.3 if n_threads > 1 else 0.0)
            floor = w.nbytes / bw
            best_ref = min(v for name, v in t.items() if name != "edgecore")
            rows.append({
                "threads": n_threads, "K": k, "N": n, "M": m,
                "edgecore_us": t["edgecore"] * 1e6,
                "numpy_us": t["numpy"] * 1e6,
                "torch_us": t["torch"] * 1e6 if "torch" in t else None,
                "floor_us": floor * 1e6,
                "read_GBps": bw / 1e9,
                "vs_best": t["edgecore"] / best_ref,
                "vs_numpy": t["edgecore"] / t["numpy"],
                "vs_torch": t["edgecore"] / t["torch"] if "torch" in t else None,
                "vs_floor": t["edgecore"] / floor,
                "GFLOPs": 2 * m * n * k / t["edgecore"] / 1e9,
            })
            print_row(rows[-1])
    return rows


def print_row(r):
    print(f"  t={r['threads']} K={r['K']:5d} N={r['N']:5d} M={r['M']:4d}  edgecore {r['edgecore_us']:9.1f}us  "
          f"numpy {r['numpy_us']:9.1f}us  torch {r['torch_us'] or float('nan'):9.1f}us  floor {r['floor_us']:8.1f}us  "
          f"x_best {r['vs_best']:.2f}", flush=True)


def numpy_topk(logits, k):
    idx = np.argpartition(-logits, k - 1, axis=1)[:, :k] if k < logits.shape[1] else np.tile(
        np.arange(logits.shape[1]), (logits.shape[0], 1))
    chosen = np.take_along_axis(logits, idx, axis=1)
    order = np.argsort(-chosen, axis=1, kind="stable")
    idx = np.take_along_axis(idx, order, axis=1)
    chosen = np.take_along_axis(chosen, order, axis=1)
    e = np.exp(chosen - chosen[:, :1])
    return idx, e / e.sum(axis=1, keepdims=True)


def bench_topk(rounds: int) -> list[dict]:
    rows = []
    rng = np.random.default_rng(1)
    for t_rows in (1, 16, 256, 4096):
        for e in (8, 64, 128):
            for k in (2, 8):
                logits = rng.standard_normal((t_rows, e)).astype(np.float32)
                cands = {
                    "edgecore": lambda: ops.route_topk(logits, k),
                    "numpy": lambda: numpy_topk(logits, k),
                }
                if torch is not None:
                    lt = torch.from_numpy(logits)

                    def torch_topk():
                        with torch.inference_mode():
                            v, i = torch.topk(lt, k, dim=-1)
                            return i, torch.softmax(v, dim=-1)

                    cands["torch"] = torch_topk
                with threads(1):
                    tm = compare(cands, rounds=rounds)
                rows.append({
                    "T": t_rows, "E": e, "k": k,
                    "edgecore_us": tm["edgecore"] * 1e6, "numpy_us": tm["numpy"] * 1e6,
                    "torch_us": tm["torch"] * 1e6 if "torch" in tm else None,
                    "vs_torch": tm["edgecore"] / tm["torch"] if "torch" in tm else None,
                    "vs_numpy": tm["edgecore"] / tm["numpy"],
                })
    return rows


def bench_ema(rounds: int) -> list[dict]:
    rows = []
    rng = np.random.default_rng(2)
    for e in (8, 64, 1024, 65536):
        s = rng.uniform(0, 1, e).astype(np.float32)
        s_np = s.copy()
        ids = rng.integers(0, e, 2).astype(np.int32)
        counts = np.zeros(e, np.uint64)

        def numpy_ema(s_np=s_np, ids=ids):
            np.multiply(s_np, np.float32(0.99), out=s_np)
            s_np[np.unique(ids)] += np.float32(0.1)
            np.clip(s_np, 0, 1, out=s_np)

        cands = {
            "edgecore": lambda: ops.ema_update(s, ids, decay=0.99, boost=0.1, max_score=1.0, counts=counts),
            "numpy": numpy_ema,
        }
        with threads(1):
            tm = compare(cands, rounds=rounds)
        rows.append({"E": e, "edgecore_us": tm["edgecore"] * 1e6, "numpy_us": tm["numpy"] * 1e6,
                     "vs_numpy": tm["edgecore"] / tm["numpy"]})
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["linear", "topk", "ema"], action="append")
    ap.add_argument("--threads", default="1,2", help="thread counts for the linear benchmark")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="fewer shapes and rounds")
    ap.add_argument("--out", default="kernels", help="results/<name>.json")
    args = ap.parse_args()
    sections = args.only or ["linear", "topk", "ema"]
    shapes, ms, rounds = LINEAR_SHAPES, LINEAR_M, args.rounds
    if args.quick:
        shapes, ms, rounds = LINEAR_SHAPES[:2], [1, 16, 256], 3
    results = {}
    if "linear" in sections:
        print("fused linear + relu (microseconds per call, median)")
        rows = []
        for n in [int(v) for v in args.threads.split(",")]:
            rows += bench_linear(n, shapes, ms, rounds)
        results["linear"] = rows
        print(table(rows, [("threads", "thr"), ("K", "K"), ("N", "N"), ("M", "M"), ("edgecore_us", "edgecore us"),
                           ("numpy_us", "numpy us"), ("torch_us", "torch us"), ("floor_us", "floor us"),
                           ("vs_best", "/best"), ("vs_numpy", "/numpy"), ("vs_torch", "/torch"),
                           ("vs_floor", "/floor"), ("GFLOPs", "GFLOP/s")]))
        one = {(r["K"], r["N"], r["M"]): r["edgecore_us"] for r in rows if r["threads"] == 1}
        scaling = [dict(K=r["K"], N=r["N"], M=r["M"], speedup=one[(r["K"], r["N"], r["M"])] / r["edgecore_us"])
                   for r in rows if r["threads"] == 2 and (r["K"], r["N"], r["M"]) in one]
        if scaling:
            results["linear_2thread_speedup"] = scaling
            print("\n2-thread speedup over 1 thread (edgecore)")
            print(table(scaling, [("K", "K"), ("N", "N"), ("M", "M"), ("speedup", "speedup")]))
    if "topk" in sections:
        rows = bench_topk(rounds)
        results["route_topk"] = rows
        print("\nroute_topk (microseconds per call from Python, 1 thread)")
        print(table(rows, [("T", "T"), ("E", "E"), ("k", "k"), ("edgecore_us", "edgecore us"),
                           ("numpy_us", "numpy us"), ("torch_us", "torch us"), ("vs_torch", "/torch"),
                           ("vs_numpy", "/numpy")]))
    if "ema" in sections:
        rows = bench_ema(rounds)
        results["ema_update"] = rows
        print("\nema_update (microseconds per call from Python, 2 activated ids)")
        print(table(rows, [("E", "E"), ("edgecore_us", "edgecore us"), ("numpy_us", "numpy us"),
                           ("vs_numpy", "/numpy")]))
    previous = RESULTS / f"{args.out}.json"
    if args.only and previous.exists():  # re-measured sections replace theirs; the rest is kept
        kept = json.loads(previous.read_text())
        for key in ("machine", "unix_time"):
            kept.pop(key, None)
        results = {**kept, **results}
    print(f"\nwrote {write_json(args.out, results)}")


if __name__ == "__main__":
    main()
