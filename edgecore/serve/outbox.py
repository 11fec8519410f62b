"""Events from the engine thread to the HTTP side, handed over once per tick.

Each token a step samples is an event for its request's asyncio queue. Handing
each one to the event loop on its own (``call_soon_threadsafe`` per token)
wakes the loop once per request per tick, and every wakeup lets the HTTP
thread take the GIL between the engine thread's sampling of one request and
the next. The engine loop instead collects a tick's events here and calls
``flush`` when the tick ends (and after commands, and at shutdown): one
wakeup per tick, delivered in order, while the next step computes with the
GIL released. A closed event loop (the server shutting down) drops its
events: nobody is listening.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable


class Outbox:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[tuple[asyncio.AbstractEventLoop, Callable[[object], object], object]] = []

    def put(self, aio: asyncio.AbstractEventLoop, deliver: Callable[[object], object], event: object) -> None:
        """Queue ``deliver(event)`` to run on ``aio`` at the next flush."""
        with self._lock:
            self._pending.append((aio, deliver, event))

    def flush(self) -> None:
        """Hand everything queued to its event loop: one call per loop, in order."""
        with self._lock:
            pending, self._pending = self._pending, []
        by_loop: dict[asyncio.AbstractEventLoop, list] = {}
        for aio, deliver, event in pending:
            by_loop.setdefault(aio, []).append((deliver, event))
        for aio, items in by_loop.items():
            try:
                aio.call_soon_threadsafe(_deliver_all, items)
            except RuntimeError:  # the event loop has closed (shutdown): nobody is listening
                pass


def _deliver_all(items: list) -> None:
    for deliver, event in items:
        deliver(event)
