"""`edgecore chat`: a multi-turn conversation with a chat model.

Each turn renders the whole conversation with the model's chat template
(as transformers would) and generates the answer, streamed. The engine
reuses the KV cache of the prefix the new prompt shares with the previous
call, so a turn prefills only its own tokens; each answer's stats line
says how many prompt tokens were reused and how many prefilled.

Lines typed are user messages; `/reset` starts the conversation over,
`/exit` (or end of input) leaves. Ctrl-C while the model answers stops
that answer (what it said so far stays in the conversation); at the
prompt it only reminds how to leave. Standard input may be a pipe: one
message per line.
"""

from __future__ import annotations

import signal
import sys

from edgecore.cli import EXIT_REFUSED, CliError
from edgecore.cli.options import add_run_options, resolve_options, sampling_options
from edgecore.cli.prompting import add_prompt_flags, generation_error, load_engine, open_model
from edgecore.memory.pages import KVPagesExhausted

HELP = "/reset starts over, /exit or Ctrl-D leaves, Ctrl-C stops an answer"


def register(sub) -> None:
    p = sub.add_parser("chat", help="talk with a chat model in the terminal (multi-turn, streamed)",
                       description="An interactive conversation with a model that has a chat template. "
                                   f"{HELP}. Standard input may be piped (one message per line). The KV cache "
                                   "is reused between turns: each turn prefills only its new tokens.")
    add_prompt_flags(p)
    add_run_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from edgecore.models import ModelError

    opts = resolve_options(args)
    sampling = sampling_options(opts)
    limit = opts.get("max_new_tokens", -1)
    model = open_model(opts)
    tok = model.tokenizer
    if tok is None or tok.chat_template is None:
        model.close()
        raise CliError(f"{model.name} has no chat template, so it cannot chat; use `edgecore run` "
                       f"for plain text", EXIT_REFUSED)
    engine, load_s = load_engine(opts, model)
    with engine:
        interactive = sys.stdin.isatty()
        system = [{"role": "system", "content": args.system}] if args.system else []
        messages = list(system)
        if interactive:
            print(f"edgecore chat: {engine.model.name} (loaded in {load_s:.2f} s). {HELP}.", file=sys.stderr)
        while True:
            line = _read_line(interactive)
            if line is None or line.strip() == "/exit":
                break
            text = line.strip()
            if not text:
                continue
            if text == "/reset":
                messages = list(system)
                print("(conversation reset)", file=sys.stderr)
                continue
            if text.startswith("/"):
                print(f"unknown command {text.split()[0]}; {HELP}", file=sys.stderr)
                continue
            messages.append({"role": "user", "content": line.rstrip("\n")})
            try:
                ids = tok.apply_chat_template(messages)
            except ModelError as exc:
                raise CliError(str(exc), EXIT_REFUSED) from None
            room = engine.context - len(ids)
            if room < 1:
                messages.pop()
                print(f"the conversation fills the context ({len(ids)} of {engine.context} tokens): /reset to "
                      f"start over", file=sys.stderr)
                continue
            answer = _answer(engine, ids, room if limit == -1 else min(limit, room), args.stop, sampling)
            messages.append({"role": "assistant", "content": answer})
    return 0


def _read_line(interactive: bool) -> str | None:
    while True:
        try:
            if not interactive:
                line = sys.stdin.readline()
                return line if line else None
            return input("> ")
        except EOFError:
            return None
        except KeyboardInterrupt:
            print(f"\n({HELP})", file=sys.stderr)


def _answer(engine, ids, new_tokens, stop, sampling) -> str:
    """Stream one answer; Ctrl-C ends it early. Returns its text."""
    interrupted = []

    def stop_answer(signum, frame):
        interrupted.append(True)

    def show(token, piece):
        sys.stdout.write(piece)
        sys.stdout.flush()

    previous = signal.signal(signal.SIGINT, stop_answer)
    try:
        result = engine.generate(ids, max_new_tokens=new_tokens, stop=stop, stream=show,
                                 should_stop=lambda: bool(interrupted), **sampling)
    except (ValueError, FloatingPointError, KVPagesExhausted) as exc:  # pages: --kv-pages too few
        raise generation_error(exc) from None
    finally:
        signal.signal(signal.SIGINT, previous)
    s = result.stats
    note = " (stopped)" if s.finish_reason == "cancelled" else ""
    print(note)
    speed = f"{s.decode_tokens_per_s:.1f} tok/s" if s.decode_tokens_per_s else "n/a"
    print(f"[{s.prompt_tokens_reused} prompt tokens reused, {s.prompt_tokens_prefilled} prefilled in "
          f"{s.prefill_ms:.0f} ms | {s.new_tokens} tokens, {speed} | stop: {s.finish_reason}]", file=sys.stderr)
    return result.text
