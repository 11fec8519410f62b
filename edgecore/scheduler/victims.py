"""Which active request to preempt: the one last in admission order.

The victim is the active request with the highest ``(priority,
arrival_tick, id)`` key. Scanning every active request for it costs a key
comparison per request on every preemption, and on_demand preempts in
bursts. ``TopKeys`` answers instead from a few requests it keeps sorted,
at the price of one comparison when a request is admitted.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left
from collections.abc import Iterable
from operator import attrgetter

from .state import RequestState

_key_of = attrgetter("key")


class TopKeys:
    """The active request with the highest key, without a scan per question.

    Keeps ``top``, up to ``size`` active requests sorted by key, such that
    every active request not in ``top`` has a lower key than every request in
    it. A newly active request joins ``top`` only if it beats its lowest; a
    request that stops being active leaves it. When ``top`` runs empty it is
    refilled from all active requests.
    """

    __slots__ = ("_size", "_keys", "_states", "_members")

    def __init__(self, size: int = 16):
        self._size = size
        self._keys: list[tuple] = []  # ascending
        self._states: list[RequestState] = []  # alongside _keys
        self._members: set[RequestState] = set()

    def add(self, states: Iterable[RequestState]) -> None:
        """``states`` became active."""
        keys = self._keys
        for state in states:
            # with `top` empty nothing is known about the others: left to refill
            if keys and state.key > keys[0]:
                at = bisect_left(keys, state.key)
                keys.insert(at, state.key)
                self._states.insert(at, state)
                self._members.add(state)
                if len(keys) > self._size:
                    # the lowest of `top` is still below all the others in it
                    del keys[0]
                    self._members.discard(self._states.pop(0))

    def discard(self, states: Iterable[RequestState]) -> None:
        """``states`` are no longer active."""
        members = self._members
        for state in states:
            if state in members:
                members.remove(state)
                at = bisect_left(self._keys, state.key)
                del self._keys[at]
                del self._states[at]

    def highest(self, active: Iterable[RequestState]) -> RequestState:
        """The request with the highest key; ``active`` must be every active
        request (read only to refill ``top``)."""
        if not self._keys:
            states = heapq.nlargest(self._size, active, key=_key_of)
            if not states:
                raise ValueError("no active request")
            states.reverse()
            self._states = states
            self._keys = [state.key for state in states]
            self._members = set(states)
        return self._states[-1]
