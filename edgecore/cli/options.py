"""Run options shared by `edgecore run` and `edgecore bench`: command-line
flags, TOML presets (`--config`), and their validation. Flags override the
preset; the preset overrides the defaults."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from edgecore.cli import CliError

PRESET_DIR = Path(__file__).resolve().parent.parent / "configs"

# option -> (type, help)
RUN_OPTIONS = {
    "model": (str, "a model name (demo (default), demo-moe, or one from `edgecore models`), a model directory, "
                    "a .gguf file, or a Hugging Face id owner/name"),
    "memory_budget": (str, "memory budget, e.g. 512M or 1.5G (default: no limit)"),
    "strategy": (str, "partition strategy: sequential, greedy, speculative, auto (default)"),
    "threads": (int, "kernel threads (default: usable CPUs)"),
    "context": (int, "KV cache capacity in tokens (default: the model's, at most 2048)"),
    "step_tokens": (int, "most tokens per forward step; longer prompts prefill in chunks"),
    "kv_dtype": (str, "KV cache element type: f16 (default, half the memory) or f32"),
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
    "seed": (int, "random seed for sampling"),
}


def add_run_options(parser: argparse.ArgumentParser, include=RUN_OPTIONS) -> None:
    for name in include:
        kind, help_text = RUN_OPTIONS[name]
        parser.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, default=None, help=help_text)
    parser.add_argument("--config", help="TOML preset: a file, or a built-in name "
                        f"({', '.join(sorted(p.stem for p in PRESET_DIR.glob('*.toml')))})")


def resolve_options(args: argparse.Namespace, include=RUN_OPTIONS) -> dict:
    """Merge the preset (if any) with the flags that were given."""
    options = load_preset(args.config) if args.config else {}
    for name in include:
        value = getattr(args, name, None)
        if value is not None:
            options[name] = value
    return options


def load_preset(name: str) -> dict:
    path = Path(name)
    if not path.exists() and (PRESET_DIR / f"{name}.toml").exists():
        path = PRESET_DIR / f"{name}.toml"
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        known = ", ".join(sorted(p.stem for p in PRESET_DIR.glob("*.toml")))
        raise CliError(f"--config {name}: no such file or built-in preset ({known})") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CliError(f"--config {path}: not valid TOML ({exc})") from None
    options = {}
    for key, value in data.items():
        if key not in RUN_OPTIONS:
            raise CliError(f"--config {path}: unknown setting {key!r}; known: {', '.join(RUN_OPTIONS)}")
        kind = RUN_OPTIONS[key][0]
        if key == "memory_budget" and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # plain bytes
        ok = isinstance(value, kind) and not isinstance(value, bool) or (kind is float and isinstance(value, int)
                                                                         and not isinstance(value, bool))
        if not ok:
            raise CliError(f"--config {path}: {key} must be {kind.__name__}, got {value!r}")
        options[key] = kind(value)
    return options
