"""Plans for MoE models whose experts do not all fit the budget.

The budget is split in two: an expert cache of C experts per MoE layer
(C pool buffers of one expert each, C from E down to top_k), and the rest, which holds
the dense part (attention, router, norms, embeddings, head) planned as
usual by `make_plan` on the graph without experts. Every C that leaves a
valid dense plan is a candidate; the one with the least expected weight
traffic per decode step wins:

    streamed dense bytes + moe_layers * top_k * (1 - C/E) * expert_bytes

The second term is the expected expert loads if routing were uniform (a
miss rate of 1 - C/E); real routing is skewed, so real caches do better,
but the prior ranks the candidates the right way round: a larger cache
never loads more, a smaller one frees room to pin dense layers, which
would otherwise stream on every step. Ties go to the larger cache.
"""

from __future__ import annotations

from edgecore.memory import held_bytes
from edgecore.models.graph import LayerGraph
from edgecore.planner.plan import BudgetTooSmall, Plan, PlanError, _mib, make_plan


def plan_with_expert_cache(graph: LayerGraph, budget: int | None, *, capacity: int | None = None,
                           **plan_kwargs) -> Plan:
    """A plan whose experts live in per-layer expert caches.

    capacity: experts per MoE layer (None: choose, see the module doc).
    plan_kwargs: as make_plan (context_tokens, step_tokens, strategy, ...).
    The returned plan's expert_capacity / expert_cache_bytes say what the
    caches hold; its peak_bytes include them. Raises BudgetTooSmall when not
    even top_k experts per layer fit beside the smallest dense plan."""
    spec = graph.spec
    if not graph.moe_layers:
        raise ValueError("an expert cache needs a mixture-of-experts model")
    cached = graph if graph.experts_cached else graph.with_experts_cached()
    num_experts, top_k = spec.num_experts, spec.experts_per_token
    if capacity is not None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or not top_k <= capacity <= num_experts:
            raise ValueError(f"expert_capacity must be an integer in [top_k={top_k}, {num_experts}], "
                             f"got {capacity!r}")
        capacities = [capacity]
    else:
        capacities = list(range(num_experts, top_k - 1, -1))
    # one more expert in every MoE layer's cache; an expert is one pool
    # buffer, so count what the pool will hold for it
    per_slot = cached.moe_layers * held_bytes(cached.expert_bytes)
    candidates: list[tuple[float, int, Plan]] = []
    failure: BudgetTooSmall | None = None
    for c in capacities:
        reserve = per_slot * c
        try:
            plan = make_plan(cached, None if budget is None else budget - reserve, **plan_kwargs)
        except (BudgetTooSmall, PlanError) as exc:
            if isinstance(exc, BudgetTooSmall) and failure is None:
                failure = exc
            continue
        plan.budget = budget
        plan.expert_capacity = c
        plan.expert_cache_bytes = reserve
        plan.validate()
        candidates.append((expected_traffic(plan, cached), -c, plan))
        if budget is None or plan.streamed_bytes_per_step == 0:
            break  # nothing streams: a smaller cache cannot move less
    if not candidates:
        c = capacities[-1]
        dense_min = failure.minimum_bytes if failure is not None else 0
        need = dense_min + per_slot * c
        raise BudgetTooSmall(
            f"budget {_mib(budget)} is too small for an expert cache: {cached.moe_layers} MoE layers x {c} "
            f"experts x {_mib(held_bytes(cached.expert_bytes))} ({_mib(per_slot * c)}) plus the smallest plan "
            f"for the rest of the model ({_mib(dense_min)}); minimum {_mib(need)}", need,
            failure.layer if failure is not None else None)
    return min(candidates, key=lambda t: (t[0], t[1]))[2]


def expected_traffic(plan: Plan, graph: LayerGraph) -> float:
    """Weight bytes a decode step is expected to load: the streamed groups,
    plus expert-cache misses under the uniform-routing prior."""
    traffic = float(plan.streamed_bytes_per_step)
    if plan.expert_capacity:
        spec = graph.spec
        miss = 1.0 - plan.expert_capacity / spec.num_experts
        traffic += graph.moe_layers * spec.experts_per_token * miss * graph.expert_bytes
    return traffic


def plan_model(graph: LayerGraph, budget: int | None, *, expert_capacity: int | None = None, **plan_kwargs) -> Plan:
    """The plan the engine runs. Dense models: make_plan. MoE models: the
    usual plan when it pins everything; otherwise the better (less expected
    traffic) of streaming whole layers, experts included, and an expert
    cache. expert_capacity forces an expert cache of that size."""
    if expert_capacity is not None:
        return plan_with_expert_cache(graph, budget, capacity=expert_capacity, **plan_kwargs)
    if not graph.moe_layers or budget is None:
        return make_plan(graph, budget, **plan_kwargs)
    plans, errors = [], []
    for build in (lambda: make_plan(graph, budget, **plan_kwargs),
                  lambda: plan_with_expert_cache(graph, budget, **plan_kwargs)):
        try:
            plan = build()
        except BudgetTooSmall as exc:
            errors.append(exc)
            continue
        if not plan.streamed and not plan.expert_capacity:
            return plan  # everything resident
        plans.append(plan)
    if not plans:
        raise min(errors, key=lambda e: e.minimum_bytes)
    return min(plans, key=lambda p: (expected_traffic(p, graph), -p.expert_capacity))
