"""`edgecore bench`: budgets x strategies on one model. Each configuration
runs in a fresh process so its peak RSS is its own."""

from __future__ import annotations

import json
import subprocess
import sys

from edgecore.cli import CliError
from edgecore.cli.table import render

WORKER = "from edgecore.cli.bench import worker; worker()"


def register(sub) -> None:
    p = sub.add_parser("bench", help="prefill/decode speed and peak RSS per budget and strategy")
    p.add_argument("--model", help="model directory or built-in name (default: demo)")
    p.add_argument("--budgets", default="none", help="comma-separated budgets, 'none' for unlimited "
                                                     "(e.g. 64M,128M,1G)")
    p.add_argument("--strategies", default="auto", help="comma-separated: sequential,greedy,speculative,auto")
    p.add_argument("--prompt-tokens", type=int, default=64)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--threads", type=int)
    p.add_argument("--context", type=int)
    p.add_argument("--step-tokens", type=int)
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from edgecore.memory import format_size, parse_size
    from edgecore.planner import STRATEGIES

    try:
        budgets = [None if b.strip().lower() == "none" else parse_size(b) for b in args.budgets.split(",")]
    except ValueError as exc:
        raise CliError(f"--budgets: {exc}") from None
    strategies = [s.strip() for s in args.strategies.split(",")]
    bad = [s for s in strategies if s not in STRATEGIES]
    if bad:
        raise CliError(f"--strategies: unknown {', '.join(bad)}; choose from {', '.join(STRATEGIES)}")
    for name in ("prompt_tokens", "new_tokens"):
        if getattr(args, name) < 1:
            raise CliError(f"--{name.replace('_', '-')} must be >= 1")
    configs = [(b, s) for b in budgets for s in strategies]
    rows = []
    for i, (budget, strategy) in enumerate(configs):
        label = f"{strategy} @ {format_size(budget) if budget else 'no budget'}"
        _progress(i, len(configs), label)
        job = {"model": args.model, "budget": budget, "strategy": strategy, "prompt_tokens": args.prompt_tokens,
               "new_tokens": args.new_tokens, "threads": args.threads, "context": args.context,
               "step_tokens": args.step_tokens}
        done = subprocess.run([sys.executable, "-c", WORKER, json.dumps(job)], capture_output=True, text=True)
        try:
            result = json.loads(done.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            raise CliError(f"benchmark worker failed for {label}: {done.stderr.strip()[-1500:]}", 1) from None
        rows.append({"budget": format_size(budget) if budget else "none", "strategy": strategy, **result})
    _progress(len(configs), len(configs), "done")
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        for key in ("peak_rss_growth", "plan_peak"):
            if isinstance(r.get(key), int):
                r[key] = format_size(r[key])
    print(render(rows, [("budget", "budget"), ("strategy", "strategy"), ("chosen", "plan"), ("groups", "groups"),
                        ("pinned", "pinned"), ("plan_peak", "planned peak"), ("peak_rss_growth", "peak RSS +"),
                        ("prefill_ms", "prefill ms"), ("decode_tps", "decode tok/s"), ("error", "error")]))
    return 0


def _progress(done: int, total: int, label: str) -> None:
    width = 24
    filled = width * done // max(total, 1)
    end = "\n" if done == total else ""
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {label:<40}{end}")
    sys.stderr.flush()


def worker() -> None:
    """One configuration, in its own process: prints one JSON line."""
    import numpy as np

    from edgecore.engine import Engine
    from edgecore.memory import MemoryBudgetError, reset_peak_rss, sample_footprint
    from edgecore.planner import BudgetTooSmall

    job = json.loads(sys.argv[1])
    base = sample_footprint().rss
    exact = reset_peak_rss()
    try:
        engine = Engine(job["model"], memory_budget=job["budget"], strategy=job["strategy"], threads=job["threads"],
                        context=job["context"], step_tokens=job["step_tokens"])
    except (BudgetTooSmall, MemoryBudgetError, ValueError) as exc:
        print(json.dumps({"error": str(exc).split(";")[-1].strip()[:80]}))
        return
    with engine:
        vocab = engine.spec.vocab_size
        prompt = [int(t) for t in np.random.default_rng(0).integers(0, vocab, job["prompt_tokens"])]
        engine.generate(prompt[:8], max_new_tokens=2)  # warm-up: first-touch costs are not speed
        result = engine.generate(prompt, max_new_tokens=job["new_tokens"])
        peak = sample_footprint().peak_rss
        s = result.stats
        print(json.dumps({
            "chosen": engine.plan.strategy, "groups": len(engine.plan.groups),
            "pinned": sum(g.pinned for g in engine.plan.groups), "plan_peak": engine.plan.peak_bytes,
            "peak_rss_growth": (peak - base) if peak and base and exact else None,
            "prefill_ms": round(s.prefill_ms, 2), "decode_tps": round(s.decode_tokens_per_s or 0.0, 2),
        }))
