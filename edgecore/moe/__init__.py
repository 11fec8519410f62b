"""Mixture-of-experts on a memory budget: the memory-aware router and the
expert cache. See docs/moe.md."""

from edgecore.moe.cache import CacheMetrics, ExpertCache
from edgecore.moe.loaders import PooledExpertLoader
from edgecore.moe.router import POLICIES, MemoryAwareRouter, RouterMetrics, Routing

__all__ = [
    "POLICIES",
    "CacheMetrics",
    "ExpertCache",
    "MemoryAwareRouter",
    "PooledExpertLoader",
    "RouterMetrics",
    "Routing",
]
