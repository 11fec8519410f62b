"""`edgecore run`: generate text, streaming tokens as they come, then print
prefill time, decode speed and peak memory."""

from __future__ import annotations

import json
import sys

from edgecore.cli import CliError
from edgecore.cli.options import add_run_options, resolve_options


def register(sub) -> None:
    p = sub.add_parser("run", help="generate text with a model (the built-in demo model by default)",
                       description="Generate text. Streams tokens, then prints prefill time, decode tokens/s "
                                   "and peak memory. Without --model the built-in demo model runs.")
    p.add_argument("--prompt", help="prompt text (default: read from standard input)")
    add_run_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON object (text, tokens, stats, plan) instead")
    p.set_defaults(func=run)


def run(args) -> int:
    from edgecore.engine import Engine
    from edgecore.memory import MemoryBudgetError, format_size
    from edgecore.models import ModelError
    from edgecore.planner import BudgetTooSmall
    from edgecore.weights import SafetensorsError

    opts = resolve_options(args)
    prompt = args.prompt
    if prompt is None:
        if sys.stdin.isatty():
            raise CliError("give a prompt with --prompt TEXT (or on standard input)")
        prompt = sys.stdin.read()
    if not prompt:
        raise CliError("the prompt is empty")
    engine_opts = {k: opts.get(k) for k in ("memory_budget", "threads", "context", "step_tokens")}
    gen_opts = {k: opts[k] for k in ("temperature", "top_k", "top_p", "seed", "max_new_tokens") if k in opts}
    try:
        engine = Engine(opts.get("model"), strategy=opts.get("strategy", "auto"), **engine_opts)
    except (ModelError, SafetensorsError, BudgetTooSmall, MemoryBudgetError, ValueError, OSError) as exc:
        raise CliError(str(exc), status=1) from None
    with engine:
        streaming = not args.json and engine.tokenizer is not None

        def show(token, piece):
            sys.stdout.write(piece)
            sys.stdout.flush()

        if streaming:
            sys.stdout.write(prompt)
        try:
            result = engine.generate(prompt, stream=show if streaming else None, **gen_opts)
        except (ModelError, ValueError) as exc:
            raise CliError(str(exc), status=1) from None
        s = result.stats
        if args.json:
            print(json.dumps({"model": str(engine.model.dir), "prompt": prompt, "text": result.text,
                              "tokens": result.tokens, "stats": s.as_dict(),
                              "plan": {"strategy": engine.plan.strategy, "groups": engine.plan.describe(),
                                       "predicted_peak_bytes": engine.plan.peak_bytes}}, indent=2))
            return 0
        if not streaming:
            print(" ".join(map(str, result.tokens)))
        peak = format_size(s.peak_rss_bytes) if s.peak_rss_bytes else "unknown"
        budget = format_size(s.budget) if s.budget else "none"
        speed = f"{s.decode_tokens_per_s:.1f} tok/s" if s.decode_tokens_per_s else "n/a"
        print(f"\n\n[{engine.model.name}] prompt {s.prompt_tokens} tokens, prefill {s.prefill_ms:.1f} ms | "
              f"{s.new_tokens} new tokens, decode {speed} | peak RSS {peak} (budget {budget}, "
              f"{s.strategy}, {s.groups} group{'s' if s.groups != 1 else ''}) | stop: {s.finish_reason}",
              file=sys.stderr)
    return 0
