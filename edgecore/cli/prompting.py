"""What `edgecore run` and `edgecore chat` share: opening the model,
loading the engine (timed), chat messages and the stats line."""

from __future__ import annotations

import time

from edgecore.cli import EXIT_REFUSED, CliError
from edgecore.cli.options import RunOptions, fit_to_model


def add_prompt_flags(parser) -> None:
    parser.add_argument("--system", metavar="TEXT", help="system message for the model's chat template")
    parser.add_argument("--stop", metavar="TEXT", action="append", default=None,
                        help="stop when the text contains TEXT (excluded from the output; repeatable)")


def open_model(opts: RunOptions):
    """The model's configuration, tokenizer and mapped (not yet loaded)
    weights, with the options that depend on it checked; one line if not."""
    from edgecore.models import Model, ModelError
    from edgecore.weights import GGUFError, SafetensorsError

    try:
        model = Model(opts.get("model"))
    except (ModelError, SafetensorsError, GGUFError, OSError) as exc:
        raise CliError(str(exc), EXIT_REFUSED) from None
    try:
        fit_to_model(opts, model.spec)
    except BaseException:
        model.close()
        raise
    return model


def load_engine(opts: RunOptions, model):
    """(engine, load seconds) for an open model (the engine takes it over);
    a budget problem is one line."""
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
        engine = Engine(model, strategy=opts.get("strategy", "auto"), **engine_opts)
    except (BudgetTooSmall, MemoryBudgetError) as exc:
        raise CliError(f"{exc} (set by {opts.where('memory_budget')})", EXIT_REFUSED) from None
    except (ModelError, SafetensorsError, ValueError, OSError) as exc:
        raise CliError(str(exc), EXIT_REFUSED) from None
    return engine, time.perf_counter() - t0


def generation_error(exc: Exception) -> CliError:
    """A generation the model could not carry out, as one line (status 1).
    FloatingPointError: every logit was NaN or infinite, which is what
    NaN or infinite weights produce; the run stops there."""
    if isinstance(exc, FloatingPointError):
        return CliError(f"{exc} (the checkpoint's weights or its input produce NaN/inf)", EXIT_REFUSED)
    return CliError(str(exc), EXIT_REFUSED)


def messages_for(prompt: str, system: str | None) -> list[dict]:
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]


def stats_line(name: str, s, load_s: float | None = None, *, baseline_rss: int | None = None,
               budgeted_peak: int | None = None) -> str:
    """One line: load, prefill (tokens reused, tok/s), decode, memory, why it stopped.

    Memory shows both numbers: what the budget counts (budgeted_peak: the
    engine pool's peak of weights, KV cache, activations and scratch) and
    the process's peak RSS, which also holds the interpreter and the
    libraries it imported (baseline_rss: the RSS just before the model
    loaded)."""
    from edgecore.memory import format_size

    peak = format_size(s.peak_rss_bytes) if s.peak_rss_bytes else "unknown"
    budget = format_size(s.budget) if s.budget else "none"
    decode = f"{s.decode_tokens_per_s:.1f} tok/s" if s.decode_tokens_per_s else "n/a"
    prefill = f"{s.prefill_tokens_per_s:.1f} tok/s" if s.prefill_tokens_per_s else "n/a"
    reused = f", {s.prompt_tokens_reused} reused" if s.prompt_tokens_reused else ""
    load = f"load {load_s:.2f} s | " if load_s is not None else ""
    base = f" ({format_size(baseline_rss)} before the model: interpreter + libraries)" if baseline_rss else ""
    counted = f"budget counts {format_size(budgeted_peak)} of {budget}" if budgeted_peak is not None \
        else f"budget {budget}"
    return (f"[{name}] {load}prompt {s.prompt_tokens} tokens{reused}, prefill {s.prefill_ms:.1f} ms ({prefill}) | "
            f"{s.new_tokens} new tokens, decode {decode} | peak RSS {peak}{base} | {counted} ({s.strategy}, "
            f"{s.groups} group{'s' if s.groups != 1 else ''}) | stop: {s.finish_reason}")
