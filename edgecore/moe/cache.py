"""ExpertCache: the experts of one MoE layer that fit the memory budget.

The cache holds at most ``capacity`` experts' weights. It loads an expert
through a caller-supplied ``load`` callback (which puts the weights in
budgeted memory: pool buffers, or reserved mapped pages) and gives them back
through ``release`` when the expert is evicted. With a router attached it
carries out the router's paging plans (``apply``) and keeps the router's
residency model true (``router.set_resident``); prefetches load on a
background thread.

Concurrency: one lock guards the bookkeeping; loads run outside it with the
expert's slot already reserved, so the capacity holds at every instant
(counting loads in flight) and other experts stay servable meanwhile.
``release`` runs under the lock: it must be quick and must not call back
into the cache.
"""

from __future__ import annotations

import numbers
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgecore.moe.router import POLICIES, MemoryAwareRouter, Routing

__all__ = ["CacheMetrics", "ExpertCache"]

_LOADING, _READY = 0, 1


class _Slot:
    """One expert in the cache: loading (slot reserved) or ready."""

    __slots__ = ("state", "weights", "stamp", "uses", "prefetched")

    def __init__(self, prefetched: bool):
        self.state = _LOADING
        self.weights: Any = None
        self.stamp = 0  # logical time of the last use (LRU)
        self.uses = 0  # gets served (LFU)
        self.prefetched = prefetched  # loaded ahead and not used yet


@dataclass(frozen=True)
class CacheMetrics:
    """Counters of one cache since it was created.

    ``requests`` are ``get()`` calls: ``hits`` found the expert loaded (or
    loading), ``misses`` loaded it; ``waits`` counts the times a call waited
    for a load in flight on another thread. ``page_ins`` are loads that ``apply()`` did for a
    routing's ``page_in``. ``loads`` counts every successful load (misses,
    page-ins, prefetches), ``bytes_loaded = loads * expert_bytes`` and
    ``load_seconds`` the time spent in the load callback. ``evictions``
    counts experts dropped, whether the router asked (``apply``) or the
    cache chose a victim by its policy (a miss in a full cache).
    Prefetch: ``prefetches`` started, ``prefetch_hits`` the prefetched
    experts that were used (by ``get`` or a page-in) before eviction,
    ``prefetches_skipped`` suggestions not started because the cache was
    full, ``prefetch_failures`` loads that raised on the background thread.
    """

    capacity: int
    resident: int
    loading: int
    requests: int
    hits: int
    misses: int
    waits: int
    page_ins: int
    loads: int
    load_failures: int
    bytes_loaded: int
    load_seconds: float
    evictions: int
    prefetches: int
    prefetch_hits: int
    prefetches_skipped: int
    prefetch_failures: int

    @property
    def hit_rate(self) -> float:
        return self.hits / self.requests if self.requests else 1.0

    def as_dict(self) -> dict:
        return {**asdict(self), "hit_rate": self.hit_rate}


def _count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"ExpertCache: {name} must be an int, got {type(value).__name__}")
    return int(value)


class ExpertCache:
    """Up to ``capacity`` experts of one layer, loaded on demand.

    num_experts: experts in the layer (E). expert_bytes: bytes one expert's
    weights take in memory (all experts of a layer have the same size).
    capacity_experts / capacity_bytes: the capacity, in experts or in bytes
    (``capacity_bytes // expert_bytes`` experts); give at most one; neither
    means all E experts. policy: which expert a miss in a full cache evicts:
    "lru" (least recently used), "lfu" (fewest uses, then LRU), "affinity"
    (lowest router affinity, then LRU; needs a router).
    load(expert) -> weights: puts one expert's weights in budgeted memory;
    an exception propagates to the caller and leaves the cache unchanged.
    release(expert, weights): gives them back (called on eviction and close).
    router: a MemoryAwareRouter for this layer; the cache configures its
    capacity, policy and prefetch to match and keeps its residency true.
    prefetch: run the routers' prefetch suggestions on a background thread.
    """

    def __init__(self, num_experts: int, *, expert_bytes: int, capacity_experts: int | None = None,
                 capacity_bytes: int | None = None, policy: str = "lru", load: Callable[[int], Any],
                 release: Callable[[int, Any], None] | None = None, router: MemoryAwareRouter | None = None,
                 prefetch: bool = True):
        self.num_experts = _count(num_experts, "num_experts")
        if self.num_experts < 1:
            raise ValueError(f"ExpertCache: num_experts must be >= 1, got {num_experts}")
        self.expert_bytes = _count(expert_bytes, "expert_bytes")
        if self.expert_bytes < 0:
            raise ValueError(f"ExpertCache: expert_bytes must be >= 0, got {expert_bytes}")
        self.capacity = self._capacity(capacity_experts, capacity_bytes)
        if policy not in POLICIES:
            raise ValueError(f"ExpertCache: policy must be one of {', '.join(POLICIES)}; got {policy!r}")
        if policy == "affinity" and router is None:
            raise ValueError("ExpertCache: policy 'affinity' ranks experts by the router's affinity; pass router=")
        if not callable(load) or (release is not None and not callable(release)):
            raise TypeError("ExpertCache: load and release must be callables")
        self.policy = policy
        self._load_fn = load
        self._release_fn = release
        self.router = router
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a slot became ready, or was freed
        self._slots: dict[int, _Slot] = {}
        # experts holding a slot, loaded or loading: what the router sees as
        # resident (an expert in flight takes memory and needs no new load)
        self._held = np.zeros(self.num_experts, bool)
        self._clock = 0
        self._routing: Routing | None = None  # the last applied routing: its experts are evicted last
        self._closed = False
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="edgecore-prefetch") if prefetch else None
        self._counts = dict.fromkeys(("requests", "hits", "misses", "waits", "page_ins", "loads", "load_failures",
                                      "evictions", "prefetches", "prefetch_hits", "prefetches_skipped",
                                      "prefetch_failures"), 0)
        self._load_seconds = 0.0
        self.last_prefetch_error: BaseException | None = None
        if router is not None:
            if router.num_experts != self.num_experts:
                raise ValueError(f"ExpertCache: the router has {router.num_experts} experts, the cache "
                                 f"{self.num_experts}")
            if self.capacity < router.top_k:
                raise ValueError(f"ExpertCache: capacity {self.capacity} is below the router's top_k="
                                 f"{router.top_k}; a token needs its experts resident at once")
            router.configure(capacity=self.capacity, policy=policy, expert_bytes=self.expert_bytes,
                             **({} if prefetch else {"prefetch_depth": 0}))
            router.set_resident(np.zeros(self.num_experts, bool))

    def _capacity(self, capacity_experts, capacity_bytes) -> int:
        if capacity_experts is not None and capacity_bytes is not None:
            raise ValueError("ExpertCache: give capacity_experts or capacity_bytes, not both")
        if capacity_bytes is not None:
            capacity_bytes = _count(capacity_bytes, "capacity_bytes")
            if self.expert_bytes <= 0:
                raise ValueError("ExpertCache: capacity_bytes needs expert_bytes > 0")
            capacity = capacity_bytes // self.expert_bytes
            if capacity < 1:
                raise ValueError(f"ExpertCache: capacity_bytes={capacity_bytes} holds no expert of "
                                 f"{self.expert_bytes} bytes")
        elif capacity_experts is not None:
            capacity = _count(capacity_experts, "capacity_experts")
        else:
            capacity = self.num_experts
        if not 1 <= capacity:
            raise ValueError(f"ExpertCache: capacity must be at least one expert, got {capacity}")
        return min(capacity, self.num_experts)

    # ---- public API -------------------------------------------------------------

    def get(self, expert: int) -> Any:
        """The weights of ``expert``, loading them (in this thread) on a miss;
        a miss in a full cache first evicts a victim chosen by the policy,
        sparing the experts of the last applied routing where it can. Waits
        if the expert is being loaded by another thread."""
        expert = self._check_id(expert)
        with self._lock:
            self._check_open()
            self._counts["requests"] += 1
            slot = self._claim(expert)
            if slot.state == _READY:
                self._counts["hits"] += 1
                return self._use(slot)
            self._counts["misses"] += 1
        return self._load(expert, slot)

    def apply(self, routing: Routing) -> None:
        """Carry out a router's paging plan: drop ``evict`` (explicitly; an
        expert still loading is dropped when its load lands), load
        ``page_in`` now (in this thread; an exception propagates and the cache
        stays consistent), and start ``prefetch`` loads in the background
        where a slot is free; then tell the router what is held (loaded or
        loading). An id in both page_in and evict (a call that activates
        more experts than fit) is not preloaded: ``get`` loads it and evicts
        by policy. Cheap when the plan is empty."""
        self._check_open()
        self._routing = routing
        if not routing.needs_paging:
            return
        page_in = routing.page_in.tolist()
        evict = routing.evict.tolist()
        transient = set(page_in) & set(evict)
        with self._lock:
            self._check_open()
            for expert in evict:
                if expert not in transient:
                    self._evict(expert)
        try:
            for expert in page_in:
                if expert not in transient:
                    self._page_in(expert)
        finally:
            with self._lock:
                for expert in routing.prefetch.tolist():
                    self._start_prefetch(expert)
                self._sync_router()

    def resident_mask(self) -> np.ndarray:
        """bool [E]: the experts whose weights are loaded (not in flight;
        the router also counts those in flight as resident)."""
        with self._lock:
            mask = np.zeros(self.num_experts, bool)
            mask[[e for e, slot in self._slots.items() if slot.state == _READY]] = True
            return mask

    def resident(self) -> list[int]:
        """Ids of the loaded experts, ascending."""
        with self._lock:
            return sorted(e for e, slot in self._slots.items() if slot.state == _READY)

    def metrics(self) -> CacheMetrics:
        """A snapshot of the counters (see :class:`CacheMetrics`)."""
        with self._lock:
            ready = sum(slot.state == _READY for slot in self._slots.values())
            return CacheMetrics(capacity=self.capacity, resident=ready, loading=len(self._slots) - ready,
                                bytes_loaded=self._counts["loads"] * self.expert_bytes,
                                load_seconds=self._load_seconds, **self._counts)

    def close(self) -> None:
        """Wait for prefetches in flight, release every expert, stop the
        background thread. Later calls raise RuntimeError; a second close
        does nothing."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        with self._lock:
            while any(slot.state == _LOADING for slot in self._slots.values()):
                self._changed.wait()  # a get() in another thread is loading
            for expert in sorted(self._slots):
                self._drop(expert)
            self._sync_router()

    def __enter__(self) -> ExpertCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<ExpertCache {len(self.resident())}/{self.capacity} of {self.num_experts} experts, "
                f"policy={self.policy!r}>")

    # ---- internals (the lock is held where noted) --------------------------------

    def _check_id(self, expert) -> int:
        if isinstance(expert, bool) or not isinstance(expert, numbers.Integral):
            raise TypeError(f"ExpertCache: expert must be an int id, got {type(expert).__name__}")
        if not 0 <= expert < self.num_experts:
            raise ValueError(f"ExpertCache: expert {expert} is not an id in [0, {self.num_experts})")
        return int(expert)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("ExpertCache: the cache is closed")

    def _await_ready(self, expert: int) -> _Slot | None:
        # lock held: the expert's ready slot (waiting out a load in flight),
        # or None if it is not in the cache
        waited = False
        while (slot := self._slots.get(expert)) is not None and slot.state == _LOADING:
            waited = True
            self._changed.wait()
        self._counts["waits"] += waited
        return slot

    def _use(self, slot: _Slot) -> Any:
        # lock held
        self._clock += 1
        slot.stamp = self._clock
        slot.uses += 1
        if slot.prefetched:
            slot.prefetched = False
            self._counts["prefetch_hits"] += 1
        return slot.weights

    def _claim(self, expert: int) -> _Slot:
        # lock held: the expert's ready slot, or a new loading slot reserved
        # for the caller to fill (room made by the policy). Every wait
        # releases the lock, so the expert's state is re-read after it.
        while True:
            slot = self._await_ready(expert)
            if slot is not None:
                return slot
            if len(self._slots) < self.capacity:
                slot = self._slots[expert] = _Slot(prefetched=False)
                self._held[expert] = True
                return slot
            victim = self._victim(expert)
            if victim is None:
                self._changed.wait()  # every slot is loading: wait for one to land
                self._check_open()
            else:
                self._drop(victim)

    def _victim(self, expert: int) -> int | None:
        # lock held: a ready expert to evict, sparing the last routing's experts if possible
        ready = [e for e, slot in self._slots.items() if slot.state == _READY and e != expert]
        if not ready:
            return None
        spared = set(self._routing.ids.ravel().tolist()) if self._routing is not None else set()
        candidates = [e for e in ready if e not in spared] or ready
        slots = self._slots
        if self.policy == "lru":
            return min(candidates, key=lambda e: (slots[e].stamp, e))
        if self.policy == "lfu":
            return min(candidates, key=lambda e: (slots[e].uses, slots[e].stamp, e))
        affinity = self.router.affinity()
        return min(candidates, key=lambda e: (affinity[e], slots[e].stamp, e))

    def _load(self, expert: int, slot: _Slot, *, sync: bool = True) -> Any:
        # lock NOT held; the slot is reserved. Returns the weights (marked used).
        # sync=False: the caller tells the router afterwards (apply does once).
        start = time.perf_counter()
        try:
            weights = self._load_fn(expert)
        except BaseException:
            with self._lock:
                del self._slots[expert]
                self._held[expert] = False
                self._counts["load_failures"] += 1
                self._load_seconds += time.perf_counter() - start
                self._changed.notify_all()
                if sync:
                    self._sync_router()  # a victim may have made room for it
            raise
        with self._lock:
            self._load_seconds += time.perf_counter() - start
            self._counts["loads"] += 1
            slot.weights, slot.state = weights, _READY
            self._changed.notify_all()
            if sync:
                self._sync_router()
            return weights if slot.prefetched else self._use(slot)

    def _page_in(self, expert: int) -> None:
        with self._lock:
            self._check_open()
            slot = self._claim(expert)
            if slot.state == _READY:
                self._use(slot)  # a prefetch landed in time, or another thread loaded it
                return
            self._counts["page_ins"] += 1
        self._load(expert, slot, sync=False)

    def _evict(self, expert: int) -> None:
        # lock held
        self._await_ready(expert)
        if expert in self._slots:
            self._drop(expert)

    def _drop(self, expert: int) -> None:
        # lock held; the slot is ready
        slot = self._slots.pop(expert)
        self._held[expert] = False
        self._counts["evictions"] += not self._closed
        self._changed.notify_all()
        if self._release_fn is not None:
            self._release_fn(expert, slot.weights)

    def _start_prefetch(self, expert: int) -> None:
        # lock held: never evicts (the router's plan made the room explicitly)
        if self._executor is None or self._closed or expert in self._slots:
            return
        if len(self._slots) >= self.capacity:
            self._counts["prefetches_skipped"] += 1
            return
        slot = _Slot(prefetched=True)
        self._slots[expert] = slot
        self._held[expert] = True
        self._counts["prefetches"] += 1
        self._executor.submit(self._prefetch, expert, slot)

    def _prefetch(self, expert: int, slot: _Slot) -> None:
        # background thread
        try:
            self._load(expert, slot)
        except BaseException as exc:  # recorded, not lost: a later get() retries and raises
            with self._lock:
                self._counts["prefetch_failures"] += 1
                self.last_prefetch_error = exc

    def _sync_router(self) -> None:
        # lock held
        if self.router is not None:
            self.router.set_resident(self._held)
