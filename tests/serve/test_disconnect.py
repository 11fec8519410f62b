"""A client that goes away cancels its request: the scheduler drops it and
its KV pages are free again (watched on /metrics), whether it was
streaming, waiting for a whole answer, or still queued."""

from __future__ import annotations

import pytest

# the server is an optional extra, and its tests drive it with the openai client
for _module in ("httpx", "openai", "starlette", "uvicorn"):
    pytest.importorskip(_module, reason=f"SKIPPED LOUDLY: {_module} missing (pip install 'edgecore[serve,test]')")

import time  # noqa: E402

import httpx  # noqa: E402
from support.serving import Wrapped, metric, paged_loader, serving, wait_for  # noqa: E402


def slow_demo(pages: int = 32):
    load = paged_loader("demo", pages=pages)
    return lambda: Wrapped(load(), lambda: time.sleep(0.02))


BODY = {"model": "demo", "prompt": "The list of", "max_tokens": 100, "temperature": 0}


def test_disconnect_mid_stream_frees_its_pages():
    with serving(slow_demo(), max_batch=2) as (_, url):
        with httpx.stream("POST", url + "/v1/completions", json={**BODY, "stream": True}, timeout=60) as r:
            lines = r.iter_lines()
            for _ in range(5):
                next(lines)
            assert metric(url, "edgecore_kv_pages_used") > 0
        wait_for(lambda: metric(url, 'edgecore_requests_total{outcome="cancelled"}') == 1)
        assert metric(url, "edgecore_kv_pages_used") == 0 and metric(url, "edgecore_active_sequences") == 0
        generated = metric(url, "edgecore_generated_tokens_total")
        assert generated < 100, "the request ran on after its client left"


def test_disconnect_while_waiting_for_a_whole_answer():
    with serving(slow_demo(), max_batch=2) as (_, url):
        try:
            httpx.post(url + "/v1/completions", json=BODY, timeout=0.5)
        except httpx.ReadTimeout:
            pass
        wait_for(lambda: metric(url, 'edgecore_requests_total{outcome="cancelled"}') == 1)
        assert metric(url, "edgecore_kv_pages_used") == 0


def test_disconnect_while_queued():
    with serving(slow_demo(), max_batch=1) as (srv, url):
        with httpx.stream("POST", url + "/v1/completions", json={**BODY, "stream": True}, timeout=60) as first:
            lines = first.iter_lines()
            next(lines)
            with httpx.stream("POST", url + "/v1/completions", json={**BODY, "stream": True}, timeout=60) as queued:
                wait_for(lambda: srv.loop.waiting == 1)
                del queued
            wait_for(lambda: metric(url, 'edgecore_requests_total{outcome="cancelled"}') == 1)
            assert srv.loop.waiting == 0 and metric(url, "edgecore_active_sequences") == 1
            text = "".join(lines)
        assert '"finish_reason": "length"' in text and text.endswith("[DONE]")
