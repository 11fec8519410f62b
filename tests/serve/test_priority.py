"""A request's `priority` reaches the scheduler: with one slot busy, a more
urgent request that arrives later is admitted first."""

from __future__ import annotations

import pytest

# the server is an optional extra, and its tests drive it with the openai client
for _module in ("httpx", "openai", "starlette", "uvicorn"):
    pytest.importorskip(_module, reason=f"SKIPPED LOUDLY: {_module} missing (pip install 'edgecore[serve,test]')")

import threading  # noqa: E402
import time  # noqa: E402

import httpx  # noqa: E402
from support.serving import Wrapped, paged_loader, serving, wait_for  # noqa: E402


def test_more_urgent_request_is_admitted_first():
    load = paged_loader("demo", pages=64)
    with serving(lambda: Wrapped(load(), lambda: time.sleep(0.02)), max_batch=1) as (srv, url):
        body = {"model": "demo", "prompt": "The", "max_tokens": 30, "temperature": 0}
        with httpx.stream("POST", url + "/v1/completions", json={**body, "stream": True}, timeout=60) as first:
            lines = first.iter_lines()
            next(lines)
            threads = []
            for priority in (5, -1):
                t = threading.Thread(target=httpx.post, args=(url + "/v1/completions",),
                                     kwargs={"json": {**body, "priority": priority}, "timeout": 60})
                t.start()
                threads.append(t)
                wait_for(lambda: srv.loop.waiting >= len(threads))
            list(lines)
        for t in threads:
            t.join(60)
    by_priority = {s.request.priority: s for s in srv.loop.scheduler.states.values()}
    assert by_priority[-1].first_admit_tick < by_priority[5].first_admit_tick
    assert all(s.where == "completed" for s in by_priority.values())
