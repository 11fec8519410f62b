"""Mixtral (8 experts, top-2) against transformers, in both checkpoint
layouts: per-expert `block_sparse_moe.experts.{j}.w1/w2/w3` (what
save_pretrained writes) and fused `mlp.experts.gate_up_proj/down_proj`
(transformers 5's in-memory layout, written here from its state dict)."""

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from support.models import build, reference_greedy, reference_logits  # noqa: E402

from edgecore import Engine  # noqa: E402
from edgecore.weights import save_safetensors  # noqa: E402

CFG = dict(vocab_size=500, hidden_size=96, intermediate_size=160, num_hidden_layers=8, num_attention_heads=4,
           num_key_value_heads=2, max_position_embeddings=160, num_local_experts=8, num_experts_per_tok=2)
PROMPT = list(np.random.default_rng(3).integers(1, 500, 64))

# float32 KV: the 1e-4 bound is the engine math's against transformers; the f16 KV cache (the
# default) has its own stated bound, tested in test_kv_dtype.py
EXACT = dict(kv_dtype="f32")


@pytest.fixture(scope="module")
def mixtral(tmp_path_factory):
    per_expert = tmp_path_factory.mktemp("mixtral-per-expert")
    ref = build("mixtral", per_expert, **CFG)
    fused = tmp_path_factory.mktemp("mixtral-fused")
    shutil.copy(per_expert / "config.json", fused / "config.json")
    state = {k: v.detach().numpy().copy() for k, v in ref.state_dict().items()}
    assert any(k.endswith("mlp.experts.gate_up_proj") for k in state), "transformers changed its MoE layout"
    save_safetensors(fused / "model.safetensors", state)
    names = json.loads((per_expert / "model.safetensors").read_bytes()[8:8 + int.from_bytes(
        (per_expert / "model.safetensors").read_bytes()[:8], "little")])
    assert any("block_sparse_moe.experts.0.w1" in n for n in names), "expected the per-expert file layout"
    return ref, {"per-expert": per_expert, "fused": fused}


@pytest.mark.parametrize("layout", ["per-expert", "fused"])
def test_logits_and_greedy_match(mixtral, layout):
    ref, paths = mixtral
    with Engine(paths[layout], **EXACT) as engine:
        for n in (1, 7, 64):
            want = reference_logits(ref, PROMPT[:n])
            got = engine.forward(PROMPT[:n])
            assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
        assert engine.generate(PROMPT[:7], max_new_tokens=32).tokens == reference_greedy(ref, PROMPT[:7], 32)


@pytest.mark.parametrize("strategy", ["sequential", "speculative"])
def test_under_a_budget(mixtral, strategy):
    ref, paths = mixtral
    with Engine(paths["per-expert"], **EXACT, context=128, step_tokens=64) as probe:
        budget = probe.model.graph.total_weight_bytes(64) // 3
    with Engine(paths["per-expert"], **EXACT, memory_budget=budget, strategy=strategy, context=128,
                step_tokens=64) as engine:
        assert engine.plan.streamed
        want = reference_logits(ref, PROMPT[:7])
        assert np.abs(engine.forward(PROMPT[:7]) - want).max() <= 1e-4 * np.abs(want).max()
        assert engine.generate(PROMPT[:7], max_new_tokens=16).tokens == reference_greedy(ref, PROMPT[:7], 16)
