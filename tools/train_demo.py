"""Train edgecore's built-in byte-level demo models (GPT-2 dense and Mixtral MoE).

The models read raw UTF-8 bytes: vocabulary = the 256 byte values, token id =
byte value, no special tokens. They are trained on English text that ships
with every CPython: the documentation strings in ``pydoc_data/topics.py``.

Data and split (see ``SPLIT_RULE``): the ``topics`` dict is taken in sorted key
order; topic number i (0-based) is held out for evaluation when
``i % 10 == 5`` (every 10th topic; this residue holds out ~8% of the bytes,
while ``i % 10 == 9`` would hold out only ~2% because topic sizes vary 100x);
each split is its topics joined with blank lines.  Held-out text is never
trained on.

Determinism: with the same ``--steps`` (and arguments, torch version and thread
count) a run is bit-for-bit reproducible on the same machine.  ``--minutes``
instead measures the speed of the first steps, picks ``steps`` from it and
records the exact schedule in ``training.json``; retrain with the recorded
``reproduce`` command line to get the same checkpoint.  Calibration steps are
ordinary training steps inside the learning-rate warm-up, so they do not
change the result.  On a shared machine a run can slow down after
calibration; if the projected end passes ``--hard-minutes`` the remaining
schedule is shortened (a "replan", recorded as another ``--schedule`` segment)
so that the run still ends in time with a fully decayed learning rate.

Usage (CPU only, 2 threads):

    python tools/train_demo.py --arch gpt2 --out edgecore/demo/gpt2-bytes --minutes 17 ...
    python tools/train_demo.py --arch mixtral --out edgecore/demo/mixtral-bytes --minutes 17 ...

(the exact size flags of the shipped models are in docs/demo-models.md and in
each model's training.json, field ``reproduce``).

Outputs in ``--out``: ``config.json`` (with ``"edgecore_tokenizer": "bytes"``),
``model.safetensors`` (written by ``save_pretrained(safe_serialization=True)``)
and ``training.json`` (losses, sizes, speed, hyper-parameters, versions, data).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

SPLIT_RULE = (
    "pydoc_data.topics.topics in sorted key order; topic i (0-based) is held out when i % 10 == 5; "
    "each split is its topics' texts joined with '\\n\\n', encoded as UTF-8"
)
# Windows of the held-out text scored for the quick check in tests (evenly spaced).
EVAL_SLICE_WINDOWS = 16
DEFAULT_MAX_MB = 8.0
_NOT_HYPERPARAMETERS = (
    "out",
    "minutes",
    "hard_minutes",
    "steps",
    "schedule",
    "seed",
    "threads",
    "evals",
    "calib_steps",
    "max_mb",
)
_NOT_REPRODUCE = ("arch", "out", "minutes", "hard_minutes", "steps", "schedule", "calib_steps")


def corpus_splits() -> tuple[bytes, bytes, list[str], list[str]]:
    """Return (train_bytes, heldout_bytes, train_topic_keys, heldout_topic_keys)."""
    from pydoc_data.topics import topics

    keys = sorted(topics)
    held = [k for i, k in enumerate(keys) if i % 10 == 5]
    train = [k for i, k in enumerate(keys) if i % 10 != 5]
    join = lambda ks: "\n\n".join(topics[k] for k in ks).encode("utf-8")  # noqa: E731
    return join(train), join(held), train, held


def window_starts(n_bytes: int, ctx: int) -> list[int]:
    """Start offsets of the non-overlapping evaluation windows of ``ctx + 1`` bytes.

    Consecutive windows share one byte, so every byte after the first is
    predicted exactly once, each with the bytes before it in its window as
    context (0 .. ctx-1 bytes).
    """
    return list(range(0, n_bytes - ctx, ctx))


def eval_slice_starts(n_bytes: int, ctx: int) -> list[int]:
    """The ``EVAL_SLICE_WINDOWS`` evenly spaced windows used for the quick check."""
    starts = window_starts(n_bytes, ctx)
    step = len(starts) / EVAL_SLICE_WINDOWS
    return [starts[int(i * step)] for i in range(EVAL_SLICE_WINDOWS)]


def eval_slice_bytes(heldout: bytes, ctx: int) -> bytes:
    """The held-out windows of the quick check, concatenated (each ctx + 1 bytes)."""
    return b"".join(heldout[s : s + ctx + 1] for s in eval_slice_starts(len(heldout), ctx))


@torch.no_grad()
def mean_loss(model: torch.nn.Module, data: bytes, starts: list[int], ctx: int, batch: int = 32) -> float:
    """Mean next-byte cross-entropy (nats/byte) over windows ``data[s : s + ctx + 1]``."""
    was_training = model.training
    model.eval()
    buf = torch.frombuffer(bytearray(data), dtype=torch.uint8).long()
    total, count = 0.0, 0
    for i in range(0, len(starts), batch):
        x = torch.stack([buf[s : s + ctx + 1] for s in starts[i : i + batch]])
        logits = model(input_ids=x[:, :-1]).logits.float()
        total += F.cross_entropy(logits.reshape(-1, 256), x[:, 1:].reshape(-1), reduction="sum").item()
        count += x[:, 1:].numel()
    model.train(was_training)
    return total / count


def build_model(args: argparse.Namespace) -> torch.nn.Module:
    """A freshly initialised byte-level model of the requested architecture."""
    from transformers import GPT2Config, GPT2LMHeadModel, MixtralConfig, MixtralForCausalLM

    # No special tokens: the 256 ids are exactly the 256 byte values, the model
    # never saw a BOS/EOS marker, so bos/eos/pad are null (a prompt starts from
    # its raw bytes; generation stops on a length limit or a stop string).
    common = dict(vocab_size=256, bos_token_id=None, eos_token_id=None, pad_token_id=None)
    if args.arch == "gpt2":
        config = GPT2Config(
            n_positions=args.ctx,
            n_embd=args.d_model,
            n_layer=args.layers,
            n_head=args.heads,
            n_inner=args.ffn,
            activation_function="gelu_new",  # GELU, tanh approximation (GPT-2's own)
            resid_pdrop=args.dropout,
            embd_pdrop=args.dropout,
            attn_pdrop=args.dropout,
            tie_word_embeddings=True,
            **common,
        )
        model = GPT2LMHeadModel(config)
    else:
        config = MixtralConfig(
            hidden_size=args.d_model,
            intermediate_size=args.ffn,
            num_hidden_layers=args.layers,
            num_attention_heads=args.heads,
            num_key_value_heads=args.kv_heads or args.heads,
            max_position_embeddings=args.ctx,
            num_local_experts=args.experts,
            num_experts_per_tok=args.top_k,
            router_aux_loss_coef=args.aux_coef,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            tie_word_embeddings=True,
            attention_dropout=args.dropout,
            **common,
        )
        model = MixtralForCausalLM(config)
    model.config.edgecore_tokenizer = "bytes"
    return model


def parse_schedule(text: str) -> list[tuple[int, int]]:
    """``"0:N"`` or ``"0:N,S:T,..."`` -> [(first_step, total_steps), ...] (see ``--schedule``)."""
    try:
        segs = [tuple(int(v) for v in part.split(":")) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--schedule {text!r}: expected FROM:TOTAL[,FROM:TOTAL...]"
        ) from None
    ok = all(len(seg) == 2 for seg in segs) and segs[0][0] == 0
    ok = (
        ok
        and all(a[0] < b[0] < b[1] <= a[1] for a, b in zip(segs, segs[1:], strict=False))
        and segs[0][0] < segs[0][1]
    )
    if not ok:
        raise argparse.ArgumentTypeError(
            f"--schedule {text!r}: segments must start at step 0, with increasing FROM < TOTAL and "
            "non-increasing TOTAL"
        )
    return segs


def total_at(step: int, schedule: list[tuple[int, int]]) -> int:
    """The planned number of steps in force at ``step`` (the last segment starting at or before it)."""
    return [total for first, total in schedule if first <= step][-1]


def per_layer_balance_loss(model: torch.nn.Module, router_logits: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Switch-Transformer load-balancing loss of each MoE layer, averaged over the layers.

    transformers' own ``aux_loss`` pools the expert assignments of all layers
    before balancing them, so one layer can route nearly everything to two
    experts as long as other layers use the rest (a first run did: experts got
    0.1% of a layer's bytes).  Balancing each layer keeps every expert in use.
    """
    from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func

    n_exp, k = model.config.num_local_experts, model.config.num_experts_per_tok
    return torch.stack([load_balancing_loss_func((g,), n_exp, k) for g in router_logits]).mean()


def lr_at(step: int, total: int, args: argparse.Namespace) -> float:
    """Linear warm-up, then cosine decay to ``lr * min_lr_ratio`` at ``total``."""
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = min(1.0, (step - args.warmup) / max(1, total - args.warmup))
    floor = args.lr * args.min_lr_ratio
    return floor + (args.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


@torch.no_grad()
def routing_stats(model: torch.nn.Module, data: bytes, starts: list[int], ctx: int) -> dict:
    """Per-layer routing on held-out text: expert load, top-1 entropy, temporal reuse.

    ``reuse`` is the fraction of the experts chosen for byte t+1 that were also
    chosen for byte t (1.0 = the same pair every byte, about k/E for random routing);
    it is the locality an expert cache can exploit.
    """
    model.eval()
    buf = torch.frombuffer(bytearray(data), dtype=torch.uint8).long()
    x = torch.stack([buf[s : s + ctx] for s in starts])
    out = model(input_ids=x, output_router_logits=True)
    k, n_exp = model.config.num_experts_per_tok, model.config.num_local_experts
    layers = []
    for logits in out.router_logits:
        ids = logits.float().topk(k, dim=-1).indices.reshape(len(starts), ctx, k)
        load = torch.bincount(ids.reshape(-1), minlength=n_exp).float()
        load = load / load.sum()
        onehot = F.one_hot(ids, n_exp).sum(-2)  # [B, T, E], 1 where chosen
        reuse = (onehot[:, 1:] * onehot[:, :-1]).sum().item() / (onehot[:, 1:].sum().item())
        entropy = -(load * load.clamp_min(1e-12).log()).sum().item() / math.log(n_exp)
        layers.append(
            {
                "load": [round(v, 4) for v in load.tolist()],
                "normalized_entropy": round(entropy, 4),
                "reuse_next_token": round(reuse, 4),
            }
        )
    return {
        "windows": len(starts),
        "ctx": ctx,
        "random_reuse_baseline": round(k / n_exp, 4),
        "layers": layers,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", choices=["gpt2", "mixtral"], required=True)
    p.add_argument("--out", type=Path, required=True, help="output directory")
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument(
        "--minutes", type=float, help="training time budget; steps are derived from measured speed"
    )
    budget.add_argument(
        "--steps", type=int, help="exact number of optimizer steps (same as --schedule 0:STEPS)"
    )
    budget.add_argument(
        "--schedule",
        type=parse_schedule,
        help="FROM:TOTAL[,FROM:TOTAL...]: the LR schedule plans TOTAL steps from step FROM on; "
        "the run ends at the last TOTAL (reproduces a run that was replanned)",
    )
    p.add_argument(
        "--hard-minutes",
        type=float,
        default=27.0,
        help="with --minutes: shorten the schedule if the run would end later than this",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads",
        type=int,
        default=2,
        help="torch threads (1 is faster than 2 on a 2-core machine another job is using)",
    )
    # model size
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=None, help="mixtral: key/value heads (default = heads)")
    p.add_argument("--ffn", type=int, default=None, help="MLP width (gpt2 default 4*d; mixtral: per expert)")
    p.add_argument("--experts", type=int, default=8)
    p.add_argument("--top-k", type=int, default=2)
    p.add_argument("--ctx", type=int, default=256, help="context length (bytes)")
    # optimisation
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--min-lr-ratio", type=float, default=0.1)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument(
        "--aux-coef",
        type=float,
        default=0.01,
        help="mixtral: weight of the per-layer router load-balancing loss",
    )
    p.add_argument("--evals", type=int, default=4, help="held-out evaluations during training (curve)")
    # output
    p.add_argument("--dtype", choices=["float32", "float16"], default="float32", help="stored weight dtype")
    p.add_argument(
        "--max-mb", type=float, default=DEFAULT_MAX_MB, help="refuse a model whose weights exceed this"
    )
    p.add_argument("--calib-steps", type=int, default=12, help="steps timed to turn --minutes into --steps")
    args = p.parse_args(argv)
    if args.ffn is None:
        args.ffn = 4 * args.d_model if args.arch == "gpt2" else 2 * args.d_model
    if args.d_model % args.heads:
        p.error(f"--d-model {args.d_model} must be divisible by --heads {args.heads}")
    if args.minutes is not None and args.calib_steps >= args.warmup:
        p.error("--calib-steps must be smaller than --warmup so calibration cannot change the LR schedule")
    if args.minutes is not None and args.hard_minutes <= args.minutes:
        p.error("--hard-minutes must be larger than --minutes")
    if args.steps is not None:
        if args.steps < 1:
            p.error("--steps must be >= 1")
        args.schedule = [(0, args.steps)]
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    torch.use_deterministic_algorithms(True)

    import transformers

    train, heldout, train_keys, held_keys = corpus_splits()
    model = build_model(args)
    model.train()
    n_params = sum(p.numel() for p in model.parameters())  # tied head counted once
    itemsize = 2 if args.dtype == "float16" else 4
    if n_params * itemsize > args.max_mb * 1e6:
        sys.exit(
            f"model has {n_params:,} parameters = {n_params * itemsize / 1e6:.2f} MB in {args.dtype}, "
            f"over --max-mb {args.max_mb}; shrink it or store float16"
        )
    print(
        f"{args.arch}: {n_params:,} parameters; train {len(train):,} B, held-out {len(heldout):,} B",
        flush=True,
    )

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "wpe" not in n]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2 or "wpe" in n]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, 0.95),
        eps=1e-8,
    )
    gen = torch.Generator().manual_seed(args.seed)
    train_buf = torch.frombuffer(bytearray(train), dtype=torch.uint8).long()
    held_starts = window_starts(len(heldout), args.ctx)
    # A same-size sample of training windows, scored like the held-out set (overfitting gap).
    train_eval_starts = torch.randint(
        0,
        len(train) - args.ctx - 1,
        (len(held_starts),),
        generator=torch.Generator().manual_seed(args.seed + 1),
    ).tolist()

    schedule: list[tuple[int, int]] | None = args.schedule  # None until --minutes is calibrated
    eval_every = max(1, schedule[0][1] // args.evals) if schedule and args.evals else 0
    step_times: list[float] = []
    curve: list[dict] = []
    recent: list[float] = []
    t_start = time.perf_counter()
    step = 0
    while schedule is None or step < schedule[-1][1]:
        t0 = time.perf_counter()
        # Before calibration every step is inside the warm-up, where the LR does not depend on the total.
        for group in opt.param_groups:
            group["lr"] = lr_at(step, total_at(step, schedule) if schedule else args.warmup, args)
        offs = torch.randint(0, len(train) - args.ctx - 1, (args.batch,), generator=gen)
        x = torch.stack([train_buf[o : o + args.ctx + 1] for o in offs.tolist()])
        if args.arch == "mixtral":
            out = model(input_ids=x[:, :-1], output_router_logits=True)
        else:
            out = model(input_ids=x[:, :-1])
        ce = F.cross_entropy(out.logits.reshape(-1, 256), x[:, 1:].reshape(-1))
        loss = (
            ce + args.aux_coef * per_layer_balance_loss(model, out.router_logits)
            if args.arch == "mixtral"
            else ce
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        step += 1
        recent = (recent + [ce.item()])[-100:]
        step_times.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - t_start
        if schedule is None and step == args.calib_steps:
            per_step = statistics.median(step_times[2:])  # first steps pay one-off allocation costs
            schedule = [(0, step + max(1, int((args.minutes * 60 - elapsed) / per_step)))]
            eval_every = max(1, schedule[0][1] // args.evals) if args.evals else 0
            print(f"calibrated: {per_step * 1e3:.0f} ms/step -> {schedule[0][1]} steps", flush=True)
        elif args.minutes is not None and schedule and step % 10 == 0 and step >= 5 * args.calib_steps:
            # Mean over the whole run so far: a few seconds of contention must not shorten the
            # schedule for good, a sustained slowdown must.
            per_step = (elapsed - sum(step_times[: args.calib_steps])) / (step - args.calib_steps)
            if elapsed + (schedule[-1][1] - step) * per_step > args.hard_minutes * 60:
                new_total = step + max(1, int(0.95 * (args.hard_minutes * 60 - elapsed) / per_step))
                if new_total < schedule[-1][1]:
                    schedule.append((step, new_total))
                    print(
                        f"replan at step {step}: {per_step * 1e3:.0f} ms/step -> {new_total} steps",
                        flush=True,
                    )
        if eval_every and step % eval_every == 0 and step < schedule[-1][1]:
            curve.append(
                {
                    "step": step,
                    "heldout_nats": round(mean_loss(model, heldout, held_starts, args.ctx), 4),
                    "train_ce_recent": round(sum(recent) / len(recent), 4),
                    "elapsed_s": round(time.perf_counter() - t_start),
                }
            )
            print(
                f"step {step}/{schedule[-1][1]} lr {lr_at(step, total_at(step, schedule), args):.2e} "
                f"{curve[-1]}",
                flush=True,
            )
    wall = time.perf_counter() - t_start

    heldout_f32 = mean_loss(model, heldout, held_starts, args.ctx)
    train_eval = mean_loss(model, train, train_eval_starts, args.ctx)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.dtype == "float16":
        model = model.half()
    model.save_pretrained(args.out, safe_serialization=True)
    # save_pretrained also writes generation_config.json with nothing but library defaults (no
    # special tokens here); the shipped directory is just config.json + model.safetensors + training.json.
    (args.out / "generation_config.json").unlink(missing_ok=True)
    # The numbers recorded below are those of the weights as shipped: reload from disk.
    saved = type(model).from_pretrained(args.out, dtype=torch.float32)
    heldout_saved = mean_loss(saved, heldout, held_starts, args.ctx)
    slice_starts = eval_slice_starts(len(heldout), args.ctx)
    slice_loss = mean_loss(saved, heldout, slice_starts, args.ctx)
    slice_bytes = eval_slice_bytes(heldout, args.ctx)
    weights = args.out / "model.safetensors"

    report = {
        "arch": type(model).__name__,
        "parameters": n_params,
        "stored_dtype": args.dtype,
        "safetensors_bytes": weights.stat().st_size,
        "heldout_loss_nats_per_byte": round(heldout_saved, 5),
        "heldout_loss_bits_per_byte": round(heldout_saved / math.log(2), 5),
        "heldout_loss_nats_before_cast": round(heldout_f32, 5),
        "train_loss_nats_per_byte": round(train_eval, 5),
        "train_loss_note": "same scoring as held-out, on as many random training windows",
        "train_ce_last100_steps": round(sum(recent) / len(recent), 5),
        "heldout_eval": f"{len(held_starts)} non-overlapping windows of ctx+1 = {args.ctx + 1} bytes; "
        "every byte after a window's first is predicted once (context 0..ctx-1)",
        "heldout_slice": {
            "windows": EVAL_SLICE_WINDOWS,
            "starts": slice_starts,
            "sha256": hashlib.sha256(slice_bytes).hexdigest(),
            "loss_nats_per_byte": round(slice_loss, 5),
        },
        "curve": curve,
        "steps": step,
        "tokens_seen": step * args.batch * args.ctx,
        "epochs": round(step * args.batch * args.ctx / len(train), 2),
        "train_wall_s": round(wall, 1),
        "tokens_per_s": round(step * args.batch * args.ctx / wall),
        "median_step_ms": round(statistics.median(step_times) * 1e3, 1),
        "seed": args.seed,
        "threads": args.threads,
        "hyperparameters": {k: v for k, v in vars(args).items() if k not in _NOT_HYPERPARAMETERS},
        "budget": {"minutes": args.minutes, "hard_minutes": args.hard_minutes}
        if args.minutes
        else "fixed steps",
        "schedule": schedule,
        "replanned": len(schedule) > 1,
        "reproduce": f"python tools/train_demo.py --arch {args.arch} --out DIR --schedule "
        + ",".join(f"{a}:{b}" for a, b in schedule)
        + " "
        + " ".join(
            f"--{k.replace('_', '-')} {v}"
            for k, v in vars(args).items()
            if k not in _NOT_REPRODUCE and v is not None
        ),
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
        "data": {
            "source": "pydoc_data/topics.py (CPython standard library), topics dict",
            "split_rule": SPLIT_RULE,
            "train_bytes": len(train),
            "heldout_bytes": len(heldout),
            "train_topics": len(train_keys),
            "heldout_topics": held_keys,
            "heldout_sha256": hashlib.sha256(heldout).hexdigest(),
        },
        "tokenizer": "bytes: vocab 256, token id = UTF-8 byte value, no special tokens; "
        "bos/eos/pad ids are null",
    }
    if args.arch == "mixtral":
        report["routing_heldout"] = routing_stats(saved, heldout, held_starts, args.ctx)
        report["router_aux_loss"] = {
            "coef": args.aux_coef,
            "form": "Switch load-balancing loss per layer, mean over layers",
        }
    (args.out / "training.json").write_text(json.dumps(report, indent=2) + "\n")
    print(
        json.dumps(
            {
                k: report[k]
                for k in (
                    "parameters",
                    "safetensors_bytes",
                    "heldout_loss_nats_per_byte",
                    "heldout_loss_bits_per_byte",
                    "train_loss_nats_per_byte",
                    "steps",
                    "tokens_per_s",
                    "train_wall_s",
                )
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
