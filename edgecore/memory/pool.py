"""MemoryPool: aligned NumPy buffers under a hard byte budget.

Every byte the pool holds is counted against the budget: buffers in use,
free buffers kept for reuse (evicted, oldest first, when a request needs their room), alignment
and size-class slack, and reservations for memory held elsewhere (mapped
weights). The check-and-reserve is one step under a lock, so threads cannot
jointly overshoot.

A buffer returns to the free cache only when nothing references its memory
any more: ``release()`` drops the guard's reference, and the buffer is
recycled once the last array or view over it is garbage collected. An array
kept after its guard was released therefore stays valid and is never handed
to someone else (it is reported as "lingering" meanwhile). The mechanism:
every allocation is a fresh "lease" array created with ``np.frombuffer``
over the buffer's memory; NumPy views of it keep the lease as their base,
and a ``weakref.finalize`` on the lease reports when the last one is gone.
"""

from __future__ import annotations

import collections
import math
import mmap
import threading
import weakref
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import DTypeLike

from edgecore.memory.sizes import format_size, parse_size

ALIGNMENT = 64  # bytes: a cache line, and the widest vector register (AVX-512)
# Buffers of at least this size get their own anonymous mapping, so freeing
# one returns its pages to the OS at once (malloc may keep a freed block in
# its heap, and the process's RSS would not go down).
MAPPED_THRESHOLD = 64 * 1024
CLASSES_PER_DOUBLING = 8  # a power of two; a request wastes less than 1/8 of its size


class MemoryBudgetError(MemoryError):
    """A request that does not fit in the pool's budget. ``requested`` (bytes
    asked), ``needed`` (with size-class and alignment slack), ``free``,
    ``budget`` and ``holders`` (label -> bytes) are attributes."""

    def __init__(self, label: str, requested: int, needed: int, free: int, budget: int,
                 holders: dict[str, int]):
        self.label = label
        self.requested = requested
        self.needed = needed
        self.free = free
        self.budget = budget
        self.holders = holders
        held = ", ".join(f"{name} {format_size(n)}" for name, n in holders.items()) or "nothing"
        slack = f" ({format_size(needed)} with size-class slack)" if needed != requested else ""
        super().__init__(f"{label!r} asked for {format_size(requested)}{slack} but only {format_size(free)} "
                         f"of the {format_size(budget)} budget is free; held: {held}")


def size_class(nbytes: int) -> int:
    """Bytes of buffer set aside for a request of ``nbytes``: a multiple of
    64, with 8 classes per power of two (so less than 1/8 is wasted), and
    whole pages from MAPPED_THRESHOLD up."""
    if nbytes <= ALIGNMENT:
        return ALIGNMENT
    # 2**(b-1) < nbytes <= 2**b: split that doubling into CLASSES_PER_DOUBLING steps
    granule = max(ALIGNMENT, 1 << ((nbytes - 1).bit_length() - CLASSES_PER_DOUBLING.bit_length()))
    size = -(-nbytes // granule) * granule
    if size >= MAPPED_THRESHOLD:
        size = -(-size // mmap.PAGESIZE) * mmap.PAGESIZE
    return size


def held_bytes(nbytes: int) -> int:
    """What one buffer of ``nbytes`` counts against a pool's budget (size
    class plus alignment): what a plan must set aside per buffer."""
    return _held_for(size_class(nbytes))


def _held_for(klass: int) -> int:
    """Bytes a buffer of class ``klass`` really takes: a heap buffer is
    over-allocated by ALIGNMENT to be aligned; a mapping is page-aligned."""
    return klass if klass >= MAPPED_THRESHOLD else klass + ALIGNMENT


class _Block:
    """One buffer's memory: ``region`` is a writable, aligned memoryview of
    ``klass`` bytes over ``owner`` (an anonymous mmap or a NumPy array)."""

    __slots__ = ("klass", "held", "owner", "region", "stamp", "label", "nbytes", "released")

    def __init__(self, klass: int):
        self.klass = klass
        self.held = _held_for(klass)
        if klass >= MAPPED_THRESHOLD:
            self.owner: mmap.mmap | np.ndarray = mmap.mmap(-1, klass)
            self.region = memoryview(self.owner)
        else:
            owner = np.empty(klass + ALIGNMENT, np.uint8)
            start = -owner.ctypes.data % ALIGNMENT
            self.owner = owner
            self.region = memoryview(owner)[start:start + klass]
        self.stamp = 0
        self.label = ""
        self.nbytes = 0
        self.released = False

    def free(self) -> None:
        # Dropping the last references unmaps (mmap) or frees (NumPy) at once.
        # No explicit release()/close(): a lease that has just died may still
        # hold its buffer export for a moment on another thread.
        self.region = self.owner = None


class PoolBuffer:
    """A buffer from :meth:`MemoryPool.allocate`. ``array`` is the ndarray;
    leaving the ``with`` block or calling :meth:`release` gives it back (the
    memory is reused once no array over it is left). Long-lived buffers (KV
    caches, weight groups) simply keep the guard and release it later."""

    __slots__ = ("_array", "label", "nbytes", "held", "_block", "__weakref__")

    def __init__(self, array: np.ndarray, block: _Block):
        self._array: np.ndarray | None = array
        self._block = block
        self.label = block.label
        self.nbytes = block.nbytes
        self.held = block.held

    @property
    def array(self) -> np.ndarray:
        if self._array is None:
            raise ValueError(f"pool buffer {self.label!r} was released")
        return self._array

    @property
    def released(self) -> bool:
        return self._array is None

    def release(self) -> None:
        """Give the buffer back (a second call does nothing)."""
        if self._array is not None:
            self._block.released = True
            self._array = None

    def __enter__(self) -> PoolBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "released" if self._array is None else "live"
        return f"<PoolBuffer {self.label!r} {format_size(self.nbytes)} {state}>"


class _Held:
    """The accounting record of a reservation (kept by the pool, so that the
    Reservation object itself can be garbage collected)."""

    __slots__ = ("label", "nbytes")

    def __init__(self, label: str, nbytes: int):
        self.label = label
        self.nbytes = nbytes


class Reservation:
    """Bytes held outside the pool (for example resident mapped weights),
    counted against the same budget. :meth:`resize` changes the amount
    (growing may raise MemoryBudgetError); release it, or use it as a context
    manager, when the memory is given back. A reservation that is garbage
    collected unreleased is released then."""

    def __init__(self, pool: MemoryPool, record: _Held):
        self._pool = pool
        self._record = record
        # collected unreleased: queued, and settled by the pool's next call (a
        # finalizer may run inside the pool's own locked section, via the GC)
        self._finalizer = weakref.finalize(self, pool._dropped.append, record)
        self._finalizer.atexit = False

    @property
    def label(self) -> str:
        return self._record.label

    @property
    def nbytes(self) -> int:
        return self._record.nbytes

    @property
    def released(self) -> bool:
        return not self._finalizer.alive

    def resize(self, nbytes: int) -> None:
        """Hold ``nbytes`` from now on; MemoryBudgetError (and no change) if
        the growth does not fit."""
        if self.released:
            raise ValueError(f"reservation {self.label!r} was released")
        self._pool._resize(self._record, nbytes)

    def release(self) -> None:
        """Give the bytes back (a second call does nothing)."""
        if self._finalizer.detach() is not None:
            with self._pool._lock:
                self._pool._unreserve(self._record)

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "released" if self.released else "held"
        return f"<Reservation {self.label!r} {format_size(self.nbytes)} {state}>"


@dataclass(frozen=True)
class PoolStats:
    """A consistent snapshot of a pool's accounting (bytes unless noted).

    ``held = live + cached + reserved`` is what counts against ``budget``;
    ``peak`` is the highest ``held`` ever reached. ``waste`` is the part of
    ``live`` beyond what was asked (size classes, alignment); ``lingering``
    the part of ``live`` whose guards were released while arrays over them
    were still referenced. ``hits``/``misses`` count allocations served
    from the cache or by new memory; ``refusals`` MemoryBudgetErrors.
    """

    budget: int | None
    held: int
    live: int
    cached: int
    reserved: int
    waste: int
    lingering: int
    peak: int
    hits: int
    misses: int
    refusals: int
    evictions: int
    by_label: dict[str, int] = field(default_factory=dict)

    @property
    def free(self) -> int | None:
        return None if self.budget is None else self.budget - self.held


class MemoryPool:
    """Aligned NumPy buffers and reservations under one byte budget.

    ``budget`` is bytes or a size string (``"512M"``); None means unlimited
    (still accounted). ``cache_limit`` bounds the bytes of free buffers kept
    for reuse; by default a budgeted pool keeps as many as fit in the budget
    (evicting them when a request needs their room), and an unlimited pool no more
    than its peak of live bytes.
    """

    def __init__(self, budget: int | str | None = None, *, cache_limit: int | str | None = None):
        self.budget = None if budget is None else parse_size(budget)
        self.cache_limit = None if cache_limit is None else parse_size(cache_limit)
        self._lock = threading.Lock()
        self._returned: collections.deque[_Block] = collections.deque()  # leases that died
        self._dropped: collections.deque[_Held] = collections.deque()  # reservations collected unreleased
        self._free: dict[int, list[_Block]] = {}  # class -> cached blocks, oldest first
        self._leased: dict[int, _Block] = {}  # id(block) -> block with a live lease
        self._reservations: dict[int, _Held] = {}
        self._held = self._cached = self._reserved = self._live = 0
        self._peak = self._peak_live = 0
        self._hits = self._misses = self._refusals = self._evictions = 0
        self._clock = 0

    # ---- public API -----------------------------------------------------------

    def allocate(self, shape: int | tuple[int, ...], dtype: DTypeLike = np.float32, *,
                 label: str = "buffer", zero: bool = False) -> PoolBuffer:
        """A 64-byte-aligned, C-contiguous array of ``shape`` and ``dtype``
        (uninitialised unless ``zero``), wrapped in a guard. Raises
        MemoryBudgetError when it does not fit even after evicting every
        cached free buffer."""
        dtype = np.dtype(dtype)
        if dtype.hasobject:
            raise TypeError(f"allocate: dtype {dtype} holds Python objects; the pool holds raw memory only")
        shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(int(d) for d in shape)
        if any(d < 0 for d in shape):
            raise ValueError(f"allocate: shape {shape} has a negative dimension")
        nbytes = math.prod(shape) * dtype.itemsize
        block = self._take(size_class(nbytes), nbytes, label)
        lease = np.frombuffer(block.region, np.uint8, count=nbytes)
        array = lease.view(dtype).reshape(shape)
        if zero:
            array.fill(0)
        finalizer = weakref.finalize(lease, self._returned.append, block)
        finalizer.atexit = False
        return PoolBuffer(array, block)

    def reserve(self, nbytes: int, label: str) -> Reservation:
        """Count ``nbytes`` held outside the pool against the budget."""
        if nbytes < 0:
            raise ValueError(f"reserve: nbytes must be >= 0, got {nbytes}")
        with self._lock:
            self._drain()
            self._make_room(nbytes, nbytes, label)
            record = _Held(label, nbytes)
            self._reservations[id(record)] = record
            self._reserved += nbytes
            self._grow(nbytes)
        return Reservation(self, record)

    def trim(self) -> int:
        """Free every cached buffer; returns the bytes given back."""
        with self._lock:
            self._drain()
            before = self._cached
            self._evict(before)
            return before

    def stats(self) -> PoolStats:
        """A snapshot of the accounting."""
        with self._lock:
            self._drain()
            by_label: dict[str, int] = collections.Counter()
            waste = lingering = 0
            for block in self._leased.values():
                by_label[block.label] += block.held
                waste += block.held - block.nbytes
                if block.released:
                    lingering += block.held
            for reservation in self._reservations.values():
                by_label[reservation.label] += reservation.nbytes
            return PoolStats(self.budget, self._held, self._live, self._cached, self._reserved, waste,
                             lingering, self._peak, self._hits, self._misses, self._refusals,
                             self._evictions, dict(by_label))

    @property
    def available(self) -> int | None:
        """Bytes a request could still get (free plus evictable cache);
        None when unlimited."""
        with self._lock:
            self._drain()
            return None if self.budget is None else self.budget - self._held + self._cached

    def __repr__(self) -> str:
        s = self.stats()
        budget = "unlimited" if s.budget is None else format_size(s.budget)
        return (f"<MemoryPool budget={budget} held={format_size(s.held)} live={format_size(s.live)} "
                f"cached={format_size(s.cached)} reserved={format_size(s.reserved)}>")

    # ---- internals (the lock is held where noted) -------------------------------

    def _take(self, klass: int, nbytes: int, label: str) -> _Block:
        with self._lock:
            self._drain()
            stack = self._free.get(klass)
            if stack:
                block = stack.pop()
                self._cached -= block.held
                self._hits += 1
                return self._lease(block, nbytes, label)
            held = _held_for(klass)
            self._make_room(nbytes, held, label)
            self._misses += 1
            self._grow(held)
            self._live += held  # counted now, so concurrent requests see it
        try:
            block = _Block(klass)
        except (MemoryError, OSError) as exc:
            with self._lock:
                self._held -= held
                self._live -= held
            raise MemoryError(f"{label!r}: the OS refused {format_size(held)} ({exc})") from exc
        with self._lock:
            self._live -= held  # _lease adds it back
            return self._lease(block, nbytes, label)

    def _lease(self, block: _Block, nbytes: int, label: str) -> _Block:
        # lock held
        block.label, block.nbytes, block.released = label, nbytes, False
        self._leased[id(block)] = block
        self._live += block.held
        self._peak_live = max(self._peak_live, self._live)
        return block

    def _grow(self, nbytes: int) -> None:
        # lock held
        self._held += nbytes
        self._peak = max(self._peak, self._held)

    def _make_room(self, requested: int, needed: int, label: str) -> None:
        # lock held: evict cached buffers until `needed` more bytes fit, or
        # refuse (keeping the cache: evicting it would not have helped)
        if self.budget is None:
            return
        short = self._held + needed - self.budget
        if 0 < short <= self._cached:
            self._evict(short)
        elif short > 0:
            self._refusals += 1
            raise MemoryBudgetError(label, requested, needed, self.budget - self._held, self.budget,
                                    self._holders())

    def _holders(self) -> dict[str, int]:
        # lock held
        holders: dict[str, int] = collections.Counter()
        for block in self._leased.values():
            holders[block.label] += block.held
        for reservation in self._reservations.values():
            holders[f"{reservation.label} (reserved)"] += reservation.nbytes
        if self._cached:
            holders["cached free buffers"] += self._cached
        return dict(sorted(holders.items(), key=lambda item: -item[1]))

    def _evict(self, nbytes: int) -> None:
        # lock held: free the least recently cached buffers until `nbytes` are gone
        freed = 0
        while freed < nbytes and self._cached:
            klass = min((k for k, stack in self._free.items() if stack), key=lambda k: self._free[k][0].stamp)
            block = self._free[klass].pop(0)
            self._cached -= block.held
            self._held -= block.held
            self._evictions += 1
            freed += block.held
            block.free()

    def _drain(self) -> None:
        # lock held: buffers whose last array died go to the cache
        while self._dropped:
            self._unreserve(self._dropped.popleft())
        while self._returned:
            block = self._returned.popleft()
            del self._leased[id(block)]
            self._live -= block.held
            self._clock += 1
            block.stamp = self._clock
            self._free.setdefault(block.klass, []).append(block)
            self._cached += block.held
        limit = self.cache_limit if self.cache_limit is not None else (
            self._peak_live if self.budget is None else None)
        if limit is not None and self._cached > limit:
            self._evict(self._cached - limit)

    def _resize(self, record: _Held, nbytes: int) -> None:
        if nbytes < 0:
            raise ValueError(f"resize: nbytes must be >= 0, got {nbytes}")
        with self._lock:
            self._drain()
            growth = nbytes - record.nbytes
            if growth > 0:
                self._make_room(growth, growth, record.label)
            record.nbytes = nbytes
            self._reserved += growth
            self._grow(growth)

    def _unreserve(self, record: _Held) -> None:
        # lock held
        del self._reservations[id(record)]
        self._reserved -= record.nbytes
        self._held -= record.nbytes
