"""MoE with an expert cache: fewer experts in memory than the model has.

With cache_bonus = 0 routing is the model's own, so outputs must match
transformers exactly as the all-resident engine does, whatever the cache
evicts; the budget must hold (the pool never goes over it); and a cache
bonus must actually change routing towards resident experts."""

import shutil

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from support.models import build, reference_greedy, reference_logits  # noqa: E402

from edgecore import Engine  # noqa: E402
from edgecore.memory import held_bytes  # noqa: E402
from edgecore.planner import BudgetTooSmall, minimum_budget, plan_with_expert_cache  # noqa: E402

CFG = dict(vocab_size=400, hidden_size=64, intermediate_size=192, num_hidden_layers=4, num_attention_heads=4,
           num_key_value_heads=2, max_position_embeddings=128, num_local_experts=8, num_experts_per_tok=2)
PROMPT = [int(t) for t in np.random.default_rng(5).integers(1, 400, 40)]
# float32 KV: the 1e-4 bound is the engine math's against transformers; the f16 KV cache (the
# default) has its own stated bound, tested in test_kv_dtype.py
RUN = dict(context=96, step_tokens=32, kv_dtype="f32")


@pytest.fixture(scope="module")
def mixtral(tmp_path_factory):
    path = tmp_path_factory.mktemp("mixtral-cache")
    return build("mixtral", path, seed=7, dtype="float16", **CFG), path


def close(got, want):
    return np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


@pytest.mark.parametrize("capacity", [2, 3, 5, 8])
def test_forced_capacity_matches_transformers(mixtral, capacity):
    ref, path = mixtral
    with Engine(path, expert_capacity=capacity, **RUN) as engine:
        assert engine.plan.expert_capacity == capacity and engine.experts is not None
        want = reference_logits(ref, PROMPT)
        assert close(engine.forward(PROMPT), want)  # 32-token chunk: more experts than fit, transient loads
        result = engine.generate(PROMPT[:6], max_new_tokens=24)
        assert result.tokens == reference_greedy(ref, PROMPT[:6], 24)
        stats = result.stats.experts
        assert stats.capacity == capacity and stats.gate_mass_kept == 1.0
        for cache in engine.experts.caches.values():
            assert len(cache.resident()) <= capacity
        if capacity < 8:
            assert stats.loads > 0 and stats.hit_rate < 1.0


def test_budget_too_small_for_all_experts_uses_a_cache_and_holds_the_budget(mixtral):
    ref, path = mixtral
    with Engine(path, **RUN) as probe:
        graph = probe.model.graph
        full = probe.plan.peak_bytes
    experts = graph.moe_layers * graph.spec.num_experts * graph.expert_bytes
    budget = full - experts // 2  # room for about half the experts
    with Engine(path, memory_budget=budget, **RUN) as engine:
        plan = engine.plan
        assert 2 <= plan.expert_capacity < 8
        assert plan.peak_bytes <= budget
        assert plan.expert_cache_bytes == graph.moe_layers * plan.expert_capacity * held_bytes(graph.expert_bytes)
        result = engine.generate(PROMPT[:6], max_new_tokens=24)
        assert result.tokens == reference_greedy(ref, PROMPT[:6], 24)
        assert engine.pool.stats().peak <= budget
        assert result.stats.experts.loads > 0


def test_cache_bonus_reroutes_towards_resident_experts(mixtral):
    _, path = mixtral
    hit = {}
    for bonus in (0.0, 4.0):
        with Engine(path, expert_capacity=2, cache_bonus=bonus, **RUN) as engine:
            stats = engine.generate(PROMPT[:6], max_new_tokens=40).stats.experts
            hit[bonus] = stats.hit_rate
            if bonus:
                assert stats.gate_mass_kept < 1.0
    assert hit[4.0] > hit[0.0] + 0.2


def test_expert_cache_needs_top_k_experts_per_layer(mixtral):
    _, path = mixtral
    with Engine(path, **RUN) as probe:
        graph = probe.model.graph
    run = dict(context_tokens=96, step_tokens=32, strategy="sequential")
    dense_floor, _ = minimum_budget(graph.with_experts_cached(), **run)
    # top_k=2 experts per MoE layer, each one pool buffer
    floor = dense_floor + graph.moe_layers * 2 * held_bytes(graph.expert_bytes)
    plan = plan_with_expert_cache(graph, floor, **run)
    assert plan.expert_capacity == 2 and plan.peak_bytes <= floor
    with pytest.raises(BudgetTooSmall, match="expert cache") as info:
        plan_with_expert_cache(graph, floor - 1, **run)
    assert info.value.minimum_bytes == floor


@pytest.mark.parametrize("kwargs, match", [
    (dict(expert_capacity=1), "expert_capacity must be an integer in \\[top_k=2, 8\\]"),
    (dict(expert_capacity=9), "expert_capacity"),
    (dict(expert_capacity=True), "expert_capacity"),
    (dict(expert_policy="fifo"), "expert_policy must be one of"),
    (dict(cache_bonus=-1.0), "cache_bonus"),
    (dict(cache_bonus=float("nan")), "cache_bonus"),
])
def test_bad_expert_options(mixtral, kwargs, match):
    _, path = mixtral
    with pytest.raises(ValueError, match=match):
        Engine(path, **kwargs, **RUN)


def test_dense_models_refuse_expert_options(tmp_path):
    build("llama", tmp_path)
    with pytest.raises(ValueError, match="dense"):
        Engine(tmp_path, expert_capacity=2)


def test_fused_layout_cache(mixtral, tmp_path):
    """Transformers 5's fused expert tensors load one expert's slices."""
    from edgecore.weights import save_safetensors

    ref, path = mixtral
    shutil.copy(path / "config.json", tmp_path / "config.json")
    state = {k: v.detach().numpy().copy() for k, v in ref.state_dict().items()}
    save_safetensors(tmp_path / "model.safetensors", state)
    with Engine(tmp_path, expert_capacity=3, **RUN) as engine:
        assert close(engine.forward(PROMPT[:9]), reference_logits(ref, PROMPT[:9]))
