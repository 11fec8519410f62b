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
