"""`edgecore quantize` of a Gemma 3 checkpoint: the GGUF file runs in the
engine as the source model does in transformers (through the same quantize
-> dequantize round trip of its weights), and transformers' own GGUF reader
loads it back as the same model (an independent check of the tensor names,
the norms written as 1 + w and the metadata). Tolerances as in
test_engine_roundtrip.py. A checkpoint whose settings a gemma3 GGUF cannot
carry (llama.cpp takes its layer pattern, query scale and local RoPE base as
constants) is refused rather than written as another model.
"""

from __future__ import annotations

import numpy as np
import pytest
from support.gguf_export import roundtrip_model
from support.models import build, reference_greedy, reference_logits

from edgecore import Engine
from edgecore.models import ModelError
from edgecore.quantize import quantize_model

pytest.importorskip("gguf", reason="the gguf package writes GGUF files (pip install gguf)")
pytest.importorskip("torch")

PROMPT = [int(i) for i in np.random.default_rng(7).integers(1, 300, 24)]


@pytest.fixture(scope="module")
def source(model_dirs):
    """conftest's gemma3: what a gemma3 GGUF can express (every sixth layer
    global, query scale head_dim^-1/2; transformers' GGUF reader also leaves
    query_pre_attn_scalar at its default of 256, hence head_dim 256)."""
    path, model, _ = model_dirs("gemma3")
    return path, model


@pytest.mark.parametrize("wtype", ["f32", "q8_0"])
def test_engine_runs_the_written_file(source, wtype, tmp_path):
    src, model = source
    out = tmp_path / f"gemma3-{wtype}.gguf"
    quantize_model(src, out, wtype)
    ref = roundtrip_model("gemma3", model, wtype)
    want = reference_logits(ref, PROMPT)
    with Engine(out, kv_dtype="f32") as engine:
        assert engine.spec.family == "gemma3" and engine.spec.layer_windows == (8, 8, 8, 8, 8, 0)
        got = engine.forward(PROMPT)
        worst, mean = (1e-4, 1e-4) if wtype == "f32" else (3e-2, 5e-3)
        scale, err = np.abs(want).max(), np.abs(got - want)
        assert err.max() <= worst * scale, f"max diff {err.max():.4g} vs scale {scale:.4g}"
        assert err.mean() <= mean * scale, f"mean diff {err.mean():.4g} vs scale {scale:.4g}"
        if wtype == "f32":
            assert engine.generate(PROMPT[:6], max_new_tokens=12).tokens == reference_greedy(ref, PROMPT[:6], 12)


def test_transformers_reads_the_written_file_as_the_source(source, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    src, model = source
    out = tmp_path / "gemma3-f32.gguf"
    quantize_model(src, out, "f32")
    back = AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file=out.name, dtype=torch.float32).eval()
    want = reference_logits(model, PROMPT)
    np.testing.assert_allclose(reference_logits(back, PROMPT), want, atol=1e-5 * np.abs(want).max(), rtol=0)


def test_settings_a_gemma3_file_cannot_carry_are_refused(tmp_path):
    src = tmp_path / "custom"
    build("gemma3", src)  # layer_types sliding/full/sliding, query_pre_attn_scalar 24 with head_dim 32
    with pytest.raises(ModelError, match="cannot be written as a GGUF file that llama.cpp and edgecore read back"):
        quantize_model(src, tmp_path / "out.gguf", "q8_0")
    assert not (tmp_path / "out.gguf").exists()
