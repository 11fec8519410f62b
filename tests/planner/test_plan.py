"""Planner invariants on synthetic layer graphs (no checkpoint needed)."""

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecore.models.graph import LayerCost
from edgecore.planner import BudgetTooSmall, CostModel, DeviceRates, make_plan, minimum_budget


class FakeSpec:
    family, hidden_size, vocab_size, num_heads, head_dim, kv_dim = "llama", 64, 100, 4, 16, 32
    intermediate_size, is_moe, num_experts, experts_per_token = 128, False, 0, 0


class FakeGraph:
    """Only what the planner reads: layers, KV bytes per token, activations."""

    def __init__(self, sizes, kv_per_token=100, act=1000):
        self.spec = FakeSpec()
        self.layers = [LayerCost(f"block.{i}", "block", i, s, s, 0, kv_per_token, 1000) for i, s in enumerate(sizes)]
        self._act = act

    @property
    def kv_bytes_per_token(self):
        return sum(layer.kv_bytes_per_token for layer in self.layers)

    def max_activation_bytes(self, tokens, context, all_logits=False):
        return self._act

    def total_weight_bytes(self, tokens=1):
        return sum(layer.weight_bytes for layer in self.layers)


def fixed(graph, context=10):
    return graph.kv_bytes_per_token * context + graph.max_activation_bytes(1, context)


def plan(graph, budget, strategy):
    return make_plan(graph, budget, context_tokens=10, step_tokens=1, strategy=strategy)


@given(sizes=st.lists(st.integers(1, 5000), min_size=1, max_size=12), slack=st.integers(0, 40000),
       strategy=st.sampled_from(["sequential", "greedy", "speculative", "auto"]))
@settings(max_examples=300, deadline=None)
def test_plans_cover_every_layer_and_fit_the_budget(sizes, slack, strategy):
    g = FakeGraph(sizes)
    budget = fixed(g) + max(sizes) + slack
    try:
        p = plan(g, budget, strategy)
    except BudgetTooSmall as exc:
        need, _ = minimum_budget(g, context_tokens=10, step_tokens=1,
                                 strategy="speculative" if strategy == "speculative" else "sequential")
        assert budget < need == exc.minimum_bytes
        return
    assert [i for grp in p.groups for i in grp.layers] == list(range(len(sizes)))
    assert p.peak_bytes <= budget
    streamed = p.streamed
    if p.strategy == "speculative" and len(streamed) > 1:
        for a, b in zip(streamed, streamed[1:] + streamed[:1], strict=True):  # cyclic: the next step starts over
            assert p.pinned_bytes + a.weight_bytes + b.weight_bytes + p.fixed_bytes <= budget
    if p.strategy == "sequential":
        assert all(len(grp.layers) == 1 for grp in p.groups)
    if p.strategy == "greedy" and not any(grp.pinned for grp in p.groups):
        window = budget - p.fixed_bytes
        for a, b in itertools.pairwise(p.groups):  # greedy: the next layer did not fit
            assert a.weight_bytes + g.layers[b.layers[0]].weight_bytes > window


def test_no_budget_pins_everything_in_one_greedy_group():
    p = plan(FakeGraph([10, 20, 30]), None, "greedy")
    assert len(p.groups) == 1 and p.groups[0].pinned and p.streamed_bytes_per_step == 0


def test_budget_too_small_names_the_layer_and_the_minimum():
    g = FakeGraph([100, 900, 100])
    need = fixed(g) + 900
    with pytest.raises(BudgetTooSmall, match=r"layer block.1 alone needs") as info:
        plan(g, need - 1, "greedy")
    assert info.value.minimum_bytes == need and info.value.layer == "block.1"
    assert plan(g, need, "greedy").peak_bytes <= need
    with pytest.raises(BudgetTooSmall, match=r"speculative strategy: it must hold layers block.0 and block.1"):
        plan(g, need, "speculative")


def test_pinning_keeps_what_fits_and_streams_the_rest():
    g = FakeGraph([1000] * 6)
    budget = fixed(g) + 3000  # room for 3 layers: pin 2, stream the rest through a 1-layer window
    p = plan(g, budget, "sequential")
    assert sum(grp.pinned for grp in p.groups) == 2
    assert p.window_bytes == 1000 and p.peak_bytes <= budget


def test_auto_picks_the_lowest_predicted_time():
    g = FakeGraph([1000] * 8)
    slow_load = CostModel(DeviceRates(page_in_bytes_per_s=1e3, widen_bytes_per_s=1e3, stream_bytes_per_s=1e9,
                                      macs_per_s=1e6, threads=1, tier="scalar"))
    budget = fixed(g) + 3000
    candidates = {s: make_plan(g, budget, context_tokens=10, step_tokens=1, strategy=s, cost_model=slow_load)
                  for s in ("sequential", "greedy", "speculative")}
    auto = make_plan(g, budget, context_tokens=10, step_tokens=1, strategy="auto", cost_model=slow_load)
    assert auto.predicted_step_s == min(c.predicted_step_s for c in candidates.values())


def test_speculative_overlap_in_the_cost_model():
    g = FakeGraph([1000] * 4)
    rates = DeviceRates(page_in_bytes_per_s=1000.0, widen_bytes_per_s=1000.0, stream_bytes_per_s=1000.0,
                        macs_per_s=1e12, threads=1, tier="scalar")
    budget = fixed(g) + 2000
    seq = make_plan(g, budget, context_tokens=10, step_tokens=1, strategy="sequential", cost_model=CostModel(rates))
    spec = make_plan(g, budget, context_tokens=10, step_tokens=1, strategy="speculative", cost_model=CostModel(rates))
    # load and compute are 1 s per layer: overlapping them halves the streamed part
    assert spec.predicted_step_s < seq.predicted_step_s


def test_bad_arguments():
    g = FakeGraph([1, 2])
    with pytest.raises(ValueError, match="strategy must be one of"):
        make_plan(g, None, context_tokens=10, step_tokens=1, strategy="fastest")
    with pytest.raises(ValueError, match="step_tokens"):
        make_plan(g, None, context_tokens=4, step_tokens=8)
