"""The float16 KV cache (the default) against float32 KV and transformers.

f16 rounds every stored K/V element to nearest even (relative error at most
2^-11); attention reads and widens them in the kernel. The stated bound:
logits within KV_F16_TOL x max|logits| of the f32-KV logits (and of
transformers'), greedy tokens identical. f32 KV keeps test_reference.py's
1e-4 bound. The cache size and the plan count the element type."""

import numpy as np
import pytest

from edgecore import Engine

KV_F16_TOL = 2e-3

pytest.importorskip("torch", reason="random test models are built with torch + transformers")
pytest.importorskip("transformers", reason="random test models are built with torch + transformers")

from support.models import build, reference_greedy, reference_logits  # noqa: E402

MODELS = {
    "gpt2": dict(vocab_size=500, n_embd=128, n_layer=4, n_head=4, n_positions=256),
    "llama": dict(vocab_size=500, hidden_size=128, intermediate_size=256, num_hidden_layers=4,
                  num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=256),
    "mixtral": dict(vocab_size=500, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256),
}
for _cfg in MODELS.values():  # no EOS: generate runs all 40 tokens, as the reference (min_new_tokens) does
    _cfg.update(bos_token_id=None, eos_token_id=None)
PROMPT = list(np.random.default_rng(11).integers(1, 500, 120))


@pytest.fixture(scope="module", params=sorted(MODELS))
def model(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(request.param)
    return path, build(request.param, path, **MODELS[request.param])


def within(got, want, tol):
    scale = np.abs(want).max()
    err = np.abs(got - want).max()
    assert err <= tol * scale, f"max diff {err} = {err / scale:.2e} x scale {scale}, bound {tol:g}"


def test_f16_logits_near_f32_and_transformers(model):
    path, ref = model
    want = reference_logits(ref, PROMPT)
    with Engine(path, kv_dtype="f32") as e32, Engine(path) as e16:
        assert e16.kv.dtype == "f16" and e16.kv.keys[0].dtype == np.float16
        assert e32.kv.keys[0].dtype == np.float32
        l32, l16 = e32.forward(PROMPT), e16.forward(PROMPT)
    within(l32, want, 1e-4)
    within(l16, l32, KV_F16_TOL)
    within(l16, want, KV_F16_TOL)


@pytest.mark.parametrize("n", [1, 9, 120])
def test_f16_greedy_tokens_identical(model, n):
    path, ref = model
    with Engine(path, kv_dtype="f32") as e32, Engine(path, kv_dtype="f16") as e16:
        t32 = e32.generate(PROMPT[:n], max_new_tokens=40).tokens
        t16 = e16.generate(PROMPT[:n], max_new_tokens=40).tokens
    assert t16 == t32 == reference_greedy(ref, PROMPT[:n], 40)


def test_demo_models_f16_equals_f32_greedy():
    for name in ("demo", "demo-moe"):
        with Engine(name, kv_dtype="f32") as e32, Engine(name) as e16:
            prompt = list(b"Once upon a time, in a small village by the sea,")
            l32, l16 = e32.forward(prompt), e16.forward(prompt)
            within(l16, l32, KV_F16_TOL)
            assert e16.generate(prompt, max_new_tokens=48, temperature=0).tokens == \
                e32.generate(prompt, max_new_tokens=48, temperature=0).tokens


def test_kv_bytes_follow_the_dtype_and_pages(model):
    path, _ = model
    with Engine(path, context=128, kv_dtype="f32") as e32, Engine(path, context=128, kv_pages=20) as e16:
        spec = e16.spec
        per_token = 2 * spec.num_layers * spec.num_kv_heads * spec.head_dim  # K and V elements, all layers
        assert e32.kv.pages == 128 // 16 and e32.kv.nbytes == per_token * 4 * 128
        assert e16.kv.pages == 20 and e16.kv.nbytes == per_token * 2 * 20 * 16
        for e in (e32, e16):
            # the plan counts what the pool holds for the K/V buffers (size-class slack included)
            by_label = e.pool.stats().by_label
            held = sum(n for label, n in by_label.items() if label.startswith("kv."))
            assert e.plan.kv_bytes == held and e.kv.nbytes <= held < e.kv.nbytes * 1.1


# ---- the 8-bit cache: kv_dtype="q8_0" ------------------------------------------------
# Each stored row is GGML Q8_0 blocks (the kernels' tests check the bytes against
# the gguf package's quantizer): an element moves by up to half a step, 1/254 of its
# 32-block's largest magnitude, so scores and outputs move by ~0.2-0.4% of their
# scale. Stated bound: logits within KV_Q8_TOL x max|logits| of the f32-KV ones
# (measured 0.6% on the random GPT-2 below, 2.0% on the real SmolLM2, whose
# perplexity moves by +0.07%: tests/engine/test_smollm2.py). Greedy tokens are not
# promised identical: a near-tie can flip.
KV_Q8_TOL = 3e-2

Q8_MODELS = {  # head_dim 32: whole Q8_0 blocks
    "gpt2": MODELS["gpt2"],
    "llama": {**MODELS["llama"], "num_attention_heads": 4},
}


@pytest.mark.parametrize("name", sorted(Q8_MODELS))
def test_q8_0_logits_near_f32(name, tmp_path):
    build(name, tmp_path, **Q8_MODELS[name])
    with Engine(tmp_path, kv_dtype="f32") as e32, Engine(tmp_path, kv_dtype="q8_0") as e8:
        assert e8.kv.dtype == "q8_0" and e8.kv.keys[0].dtype == np.uint8
        assert e8.kv.keys[0].shape[-1] == e8.spec.head_dim // 32 * 34
        within(e8.forward(PROMPT), e32.forward(PROMPT), KV_Q8_TOL)
        # decode (one row a step over the stored rows) as well as prefill
        a = e8.generate(PROMPT[:50], max_new_tokens=1).tokens
        assert len(a) == 1


def test_q8_0_bytes_are_17_32_of_f16(tmp_path):
    build("gpt2", tmp_path, **Q8_MODELS["gpt2"])
    with Engine(tmp_path, context=128, kv_pages=20, kv_dtype="q8_0") as e8:
        spec = e8.spec
        per_token = 2 * spec.num_layers * spec.num_kv_heads * spec.head_dim
        assert e8.kv.nbytes == per_token * 34 // 32 * 20 * 16
        held = sum(n for label, n in e8.pool.stats().by_label.items() if label.startswith("kv."))
        assert e8.plan.kv_bytes == held and e8.kv.nbytes <= held < e8.kv.nbytes * 1.1


def test_q8_0_needs_whole_blocks(tmp_path):
    """A head_dim that is not a multiple of 32 (this llama's is 16) is
    refused with the reason and the way out."""
    build("llama", tmp_path, **MODELS["llama"])
    with pytest.raises(ValueError, match=r"head_dim is 16; use kv_dtype f16"):
        Engine(tmp_path, kv_dtype="q8_0")
