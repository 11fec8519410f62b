"""Round trip: a Hugging Face model written by `edgecore quantize` runs in
edgecore's Engine from the GGUF file, against transformers running the
source model with the same quantize -> dequantize round trip of its weights
(the gguf package's quantizer, support.gguf_export.roundtrip_model).

Tolerances (max |logit difference| / max |reference logit|), as the
engine's own GGUF tests justify them (tests/engine/test_gguf_models.py):
f32, f16 and bf16 weights widen exactly and activations stay float32, so
only summation order differs: 1e-4. Block types quantize every linear
input to 8 bits per block of 32 (docs/quantization.md): 3% worst, 0.5%
mean. Greedy tokens must be identical for f32, f16 and bf16.
"""

from __future__ import annotations

import numpy as np
import pytest
from support.gguf_export import roundtrip_model
from support.models import reference_greedy, reference_logits

from edgecore import Engine
from edgecore.quantize import quantize_model

pytest.importorskip("gguf", reason="the gguf package writes GGUF files (pip install gguf)")
pytest.importorskip("torch")

PROMPT = [int(i) for i in np.random.default_rng(5).integers(1, 400, 20)]
EXACT = ("f32", "f16", "bf16")
KIND = {"gpt2": "gpt2", "llama": "llama", "llama-tied-bf16": "llama", "mixtral": "mixtral"}


@pytest.mark.reference
@pytest.mark.parametrize("wtype", ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1"])
@pytest.mark.parametrize("name", list(KIND))
def test_engine_runs_the_quantized_file(model_dirs, name, wtype, tmp_path):
    src, model, _ = model_dirs(name)
    out = tmp_path / f"{name}-{wtype}.gguf"
    quantize_model(src, out, wtype)
    ref = roundtrip_model(KIND[name], model, wtype)
    want = reference_logits(ref, PROMPT)
    # f32 KV: the tolerance here is the weights' (f16 KV has its own, tests/engine/test_kv_dtype.py)
    with Engine(out, kv_dtype="f32") as engine:
        got = engine.forward(PROMPT)
        worst, mean = (1e-4, 1e-4) if wtype in EXACT else (3e-2, 5e-3)
        scale, err = np.abs(want).max(), np.abs(got - want)
        assert err.max() <= worst * scale, f"max diff {err.max():.4g} vs scale {scale:.4g}"
        assert err.mean() <= mean * scale, f"mean diff {err.mean():.4g} vs scale {scale:.4g}"
        if wtype in EXACT:
            assert engine.generate(PROMPT[:6], max_new_tokens=12).tokens == reference_greedy(ref, PROMPT[:6], 12)


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_engine_tokenizer_from_the_file(model_dirs, name, tmp_path):
    """The file's tokenizer (written from tokenizer.json) is the one the
    engine uses for text prompts: same ids as the source tokenizer."""
    src, _, tok = model_dirs(name)
    out = tmp_path / f"{name}.gguf"
    quantize_model(src, out, "q8_0")
    text = "The capital of France is Paris. <|im_start|>user\nHello, 1234 worlds!<|im_end|>"
    with Engine(out) as engine:
        assert engine.tokenizer.encode(text, add_special_tokens=False) == tok.encode(text,
                                                                                      add_special_tokens=False).ids
        result = engine.generate("The capital of France is", max_new_tokens=4, temperature=0)
        assert result.prompt_tokens == tok.encode("The capital of France is").ids
