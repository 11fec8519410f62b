"""MemoryPool: alignment, size classes, caching, the budget under threads,
reservations, and what the process really holds."""

from __future__ import annotations

import gc
import mmap
import threading
from pathlib import Path

import numpy as np
import pytest

import edgecore
from edgecore.memory import MemoryBudgetError, MemoryPool, format_size, parse_size, size_class

KiB, MiB = 1024, 1 << 20


def address(array: np.ndarray) -> int:
    return array.__array_interface__["data"][0]


def vm_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def check_invariant(pool: MemoryPool) -> None:
    s = pool.stats()
    assert s.held == s.live + s.cached + s.reserved
    assert s.peak >= s.held and s.waste <= s.live and s.lingering <= s.live
    if s.budget is not None:
        assert s.peak <= s.budget


def test_top_level_exports():
    assert edgecore.MemoryPool is MemoryPool and edgecore.MemoryBudgetError is MemoryBudgetError


@pytest.mark.parametrize("shape, dtype", [
    (1, np.float32), (3, np.uint8), ((7, 9), np.float64), ((128, 257), np.float32), ((), np.int64),
    ((0, 5), np.float32), (70_000, np.uint8), ((512, 1024), np.float16), ((3, 4, 5), np.complex64),
])
def test_buffers_are_aligned_contiguous_and_writable(shape, dtype):
    pool = MemoryPool()
    with pool.allocate(shape, dtype, label="x") as buf:
        a = buf.array
        assert a.shape == (shape if isinstance(shape, tuple) else (shape,)) and a.dtype == dtype
        assert address(a) % 64 == 0
        assert a.flags.c_contiguous and a.flags.writeable and a.flags.aligned
        a[...] = 1
        assert buf.nbytes == a.nbytes
    check_invariant(pool)


def test_size_classes_bound_the_waste():
    sizes = list(range(1, 5000)) + [2**k + d for k in range(12, 31) for d in (-1, 0, 1, 2**(k - 4) + 1)]
    for n in sizes:
        c = size_class(n)
        assert c >= n and c % 64 == 0
        assert c - n < max(64, n / 8 + (mmap.PAGESIZE if n >= 60 * KiB else 0)), n
        if c >= 64 * KiB:
            assert c % mmap.PAGESIZE == 0
    assert [size_class(n) for n in (1, 64, 65, 128, 129, 1000, 4096, 4097)] == [64, 64, 128, 128, 192, 1024,
                                                                               4096, 4608]


def test_waste_is_accounted():
    pool = MemoryPool()
    buf = pool.allocate(4097, np.uint8)  # class 4608, heap buffer: +64 for alignment
    s = pool.stats()
    assert s.live == 4608 + 64 and s.waste == 4608 + 64 - 4097
    big = pool.allocate(MiB + 1, np.uint8)  # class 1 MiB + 128 KiB, its own mapping
    assert pool.stats().waste == s.waste + 128 * KiB - 1
    buf.release(), big.release()


def test_released_buffers_are_reused():
    pool = MemoryPool()
    with pool.allocate((100, 100), label="act") as buf:
        first = address(buf.array)
    with pool.allocate(9_990, np.float32, label="again") as buf:  # same size class
        assert address(buf.array) == first
    s = pool.stats()
    assert (s.hits, s.misses) == (1, 1) and s.live == 0 and s.cached == s.held > 0
    check_invariant(pool)


def test_an_array_kept_after_release_is_never_handed_out_again():
    pool = MemoryPool()
    buf = pool.allocate(1000, np.int32, label="kv")
    kept = buf.array[10:]  # a view: it keeps the buffer's memory alive
    buf.release()
    kept[:] = 7
    assert pool.stats().lingering > 0
    other = pool.allocate(1000, np.int32)
    assert not np.shares_memory(other.array, kept), "a buffer still in use was recycled"
    other.array[:] = -1
    assert (kept == 7).all()
    del kept
    gc.collect()
    s = pool.stats()
    assert s.lingering == 0 and s.cached > 0  # recycled once the last view went
    other.release()


def test_guard_protocol():
    pool = MemoryPool()
    buf = pool.allocate(10, label="scratch")
    assert not buf.released and "scratch" in repr(buf)
    buf.release()
    buf.release()  # idempotent
    assert buf.released and "released" in repr(buf)
    with pytest.raises(ValueError, match="released"):
        _ = buf.array
    with pool.allocate(5) as b:
        assert b.array.shape == (5,)
    assert b.released


def test_zero_fills_recycled_memory():
    pool = MemoryPool()
    with pool.allocate(4096, np.uint8) as buf:
        buf.array[:] = 0xAB
    with pool.allocate(4096, np.uint8, zero=True) as buf:
        assert pool.stats().hits == 1 and not buf.array.any()


def test_cached_buffers_count_and_are_evicted_before_refusing():
    pool = MemoryPool("1M")
    with pool.allocate(600 * KiB, np.uint8, label="a"):
        pass
    s = pool.stats()
    assert s.cached >= 600 * KiB and s.held == s.cached  # the cache holds memory: it counts
    with pool.allocate(700 * KiB, np.uint8, label="b"):  # fits only if the cache is evicted
        s = pool.stats()
        assert s.evictions == 1 and s.cached == 0 and s.held <= MiB
    check_invariant(pool)


def test_refusal_says_what_was_asked_what_is_free_and_who_holds_the_rest():
    pool = MemoryPool("1M")
    weights = pool.reserve(600 * KiB, "weights")
    kv = pool.allocate(200 * KiB, np.uint8, label="kv-cache")
    with pytest.raises(MemoryBudgetError) as info:
        pool.allocate(300 * KiB, np.uint8, label="activations")
    err = info.value
    assert err.requested == 300 * KiB and err.needed >= err.requested
    assert err.free == MiB - 600 * KiB - kv.held and err.budget == MiB
    assert err.holders == {"weights (reserved)": 600 * KiB, "kv-cache": kv.held}
    message = str(err)
    for fragment in ("'activations' asked for 300 KiB", f"{format_size(err.free)} of the 1.0 MiB budget",
                     "weights (reserved) 600 KiB", f"kv-cache {format_size(kv.held)}"):
        assert fragment in message, message
    assert isinstance(err, MemoryError)
    assert pool.stats().refusals == 1
    weights.release(), kv.release()


def test_reservations():
    pool = MemoryPool("1M")
    r = pool.reserve(400 * KiB, "weights")
    assert pool.stats().reserved == 400 * KiB and pool.available == 624 * KiB
    r.resize(900 * KiB)
    with pytest.raises(MemoryBudgetError):
        r.resize(2 * MiB)
    assert r.nbytes == 900 * KiB  # a refused resize changes nothing
    with pytest.raises(MemoryBudgetError):
        pool.allocate(200 * KiB, np.uint8)
    r.resize(100 * KiB)
    pool.allocate(200 * KiB, np.uint8).release()
    r.release()
    r.release()
    assert r.released and pool.stats().reserved == 0
    with pytest.raises(ValueError, match="released"):
        r.resize(1)
    with pool.reserve(0, "growing") as grow:
        grow.resize(10)
        assert pool.stats().by_label["growing"] == 10
    assert pool.stats().reserved == 0
    with pytest.raises(ValueError):
        pool.reserve(-1, "negative")


def test_a_forgotten_reservation_is_released_when_collected():
    pool = MemoryPool("1M")
    pool.reserve(512 * KiB, "forgotten")
    gc.collect()
    assert pool.stats().reserved == 0 and pool.stats().held == 0


def test_unlimited_pool_is_accounted_and_its_cache_bounded_by_its_peak():
    pool = MemoryPool()
    a = pool.allocate(MiB, np.uint8)
    b = pool.allocate(2 * MiB, np.uint8)
    s = pool.stats()
    assert s.budget is None and s.free is None and pool.available is None
    assert s.live == s.peak == a.held + b.held
    a.release(), b.release()
    # sizes never seen together: the cache never exceeds the peak of live bytes
    for n in (3 * MiB, 4 * MiB, 5 * MiB):
        pool.allocate(n, np.uint8).release()
        s = pool.stats()
        assert s.cached <= max(s.peak, 0) and s.cached <= 6 * MiB


def test_cache_limit_and_trim():
    pool = MemoryPool("64M", cache_limit="1M")
    for n in (200 * KiB, 300 * KiB, 400 * KiB, 500 * KiB):
        pool.allocate(n, np.uint8).release()
    assert pool.stats().cached <= MiB
    assert pool.trim() > 0
    assert pool.stats().cached == 0 and pool.stats().held == 0


def test_bad_requests():
    pool = MemoryPool()
    with pytest.raises(ValueError, match="negative"):
        pool.allocate((3, -1))
    with pytest.raises(TypeError, match="Python objects"):
        pool.allocate(3, object)
    with pytest.raises(ValueError, match="invalid size"):
        MemoryPool("lots")


def test_eight_threads_never_exceed_the_budget():
    budget = parse_size("8M")
    pool = MemoryPool(budget)
    sizes = [1 * KiB, 3 * KiB, 60 * KiB, 100 * KiB, 700 * KiB, 1500 * KiB]
    lock = threading.Lock()
    state = {"outstanding": 0, "max": 0, "refused": 0, "served": 0}
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        rng = np.random.default_rng(seed)
        held: list[tuple[object, int]] = []
        try:
            for step in range(300):
                if held and rng.random() < 0.5:
                    buf, token = held.pop(int(rng.integers(len(held))))
                    assert (buf.array == token).all(), "a live buffer was overwritten: handed out twice"
                    with lock:
                        state["outstanding"] -= buf.nbytes
                    buf.release()
                else:
                    n = int(rng.choice(sizes))
                    try:
                        buf = pool.allocate(n, np.uint8, label=f"thread{seed}")
                    except MemoryBudgetError:
                        with lock:
                            state["refused"] += 1
                        continue
                    with lock:
                        state["outstanding"] += n
                        state["max"] = max(state["max"], state["outstanding"])
                        state["served"] += 1
                    token = (seed * 31 + step) % 251
                    buf.array[:] = token
                    held.append((buf, token))
            for buf, token in held:
                assert (buf.array == token).all()
                with lock:
                    state["outstanding"] -= buf.nbytes
                buf.release()
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    s = pool.stats()
    assert state["max"] <= budget, "threads held more than the budget at once"
    assert s.peak <= budget
    assert state["refused"] > 0 and state["served"] > 0, "the test must exercise refusals and grants"
    assert s.refusals == state["refused"] and s.live == 0
    assert s.hits > 0 and s.evictions > 0, "the test must exercise reuse and eviction"
    check_invariant(pool)


def test_concurrent_requests_cannot_jointly_overshoot():
    pool = MemoryPool("1M")
    barrier = threading.Barrier(8)
    granted = []

    def ask() -> None:
        barrier.wait()
        try:
            granted.append(pool.allocate(600 * KiB, np.uint8))
        except MemoryBudgetError:
            pass

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(granted) == 1 and pool.stats().refusals == 7


def test_the_budget_bounds_real_rss_and_freed_memory_goes_back():
    pool = MemoryPool("64M")
    gc.collect()
    before = vm_rss()
    held = []
    with pytest.raises(MemoryBudgetError):
        while True:
            buf = pool.allocate(4 * MiB, np.uint8)
            buf.array[:] = 1  # touch every page
            held.append(buf)
    grown = vm_rss() - before
    assert 56 * MiB <= grown <= 64 * MiB + 4 * MiB, grown
    for buf in held:
        buf.release()
    del held, buf
    assert pool.trim() >= 56 * MiB
    assert vm_rss() - before < 8 * MiB, "buffers of 64 KiB and more are unmapped when freed"


def test_a_hopeless_request_does_not_empty_the_cache():
    pool = MemoryPool("1M")
    pool.allocate(300 * KiB, np.uint8).release()
    cached = pool.stats().cached
    with pytest.raises(MemoryBudgetError) as info:
        pool.allocate(2 * MiB, np.uint8)
    assert "cached free buffers" in str(info.value)
    s = pool.stats()
    assert s.cached == cached and s.evictions == 0
