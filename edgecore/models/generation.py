"""Generation defaults as transformers reads them, and the flags over them.

A model's `generation_config.json` (or, for a GGUF file, its
`general.sampling.*` keys) gives do_sample, temperature, top_k, top_p,
min_p, repetition_penalty and its EOS ids; unset values take
transformers' defaults (greedy; when sampling, temperature 1, top_k 50).
`GenerationConfig.sampling(...)` merges what a user asked for with
Hugging Face's semantics:

- `temperature=0` is greedy; any other temperature samples;
- top_k / top_p / min_p without a temperature sample at the configured
  temperature (they are sampling settings: asking for one means sampling);
- otherwise the file's do_sample decides;
- the repetition penalty applies either way.

The result is keyword arguments for `Engine.generate`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecore.models.spec import ModelError

HF_TOP_K = 50  # transformers' top_k when a sampling config does not set one


@dataclass(frozen=True)
class GenerationConfig:
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = HF_TOP_K  # None or 0: no top-k
    top_p: float | None = None
    min_p: float | None = None
    repetition_penalty: float = 1.0
    eos_token_ids: tuple[int, ...] = ()

    def sampling(self, temperature: float | None = None, top_k: int | None = None, top_p: float | None = None,
                 min_p: float | None = None, repetition_penalty: float | None = None,
                 do_sample: bool | None = None) -> dict:
        """Engine.generate keyword arguments: these flags (None = not given)
        over the defaults, with transformers' semantics (module doc)."""
        if temperature is not None:
            sample = temperature > 0
        elif do_sample is not None:
            sample = do_sample
        elif top_k is not None or top_p is not None or min_p is not None:
            sample = True
        else:
            sample = self.do_sample
        penalty = self.repetition_penalty if repetition_penalty is None else repetition_penalty
        out: dict[str, Any] = {"repetition_penalty": penalty}
        temp = self.temperature if temperature is None else temperature
        if not sample or temp == 0:
            return {"temperature": 0.0, **out}
        k = self.top_k if top_k is None else top_k
        p = self.top_p if top_p is None else top_p
        m = self.min_p if min_p is None else min_p
        out.update(temperature=float(temp), top_k=k or None, top_p=p if p is not None and p < 1 else None,
                   min_p=m)
        return out

    @property
    def defaults(self) -> dict:
        """What generation uses when the user gives no flag."""
        return self.sampling()


def load_generation_config(model_dir: str | Path, config_eos: tuple[int, ...] = ()) -> GenerationConfig:
    """A Hugging Face directory's generation_config.json (all defaults when
    there is none). EOS ids: the file's together with config.json's
    (config_eos): every one of them ends generation."""
    path = Path(model_dir) / "generation_config.json"
    if not path.exists():
        return GenerationConfig(eos_token_ids=tuple(config_eos))
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise ModelError(f"{path}: its JSON is nested too deeply") from None
    except (OSError, ValueError) as exc:  # ValueError: bad JSON or UTF-8, an over-long integer
        raise ModelError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(cfg, dict):
        raise ModelError(f"{path}: expected a JSON object")
    return _from_mapping(cfg, path, {"do_sample": "do_sample", "temperature": "temperature", "top_k": "top_k",
                                     "top_p": "top_p", "min_p": "min_p", "repetition_penalty": "repetition_penalty"},
                         config_eos + _eos_list(cfg.get("eos_token_id"), path))


def generation_config_from_gguf(metadata: Mapping[str, Any], eos_token_ids: tuple[int, ...] = (),
                                source: str = "GGUF file") -> GenerationConfig:
    """`general.sampling.*` (llama.cpp's recommended sampling): when the file
    has any of them it asks for sampling with them; otherwise greedy."""
    keys = {"temp": "temperature", "top_k": "top_k", "top_p": "top_p", "min_p": "min_p",
            "penalty_repeat": "repetition_penalty"}
    cfg = {name: metadata[f"general.sampling.{key}"] for key, name in keys.items()
           if f"general.sampling.{key}" in metadata}
    if cfg:
        cfg["do_sample"] = True
    return _from_mapping(cfg, source, {name: name for name in (*keys.values(), "do_sample")}, eos_token_ids)


def _from_mapping(cfg: Mapping, path, names: dict, eos: tuple[int, ...]) -> GenerationConfig:
    values: dict[str, Any] = {}
    for key, name in names.items():
        value = cfg.get(key)
        if value is None:
            continue
        if name == "do_sample":
            if not isinstance(value, bool):
                raise ModelError(f"{path}: {key} must be true or false, got {value!r}")
        elif name == "top_k":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ModelError(f"{path}: {key} must be an integer >= 0, got {value!r}")
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or value < 0 or (name == "repetition_penalty" and value == 0):
            raise ModelError(f"{path}: {key} must be a finite number >= 0, got {value!r}")
        values[name] = value
    return GenerationConfig(**values, eos_token_ids=tuple(dict.fromkeys(eos)))


def _eos_list(value, path) -> tuple[int, ...]:
    items = value if isinstance(value, list) else [] if value is None else [value]
    if any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in items):
        raise ModelError(f"{path}: eos_token_id must be a token id or a list of them, got {value!r}")
    return tuple(items)
