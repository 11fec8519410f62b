"""A model, opened and validated: config, mapped weights, layout, layer
graph, tokenizer, from a Hugging Face directory (config.json +
safetensors) or a GGUF file (metadata + tensors + vocabulary in one file).
Nothing is read beyond headers until the engine loads a layer."""

from __future__ import annotations

import os
from pathlib import Path

from edgecore import ops
from edgecore.memory.sizes import format_size
from edgecore.models.generation import generation_config_from_gguf, load_generation_config
from edgecore.models.gguf_config import spec_from_gguf
from edgecore.models.gguf_layout import gguf_layout
from edgecore.models.graph import LayerGraph
from edgecore.models.hub import hub_snapshot, looks_like_hub_id
from edgecore.models.layout import model_layout, validate
from edgecore.models.registry import registry
from edgecore.models.spec import ModelError, load_spec
from edgecore.models.tokenizer import load_tokenizer
from edgecore.models.tokenizer_gguf import tokenizer_from_gguf
from edgecore.weights import GGUFError, load_gguf, load_safetensors

# the types the linear kernels read (their registry, docs/quantization.md), as GGML names
GGUF_MATRIX_TYPES = tuple(t["name"].upper() for t in ops.weight_types())

DEMO_MODELS = {"demo": "gpt2-bytes", "demo-moe": "mixtral-bytes"}


def resolve_model_dir(model: str | os.PathLike | None) -> Path:
    """Where a model is, from what a user typed, in this order:
    None or a built-in demo name (demo, demo-moe); a registry name
    (`edgecore models`), once pulled; an existing directory or .gguf file;
    `owner/name` as a Hugging Face hub id (with huggingface_hub installed).
    Anything else, or a registry model not pulled yet, is a ModelError
    that says what to do."""
    if model is None or str(model) in DEMO_MODELS:
        name = DEMO_MODELS["demo" if model is None else str(model)]
        path = Path(__file__).resolve().parent.parent / "demo" / name
        if not (path / "config.json").exists():
            raise ModelError(f"built-in model {model or 'demo'!r} is missing from this installation ({path})")
        return path
    text = str(model)
    entry = registry().get(text)
    if entry is not None:
        if not entry.present:
            raise ModelError(f"model {text!r} is not downloaded yet: run `{entry.pull_command}` "
                             f"({format_size(entry.size)}, {entry.license})")
        return entry.path
    path = Path(model)
    if path.is_dir():
        return path
    if path.is_file():
        if path.suffix.lower() == ".gguf":
            return path
        raise ModelError(f"{path}: not a model (expected a model directory or a .gguf file)")
    if looks_like_hub_id(text):
        return hub_snapshot(text)
    known = ", ".join([*DEMO_MODELS, *registry()])
    raise ModelError(f"{path}: not a model directory (expected config.json + model.safetensors), a .gguf file, "
                     f"a Hugging Face id (owner/name) or a known name ({known})")


class Model:
    def __init__(self, model_dir: str | os.PathLike | None):
        self.dir = resolve_model_dir(model_dir)
        if self.dir.is_file():
            self._open_gguf()
            return
        self.spec = load_spec(self.dir)
        if not any((self.dir / f).exists() for f in ("model.safetensors", "model.safetensors.index.json")):
            raise ModelError(f"{self.dir}: no model.safetensors or model.safetensors.index.json")
        self.weights = load_safetensors(self.dir)
        try:
            infos = {name: self.weights.info(name) for name in self.weights.keys()}
            self.layouts = model_layout(self.spec, infos.keys())
            validate(self.layouts, infos, str(self.dir))
            self.graph = LayerGraph(self.spec, self.layouts, {n: i.dtype for n, i in infos.items()})
            self.tokenizer = load_tokenizer(self.dir, self.spec)
            self.generation_config = load_generation_config(self.dir, self.spec.eos_token_ids)
        except BaseException:
            self.weights.close()
            raise

    def _open_gguf(self) -> None:
        source = str(self.dir)
        try:
            self.weights = load_gguf(self.dir)
        except GGUFError as exc:
            raise ModelError(str(exc)) from None
        except OSError as exc:
            raise ModelError(f"{source}: cannot open the GGUF file ({exc.strerror or exc})") from None
        try:
            meta = self.weights.metadata
            infos = {name: self.weights.info(name) for name in self.weights.keys()}
            freqs = None
            if "rope_freqs.weight" in infos:
                if infos["rope_freqs.weight"].dtype != "F32":
                    raise ModelError(f"{source}: tensor rope_freqs.weight has type "
                                     f"{infos['rope_freqs.weight'].dtype}; expected F32")
                freqs = self.weights["rope_freqs.weight"].copy()
                self.weights.drop("rope_freqs.weight")
            self.spec = spec_from_gguf(meta, infos, source, freqs)
            self.layouts = gguf_layout(self.spec)
            validate(self.layouts, infos, source, GGUF_MATRIX_TYPES)
            self.graph = LayerGraph(self.spec, self.layouts, {n: i.dtype for n, i in infos.items()})
            self.tokenizer = tokenizer_from_gguf(meta, source) if "tokenizer.ggml.model" in meta else None
            self.generation_config = generation_config_from_gguf(meta, self.spec.eos_token_ids, source)
        except BaseException:
            self.weights.close()
            raise

    @property
    def generation_defaults(self) -> dict:
        """Engine.generate keyword arguments for the model's own sampling defaults."""
        return self.generation_config.defaults

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        """Every id that ends generation (config.json's and generation_config.json's)."""
        return self.generation_config.eos_token_ids

    @property
    def name(self) -> str:
        return self.dir.stem if self.dir.is_file() else self.dir.name

    def close(self) -> None:
        self.weights.close()
