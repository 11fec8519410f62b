"""Per-token kernels: edgecore vs NumPy (vs PyTorch when installed), side by side.

    python bench/bench_pertoken.py                    # everything, 1 and 2 threads
    python bench/bench_pertoken.py --only attention --threads 1 --quick

Attention decode for SmolLM2-135M's shape (9 query heads, 3 KV heads, head
dim 64) at contexts 128 / 1024 / 4096 and 1 or 8 sequences, f32 and f16 KV
in 16-token pages, against a NumPy implementation on a contiguous cache
(the engine's math before these kernels) and PyTorch's
scaled_dot_product_attention; rms_norm, rope and kv_store per call at
decode and prefill row counts. Prints tables and writes
bench/results/pertoken.json. Times are medians of interleaved rounds
(common.compare); nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import compare, table, threads, write_json  # noqa: E402

from edgecore import ops  # noqa: E402

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # PyTorch is optional: its columns are left empty
    torch = None

HEADS, KV_HEADS, HEAD_DIM, D_MODEL = 9, 3, 64, 576  # SmolLM2-135M
PAGE = 16


def paged_cache(rng, seqs, ctx, dtype):
    """Every sequence holds `ctx` positions in its own shuffled pages."""
    per = -(-ctx // PAGE)
    ids = rng.permutation(seqs * per).astype(np.int32).reshape(seqs, per)
    shape = (seqs * per, KV_HEADS, PAGE, HEAD_DIM)
    k = rng.standard_normal(shape).astype(dtype)
    v = rng.standard_normal(shape).astype(dtype)
    # the same values laid out contiguously per sequence: [S, kv_heads, ctx, hd]
    k_seq = k[ids].transpose(0, 2, 1, 3, 4).reshape(seqs, KV_HEADS, per * PAGE, HEAD_DIM)[:, :, :ctx]
    v_seq = v[ids].transpose(0, 2, 1, 3, 4).reshape(seqs, KV_HEADS, per * PAGE, HEAD_DIM)[:, :, :ctx]
    return k, v, ids, np.ascontiguousarray(k_seq), np.ascontiguousarray(v_seq)


def numpy_decode(q, k_seq, v_seq, scale, out):
    """One decode row per sequence, grouped-query, float32 as NumPy does it."""
    group = HEADS // KV_HEADS
    for s in range(q.shape[0]):
        k = k_seq[s] if k_seq.dtype == np.float32 else k_seq[s].astype(np.float32)
        v = v_seq[s] if v_seq.dtype == np.float32 else v_seq[s].astype(np.float32)
        qg = q[s].reshape(KV_HEADS, group, HEAD_DIM)
        sc = np.matmul(qg, k.transpose(0, 2, 1)) * np.float32(scale)  # [kvh, g, ctx]
        sc -= sc.max(axis=-1, keepdims=True)
        np.exp(sc, out=sc)
        sc /= sc.sum(axis=-1, keepdims=True)
        out[s] = np.matmul(sc, v).reshape(-1)


def bench_attention(n_threads, contexts, batches, rounds):
    rows = []
    rng = np.random.default_rng(0)
    scale = HEAD_DIM**-0.5
    for dtype in (np.float32, np.float16):
        for ctx in contexts:
            for seqs in batches:
                k, v, ids, k_seq, v_seq = paged_cache(rng, seqs, ctx, dtype)
                q = rng.standard_normal((seqs, HEADS, HEAD_DIM)).astype(np.float32)
                starts = np.arange(seqs + 1, dtype=np.int32)
                pos0 = np.full(seqs, ctx - 1, np.int32)
                out = np.empty((seqs, HEADS * HEAD_DIM), np.float32)
                out_np = np.empty_like(out)
                cands = {
                    "edgecore": lambda: ops.attention(q, k, v, ids, starts, pos0, scale=scale, out=out),
                    "numpy": lambda: numpy_decode(q, k_seq, v_seq, scale, out_np),
                }
                if torch is not None:
                    qt = torch.from_numpy(q).unsqueeze(2)  # [S, H, 1, D]
                    kt, vt = torch.from_numpy(k_seq), torch.from_numpy(v_seq)  # [S, KVH, ctx, D]

                    def torch_decode(qt=qt, kt=kt, vt=vt):
                        with torch.inference_mode():
                            kk, vv = (kt, vt) if kt.dtype == torch.float32 else (kt.float(), vt.float())
                            return F.scaled_dot_product_attention(qt, kk, vv, scale=scale, enable_gqa=True)

                    cands["torch"] = torch_decode
                with threads(n_threads):
                    t = compare(cands, rounds=rounds, min_time=0.005, settle=0.3 if n_threads > 1 else 0.0)
                kv_bytes = 2 * seqs * ctx * KV_HEADS * HEAD_DIM * np.dtype(dtype).itemsize
                rows.append({
                    "threads": n_threads, "kv": np.dtype(dtype).name, "context": ctx, "seqs": seqs,
                    "edgecore_us": t["edgecore"] * 1e6, "numpy_us": t["numpy"] * 1e6,
                    "torch_us": t["torch"] * 1e6 if "torch" in t else None,
                    "vs_numpy": t["edgecore"] / t["numpy"],
                    "vs_torch": t["edgecore"] / t["torch"] if "torch" in t else None,
                    "kv_GBps": kv_bytes / t["edgecore"] / 1e9,
                })
                r = rows[-1]
                print(f"  t={n_threads} {r['kv']:7s} ctx={ctx:5d} seqs={seqs:2d}  edgecore {r['edgecore_us']:9.1f}us  "
                      f"numpy {r['numpy_us']:9.1f}us  KV read {r['kv_GBps']:6.2f} GB/s", flush=True)
    return rows


def bench_rows(n_threads, ms, rounds):
    """rms_norm (plain and fused with the residual add), rope and kv_store per call."""
    rows = []
    rng = np.random.default_rng(1)
    w = rng.standard_normal(D_MODEL).astype(np.float32)
    inv_freq = 1.0 / 10000.0 ** (np.arange(0, HEAD_DIM, 2, dtype=np.float64) / HEAD_DIM)
    ang = np.outer(np.arange(8192, dtype=np.float64), inv_freq)
    cos, sin = np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)
    half = HEAD_DIM // 2
    for m in ms:
        x = rng.standard_normal((m, D_MODEL)).astype(np.float32)
        delta = rng.standard_normal((m, D_MODEL)).astype(np.float32)
        out = np.empty_like(x)
        eps = np.float32(1e-5)

        def numpy_rms(x=x, out=out):
            ms_ = np.mean(np.square(x), axis=-1, keepdims=True, dtype=np.float32)
            np.multiply(x, 1.0 / np.sqrt(ms_ + eps), out=out)
            out *= w

        def numpy_add_rms(x=x, delta=delta, out=out):
            x += delta
            numpy_rms(x, out)

        qk = rng.standard_normal((m, HEADS + KV_HEADS, HEAD_DIM)).astype(np.float32)
        pos = rng.integers(0, 8192, m).astype(np.int32)

        def numpy_rope(qk=qk, pos=pos):
            c, s = cos[pos][:, None, :], sin[pos][:, None, :]
            a, b = qk[..., :half].copy(), qk[..., half:].copy()
            qk[..., :half] = a * c - b * s
            qk[..., half:] = b * c + a * s

        kv = rng.standard_normal((m, KV_HEADS, HEAD_DIM)).astype(np.float32)
        pages = -(-m // PAGE) + 1
        k_cache = np.zeros((pages, KV_HEADS, PAGE, HEAD_DIM), np.float16)
        v_cache = np.zeros_like(k_cache)
        table = np.arange(pages, dtype=np.int32)[None]
        starts, pos0 = np.array([0, m], np.int32), np.zeros(1, np.int32)
        slots = np.arange(m)

        def numpy_store():
            k_cache[slots // PAGE, :, slots % PAGE] = kv.astype(np.float16)
            v_cache[slots // PAGE, :, slots % PAGE] = kv.astype(np.float16)

        ops_cases = {
            "rms_norm": (lambda: ops.rms_norm(x, w, 1e-5, out=out), numpy_rms,
                         (lambda: F.rms_norm(torch.from_numpy(x), (D_MODEL,), torch.from_numpy(w), 1e-5))
                         if torch is not None else None),
            "add_rms_norm": (lambda: ops.rms_norm(x, w, 1e-5, residual=delta, out=out), numpy_add_rms, None),
            "rope_q+k": (lambda: ops.rope(qk, pos, cos, sin), numpy_rope, None),
            "kv_store_f16": (lambda: ops.kv_store(kv, kv, k_cache, v_cache, table, starts, pos0), numpy_store, None),
        }
        for name, (ours, numpy_fn, torch_fn) in ops_cases.items():
            cands = {"edgecore": ours, "numpy": numpy_fn}
            if torch_fn is not None:
                cands["torch"] = torch_fn
            with threads(n_threads):
                t = compare(cands, rounds=rounds, settle=0.3 if n_threads > 1 else 0.0)
            rows.append({
                "threads": n_threads, "op": name, "M": m,
                "edgecore_us": t["edgecore"] * 1e6, "numpy_us": t["numpy"] * 1e6,
                "torch_us": t["torch"] * 1e6 if "torch" in t else None,
                "vs_numpy": t["edgecore"] / t["numpy"],
            })
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["attention", "rows"], action="append")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="fewer shapes and rounds")
    ap.add_argument("--out", default="pertoken", help="results/<name>.json")
    args = ap.parse_args()
    sections = args.only or ["attention", "rows"]
    contexts, batches, ms, rounds = [128, 1024, 4096], [1, 8], [1, 16, 512], args.rounds
    if args.quick:
        contexts, batches, ms, rounds = [128, 4096], [1], [1, 512], 3
    results = {"shape": {"heads": HEADS, "kv_heads": KV_HEADS, "head_dim": HEAD_DIM, "d_model": D_MODEL,
                         "page_tokens": PAGE}}
    counts = [int(v) for v in args.threads.split(",")]
    if "attention" in sections:
        print("attention decode, SmolLM2 shape (microseconds per call, median)")
        rows = [r for n in counts for r in bench_attention(n, contexts, batches, rounds)]
        results["attention_decode"] = rows
        print(table(rows, [("threads", "thr"), ("kv", "KV"), ("context", "context"), ("seqs", "seqs"),
                           ("edgecore_us", "edgecore us"), ("numpy_us", "numpy us"), ("torch_us", "torch us"),
                           ("vs_numpy", "/numpy"), ("vs_torch", "/torch"), ("kv_GBps", "KV GB/s")]))
    if "rows" in sections:
        rows = [r for n in counts for r in bench_rows(n, ms, rounds)]
        results["per_call"] = rows
        print("\nrms_norm / rope / kv_store per call (microseconds, d_model 576, 9 + 3 heads x 64)")
        print(table(rows, [("threads", "thr"), ("op", "op"), ("M", "M"), ("edgecore_us", "edgecore us"),
                           ("numpy_us", "numpy us"), ("torch_us", "torch us"), ("vs_numpy", "/numpy")]))
    path = write_json(args.out, results)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
