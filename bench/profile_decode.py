"""Where a decode step's time goes: inside the C kernels vs outside them.

    python bench/profile_decode.py [--threads 2] [--steps 32] [--models demo,llama-125m] [--contexts 128,1024]

For each model and context length (tokens already in the KV cache before
decoding), runs `steps` single-token engine.step calls four times: as the
engine runs them (consecutive resident llama layers as one
ops.DecoderStack call, other llama layers one ops.DecoderBlock call each),
plain (step time, tok/s) and timed, then op by op (the stacks and blocks
set aside, every layer through the Python layers: the path before the
block), plain and timed. Timed: every ops kernel entry point and every
DecoderStack/DecoderBlock run wrapped in a timer; a run's time, less what its per-step argument checks
cost (measured apart: a run with no rows does every check and no kernel),
is kernel time. The out-of-kernel share is 1 - kernel / step time within
each timed step (the median over steps: robust to other processes'
bursts): Python glue, NumPy temporaries, argument checks and the wrappers'
own cost (an upper bound).
The long-context figure is decode tok/s after 1024 tokens vs after 128.
Models: the built-in demo (GPT-2 bytes: no DecoderBlock, op by op in both)
and a random Llama of the "Llama-125M" shape (hidden 768, 12 layers, 12
heads, FFN 3072, vocab 32000, tied embedding, float32) by default; any name
or path `--model` takes (e.g. smollm2, a GGUF file) also works. Prints a
table, writes bench/results/profile_decode.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import table, write_json  # noqa: E402

from edgecore import Engine, ops  # noqa: E402

KERNELS = ("dequantize_rows", "fused_linear", "linear", "linear_multi", "rms_norm", "layer_norm", "rope", "kv_store",
           "attention", "route_topk")

LLAMA_125M = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                  num_key_value_heads=12, vocab_size=32000, max_position_embeddings=2048)


def write_llama(path: Path, cfg: dict, seed: int = 0) -> Path:
    """A random-weight Llama checkpoint (HF names, tied embedding), written
    with edgecore's own safetensors writer (no torch needed)."""
    from edgecore.weights import save_safetensors

    rng = np.random.default_rng(seed)
    d, f, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    kv = d // cfg["num_attention_heads"] * cfg["num_key_value_heads"]

    def w(*shape):
        return (rng.standard_normal(shape, np.float32) * 0.02).astype(np.float32)

    tensors = {"model.embed_tokens.weight": w(v, d), "model.norm.weight": np.ones(d, np.float32)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        tensors.update({p + "self_attn.q_proj.weight": w(d, d), p + "self_attn.k_proj.weight": w(kv, d),
                        p + "self_attn.v_proj.weight": w(kv, d), p + "self_attn.o_proj.weight": w(d, d),
                        p + "mlp.gate_proj.weight": w(f, d), p + "mlp.up_proj.weight": w(f, d),
                        p + "mlp.down_proj.weight": w(d, f), p + "input_layernorm.weight": np.ones(d, np.float32),
                        p + "post_attention_layernorm.weight": np.ones(d, np.float32)})
    path.mkdir(parents=True, exist_ok=True)
    save_safetensors(path / "model.safetensors", tensors)
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "rms_norm_eps": 1e-5,
              "rope_theta": 10000.0, "tie_word_embeddings": True, "hidden_act": "silu",
              "bos_token_id": None, "eos_token_id": None, **cfg}
    (path / "config.json").write_text(json.dumps(config))
    return path


@contextmanager
def kernel_threads(n: int):
    """edgecore's thread count for the block (only edgecore kernels run here)."""
    before = ops.get_num_threads()
    ops.set_num_threads(n)
    try:
        yield
    finally:
        ops.set_num_threads(before)


class _TimedRun:
    """A DecoderBlock or DecoderStack whose run() is timed: the C call, less
    what its per-step argument checks cost (`check`, measured apart:
    run_check_cost), counts as kernel time."""

    def __init__(self, inner, name: str, check: float, seconds: Counter, calls: Counter):
        self.inner, self.name, self.check, self.seconds, self.calls = inner, name, check, seconds, calls

    def __len__(self):
        return len(self.inner)

    def run(self, *args):
        t0 = time.perf_counter()
        try:
            return self.inner.run(*args)
        finally:
            self.seconds[self.name] += time.perf_counter() - t0 - self.check
            self.calls[self.name] += 1


@contextmanager
def timed_kernels(engine: Engine, checks: dict):
    """Wrap the ops entry points and the engine's DecoderBlocks and
    DecoderStacks (checks: their per-run check cost, run_check_cost);
    yields (seconds Counter, calls Counter)."""
    seconds, calls = Counter(), Counter()
    originals = {name: getattr(ops, name) for name in KERNELS}
    blocks, stacks = engine._blocks, engine._stacks

    def wrap(name, fn):
        clock = time.perf_counter

        def timed(*args, **kwargs):
            t0 = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                seconds[name] += clock() - t0
                calls[name] += 1
        return timed

    for name, fn in originals.items():
        setattr(ops, name, wrap(name, fn))
    engine._blocks = {li: _TimedRun(b, "DecoderBlock.run", checks["block"], seconds, calls)
                      for li, b in blocks.items()}
    engine._stacks = {li: _TimedRun(s, "DecoderStack.run", checks["stack"], seconds, calls)
                      for li, s in stacks.items()}
    try:
        yield seconds, calls
    finally:
        engine._blocks, engine._stacks = blocks, stacks
        for name, fn in originals.items():
            setattr(ops, name, fn)


def run_check_cost(engine: Engine, reps: int = 2000) -> dict:
    """Seconds one DecoderBlock.run and one DecoderStack.run spend outside
    the kernels: a run with no rows does every per-step check (x, delta,
    positions, the batch) and returns before the first kernel."""
    def cost(runner):
        if runner is None:
            return 0.0
        x = np.empty((0, runner.d), np.float32)
        args = (x, None, np.empty(0, np.int64), np.zeros((1, 1), np.int32), np.zeros(2, np.int32),
                np.zeros(1, np.int32))
        t0 = time.perf_counter()
        for _ in range(reps):
            runner.run(*args)
        return (time.perf_counter() - t0) / reps
    return {"block": cost(next(iter(engine._blocks.values()), None)),
            "stack": cost(next(iter(engine._stacks.values()), None))}


@contextmanager
def op_by_op(engine: Engine):
    """Run the engine's layers through the Python layers (its DecoderBlocks
    and DecoderStacks set aside) for the block."""
    blocks, stacks = engine._blocks, engine._stacks
    engine._blocks = engine._stacks = {}
    try:
        yield
    finally:
        engine._blocks, engine._stacks = blocks, stacks


def decode_steps(engine: Engine, prompt: list[int], steps: int, timed: bool = False, checks: dict | None = None):
    """Prefill prompt into a fresh sequence, then `steps` greedy decode
    steps. Returns (each decode step's seconds, the kernel seconds inside
    each step, kernel seconds and calls per op over the decode steps; the
    kernel figures are zero unless timed). checks: run_check_cost's seconds
    of a DecoderBlock/DecoderStack run not spent in kernels, taken off it."""
    kv = engine.kv
    seq = kv.new_sequence()
    try:
        token = None
        for start in range(0, len(prompt), engine.step_tokens):
            chunk = np.array(prompt[start:start + engine.step_tokens], np.int64)
            kv.reserve(seq, len(chunk))
            token = int(engine.step([(seq, chunk)])[0].argmax())
        times, inside = [], []
        timer = timed_kernels(engine, checks or {"block": 0.0, "stack": 0.0}) if timed else \
            nullcontext((Counter(), Counter()))
        with timer as (seconds, calls):
            for _ in range(steps):
                kv.reserve(seq, 1)
                k0 = sum(seconds.values())
                t0 = time.perf_counter()
                logits = engine.step([(seq, np.array([token], np.int64))])
                times.append(time.perf_counter() - t0)
                inside.append(sum(seconds.values()) - k0)
                token = int(logits[0].argmax())
        return times, inside, seconds, calls
    finally:
        kv.release(seq)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default="2")
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--models", default="demo,llama-125m")
    ap.add_argument("--contexts", default="128,1024")
    ap.add_argument("--kv-dtype", default="f16")
    ap.add_argument("--out", default="profile_decode",
                    help="results file name in bench/results (default: profile_decode; another name "
                    "keeps a second host's run beside the first)")
    args = ap.parse_args()
    contexts = [int(c) for c in args.contexts.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            # llama-125m is built here; any other name is what --model takes (demo, smollm2, a path)
            path = write_llama(Path(tmp) / name, LLAMA_125M) if name == "llama-125m" else name
            probe = Engine(path, context=16)
            limit = probe.spec.max_positions
            probe.close()
            usable = [c for c in contexts if c + args.steps <= limit]
            if not usable:
                print(f"{name}: no context in {contexts} fits its {limit} positions", file=sys.stderr)
                continue
            with Engine(path, context=max(usable) + args.steps, kv_dtype=args.kv_dtype) as engine:
                vocab = engine.spec.vocab_size
                for n in [int(t) for t in args.threads.split(",")]:
                    with kernel_threads(n):
                        for ctx in usable:
                            prompt = [int(t) for t in np.random.default_rng(ctx).integers(0, vocab, ctx)]
                            decode_steps(engine, prompt[:8], 4)  # warm-up: first touch of every weight page
                            checks = run_check_cost(engine)
                            plain = statistics.median(decode_steps(engine, prompt, args.steps)[0])
                            times, inside, seconds, calls = decode_steps(engine, prompt, args.steps, timed=True,
                                                                         checks=checks)
                            with op_by_op(engine):
                                ops_plain = statistics.median(decode_steps(engine, prompt, args.steps)[0])
                                ops_times, ops_inside, ops_seconds, ops_calls = decode_steps(
                                    engine, prompt, args.steps, timed=True)
                            # per step, then the median: robust to bursts from other processes
                            outside = statistics.median(1 - k / t for k, t in zip(inside, times, strict=True))
                            ops_outside = statistics.median(1 - k / t for k, t in zip(ops_inside, ops_times,
                                                                                      strict=True))
                            per_step = {k: v / args.steps for k, v in ops_seconds.items()}  # means, by op
                            rows.append({
                                "model": name, "threads": n, "context": ctx, "kv_dtype": args.kv_dtype,
                                "blocks": len(engine._blocks), "stacks": len(engine._stacks),
                                "block_check_us": checks["block"] * 1e6, "stack_check_us": checks["stack"] * 1e6,
                                "step_ms": plain * 1e3, "tok_s": 1 / plain, "op_by_op_step_ms": ops_plain * 1e3,
                                "kernel_ms": statistics.median(inside) * 1e3,
                                "out_of_kernel_pct": 100 * outside, "op_by_op_out_of_kernel_pct": 100 * ops_outside,
                                "calls_per_step": sum(calls.values()) / max(1, args.steps),
                                "op_by_op_calls_per_step": sum(ops_calls.values()) / max(1, args.steps),
                                "kernel_ms_by_op": {k: v * 1e3 for k, v in per_step.items()},
                            })
                            print(rows[-1], flush=True)
    for r in rows:
        base = next((b for b in rows if b["model"] == r["model"] and b["threads"] == r["threads"]
                     and b["context"] == min(contexts)), None)
        r["vs_first_context"] = r["tok_s"] / base["tok_s"] if base else None
    print(table(rows, [("model", "model"), ("threads", "thr"), ("context", "context"), ("step_ms", "step ms"),
                       ("tok_s", "tok/s"), ("vs_first_context", "vs shortest"), ("blocks", "C blocks"),
                       ("kernel_ms", "kernel ms"), ("out_of_kernel_pct", "outside %"),
                       ("calls_per_step", "calls/step"), ("op_by_op_step_ms", "op-by-op ms"),
                       ("op_by_op_out_of_kernel_pct", "op-by-op outside %"),
                       ("op_by_op_calls_per_step", "op-by-op calls")]))
    print(f"wrote {write_json(args.out, {'rows': rows, 'steps': args.steps})}")


if __name__ == "__main__":
    main()
