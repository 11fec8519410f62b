"""Scheduler.cancel from every state a request can be in, and a shared page
allocator: pages come back at once, the executor is told, and the others
carry on as if the cancelled request had never been there after it left."""

import pytest

from edgecore.scheduler import ON_DEMAND, PageAllocator, Request, Scheduler, SchedulerConfig, SimulatedExecutor


class Recording(SimulatedExecutor):
    def __init__(self, limits=None):
        super().__init__(limits)
        self.released = []
        self.batches = []

    def execute(self, batch):
        self.batches.append(([c.seq.id for c in batch.prefill], [s.id for s in batch.decode], list(batch.preempted)))
        return super().execute(batch)

    def release(self, request_id):
        self.released.append(request_id)


def config(**kw):
    base = dict(kv_pages=8, page_tokens=4, max_active=2, prefill_budget=8, decode_width=2, admission=ON_DEMAND,
                aging_ticks=3)
    base.update(kw)
    return SchedulerConfig(**base)


def test_cancel_active_decoding_frees_pages_now_and_tells_the_executor():
    ex = Recording()
    s = Scheduler(config(), ex)
    s.submit(Request("a", 6, 20))
    s.submit(Request("b", 3, 4))
    s.step()
    s.step()
    assert s.states["a"].where == "active" and s.pages.used == 3
    assert s.cancel("a") is True
    assert s.states["a"].where == "cancelled" and s.pages.used == 1 and ex.released == ["a"]
    s.run()
    assert s.states["b"].where == "completed" and s.states["b"].generated == 4
    assert all("a" not in prefill and "a" not in decode for prefill, decode, _ in ex.batches[2:])
    assert s.pages.used == 0 and s.done and s.cancellations == 1
    assert s.cancel("a") is False and s.cancel("b") is False


def test_cancel_while_prefilling_in_chunks():
    ex = Recording()
    s = Scheduler(config(prefill_budget=4, kv_pages=16), ex)
    s.submit(Request("long", 12, 3))
    s.step()
    assert s.states["long"].prefilled == 4
    s.cancel("long")
    assert s.pages.used == 0 and s.done


def test_cancel_waiting_aged_pending_and_requeued():
    ex = Recording()
    s = Scheduler(config(max_active=1), ex)
    s.submit(Request("first", 4, 20))
    s.submit(Request("waits", 4, 2))
    s.submit(Request("ages", 4, 2, priority=5))
    s.submit(Request("later", 4, 2, arrival_tick=100))
    for _ in range(5):
        s.step()
    assert s.states["waits"].where == "aged" or s.states["waits"].where == "waiting"
    assert s.states["later"].where == "pending"
    for rid in ("waits", "ages", "later"):
        assert s.cancel(rid)
        assert s.states[rid].where == "cancelled"
    s.run()
    assert s.states["first"].where == "completed" and s.done
    assert sorted(ex.released) == ["ages", "first", "later", "waits"]


def test_cancel_a_preempted_request():
    ex = Recording()
    # two requests that cannot both keep growing in 4 pages of 4 tokens
    s = Scheduler(config(kv_pages=4, max_active=2), ex)
    s.submit(Request("a", 4, 9))
    s.submit(Request("b", 4, 9))
    while not s.states["b"].preemptions and not s.done:
        s.step()
    assert s.states["b"].where == "requeued"
    s.cancel("b")
    s.run()
    assert s.states["a"].where == "completed" and s.states["a"].generated == 9 and s.pages.used == 0


def test_unknown_id_and_shared_allocator():
    pages = PageAllocator(8)
    s = Scheduler(config(), SimulatedExecutor(), pages)
    assert s.pages is pages
    with pytest.raises(KeyError, match="unknown request id 'x'"):
        s.cancel("x")
    with pytest.raises(ValueError, match="kv_pages = 8"):
        Scheduler(config(), SimulatedExecutor(), PageAllocator(9))
    busy = PageAllocator(8)
    busy.take(1)
    with pytest.raises(ValueError, match="1 in use"):
        Scheduler(config(), SimulatedExecutor(), busy)
