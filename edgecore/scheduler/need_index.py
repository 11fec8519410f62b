"""Waiting requests indexed by how many KV pages they need.

Admission without head-of-line blocking walks the waiting requests in
priority order and admits each one that fits in the free pages. Walking is
O(queue) per tick; this index answers the same question directly: "the
most urgent waiting request that needs at most F pages" in O(log N) (N =
the largest need seen). Requests with equal need share a heap; a segment
tree over the need values keeps the most urgent heap top of every range.

Entries leave lazily: a request that stops waiting (admitted, aged) keeps its
heap entry until it surfaces, and is dropped then.

Entries are flat tuples, ``(priority, arrival_tick, id, x)``, rather than
``(key, x)``: comparing nested tuples walks the inner one twice (once for
equality, once for order), and these comparisons are most of the index's
work. Ids are unique, so ``x`` is never compared.
"""

from __future__ import annotations

import heapq
import math

from .state import WAITING, RequestState

_NONE = (math.inf,)  # sorts after every (priority, arrival_tick, id, need) entry


class NeedIndex:
    """Most urgent waiting request whose page need fits a limit."""

    __slots__ = ("_size", "_tree", "_heaps", "_largest")

    def __init__(self, max_need: int = 1):
        """``max_need``: the largest need expected (the tree grows past it if needed)."""
        self._size = 1
        # node -> (priority, arrival_tick, id, need) of the most urgent live
        # heap top below it; leaves are needs 0 .. size-1
        self._tree: list[tuple] = []
        self._heaps: dict[int, list[tuple]] = {}
        self._largest = 0  # the largest need ever pushed
        self._grow(max_need)

    def push(self, state: RequestState) -> None:
        """Index a request that has just started waiting (``state.need`` pages)."""
        need = state.need
        if need >= self._size:
            self._grow(need)
            self._largest = need
        elif need > self._largest:
            self._largest = need
        heap = self._heaps.get(need)
        if heap is None:
            heap = self._heaps[need] = []
        heapq.heappush(heap, state.key + (state,))
        if heap[0][3] is state:
            self._set_leaf(need, state.key + (need,))

    def pop_best_within(self, limit: int) -> RequestState | None:
        """Remove and return the most urgent waiting request with need <= limit."""
        if limit < 1:
            return None
        while True:
            # every need fits: the root holds the answer
            best = self._tree[1] if limit >= self._largest else self._query(limit)
            if best is _NONE:
                return None
            need = best[3]
            heap = self._heaps[need]
            state = heapq.heappop(heap)[3]
            self._refresh(need)
            if state.where == WAITING:
                return state
            # stale entry (no longer waiting): dropped, look again

    def _grow(self, need: int) -> None:
        """Make room for leaves up to ``need`` (rebuilding the tree)."""
        size = self._size
        while size <= need:
            size *= 2
        self._size = size
        tree = self._tree = [_NONE] * (2 * size)
        for n, heap in self._heaps.items():
            if heap:
                top = heap[0]
                tree[size + n] = top[:3] + (n,)
        for i in range(size - 1, 0, -1):
            left = tree[2 * i]
            right = tree[2 * i + 1]
            tree[i] = left if left < right else right

    def _refresh(self, need: int) -> None:
        """Drop stale tops of one heap and update the tree above it."""
        heap = self._heaps[need]
        while heap and heap[0][3].where != WAITING:
            heapq.heappop(heap)
        self._set_leaf(need, heap[0][:3] + (need,) if heap else _NONE)

    def _set_leaf(self, need: int, entry: tuple) -> None:
        tree = self._tree
        i = self._size + need
        tree[i] = entry
        i >>= 1
        while i:
            left = tree[2 * i]
            right = tree[2 * i + 1]
            best = left if left < right else right
            if tree[i] is best:
                break  # nothing above changes
            tree[i] = best
            i >>= 1

    def _query(self, hi: int) -> tuple:
        """Most urgent entry over needs 1..hi (inclusive)."""
        tree = self._tree
        best = _NONE
        lo = self._size + 1
        hi = self._size + min(hi, self._size - 1) + 1
        while lo < hi:
            if lo & 1:
                if tree[lo] < best:
                    best = tree[lo]
                lo += 1
            if hi & 1:
                hi -= 1
                if tree[hi] < best:
                    best = tree[hi]
            lo >>= 1
            hi >>= 1
        return best
