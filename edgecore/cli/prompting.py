"""What `edgecore run` and `edgecore chat` share: loading the engine (timed),
the sampling flags, chat messages and the stats line."""

from __future__ import annotations

import time

from edgecore.cli import CliError

SAMPLING = ("temperature", "top_k", "top_p", "min_p", "repetition_penalty")


def add_prompt_flags(parser) -> None:
    parser.add_argument("--system", metavar="TEXT", help="system message for the model's chat template")
    parser.add_argument("--stop", metavar="TEXT", action="append", default=None,
                        help="stop when the text contains TEXT (excluded from the output; repeatable)")


def load_engine(opts: dict):
    """(engine, load seconds); a model or budget problem is one line."""
    from edgecore.engine import Engine
    from edgecore.memory import MemoryBudgetError
    from edgecore.models import ModelError
    from edgecore.planner import BudgetTooSmall
    from edgecore.weights import SafetensorsError

    engine_opts = {k: opts.get(k) for k in ("memory_budget", "threads", "context", "step_tokens", "expert_capacity",
                                         "kv_pages")}
    engine_opts.update({k: opts[k] for k in ("expert_policy", "cache_bonus", "act_precision", "kv_dtype") if k in opts})
    t0 = time.perf_counter()
    try:
        engine = Engine(opts.get("model"), strategy=opts.get("strategy", "auto"), **engine_opts)
    except (ModelError, SafetensorsError, BudgetTooSmall, MemoryBudgetError, ValueError, OSError) as exc:
        raise CliError(str(exc), status=1) from None
    return engine, time.perf_counter() - t0


def sampling_options(opts: dict) -> dict:
    """The sampling flags given (the engine merges them over the model's
    generation config with transformers' semantics), checked up front."""
    from edgecore.engine.sampling import check_sampling

    given = {k: opts[k] for k in SAMPLING if k in opts}
    try:
        check_sampling(given.get("temperature"), given.get("top_k"), given.get("top_p"), given.get("min_p"),
                       given.get("repetition_penalty"))
    except ValueError as exc:
        flag = next((k for k in SAMPLING if k in str(exc)), None)
        raise CliError(f"--{flag.replace('_', '-')}: {exc}" if flag else str(exc)) from None
    if "seed" in opts:
        given["seed"] = opts["seed"]
    return given


def max_new_tokens(opts: dict, default: int) -> int:
    n = opts.get("max_new_tokens", default)
    if n < -1:
        raise CliError(f"--max-new-tokens must be >= 0, or -1 (until an end token or the end of the context); "
                       f"got {n}")
    return n


def messages_for(prompt: str, system: str | None) -> list[dict]:
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]


def stats_line(name: str, s, load_s: float | None = None) -> str:
    """One line: load, prefill (tokens reused, tok/s), decode, memory, why it stopped."""
    from edgecore.memory import format_size

    peak = format_size(s.peak_rss_bytes) if s.peak_rss_bytes else "unknown"
    budget = format_size(s.budget) if s.budget else "none"
    decode = f"{s.decode_tokens_per_s:.1f} tok/s" if s.decode_tokens_per_s else "n/a"
    prefill = f"{s.prefill_tokens_per_s:.1f} tok/s" if s.prefill_tokens_per_s else "n/a"
    reused = f", {s.prompt_tokens_reused} reused" if s.prompt_tokens_reused else ""
    load = f"load {load_s:.2f} s | " if load_s is not None else ""
    return (f"[{name}] {load}prompt {s.prompt_tokens} tokens{reused}, prefill {s.prefill_ms:.1f} ms ({prefill}) | "
            f"{s.new_tokens} new tokens, decode {decode} | peak RSS {peak} (budget {budget}, {s.strategy}, "
            f"{s.groups} group{'s' if s.groups != 1 else ''}) | stop: {s.finish_reason}")
