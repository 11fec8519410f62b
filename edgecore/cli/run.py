"""`edgecore run`: generate text, streaming tokens as they come, then print
load time, prefill and decode speed and peak memory.

A model with a chat template gets `--prompt` as a user message (with
`--system`), rendered as transformers renders it, and prints the answer
alone; `--raw` encodes the prompt as plain text instead, and the
continuation is printed after the echoed prompt (`--no-echo` drops it).
"""

from __future__ import annotations

import json
import sys

from edgecore.cli import EXIT_REFUSED, CliError
from edgecore.cli.options import add_run_options, resolve_options, sampling_options
from edgecore.cli.prompting import (
    add_prompt_flags,
    generation_error,
    load_engine,
    messages_for,
    open_model,
    stats_line,
)


def register(sub) -> None:
    p = sub.add_parser("run", help="generate text with a model (the built-in demo model by default)",
                       description="Generate text. Streams tokens, then prints load time, prefill and decode "
                                   "tokens/s and peak memory. Without --model the built-in demo model runs. A model "
                                   "with a chat template answers --prompt as a chat message (--raw: plain text).")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--prompt", help="prompt text (default: read from standard input)")
    src.add_argument("--prompt-file", metavar="FILE", help="read the prompt from FILE (UTF-8)")
    src.add_argument("--ids", metavar="1,2,3", help="the prompt as token ids (for models without a tokenizer)")
    add_prompt_flags(p)
    p.add_argument("--raw", action="store_true", help="do not apply the model's chat template to the prompt")
    p.add_argument("--no-echo", action="store_true", help="do not print the prompt before its continuation")
    p.add_argument("--truncate", action="store_true",
                   help="when prompt + new tokens exceed the context, keep the end of the prompt")
    add_run_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON object (text, tokens, stats, plan) instead")
    p.set_defaults(func=run)


def run(args) -> int:
    """Everything the user gave is checked before the weights load: flags
    and preset first, then the prompt, then what depends on the model (its
    context, vocabulary and tokenizer), and only then the engine."""
    from edgecore.memory import KVPagesExhausted
    from edgecore.models import ModelError

    opts = resolve_options(args)
    sampling = sampling_options(opts)
    new_tokens = opts.get("max_new_tokens", 64)
    prompt, ids = _read_prompt(args)
    if args.system is not None and (args.raw or ids is not None):
        raise CliError("--system is a chat message: it cannot go with --raw or --ids")
    model = open_model(opts)
    try:
        tok = model.tokenizer
        chat = False
        if ids is None:
            if tok is None:
                raise CliError(f"{model.dir}: this model has no tokenizer; give the prompt as --ids 1,2,3",
                               EXIT_REFUSED)
            chat = tok.chat_template is not None and not args.raw
            if args.system is not None and not chat:
                raise CliError(f"--system needs a chat template; {model.name} has none", EXIT_REFUSED)
            try:
                ids = tok.apply_chat_template(messages_for(prompt, args.system)) if chat else tok.encode(prompt)
            except ModelError as exc:
                raise CliError(str(exc), EXIT_REFUSED) from None
        else:
            bad = [i for i in ids if i >= model.spec.vocab_size]
            if bad:
                raise CliError(f"--ids: token id {bad[0]} is outside the vocabulary [0, {model.spec.vocab_size})",
                               EXIT_REFUSED)
        ids, truncated = _fit_context(ids, new_tokens, opts["context"], args.truncate)
    except BaseException:
        model.close()
        raise
    from edgecore.memory import sample_footprint

    baseline_rss = sample_footprint().rss  # the interpreter and its libraries: outside the budget
    engine, load_s = load_engine(opts, model)
    with engine:
        if truncated:  # said once the run is certain to go ahead: an error after it stays one line
            print(truncated, file=sys.stderr)
        streaming = not args.json and tok is not None

        def show(token, piece):
            sys.stdout.write(piece)
            sys.stdout.flush()

        if streaming and not chat and not args.no_echo:
            sys.stdout.write(prompt if prompt is not None else tok.decode(ids))
        try:
            result = engine.generate(ids, max_new_tokens=new_tokens, stop=args.stop,
                                     stream=show if streaming else None, **sampling)
        except (ModelError, ValueError, FloatingPointError, KVPagesExhausted) as exc:  # pages: --kv-pages too few
            if streaming:
                sys.stdout.write("\n")
            raise generation_error(exc) from None
        s = result.stats
        if args.json:
            print(json.dumps({"model": str(engine.model.dir), "prompt": prompt, "prompt_ids": result.prompt_tokens,
                              "chat_template": chat, "text": result.text, "tokens": result.tokens,
                              "load_s": load_s, "stats": s.as_dict(),
                              "memory": {"baseline_rss_bytes": baseline_rss,
                                         "budgeted_peak_bytes": engine.pool.stats().peak,
                                         "peak_rss_bytes": s.peak_rss_bytes, "budget_bytes": s.budget},
                              "plan": {"strategy": engine.plan.strategy, "groups": engine.plan.describe(),
                                       "step_tokens": engine.plan.step_tokens,
                                       "predicted_peak_bytes": engine.plan.peak_bytes,
                                       "expert_capacity": engine.plan.expert_capacity or None}}, indent=2))
            return 0
        if not streaming:
            print(" ".join(map(str, result.tokens)))
        print("\n\n" + stats_line(engine.model.name, s, load_s, baseline_rss=baseline_rss,
                                   budgeted_peak=engine.pool.stats().peak), file=sys.stderr)
        if s.experts is not None:
            from edgecore.memory import format_size

            x = s.experts
            hits = f"{x.hit_rate:.0%}" if x.hit_rate is not None else "n/a"
            print(f"[experts] cache {x.capacity}/{engine.spec.num_experts} per layer | hit rate {hits} | "
                  f"{x.loads} loads ({format_size(x.bytes_loaded)}, {x.load_ms:.1f} ms)", file=sys.stderr)
    return 0


def _read_prompt(args) -> tuple[str | None, list[int] | None]:
    """(text, None) or (None, ids), read before the model loads."""
    if args.ids is not None:
        try:
            ids = [int(x) for x in args.ids.replace(" ", "").split(",") if x != ""]
        except ValueError:
            raise CliError(f"--ids: expected comma-separated token ids like 1,2,3; got {args.ids!r}") from None
        if not ids or min(ids) < 0:
            raise CliError(f"--ids: expected non-negative token ids like 1,2,3; got {args.ids!r}")
        return None, ids
    if args.prompt_file is not None:
        try:
            with open(args.prompt_file, encoding="utf-8") as f:
                prompt = f.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"--prompt-file {args.prompt_file}: cannot read it ({getattr(exc, 'strerror', exc)})") \
                from None
    elif args.prompt is not None:
        prompt = args.prompt
    else:
        if sys.stdin.isatty():
            raise CliError("give a prompt with --prompt TEXT, --prompt-file FILE or --ids (or on standard input)")
        prompt = sys.stdin.read()
    if not prompt:
        raise CliError("the prompt is empty")
    return prompt, None


def _fit_context(ids: list[int], new_tokens: int, context: int, truncate: bool) -> tuple[list[int], str | None]:
    """(the ids that fit, a note if --truncate cut them)."""
    room = max(new_tokens, 1)  # -1 (until the end) still needs room for one token
    if len(ids) + room <= context:
        return ids, None
    keep = context - room
    if not truncate or keep < 1:
        what = "new tokens" if new_tokens >= 0 else "new token (at least)"
        raise CliError(f"the prompt's {len(ids)} tokens + {room} {what} exceed the context of {context} tokens: "
                       f"shorten the prompt, lower --max-new-tokens, raise --context, or pass --truncate to keep "
                       f"the end of the prompt", EXIT_REFUSED)
    return ids[-keep:], f"edgecore run: prompt truncated to its last {keep} of {len(ids)} tokens (--truncate)"
