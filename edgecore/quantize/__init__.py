"""Hugging Face checkpoints (F32/F16/BF16 safetensors; GPT-2, Llama,
Mixtral, Gemma 3) to GGUF files that llama.cpp and edgecore load, with weights in
f16, bf16 or GGML's q8_0 / q4_0 / q4_1 / q5_0 / q5_1 blocks.

`quantize_model(src, out, wtype)` does the work; `edgecore quantize` is its
command. Writing needs the `gguf` package (`pip install "edgecore[quantize]"`).
"""

from edgecore.quantize.export import INSTALL_HINT, QuantizeError, Summary, quantize_model
from edgecore.quantize.types import OUT_TYPES

__all__ = ["INSTALL_HINT", "OUT_TYPES", "QuantizeError", "Summary", "quantize_model"]
