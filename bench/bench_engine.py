"""Engine speed: edgecore vs transformers on a GPT-2-small-shaped model
(124M parameters, random weights, float32), batch 1, side by side.

    python bench/bench_engine.py [--threads 1,2] [--prompt 128] [--new 32] [--rounds 3]

Per thread count: prefill of the prompt (ms) and decode tokens/s for both,
and the decode ceiling = measured read bandwidth / weight bytes read per
token (every weight except the embedding rows not looked up). Prints a table,
writes bench/results/engine.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import read_bandwidth, table, threads, write_json  # noqa: E402


def build_model(path: Path):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config()).eval()  # the GPT-2 small shape
    model.save_pretrained(path)
    return model


def transformers_run(model, prompt: list[int], new: int) -> tuple[float, float]:
    """(prefill seconds, decode tokens/s) with a KV cache, greedy."""
    import torch

    with torch.inference_mode():
        ids = torch.tensor([prompt])
        t0 = time.perf_counter()
        out = model(ids, use_cache=True)
        t1 = time.perf_counter()
        past, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        t2 = time.perf_counter()
        for _ in range(new - 1):
            out = model(token, past_key_values=past, use_cache=True)
            past, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        t3 = time.perf_counter()
    return t1 - t0, (new - 1) / (t3 - t2)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--new", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    import torch  # noqa: F401  (threads() limits it too)

    from edgecore import Engine

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gpt2-small-random"
        ref = build_model(path)
        prompt = [int(t) for t in np.random.default_rng(0).integers(0, 50257, args.prompt)]
        with Engine(path) as engine:
            graph = engine.model.graph
            # decode reads every weight once per token, except the embedding
            # table (only the looked-up rows; the tied head reads all of it)
            per_token = sum(layer.weight_bytes for layer in graph.layers if layer.kind != "embed")
            for n in [int(t) for t in args.threads.split(",")]:
                with threads(n):
                    bw = read_bandwidth(256 << 20, n)
                    ours_p, ours_d, hf_p, hf_d = [], [], [], []
                    engine.generate(prompt[:8], max_new_tokens=4)  # warm-up (first touch of every page)
                    transformers_run(ref, prompt[:8], 4)
                    for _ in range(args.rounds):
                        r = engine.generate(prompt, max_new_tokens=args.new)
                        ours_p.append(r.stats.prefill_ms / 1e3)
                        ours_d.append(r.stats.decode_tokens_per_s)
                        p, d = transformers_run(ref, prompt, args.new)
                        hf_p.append(p)
                        hf_d.append(d)
                ceiling = bw / per_token
                row = {
                    "threads": n, "prompt": args.prompt, "new": args.new,
                    "prefill_ms": statistics.median(ours_p) * 1e3,
                    "hf_prefill_ms": statistics.median(hf_p) * 1e3,
                    "decode_tps": statistics.median(ours_d), "hf_decode_tps": statistics.median(hf_d),
                    "ceiling_tps": ceiling, "read_GBps": bw / 1e9, "weight_MB_per_token": per_token / 1e6,
                }
                row["decode_vs_ceiling"] = row["decode_tps"] / ceiling
                row["hf_vs_ceiling"] = row["hf_decode_tps"] / ceiling
                row["prefill_vs_hf"] = row["prefill_ms"] / row["hf_prefill_ms"]
                rows.append(row)
                print(row, flush=True)
    print(table(rows, [("threads", "thr"), ("prefill_ms", "prefill ms"), ("hf_prefill_ms", "hf prefill ms"),
                       ("prefill_vs_hf", "/hf"), ("decode_tps", "decode tok/s"), ("hf_decode_tps", "hf tok/s"),
                       ("ceiling_tps", "ceiling tok/s"), ("decode_vs_ceiling", "ours/ceil"),
                       ("hf_vs_ceiling", "hf/ceil"), ("read_GBps", "read GB/s")]))
    print(f"wrote {write_json('engine', {'rows': rows, 'model': 'GPT-2 small shape, random weights, f32'})}")


if __name__ == "__main__":
    main()
