"""A model directory, opened and validated: config, mapped weights, layout,
layer graph, tokenizer. Nothing is read beyond headers until the engine
loads a layer."""

from __future__ import annotations

import os
from pathlib import Path

from edgecore.memory.sizes import format_size
from edgecore.models.generation import load_generation_config
from edgecore.models.graph import LayerGraph
from edgecore.models.hub import hub_snapshot, looks_like_hub_id
from edgecore.models.layout import model_layout, validate
from edgecore.models.registry import registry
from edgecore.models.spec import ModelError, load_spec
from edgecore.models.tokenizer import load_tokenizer
from edgecore.weights import load_safetensors

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
            raise ModelError(f"{self.dir}: running GGUF files is not supported by this build yet "
                             f"(its tokenizer is: edgecore.models.tokenizer_gguf)")
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
        return self.dir.name

    def close(self) -> None:
        self.weights.close()
