"""The engine thread's events reach the event loop once per flush, in order,
and nothing is delivered before the flush; a closed loop drops its events
quietly (shutdown)."""

from __future__ import annotations

import asyncio
import threading

from edgecore.serve.outbox import Outbox


def test_events_wait_for_the_flush_then_arrive_in_order_in_one_wakeup():
    aio = asyncio.new_event_loop()
    try:
        calls = []
        real = aio.call_soon_threadsafe

        def counting(fn, *args):
            calls.append(fn)
            return real(fn, *args)

        aio.call_soon_threadsafe = counting
        box, got = Outbox(), []

        def engine_thread():
            for i in range(5):
                box.put(aio, got.append, ("token", i))
            box.put(aio, got.append, ("done", "length", ""))
            assert not calls  # nothing handed over before the flush
            box.flush()
            box.flush()  # nothing left: no second wakeup

        t = threading.Thread(target=engine_thread)
        t.start()
        t.join()
        aio.run_until_complete(asyncio.sleep(0))
        assert got == [("token", i) for i in range(5)] + [("done", "length", "")]
        assert len(calls) == 1
    finally:
        aio.close()


def test_a_closed_loop_drops_its_events():
    aio = asyncio.new_event_loop()
    aio.close()
    box, got = Outbox(), []
    box.put(aio, got.append, ("token", "x"))
    box.flush()  # no RuntimeError out of the engine thread
    assert got == []
