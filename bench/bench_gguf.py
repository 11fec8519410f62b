"""GGUF engine speed on a real file (default: the registry's smollm2), per
thread count and activation precision (q8: one 8-bit pass; q8x2: 8 bits +
an 8-bit residual, the default), greedy, batch 1.

    python bench/bench_gguf.py [--model smollm2|PATH] [--threads 1,2] [--prompt 64] [--new 32] [--rounds 3]

Prefill tok/s of a prompt, decode tok/s after it, and the decode ceiling =
measured read bandwidth / stored weight bytes read per token. The two
precisions run interleaved round by round so machine noise hits both alike.
Prints a table, writes bench/results/gguf.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import read_bandwidth, table, threads, write_json  # noqa: E402

PRECISIONS = ("q8", "q8x2")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--prompt", type=int, default=64)
    ap.add_argument("--new", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    from edgecore import Engine, ops

    engines = {p: Engine(args.model, act_precision=p) for p in PRECISIONS}
    try:
        graph = engines["q8"].model.graph
        per_token = sum(layer.weight_bytes for layer in graph.layers if layer.kind != "embed")
        vocab = engines["q8"].spec.vocab_size
        prompt = [int(t) for t in np.random.default_rng(0).integers(0, vocab, args.prompt)]
        rows = []
        for n in [int(t) for t in args.threads.split(",")]:
            with threads(n):
                bw = read_bandwidth(256 << 20, n)
                runs = {p: ([], []) for p in PRECISIONS}
                for engine in engines.values():
                    engine.generate(prompt[:8], max_new_tokens=4)  # warm-up: first touch of every page
                for _ in range(args.rounds):
                    for p, engine in engines.items():
                        s = engine.generate(prompt, max_new_tokens=args.new).stats
                        runs[p][0].append(s.prompt_tokens_prefilled / (s.prefill_ms / 1e3))
                        runs[p][1].append(s.decode_tokens_per_s)
                for p in PRECISIONS:
                    row = {"threads": n, "act_precision": p, "prompt": args.prompt, "new": args.new,
                           "prefill_tps": statistics.median(runs[p][0]), "decode_tps": statistics.median(runs[p][1]),
                           "ceiling_tps": bw / per_token, "read_GBps": bw / 1e9,
                           "weight_MB_per_token": per_token / 1e6}
                    row["decode_vs_ceiling"] = row["decode_tps"] / row["ceiling_tps"]
                    rows.append(row)
                    print(row, flush=True)
    finally:
        for engine in engines.values():
            engine.close()
    print(table(rows, [("threads", "thr"), ("act_precision", "act"), ("prefill_tps", "prefill tok/s"),
                       ("decode_tps", "decode tok/s"), ("ceiling_tps", "ceiling tok/s"),
                       ("decode_vs_ceiling", "decode/ceil"), ("read_GBps", "read GB/s")]))
    kernels = {t: ops.kernel_dispatch(t)["gemm"] for t in ("q4_1", "q8_0")}
    print(f"wrote {write_json('gguf', {'rows': rows, 'model': str(args.model), 'kernels': kernels})}")


if __name__ == "__main__":
    main()
