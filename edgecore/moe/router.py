"""MemoryAwareRouter: top-k MoE routing that knows which experts are in memory.

The hot path (bonus, top-k, softmax, gate-mass accounting, affinity update,
metrics, paging plan) is one compiled call (``csrc/common/router.c``); this
module validates the configuration and presents the results. See
docs/moe.md for the model.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass

import numpy as np

from edgecore import ops

__all__ = ["MemoryAwareRouter", "RouterMetrics", "Routing", "POLICIES"]

Routing = ops.Routing
POLICIES = ops.POLICIES
_KEEP = object()  # configure(): leave this setting as it is


@dataclass(frozen=True)
class RouterMetrics:
    """Counters of one router since it was created or its metrics were reset.

    ``hits``/``misses`` count, per ``route()`` call, the *distinct* chosen
    experts that were / were not resident (a prefill of many tokens that all
    use expert 3 needs it paged in once). ``hit_rate = hits / (hits +
    misses)``; ``bytes_paged_in = misses * expert_bytes``.

    ``prefetch_accuracy``: of the experts suggested in ``prefetch``, the
    fraction activated within ``prefetch_window`` routes after the suggestion
    and before being evicted (suggestions still pending count as unused).

    ``gate_mass_kept``: per token, the softmax probability (over all E
    experts, original logits) of the chosen experts divided by that of the
    true top-k; averaged over tokens. 1.0 when the bonus changed nothing.
    ``rerouted_tokens``: tokens whose chosen set differs from the true top-k.
    """

    routes: int
    tokens: int
    hits: int
    misses: int
    hit_rate: float
    bytes_paged_in: int
    evictions: int
    prefetches: int
    prefetches_used: int
    prefetch_accuracy: float
    rerouted_tokens: int
    gate_mass_kept: float

    def as_dict(self) -> dict:
        return asdict(self)


def _int(value, name: str, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"MemoryAwareRouter: {name} must be an int, got {type(value).__name__}")
    if value < lo:
        raise ValueError(f"MemoryAwareRouter: {name} must be >= {lo}, got {value}")
    return int(value)


def _float(value, name: str, lo: float, hi: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"MemoryAwareRouter: {name} must be a finite number, got {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"MemoryAwareRouter: {name} must be in [{lo}, {hi}], got {value}")
    return float(value)


class MemoryAwareRouter(ops.RouterCore):
    """Top-k router for one MoE layer with a residency bonus, expert affinity
    and a paging plan.

    ``route(logits)`` takes the gate logits of T tokens (float32 ``[T, E]``,
    or ``[E]``) and returns a :class:`Routing`: ``ids``/``weights`` [T, k]
    (weights = softmax of the chosen *original* logits, renormalised: the
    Mixtral rule) and the paging requests ``page_in``, ``evict``, ``prefetch``.

    cache_bonus: added to the raw gate logit of every resident expert before
        ranking (a logit-scale parameter: +b multiplies that expert's odds by
        e^b), only when ``memory_aware``. 0 (the default) routes exactly like
        plain top-k. The weights always use the original logits.
    affinity_decay, affinity_boost, affinity_max: per route, every expert's
        affinity is multiplied by decay, each distinct chosen expert gains
        boost, and scores are clamped to [0, affinity_max] (the
        ``ops.ema_update`` kernel). With the defaults a score is
        ``0.99 ** (routes since last use)``: recency.
    capacity: resident experts at most (None: unlimited). With a capacity the
        router starts cold (nothing resident) and plans evictions; without
        one every expert starts resident.
    expert_bytes: bytes per expert (metrics only: bytes paged in).
    policy: eviction order: "lru", "lfu" or "affinity" (lowest affinity);
        ties go to the least recently used, then the lower id.
    prefetch_depth: prefetch suggestions per route at most (0: none).
    prefetch_window: routes within which a prefetched expert counts as used.

    The router keeps a model of residency: after each route it assumes the
    plan was carried out (page-ins and prefetches resident, evictions gone).
    Whoever executes the plan (``ExpertCache``) calls :meth:`set_resident`
    when reality differs (a prefetch still loading, a failed load).

    Threads: one router per layer. Every call holds the router's lock, so
    concurrent calls are serialised and each sees and leaves a consistent
    state; results are deterministic for a deterministic call order.
    """

    __slots__ = ()

    def __init__(self, num_experts: int, top_k: int, *, cache_bonus: float = 0.0, affinity_decay: float = 0.99,
                 affinity_boost: float = 1.0, affinity_max: float = 1.0, memory_aware: bool = True,
                 capacity: int | None = None, expert_bytes: int = 0, policy: str = "affinity",
                 prefetch_depth: int = 1, prefetch_window: int = 16):
        num_experts = _int(num_experts, "num_experts", 1)
        top_k = _int(top_k, "top_k", 1)
        if top_k > num_experts:
            raise ValueError(f"MemoryAwareRouter: top_k must be in [1, {num_experts}] for {num_experts} experts, "
                             f"got {top_k}")
        decay = _float(affinity_decay, "affinity_decay", 0.0, 1.0)
        boost = _float(affinity_boost, "affinity_boost", 0.0)
        max_score = _float(affinity_max, "affinity_max", 0.0)
        if max_score == 0.0:
            raise ValueError("MemoryAwareRouter: affinity_max must be > 0")
        window = _int(prefetch_window, "prefetch_window", 1)
        bonus, aware, cap, policy, depth, nbytes = self._paging_args(
            num_experts, top_k, cache_bonus, memory_aware, capacity, policy, prefetch_depth, expert_bytes)
        self._setup(num_experts, top_k, bonus, aware, decay, boost, max_score, cap, policy, depth, window, nbytes)

    @staticmethod
    def _paging_args(num_experts, top_k, cache_bonus, memory_aware, capacity, policy, prefetch_depth, expert_bytes):
        bonus = _float(cache_bonus, "cache_bonus", 0.0)
        if not isinstance(memory_aware, (bool, np.bool_)):
            raise TypeError(f"MemoryAwareRouter: memory_aware must be a bool, got {type(memory_aware).__name__}")
        if capacity is None:
            cap = -1
        else:
            cap = _int(capacity, "capacity", 1)
            if not top_k <= cap <= num_experts:
                raise ValueError(f"MemoryAwareRouter: capacity must be in [top_k={top_k}, {num_experts}] experts "
                                 f"(a token needs its top_k experts resident at once), got {capacity}")
        if policy not in POLICIES:
            raise ValueError(f"MemoryAwareRouter: policy must be one of {', '.join(POLICIES)}; got {policy!r}")
        depth = min(_int(prefetch_depth, "prefetch_depth", 0), num_experts)
        nbytes = _int(expert_bytes, "expert_bytes", 0)
        return bonus, bool(memory_aware), cap, policy, depth, nbytes

    def configure(self, *, cache_bonus: float | None = None, memory_aware: bool | None = None,
                  capacity: int | None | object = _KEEP, policy: str | None = None,
                  prefetch_depth: int | None = None, expert_bytes: int | None = None) -> None:
        """Change the bonus or paging settings; arguments left out keep
        their value (``capacity=None`` means unlimited). Affinity, counts,
        residency and metrics are kept. The expert cache calls this to make
        the router plan for the cache's capacity and policy."""
        args = self._paging_args(
            self.num_experts, self.top_k,
            self.cache_bonus if cache_bonus is None else cache_bonus,
            self.memory_aware if memory_aware is None else memory_aware,
            self.capacity if capacity is _KEEP else capacity,
            self.policy if policy is None else policy,
            self.prefetch_depth if prefetch_depth is None else prefetch_depth,
            self.expert_bytes if expert_bytes is None else expert_bytes)
        self._configure(*args)

    def metrics(self) -> RouterMetrics:
        """A snapshot of the counters (see :class:`RouterMetrics`)."""
        routes, tokens, hits, misses, paged, evictions, prefetches, used, rerouted, mass = self._metrics()
        return RouterMetrics(
            routes=routes, tokens=tokens, hits=hits, misses=misses,
            hit_rate=hits / (hits + misses) if hits + misses else 1.0,
            bytes_paged_in=paged, evictions=evictions, prefetches=prefetches, prefetches_used=used,
            prefetch_accuracy=used / prefetches if prefetches else 0.0,
            rerouted_tokens=rerouted, gate_mass_kept=mass / tokens if tokens else 1.0)

    def reset_metrics(self) -> None:
        """Zero the counters (state and configuration are kept)."""
        self._reset_metrics()

    def affinity(self) -> np.ndarray:
        """A copy of the affinity scores, float32 [E]."""
        return self._state()[0]

    def activation_counts(self) -> np.ndarray:
        """A copy of the per-expert activation counts (routes that chose the
        expert at least once), uint64 [E]."""
        return self._state()[1]

    def last_used(self) -> np.ndarray:
        """A copy of the number of the last route that chose each expert
        (0 = never), uint64 [E]."""
        return self._state()[2]

    def resident_mask(self) -> np.ndarray:
        """A copy of the router's residency model, bool [E]."""
        return self._state()[3]

    def __repr__(self) -> str:
        cap = "unlimited" if self.capacity is None else self.capacity
        return (f"MemoryAwareRouter(num_experts={self.num_experts}, top_k={self.top_k}, "
                f"cache_bonus={self.cache_bonus:g}, memory_aware={self.memory_aware}, capacity={cap}, "
                f"policy={self.policy!r})")
