"""Expert caches for MoE models whose experts do not all fit the budget.

One MemoryAwareRouter and one ExpertCache per MoE layer. The router picks
each token's experts (with `cache_bonus` > 0 it favours experts already in
memory) and plans page-ins and evictions; the cache carries them out,
loading an expert as float32 copies in pool buffers (WeightRuntime.
load_expert) and giving them back on eviction. The caches hold at most
`capacity` experts per layer, which the plan reserved in the budget.

Prefetching is off: on a small CPU a background load competes with the
compute it would hide, and synchronous loads keep the memory peak exactly
where the plan put it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgecore.engine.runtime import WeightRuntime
from edgecore.moe import ExpertCache, MemoryAwareRouter


@dataclass(frozen=True)
class ExpertStats:
    """Expert-cache activity during one call, all MoE layers together."""

    capacity: int  # experts per layer the caches hold
    requests: int  # experts needed: distinct chosen experts per layer per step (router counts)
    hits: int  # of those, already resident
    loads: int
    bytes_loaded: int
    load_ms: float
    hit_rate: float | None
    gate_mass_kept: float | None  # with cache_bonus > 0: the share of gate probability the rerouted choice kept


class ExpertLayers:
    """Routers and caches for every MoE layer of a model (layer index ->)."""

    def __init__(self, runtime: WeightRuntime, layers: list[int], *, num_experts: int, top_k: int,
                 intermediate: int, expert_bytes: int, capacity: int, policy: str, cache_bonus: float):
        self.capacity = capacity
        self.routers: dict[int, MemoryAwareRouter] = {}
        self.caches: dict[int, ExpertCache] = {}
        try:
            for layer in layers:
                router = MemoryAwareRouter(num_experts, top_k, cache_bonus=cache_bonus, policy=policy,
                                           prefetch_depth=0)
                self.routers[layer] = router
                self.caches[layer] = ExpertCache(
                    num_experts, expert_bytes=expert_bytes, capacity_experts=capacity, policy=policy,
                    load=_loader(runtime, layer, intermediate), release=_release, router=router, prefetch=False)
        except BaseException:
            self.close()
            raise

    def route(self, layer: int, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """ids, weights [T, k] for one layer's gate logits [T, E]; carries
        out the router's paging plan before returning."""
        routing = self.routers[layer].route(logits)
        self.caches[layer].apply(routing)
        return routing.ids, routing.weights

    def weights(self, layer: int, expert: int):
        """(gate, up, down) of one expert, loaded if it is not resident."""
        return self.caches[layer].get(expert)[0]

    def snapshot(self) -> tuple:
        caches = [c.metrics() for c in self.caches.values()]
        routers = [r.metrics() for r in self.routers.values()]
        return (sum(m.hits + m.misses for m in routers), sum(m.hits for m in routers), sum(m.loads for m in caches),
                sum(m.bytes_loaded for m in caches), sum(m.load_seconds for m in caches),
                sum(m.tokens for m in routers), sum(m.gate_mass_kept * m.tokens for m in routers))

    def stats_since(self, before: tuple) -> ExpertStats:
        now = self.snapshot()
        requests, hits, loads, nbytes, seconds, tokens, mass = (a - b for a, b in zip(now, before, strict=True))
        return ExpertStats(capacity=self.capacity, requests=requests, hits=hits, loads=loads, bytes_loaded=nbytes,
                           load_ms=seconds * 1e3, hit_rate=hits / requests if requests else None,
                           gate_mass_kept=mass / tokens if tokens else None)

    def close(self) -> None:
        for cache in self.caches.values():
            cache.close()
        self.caches.clear()


def _loader(runtime: WeightRuntime, layer: int, intermediate: int):
    return lambda expert: runtime.load_expert(layer, expert, intermediate)


def _release(expert: int, loaded) -> None:
    loaded[1].release()
