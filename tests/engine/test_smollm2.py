"""The real SmolLM2-135M-Instruct GGUF (Q4_1 blocks, Q8_0 tied embedding)
against transformers reading the same file (it dequantizes to float32).

On a fixed English text of 1391 tokens (tests/data/smollm2_text.json), the
next-token argmax must agree at >= 98% of positions and the perplexity be
within 1%: the gap is the 8-bit activation quantization of the quantized
kernels (docs/quantization.md); with the weights dequantized to f32 the
engine matches transformers to ~2e-6 of the logit scale. Chat: the answer
to a greedy question through the file's chat template.
"""

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("gguf")

from support.models import compare_to_reference, reference_logits  # noqa: E402
from support.real_models import real_model  # noqa: E402

from edgecore import Engine  # noqa: E402

DATA = json.loads((Path(__file__).resolve().parent.parent / "data" / "smollm2_text.json").read_text())


@pytest.fixture(scope="module")
def path():
    return real_model("smollm2")


@pytest.fixture(scope="module")
def engine(path):
    with Engine(path) as e:
        yield e


@pytest.fixture(scope="module")
def reference(path):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()


def test_text_ids_are_the_gguf_tokenizers(engine):
    assert engine.tokenizer.encode(DATA["text"]) == DATA["ids"]
    assert len(DATA["ids"]) >= 1000


def assert_near_transformers(engine, reference, label):
    """>= 98% top-1 agreement and perplexity within 1% on the text."""
    ids = DATA["ids"]
    got = engine.forward(ids)
    want = reference_logits(reference, ids)
    agreement, ppl, ref_ppl = compare_to_reference(got, want, ids)
    print(f"\nSmolLM2 {label}, {len(ids)} tokens: top-1 agreement {agreement:.2%}, perplexity {ppl:.4f} vs "
          f"transformers {ref_ppl:.4f} ({ppl / ref_ppl - 1:+.2%})")
    assert agreement >= 0.98
    assert abs(ppl / ref_ppl - 1) <= 0.01


def test_agreement_and_perplexity_against_transformers(engine, reference):
    assert_near_transformers(engine, reference, "f16 KV")


def test_chat_answer(engine):
    ids = engine.tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}])
    result = engine.generate(ids, max_new_tokens=24, temperature=0)
    assert "Paris" in result.text


def test_q8_0_kv_cache_against_transformers(path, reference):
    """The 8-bit KV cache (kv_dtype="q8_0") on the same text: its K/V
    rounding (half a step, 1/254 of each 32-block's largest magnitude)
    comes on top of the activation quantization; measured 98.8% top-1
    agreement with the f32-KV engine and perplexity +0.07%. Bound: the
    same >= 98% / 1% against transformers as the default cache."""
    with Engine(path, kv_dtype="q8_0") as e:
        assert e.kv.keys[0].dtype == np.uint8
        assert_near_transformers(e, reference, "q8_0 KV")
