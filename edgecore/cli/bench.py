"""`edgecore bench`: budgets x strategies on one model. Each configuration
runs in a fresh process so its peak RSS is its own.

The settings are checked once, up front, as `edgecore run` checks them
(prompt + new tokens must fit the context). A configuration that fails
(a budget below the minimum, say) is a row with its full one-line reason;
if any row failed, bench exits 1 after printing the table."""

from __future__ import annotations

import json
import subprocess
import sys

from edgecore._child import python_command
from edgecore.cli import EXIT_REFUSED, CliError
from edgecore.cli.options import NO_BUDGET, add_run_options, resolve_options
from edgecore.cli.table import render

WORKER = "from edgecore.cli.bench import worker; worker()"
OPTIONS = ("model", "threads", "context", "step_tokens")


def register(sub) -> None:
    p = sub.add_parser("bench", help="prefill/decode speed and peak RSS per budget and strategy",
                       description="Prefill/decode speed and peak RSS per budget and strategy, each in a fresh "
                                   "process. Exits 1 if any configuration failed (its row says why).")
    add_run_options(p, OPTIONS, preset=False)
    p.add_argument("--budgets", default=NO_BUDGET, help="comma-separated budgets, 'none' for unlimited "
                                                        "(e.g. 64M,128M,1G)")
    p.add_argument("--strategies", default="auto", help="comma-separated: sequential,greedy,speculative,auto")
    p.add_argument("--prompt-tokens", type=int, default=64, help="random prompt tokens (default 64)")
    p.add_argument("--new-tokens", type=int, default=32, help="tokens to generate (default 32)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from edgecore.cli.prompting import open_model
    from edgecore.memory import format_size, parse_size
    from edgecore.planner import STRATEGIES

    opts = resolve_options(args, OPTIONS)
    try:
        budgets = [None if b.strip().lower() == NO_BUDGET else parse_size(b) for b in args.budgets.split(",")]
    except ValueError as exc:
        raise CliError(f"--budgets: {exc}; or '{NO_BUDGET}' for no limit") from None
    strategies = [s.strip() for s in args.strategies.split(",")]
    bad = [s for s in strategies if s not in STRATEGIES]
    if bad:
        raise CliError(f"--strategies: unknown {', '.join(map(repr, bad))}; choose from {', '.join(STRATEGIES)}")
    for name in ("prompt_tokens", "new_tokens"):
        if getattr(args, name) < 1:
            raise CliError(f"--{name.replace('_', '-')}: expected a positive whole number, got {getattr(args, name)}")
    model = open_model(opts)  # the model's limits, checked once for every row
    model.close()
    if args.prompt_tokens + args.new_tokens > opts["context"]:
        raise CliError(f"--prompt-tokens {args.prompt_tokens} + --new-tokens {args.new_tokens} exceed the context "
                       f"of {opts['context']} tokens: lower them, or raise --context", EXIT_REFUSED)
    configs = [(b, s) for b in budgets for s in strategies]
    rows = []
    for i, (budget, strategy) in enumerate(configs):
        label = f"{strategy} @ {format_size(budget) if budget else 'no budget'}"
        _progress(i, len(configs), label)
        job = {"model": opts.get("model"), "budget": budget, "strategy": strategy,
               "prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens, "threads": opts.get("threads"),
               "context": opts["context"], "step_tokens": opts.get("step_tokens")}
        done = subprocess.run(python_command(WORKER, json.dumps(job)), capture_output=True, text=True)
        try:
            result = json.loads(done.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            # a crash, not a refusal: its last line (the exception) is the reason
            lines = done.stderr.strip().splitlines()
            result = {"error": f"worker exited {done.returncode}: {lines[-1] if lines else 'no output'}"}
        rows.append({"budget": format_size(budget) if budget else NO_BUDGET, "strategy": strategy, **result})
    _progress(len(configs), len(configs), "done")
    failed = [r for r in rows if "error" in r]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            for key in ("peak_rss_growth", "plan_peak"):
                if isinstance(r.get(key), int):
                    r[key] = format_size(r[key])
        ok = [r for r in rows if "error" not in r]
        if ok:
            print(render(ok, [("budget", "budget"), ("strategy", "strategy"), ("chosen", "plan"),
                              ("groups", "groups"), ("pinned", "pinned"), ("step_tokens", "step"),
                              ("plan_peak", "planned peak"), ("peak_rss_growth", "peak RSS +"),
                              ("prefill_ms", "prefill ms"), ("decode_tps", "decode tok/s")]))
        for r in failed:  # full reasons, one line each, after the table
            print(f"{r['strategy']} @ {r['budget']}: failed: {r['error']}")
    if failed:
        print(f"edgecore bench: error: {len(failed)} of {len(rows)} configurations failed (see above)",
              file=sys.stderr)
        return EXIT_REFUSED
    return 0


def _progress(done: int, total: int, label: str) -> None:
    """A progress bar on a terminal; nothing in a log (stderr keeps only errors there)."""
    if not sys.stderr.isatty():
        return
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
        print(json.dumps({"error": " ".join(str(exc).split())}))
        return
    with engine:
        vocab = engine.spec.vocab_size
        prompt = [int(t) for t in np.random.default_rng(0).integers(0, vocab, job["prompt_tokens"])]
        try:
            engine.generate(prompt[:8], max_new_tokens=2)  # warm-up: first-touch costs are not speed
            result = engine.generate(prompt, max_new_tokens=job["new_tokens"])
        except (MemoryBudgetError, ValueError, FloatingPointError) as exc:
            print(json.dumps({"error": " ".join(str(exc).split())}))
            return
        peak = sample_footprint().peak_rss
        s = result.stats
        print(json.dumps({
            "chosen": engine.plan.strategy, "groups": len(engine.plan.groups),
            "pinned": sum(g.pinned for g in engine.plan.groups), "step_tokens": engine.step_tokens,
            "plan_peak": engine.plan.peak_bytes,
            "peak_rss_growth": (peak - base) if peak and base and exact else None,
            "prefill_ms": round(s.prefill_ms, 2), "decode_tps": round(s.decode_tokens_per_s or 0.0, 2),
        }))
