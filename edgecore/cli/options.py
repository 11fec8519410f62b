"""Run options shared by `edgecore run`, `chat`, `inspect` and `bench`:
command-line flags, TOML presets (`--config`), and their validation.

Flags override the preset; the preset overrides the defaults. Every value
is checked here, before any model is opened, and a bad one is reported
under the name the user gave it (`--context`, or `context in --config
FILE`), never under a Python parameter name. What depends on the model
(its maximum context, its experts) is checked by `fit_to_model` once the
model's configuration is open, before its weights load. A preset's
context is a ceiling: it is capped at what the model allows, while a
`--context` flag asking for more than the model allows is an error.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from edgecore.cli import EXIT_REFUSED, CliError

PRESET_DIR = Path(__file__).resolve().parent.parent / "configs"
NO_BUDGET = "none"  # --memory-budget none: no limit, also over a preset's budget

# what the budget covers, for --help (README "Memory budget" has the numbers)
BUDGET_HELP = ("memory budget for the model: its weights, KV cache, activations and scratch, e.g. 512M or 1.5G; "
               "'none' = no limit (also overrides a preset's). Not counted: the Python interpreter and the "
               "libraries it imports (measured: 30-42 MiB of RSS before a model loads; the stats line shows"
               " this run's)")

# option -> (type, help)
RUN_OPTIONS = {
    "model": (str, "a model name (demo (default), demo-moe, or one from `edgecore models`), a model directory, "
                    "a .gguf file, or a Hugging Face id owner/name"),
    "memory_budget": (str, BUDGET_HELP),
    "strategy": (str, "partition strategy: sequential, greedy, speculative, auto (default)"),
    "threads": (int, "kernel threads (default: usable CPUs)"),
    "context": (int, "KV cache capacity in tokens (default: the model's, at most 2048; a preset's is capped at "
                     "the model's)"),
    "step_tokens": (int, "most tokens per forward step; longer prompts prefill in chunks (smaller chunks are "
                         "used when the budget needs them)"),
    "kv_dtype": (str, "KV cache element type: f16 (default, half of f32's memory), q8_0 (8-bit blocks, "
                         "about half of f16's) or f32"),
    "kv_pages": (int, "KV cache pages of 16 tokens (default: one sequence of the whole context)"),
    "expert_capacity": (int, "MoE: experts per layer kept in memory (default: the planner's choice under the budget)"),
    "expert_policy": (str, "MoE: which expert a full expert cache evicts: lru (default), lfu, affinity"),
    "cache_bonus": (float, "MoE: logit bonus for experts already in memory (default 0: route exactly as the model)"),
    "act_precision": (str, "input precision of block-quantized (GGUF) weights: q8x2 (default: 8 bits + an 8-bit "
                           "residual) or q8 (one 8-bit pass, as llama.cpp; faster prefill)"),
    "max_new_tokens": (int, "tokens to generate (default 64; -1 = until an end token or the end of the context)"),
    "temperature": (float, "0 = greedy; > 0 samples (default: the model's generation config, else greedy)"),
    "top_k": (int, "sample only from the k most likely tokens (alone: samples at the model's temperature)"),
    "top_p": (float, "sample from the smallest set with this much probability (alone: samples, as top-k)"),
    "min_p": (float, "drop tokens less likely than min_p x the most likely one (alone: samples, as top-k)"),
    "repetition_penalty": (float, "divide the scores of tokens already in the text by this (1 = none; "
                                  "default: the model's)"),
    "seed": (int, "random seed for sampling (>= 0)"),
}
SAMPLING = ("temperature", "top_k", "top_p", "min_p", "repetition_penalty")


class RunOptions(dict):
    """The merged settings (name -> value), and where each one came from."""

    def __init__(self):
        super().__init__()
        self.origin: dict[str, str] = {}  # name -> "--flag" or "name in --config FILE"
        self.from_flag: set[str] = set()

    def where(self, name: str) -> str:
        return self.origin.get(name, "--" + name.replace("_", "-"))


def add_run_options(parser: argparse.ArgumentParser, include=RUN_OPTIONS, preset: bool = True) -> None:
    for name in include:
        kind, help_text = RUN_OPTIONS[name]
        parser.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, default=None, help=help_text)
    if preset:
        parser.add_argument("--config", help="TOML preset: a file, or a built-in name "
                            f"({', '.join(sorted(p.stem for p in PRESET_DIR.glob('*.toml')))})")


def resolve_options(args: argparse.Namespace, include=RUN_OPTIONS) -> RunOptions:
    """Merge the preset (if any) with the flags that were given, and check
    every value (CliError, status 2, naming the flag or the preset)."""
    opts = RunOptions()
    config = getattr(args, "config", None)
    if config:
        path, values = load_preset(config)
        for key, value in values.items():
            opts[key] = value
            opts.origin[key] = f"{key} in --config {path}"
    for name in include:
        value = getattr(args, name, None)
        if value is not None:
            opts[name] = value
            opts.origin[name] = "--" + name.replace("_", "-")
            opts.from_flag.add(name)
    check_options(opts)
    return opts


def check_options(opts: RunOptions) -> None:
    """Every model-independent range, in place (the budget becomes bytes or None)."""
    from edgecore.memory import parse_size
    from edgecore.moe import POLICIES
    from edgecore.ops import MAX_THREADS
    from edgecore.planner import STRATEGIES

    def bad(name: str, expected: str) -> CliError:
        return CliError(f"{opts.where(name)}: expected {expected}, got {_short(opts[name])}")

    if "memory_budget" in opts:
        text = opts["memory_budget"]
        if isinstance(text, str) and text.strip().lower() == NO_BUDGET:
            opts["memory_budget"] = None
        else:
            try:
                opts["memory_budget"] = parse_size(text)
            except ValueError as exc:
                raise CliError(f"{opts.where('memory_budget')}: {exc}; or '{NO_BUDGET}' for no limit") from None
    if "strategy" in opts and opts["strategy"] not in STRATEGIES:
        raise bad("strategy", "one of " + ", ".join(STRATEGIES))
    if "expert_policy" in opts and opts["expert_policy"] not in POLICIES:
        raise bad("expert_policy", "one of " + ", ".join(POLICIES))
    if "threads" in opts and not 1 <= opts["threads"] <= MAX_THREADS:
        raise bad("threads", f"a thread count in [1, {MAX_THREADS}]")
    if "kv_dtype" in opts:
        from edgecore.engine.kv import KV_DTYPES

        if opts["kv_dtype"] not in KV_DTYPES:
            raise bad("kv_dtype", "one of " + ", ".join(KV_DTYPES))
    for name in ("context", "step_tokens", "expert_capacity", "kv_pages"):
        if name in opts and opts[name] < 1:
            raise bad(name, "a positive whole number")
    if "max_new_tokens" in opts and opts["max_new_tokens"] < -1:
        raise bad("max_new_tokens", "a number of tokens >= 0, or -1 (until an end token or the end of the context)")
    if "seed" in opts and opts["seed"] < 0:
        raise bad("seed", "a whole number >= 0")
    if "cache_bonus" in opts and not (math.isfinite(opts["cache_bonus"]) and opts["cache_bonus"] >= 0):
        raise bad("cache_bonus", "a finite number >= 0")
    checks = {
        "temperature": (lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0 (0 = greedy)"),
        "top_k": (lambda v: v >= 1, "a positive whole number"),
        "top_p": (lambda v: 0 < v <= 1, "a number in (0, 1]"),
        "min_p": (lambda v: 0 <= v <= 1, "a number in [0, 1]"),
        "repetition_penalty": (lambda v: math.isfinite(v) and v > 0, "a finite number > 0 (1 = none)"),
    }
    for name, (ok, expected) in checks.items():
        if name in opts and not ok(opts[name]):
            raise bad(name, expected)


def sampling_options(opts: RunOptions) -> dict:
    """The sampling settings given (the engine merges them over the model's
    generation config with transformers' semantics); checked by resolve_options."""
    given = {k: opts[k] for k in SAMPLING if k in opts}
    if "seed" in opts:
        given["seed"] = opts["seed"]
    return given


def context_limit(spec) -> tuple[int, str]:
    """The longest context the model runs, and what sets it."""
    if spec.sliding_window and spec.sliding_window < spec.max_positions:
        return spec.sliding_window, (f"the model's sliding_window ({spec.sliding_window}; windowed attention is "
                                     f"not implemented)")
    return spec.max_positions, f"the model's max_position_embeddings ({spec.max_positions})"


def fit_to_model(opts: RunOptions, spec) -> int:
    """Check the settings that depend on the model and return the context:
    an explicit --context over the model's limit is an error (status 1); a
    preset's is capped at the limit; the default is the engine's."""
    from edgecore.engine.engine import DEFAULT_CONTEXT

    limit, why = context_limit(spec)
    if "context" not in opts:
        opts["context"] = min(limit, DEFAULT_CONTEXT)
    elif opts["context"] > limit:
        if "context" in opts.from_flag:
            raise CliError(f"--context {opts['context']} exceeds {why}: pass --context {limit} or less",
                           EXIT_REFUSED)
        opts["context"] = limit
    if "step_tokens" in opts:
        opts["step_tokens"] = min(opts["step_tokens"], opts["context"])
    moe = [name for name in ("expert_capacity", "cache_bonus") if opts.get(name)]
    if moe and not spec.is_moe:
        raise CliError(f"{' and '.join(opts.where(n) for n in moe)} apply to mixture-of-experts models; "
                       f"this model ({spec.family}) is dense", EXIT_REFUSED)
    if "expert_capacity" in opts and spec.is_moe:
        lo, hi = spec.experts_per_token, spec.num_experts
        if not lo <= opts["expert_capacity"] <= hi:
            raise CliError(f"{opts.where('expert_capacity')}: expected {lo} to {hi} experts per layer (this model "
                           f"routes each token to {lo} of {hi}), got {opts['expert_capacity']}", EXIT_REFUSED)
    return opts["context"]


def load_preset(name: str) -> tuple[Path, dict]:
    """(the preset's path, its settings), each of the type its flag takes."""
    path = Path(name)
    if not path.exists() and (PRESET_DIR / f"{name}.toml").exists():
        path = PRESET_DIR / f"{name}.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        known = ", ".join(sorted(p.stem for p in PRESET_DIR.glob("*.toml")))
        raise CliError(f"--config {name}: no such file or built-in preset ({known})") from None
    except IsADirectoryError:
        raise CliError(f"--config {path}: is a directory, not a TOML file") from None
    except UnicodeDecodeError as exc:
        raise CliError(f"--config {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise CliError(f"--config {path}: cannot read it ({exc.strerror or exc})") from None
    except (ValueError, RecursionError) as exc:  # TOMLDecodeError, or an integer too long to convert
        reason = "nested too deeply" if isinstance(exc, RecursionError) else exc
        raise CliError(f"--config {path}: not valid TOML ({reason})") from None
    options = {}
    for key, value in data.items():
        if key not in RUN_OPTIONS:
            raise CliError(f"--config {path}: unknown setting {key!r}; known: {', '.join(RUN_OPTIONS)}")
        kind = RUN_OPTIONS[key][0]
        if key == "memory_budget" and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # plain bytes
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        ok = isinstance(value, kind) and not isinstance(value, bool) or (kind is float and number)
        if not ok:
            raise CliError(f"--config {path}: {key} must be {kind.__name__}, got {_short(value)}")
        options[key] = kind(value)
    return path, options


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
