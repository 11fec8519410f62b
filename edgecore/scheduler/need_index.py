"""Waiting requests indexed by how many KV pages they need.

Admission without head-of-line blocking walks the waiting requests in
priority order and admits each one that fits in the free pages. Walking is
O(queue) per tick; this index answers the same question directly: "the
most urgent waiting request that needs at most F pages" in O(log P) (P =
pages in the cache). Requests with equal need share a heap; a segment tree
over the need values keeps the most urgent heap top of every range.

Entries leave lazily: a request that stops waiting (admitted, aged) keeps its
heap entry until it surfaces, and is dropped then.
"""

from __future__ import annotations

import heapq
import math

from .state import WAITING, RequestState

_NONE = ((math.inf,), 0)  # sorts after every (key, need) entry


class NeedIndex:
    """Most urgent waiting request whose page need fits a limit."""

    __slots__ = ("_size", "_tree", "_heaps")

    def __init__(self, max_need: int):
        size = 1
        while size <= max_need:
            size *= 2
        self._size = size
        # node -> (key, need) of the most urgent live heap top below it
        self._tree: list[tuple] = [_NONE] * (2 * size)
        self._heaps: dict[int, list[tuple]] = {}

    def push(self, state: RequestState) -> None:
        """Index a request that has just started waiting (``state.need`` pages)."""
        need = state.need
        heap = self._heaps.setdefault(need, [])
        heapq.heappush(heap, (state.key, state))
        if heap[0][1] is state:
            self._set_leaf(need, (state.key, need))

    def pop_best_within(self, limit: int) -> RequestState | None:
        """Remove and return the most urgent waiting request with need <= limit."""
        if limit < 1:
            return None
        hi = min(limit, self._size - 1)
        while True:
            key, need = self._query(hi)
            if need == 0:
                return None
            heap = self._heaps[need]
            state = heapq.heappop(heap)[1]
            self._refresh(need)
            if state.where == WAITING:
                return state
            # stale entry (no longer waiting): dropped, look again

    def _refresh(self, need: int) -> None:
        """Drop stale tops of one heap and update the tree above it."""
        heap = self._heaps[need]
        while heap and heap[0][1].where != WAITING:
            heapq.heappop(heap)
        self._set_leaf(need, (heap[0][0], need) if heap else _NONE)

    def _set_leaf(self, need: int, entry: tuple) -> None:
        tree = self._tree
        i = self._size + need
        tree[i] = entry
        i >>= 1
        while i:
            left = tree[2 * i]
            right = tree[2 * i + 1]
            best = left if left < right else right
            if tree[i] == best:
                break  # nothing above changes
            tree[i] = best
            i >>= 1

    def _query(self, hi: int) -> tuple:
        """Most urgent entry over needs 1..hi (inclusive)."""
        tree = self._tree
        best = _NONE
        lo = self._size + 1
        hi = self._size + hi + 1
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
