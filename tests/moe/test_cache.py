"""ExpertCache with instrumented fake loaders: policies on hand-built
sequences, capacity at every instant, router plans carried out, prefetch on
the background thread, failing loads, concurrency, and a real MemoryPool
budget."""

import threading
import time
from collections import Counter

import numpy as np
import pytest

from edgecore.memory import MemoryBudgetError, MemoryPool
from edgecore.moe import ExpertCache, MemoryAwareRouter, PooledExpertLoader

F32 = np.float32


class LoadError(RuntimeError):
    pass


class FakeLoader:
    """Counts loads and releases, tracks what is held (from the start of a
    load to its release) and fails or blocks on request."""

    def __init__(self, delay=0.0):
        self.lock = threading.Lock()
        self.live: set[int] = set()
        self.max_live = 0
        self.calls: Counter = Counter()
        self.threads: list[tuple[int, str]] = []
        self.released: list[int] = []
        self.fail: set[int] = set()
        self.gates: dict[int, threading.Event] = {}
        self.delay = delay

    def load(self, expert):
        with self.lock:
            assert expert not in self.live, f"expert {expert} loaded while already held"
            self.live.add(expert)
            self.max_live = max(self.max_live, len(self.live))
            self.calls[expert] += 1
            self.threads.append((expert, threading.current_thread().name))
        gate = self.gates.get(expert)
        if gate is not None:
            assert gate.wait(10), "test gate never opened"
        if self.delay:
            time.sleep(self.delay)
        if expert in self.fail:
            with self.lock:
                self.live.discard(expert)
            raise LoadError(f"cannot load expert {expert}")
        return np.full(3, expert, F32)

    def release(self, expert, weights):
        with self.lock:
            assert expert in self.live and weights[0] == expert
            self.live.remove(expert)
            self.released.append(expert)


def one_hot(e, n):
    logits = np.full(n, -1.0, F32)
    logits[e] = 1.0
    return logits


def cache_for(loader, **kw):
    kw.setdefault("expert_bytes", 100)
    return ExpertCache(kw.pop("num_experts", 4), load=loader.load, release=loader.release, **kw)


def test_lru_hits_misses_and_victim():
    loader = FakeLoader()
    with cache_for(loader, capacity_experts=2, policy="lru") as cache:
        w0 = cache.get(0)
        assert w0.tolist() == [0, 0, 0]
        cache.get(1)
        assert cache.get(0) is w0  # hit: the same weights, not a reload
        cache.get(2)  # evicts 1, the least recently used
        assert loader.released == [1] and cache.resident() == [0, 2]
        m = cache.metrics()
        assert (m.requests, m.hits, m.misses, m.loads, m.evictions, m.bytes_loaded) == (4, 1, 3, 3, 1, 300)
        assert m.hit_rate == 0.25 and m.resident == 2 and m.loading == 0
        assert cache.resident_mask().tolist() == [True, False, True, False]
    assert loader.live == set() and sorted(loader.released) == [0, 1, 2]


def test_lfu_victim():
    loader = FakeLoader()
    with cache_for(loader, capacity_experts=2, policy="lfu") as cache:
        for e in (0, 0, 0, 1):
            cache.get(e)
        cache.get(2)  # 1 has fewer uses than 0 (LRU would pick 0)
        assert loader.released == [1]
        cache.get(3)  # 0 used 3 times, 2 once
        assert loader.released == [1, 2] and cache.resident() == [0, 3]


@pytest.mark.parametrize("decay, victim", [(0.5, 0), (0.9, 1)])
def test_affinity_victim_follows_router_affinity(decay, victim):
    # routes 0,0,0,1,2 with boost 0.3: at decay 0.5 expert 0's affinity has
    # fallen below expert 1's (0.131 vs 0.15); at 0.9 it is still higher
    loader = FakeLoader()
    router = MemoryAwareRouter(4, 1, affinity_boost=0.3, affinity_decay=decay)
    with cache_for(loader, capacity_experts=3, policy="affinity", router=router, prefetch=False) as cache:
        for e in (0, 0, 0, 1, 2):
            routing = router.route(one_hot(e, 4))
            cache.apply(routing)
            cache.get(e)
        cache.get(3)  # not routed: the cache picks the victim, sparing 2 (the last routing's expert)
        assert loader.released == [victim]


def test_capacity_in_bytes_and_validation():
    loader = FakeLoader()
    assert cache_for(loader, capacity_bytes=250).capacity == 2
    assert cache_for(loader).capacity == 4
    assert cache_for(loader, capacity_experts=10).capacity == 4
    with pytest.raises(ValueError, match="not both"):
        cache_for(loader, capacity_bytes=250, capacity_experts=2)
    with pytest.raises(ValueError, match="holds no expert of 100 bytes"):
        cache_for(loader, capacity_bytes=99)
    with pytest.raises(ValueError, match="needs expert_bytes > 0"):
        cache_for(loader, capacity_bytes=99, expert_bytes=0)
    with pytest.raises(ValueError, match="at least one expert"):
        cache_for(loader, capacity_experts=0)
    with pytest.raises(ValueError, match="policy 'affinity' ranks experts by the router's affinity"):
        cache_for(loader, policy="affinity")
    with pytest.raises(ValueError, match="policy must be one of"):
        cache_for(loader, policy="fifo")
    with pytest.raises(ValueError, match="the router has 8 experts, the cache 4"):
        cache_for(loader, router=MemoryAwareRouter(8, 2))
    with pytest.raises(ValueError, match="below the router's top_k=2"):
        cache_for(loader, capacity_experts=1, router=MemoryAwareRouter(4, 2))
    with pytest.raises(TypeError, match="load and release must be callables"):
        ExpertCache(4, expert_bytes=1, load=None)
    cache = cache_for(loader)
    with pytest.raises(ValueError, match=r"expert 4 is not an id in \[0, 4\)"):
        cache.get(4)
    with pytest.raises(TypeError, match="expert must be an int"):
        cache.get(1.0)
    cache.close()


def test_attaching_configures_the_router():
    router = MemoryAwareRouter(8, 2, cache_bonus=0.3)
    assert router.resident_mask().all()
    cache = cache_for(FakeLoader(), num_experts=8, capacity_bytes=450, policy="lfu", router=router, prefetch=False)
    assert (router.capacity, router.policy, router.expert_bytes, router.prefetch_depth) == (4, "lfu", 100, 0)
    assert not router.resident_mask().any()  # the cache starts empty
    cache.close()


@pytest.mark.parametrize("policy", ["lru", "lfu", "affinity"])
def test_apply_carries_out_the_router_plan(policy):
    loader = FakeLoader()
    router = MemoryAwareRouter(8, 2, cache_bonus=0.3)
    rng = np.random.default_rng(0)
    state = rng.standard_normal(8)
    with cache_for(loader, num_experts=8, capacity_experts=4, policy=policy, router=router, prefetch=False) as cache:
        for _ in range(300):
            state = 0.8 * state + 0.6 * rng.standard_normal(8)
            routing = router.route(state.astype(F32))
            cache.apply(routing)
            for e in routing.ids.tolist():
                assert cache.get(e)[0] == e
            assert len(loader.live) <= 4
            np.testing.assert_array_equal(cache.resident_mask(), router.resident_mask())
        rm, cm = router.metrics(), cache.metrics()
        assert rm.misses == cm.page_ins == cm.loads and rm.evictions == cm.evictions
        assert cm.requests == cm.hits == 600 and cm.misses == 0  # every get after apply is a hit
        assert 0 < rm.misses < 600 and loader.max_live == 4
        assert cm.load_seconds > 0


def test_transient_experts_of_a_wide_batch():
    # one call activates 4 experts but only 2 fit: the plan pages in all and
    # evicts two of them again; apply preloads only what stays, get() loads
    # the rest on demand, never holding more than the capacity
    loader = FakeLoader()
    router = MemoryAwareRouter(6, 1)
    with cache_for(loader, num_experts=6, capacity_experts=2, router=router, prefetch=False) as cache:
        routing = router.route(np.stack([one_hot(e, 6) for e in (0, 1, 2, 3)]))
        assert routing.page_in.tolist() == [0, 1, 2, 3]
        transient = set(routing.page_in.tolist()) & set(routing.evict.tolist())
        assert len(transient) == 2
        cache.apply(routing)
        assert len(cache.resident()) == 2 and not transient & set(cache.resident())
        for e in cache.resident() + sorted(transient):  # what is in memory first, then the transients
            assert cache.get(e)[0] == e
        assert loader.max_live == 2 and cache.metrics().misses == 2


def prefetch_scenario(loader, **cache_kw):
    """E=4, k=1, capacity 3, LRU eviction with EMA-like affinity: after
    routes 0,0,0,0,1,2,3,3 the router suggests prefetching 0 back."""
    router = MemoryAwareRouter(4, 1, affinity_boost=0.1, prefetch_depth=1)
    cache = cache_for(loader, capacity_experts=3, policy="lru", router=router, **cache_kw)
    for e in (0, 0, 0, 0, 1, 2, 3):
        routing = router.route(one_hot(e, 4))
        assert routing.prefetch.tolist() == []
        cache.apply(routing)
        cache.get(e)
    return router, cache


def test_prefetch_runs_off_thread_and_is_a_hit():
    loader = FakeLoader()
    router, cache = prefetch_scenario(loader)
    gate = loader.gates[0] = threading.Event()
    routing = router.route(one_hot(3, 4))
    assert routing.prefetch.tolist() == [0] and routing.evict.tolist() == [1]
    cache.apply(routing)  # returns while the prefetch is blocked in the loader
    assert cache.metrics().loading == 1 and not cache.resident_mask()[0]
    assert router.resident_mask()[0]  # in flight: its slot is taken, no new load needed
    gate.set()
    deadline = time.monotonic() + 10
    while not cache.resident_mask()[0]:
        assert time.monotonic() < deadline, "prefetch never landed"
        time.sleep(0.005)
    assert loader.threads[-1][0] == 0 and loader.threads[-1][1].startswith("edgecore-prefetch")
    routing = router.route(one_hot(0, 4))
    assert routing.page_in.tolist() == []  # a router hit thanks to the prefetch
    cache.apply(routing)
    assert cache.get(0)[0] == 0
    m = cache.metrics()
    assert (m.prefetches, m.prefetch_hits, m.misses) == (1, 1, 0)
    assert loader.calls[0] == 2  # the first load, and the prefetch: never a duplicate
    cache.close()


def test_get_waits_for_a_prefetch_in_flight():
    loader = FakeLoader()
    router, cache = prefetch_scenario(loader)
    gate = loader.gates[0] = threading.Event()
    cache.apply(router.route(one_hot(3, 4)))  # prefetch of 0 starts and blocks
    routing = router.route(one_hot(0, 4))
    assert routing.page_in.tolist() == []  # in flight counts as resident: no second load is planned
    cache.apply(routing)
    threading.Timer(0.1, gate.set).start()
    assert cache.get(0)[0] == 0  # waits for the prefetch instead of loading again
    m = cache.metrics()
    assert m.waits == 1 and m.prefetch_hits == 1 and m.misses == 0 and loader.calls[0] == 2
    cache.close()


def test_failing_load_propagates_and_leaves_the_cache_consistent():
    loader = FakeLoader()
    loader.fail.add(2)
    router = MemoryAwareRouter(4, 1)
    with cache_for(loader, capacity_experts=2, router=router, prefetch=False) as cache:
        for e in (0, 1):
            cache.apply(router.route(one_hot(e, 4)))
        routing = router.route(one_hot(2, 4))
        assert routing.page_in.tolist() == [2] and routing.evict.tolist() == [0]
        with pytest.raises(LoadError, match="cannot load expert 2"):
            cache.apply(routing)
        # the eviction happened, the load did not: 1 is the only expert held
        assert cache.resident() == [1] and loader.live == {1}
        np.testing.assert_array_equal(router.resident_mask(), [False, True, False, False])
        m = cache.metrics()
        assert (m.load_failures, m.loads, m.loading) == (1, 2, 0)
        with pytest.raises(LoadError):
            cache.get(2)
        loader.fail.clear()
        routing = router.route(one_hot(2, 4))
        assert routing.page_in.tolist() == [2]  # asked again, since it never arrived
        cache.apply(routing)
        assert cache.get(2)[0] == 2 and cache.resident() == [1, 2]


def test_prefetch_failure_is_recorded_and_retried_by_get():
    loader = FakeLoader()
    router, cache = prefetch_scenario(loader)
    loader.fail.add(0)
    cache.apply(router.route(one_hot(3, 4)))  # prefetch of 0 fails in the background
    deadline = time.monotonic() + 10
    while cache.metrics().prefetch_failures == 0:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    assert isinstance(cache.last_prefetch_error, LoadError)
    assert not cache.resident_mask()[0] and not router.resident_mask()[0]
    assert cache.metrics().loading == 0
    with pytest.raises(LoadError):
        cache.get(0)  # a synchronous retry raises to the caller
    loader.fail.clear()
    assert cache.get(0)[0] == 0
    cache.close()


def test_concurrent_gets_and_routing_never_exceed_capacity():
    loader = FakeLoader(delay=0.0005)
    router = MemoryAwareRouter(8, 2, cache_bonus=0.2, prefetch_depth=2, affinity_boost=0.2)
    cache = cache_for(loader, num_experts=8, capacity_experts=3, policy="lfu", router=router)
    errors = []
    barrier = threading.Barrier(4)

    def getter(seed):
        rng = np.random.default_rng(seed)
        barrier.wait()
        try:
            for e in rng.integers(0, 8, 150).tolist():
                assert cache.get(e)[0] == e
        except BaseException as exc:  # reported below
            errors.append(exc)

    def router_thread():
        rng = np.random.default_rng(99)
        barrier.wait()
        try:
            for _ in range(150):
                routing = router.route(rng.standard_normal(8).astype(F32))
                cache.apply(routing)
                for e in routing.ids.tolist():
                    assert cache.get(e)[0] == e
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=getter, args=(s,)) for s in range(3)] + [threading.Thread(target=router_thread)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cache.close()
    assert not errors, errors
    assert loader.max_live <= 3 and loader.live == set()
    m = cache.metrics()
    assert m.requests == m.hits + m.misses == 3 * 150 + 2 * 150
    assert m.loads == sum(loader.calls.values()) == len(loader.released)


def test_close_releases_everything():
    loader = FakeLoader()
    router = MemoryAwareRouter(4, 1)
    cache = cache_for(loader, capacity_experts=3, router=router)
    for e in (0, 1, 2):
        cache.get(e)
    cache.close()
    assert loader.live == set() and sorted(loader.released) == [0, 1, 2]
    assert not router.resident_mask().any()
    assert cache.metrics().evictions == 0  # closing is not evicting
    with pytest.raises(RuntimeError, match="closed"):
        cache.get(0)
    with pytest.raises(RuntimeError, match="closed"):
        cache.apply(router.route(one_hot(0, 4)))
    cache.close()


def expert_tensors(e):
    rng = np.random.default_rng(e)
    return {"w1": rng.standard_normal((32, 64)).astype(F32), "w2": rng.standard_normal((64, 32)).astype(F32),
            "w3": rng.standard_normal((32, 64)).astype(F32)}


def test_pooled_loader_holds_the_budget():
    per_expert = MemoryPool().allocate((32, 64), F32).held * 3  # what the pool really sets aside
    pool = MemoryPool(3 * per_expert)
    loader = PooledExpertLoader(pool, expert_tensors)
    router = MemoryAwareRouter(8, 2, cache_bonus=0.3)
    cache = ExpertCache(8, expert_bytes=loader.expert_bytes(0), capacity_experts=3, policy="lru",
                        load=loader.load, release=loader.release, router=router, prefetch=False)
    rng = np.random.default_rng(1)
    for _ in range(100):
        routing = router.route(rng.standard_normal(8).astype(F32))
        cache.apply(routing)
        for e in routing.ids.tolist():
            np.testing.assert_array_equal(cache.get(e)["w2"], expert_tensors(e)["w2"])
        assert loader.loaded() == cache.resident()
    assert pool.stats().peak <= 3 * per_expert
    cache.close()
    assert loader.loaded() == [] and pool.stats().live == 0


def test_pooled_loader_over_budget_raises_and_stays_consistent():
    per_expert = MemoryPool().allocate((32, 64), F32).held * 3
    pool = MemoryPool(2 * per_expert)
    loader = PooledExpertLoader(pool, expert_tensors)
    cache = ExpertCache(8, expert_bytes=loader.expert_bytes(0), capacity_experts=3, load=loader.load,
                        release=loader.release, prefetch=False)
    cache.get(0)
    cache.get(1)
    with pytest.raises(MemoryBudgetError):
        cache.get(2)  # a capacity the budget cannot back fails loudly
    assert cache.resident() == [0, 1] and loader.loaded() == [0, 1]
    assert pool.stats().live == 2 * per_expert  # the half-loaded expert gave its buffers back
    cache.close()
