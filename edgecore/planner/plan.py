"""Partition a layer graph into consecutive groups under a memory budget.

Everything the budget must hold is in the plan:
- pinned weights: groups that stay resident for the whole run,
- the streaming window: room for the largest non-pinned group (sequential,
  greedy), or for the largest pair of consecutive streamed groups
  (speculative: the next group loads while the current one computes; the
  pair wraps around because the next step starts again at the first group),
- the KV cache for the whole context, activations for the largest step,
  conversion scratch for reduced-precision checkpoints.

Strategies: `sequential` (one layer per group), `greedy` (pack consecutive
layers while they fit the window), `speculative` (greedy, sized so that the
current and next group fit together), `auto` (the candidate with the lowest
predicted step time under the calibrated cost model). Every strategy then
pins as many whole groups as the rest of the budget holds, largest first,
so those weights are never streamed again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgecore.models.graph import LayerGraph

STRATEGIES = ("sequential", "greedy", "speculative", "auto")


class PlanError(ValueError):
    """A plan that breaks its own invariants."""


class BudgetTooSmall(ValueError):
    """No plan fits: says the smallest budget that would work and why."""

    def __init__(self, message: str, minimum_bytes: int, layer: str | None):
        super().__init__(message)
        self.minimum_bytes = minimum_bytes
        self.layer = layer


@dataclass
class Group:
    layers: list[int]  # indices into graph.layers, consecutive
    weight_bytes: int
    pinned: bool = False


@dataclass
class Plan:
    strategy: str
    budget: int | None
    context_tokens: int  # KV cache capacity
    step_tokens: int  # largest number of new tokens in one forward step
    groups: list[Group]
    kv_bytes: int
    activation_bytes: int
    scratch_bytes: int
    layer_names: list[str] = field(repr=False)
    predicted_step_s: float | None = None  # decode step, from the cost model
    expert_capacity: int = 0  # MoE with an expert cache: experts each MoE layer's cache holds (planner/experts.py)
    expert_cache_bytes: int = 0  # what those caches hold at most, all layers

    @property
    def pinned_bytes(self) -> int:
        return sum(g.weight_bytes for g in self.groups if g.pinned)

    @property
    def streamed(self) -> list[Group]:
        return [g for g in self.groups if not g.pinned]

    @property
    def window_bytes(self) -> int:
        """Room needed for streamed weights at any moment."""
        s = self.streamed
        if not s:
            return 0
        if self.strategy == "speculative" and len(s) > 1:
            return max(s[i].weight_bytes + s[(i + 1) % len(s)].weight_bytes for i in range(len(s)))
        return max(g.weight_bytes for g in s)

    @property
    def fixed_bytes(self) -> int:
        return self.kv_bytes + self.activation_bytes + self.scratch_bytes + self.expert_cache_bytes

    @property
    def peak_bytes(self) -> int:
        """Predicted peak of everything the run holds."""
        return self.pinned_bytes + self.window_bytes + self.fixed_bytes

    @property
    def streamed_bytes_per_step(self) -> int:
        return sum(g.weight_bytes for g in self.streamed)

    def validate(self) -> Plan:
        flat = [i for g in self.groups for i in g.layers]
        if flat != list(range(len(self.layer_names))):
            raise PlanError(f"groups must cover every layer once, in order; got {flat}")
        if any(not g.layers for g in self.groups):
            raise PlanError("empty group")
        if self.budget is not None and self.peak_bytes > self.budget:
            raise PlanError(f"plan needs {self.peak_bytes} bytes, over the budget of {self.budget}")
        return self

    def describe(self) -> list[dict]:
        return [{"group": i, "layers": f"{self.layer_names[g.layers[0]]}..{self.layer_names[g.layers[-1]]}"
                 if len(g.layers) > 1 else self.layer_names[g.layers[0]],
                 "count": len(g.layers), "weight_bytes": g.weight_bytes, "pinned": g.pinned}
                for i, g in enumerate(self.groups)]


def make_plan(graph: LayerGraph, budget: int | None, *, context_tokens: int, step_tokens: int,
              strategy: str = "auto", all_logits: bool = True, cost_model=None, kv_bytes: int | None = None) -> Plan:
    """Plan for steps of up to `step_tokens` new tokens with a KV cache of
    `context_tokens`. kv_bytes: what the KV cache holds (the engine's paged
    cache in its kv_dtype); None = float32 K/V for `context_tokens` tokens.
    Raises BudgetTooSmall or ValueError."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}; got {strategy!r}")
    if context_tokens < 1 or step_tokens < 1 or step_tokens > context_tokens:
        raise ValueError(f"need 1 <= step_tokens ({step_tokens}) <= context_tokens ({context_tokens})")
    sizes = [layer.resident_bytes(step_tokens) for layer in graph.layers]
    kv = graph.kv_bytes_per_token * context_tokens if kv_bytes is None else kv_bytes
    act = graph.max_activation_bytes(step_tokens, context_tokens, all_logits)
    scratch = max(layer.convert_scratch_bytes for layer in graph.layers)
    names = [layer.name for layer in graph.layers]

    def build(name: str, groups: list[list[int]]) -> Plan:
        plan = Plan(name, budget, context_tokens, step_tokens,
                    [Group(g, sum(sizes[i] for i in g)) for g in groups], kv, act, scratch, names)
        _pin(plan)
        if cost_model is not None:
            plan.predicted_step_s = cost_model.step_seconds(plan, graph)
        return plan

    window = None if budget is None else budget - (kv + act + scratch)
    candidates = {
        "sequential": lambda: build("sequential", [[i] for i in range(len(sizes))]),
        "greedy": lambda: build("greedy", _pack(sizes, window)),
        "speculative": lambda: build("speculative", _pack_pairs(sizes, window)),
    }

    def attempt(name: str) -> Plan:
        if budget is not None:
            _check_minimum(graph, budget, sizes, kv + act + scratch, name)
        return candidates[name]().validate()

    if strategy != "auto":
        return attempt(strategy)
    plans = []
    for name in candidates:
        try:
            plans.append(attempt(name))
        except (BudgetTooSmall, PlanError):
            if name == "sequential":  # the least demanding: nothing else can fit either
                raise
    if cost_model is None:  # without a cost model, least streaming wins; fewer groups breaks ties
        best = min(plans, key=lambda p: (p.streamed_bytes_per_step, len(p.groups)))
    else:
        best = min(plans, key=lambda p: (p.predicted_step_s, len(p.groups)))
    return best


def minimum_budget(graph: LayerGraph, *, context_tokens: int, step_tokens: int, strategy: str = "sequential",
                   all_logits: bool = True, kv_bytes: int | None = None) -> tuple[int, str]:
    """Smallest budget any plan of `strategy` needs, and the layer that sets
    it (kv_bytes as for make_plan)."""
    sizes = [layer.resident_bytes(step_tokens) for layer in graph.layers]
    fixed = ((graph.kv_bytes_per_token * context_tokens if kv_bytes is None else kv_bytes)
             + graph.max_activation_bytes(step_tokens, context_tokens, all_logits)
             + max(layer.convert_scratch_bytes for layer in graph.layers))
    if strategy == "speculative" and len(sizes) > 1:
        pair = max(range(len(sizes)), key=lambda i: sizes[i] + sizes[(i + 1) % len(sizes)])
        return fixed + sizes[pair] + sizes[(pair + 1) % len(sizes)], graph.layers[pair].name
    big = max(range(len(sizes)), key=lambda i: sizes[i])
    return fixed + sizes[big], graph.layers[big].name


def _check_minimum(graph: LayerGraph, budget: int, sizes: list[int], fixed: int, strategy: str) -> None:
    kind = "speculative" if strategy == "speculative" else "sequential"
    big = max(range(len(sizes)), key=lambda i: sizes[i])
    need = fixed + sizes[big]
    if kind == "speculative" and len(sizes) > 1:
        i = max(range(len(sizes)), key=lambda j: sizes[j] + sizes[(j + 1) % len(sizes)])
        need_pair = fixed + sizes[i] + sizes[(i + 1) % len(sizes)]
        if budget < need_pair:
            raise BudgetTooSmall(
                f"budget {_mib(budget)} is too small for the speculative strategy: it must hold layers "
                f"{graph.layers[i].name} and {graph.layers[(i + 1) % len(sizes)].name} together "
                f"({_mib(sizes[i] + sizes[(i + 1) % len(sizes)])}) plus KV cache, activations and scratch "
                f"({_mib(fixed)}); minimum {_mib(need_pair)}", need_pair, graph.layers[i].name)
    if budget < need:
        raise BudgetTooSmall(
            f"budget {_mib(budget)} is too small: layer {graph.layers[big].name} alone needs "
            f"{_mib(sizes[big])} resident, plus KV cache, activations and scratch ({_mib(fixed)}); "
            f"minimum {_mib(need)}", need, graph.layers[big].name)


def _pack(sizes: list[int], window: int | None) -> list[list[int]]:
    """Consecutive layers while the group fits the window."""
    if window is None:
        return [list(range(len(sizes)))]
    groups, cur, total = [], [], 0
    for i, s in enumerate(sizes):
        if cur and total + s > window:
            groups.append(cur)
            cur, total = [], 0
        cur.append(i)
        total += s
    groups.append(cur)
    return groups


def _pack_pairs(sizes: list[int], window: int | None) -> list[list[int]]:
    """Greedy packing such that every two consecutive groups (cyclically)
    fit the window together: the window is halved, which is the largest
    uniform group size that guarantees it; then neighbours are checked."""
    if window is None:
        return [list(range(len(sizes)))]
    if sum(sizes) <= window:
        return [list(range(len(sizes)))]
    groups = _pack(sizes, max(window // 2, max(sizes)))
    # a group that had to exceed window/2 (one big layer) needs small neighbours
    while len(groups) > 1 and any(
        _group_sum(groups[i], sizes) + _group_sum(groups[(i + 1) % len(groups)], sizes) > window
        for i in range(len(groups))):
        split = max(range(len(groups)), key=lambda i: _group_sum(groups[i], sizes) if len(groups[i]) > 1 else -1)
        if len(groups[split]) == 1:
            break  # single layers everywhere: validate() reports the overflow
        g = groups.pop(split)
        groups[split:split] = [g[: len(g) // 2], g[len(g) // 2:]]
    return groups


def _group_sum(group: list[int], sizes: list[int]) -> int:
    return sum(sizes[i] for i in group)


def _pin(plan: Plan) -> None:
    """Pin whole groups, largest first, while the remaining streamed groups'
    window plus everything pinned still fits the budget. With no budget,
    everything is pinned."""
    if plan.budget is None:
        for g in plan.groups:
            g.pinned = True
        return
    for g in sorted(plan.groups, key=lambda g: -g.weight_bytes):
        g.pinned = True
        if plan.peak_bytes > plan.budget:
            g.pinned = False


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"
