"""Model directories (Hugging Face layout) as validated specs, tensor
layouts and layer graphs with honest costs."""

from edgecore.models.graph import LayerCost, LayerGraph
from edgecore.models.model import DEMO_MODELS, Model, resolve_model_dir
from edgecore.models.spec import ModelError, ModelSpec, load_spec, parse_config

__all__ = ["DEMO_MODELS", "LayerCost", "LayerGraph", "Model", "ModelError", "ModelSpec", "load_spec",
           "parse_config", "resolve_model_dir"]
