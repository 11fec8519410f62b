"""Every error status the server answers, as OpenAI-style JSON naming what
is wrong, and a server that keeps serving after each of them."""

from __future__ import annotations

import pytest

# the server is an optional extra, and its tests drive it with the openai client
for _module in ("httpx", "openai", "starlette", "uvicorn"):
    pytest.importorskip(_module, reason=f"SKIPPED LOUDLY: {_module} missing (pip install 'edgecore[serve,test]')")

import threading  # noqa: E402
import time  # noqa: E402

import httpx  # noqa: E402
import openai  # noqa: E402
from support.serving import Wrapped, metric, paged_loader, serving, wait_for  # noqa: E402


@pytest.fixture(scope="module")
def server():
    with serving(paged_loader("demo", pages=32), max_batch=2, max_body=4096) as (srv, url):
        yield srv, url


def post(url, path, body=None, content=None, headers=None):
    return httpx.post(url + path, json=body, content=content, headers=headers, timeout=60)


def error_of(response, status):
    assert response.status_code == status, response.text
    err = response.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    assert "Traceback" not in response.text
    return err


@pytest.mark.parametrize("body, param, words", [
    ({"prompt": "x"}, "model", "required"),
    ({"model": "demo"}, "prompt", "non-empty string"),
    ({"model": "demo", "prompt": ""}, "prompt", "must not be empty"),
    ({"model": "demo", "prompt": [1, "a"]}, "prompt", "token ids"),
    ({"model": "demo", "prompt": [[1, 2], [3]]}, "prompt", "batch"),
    ({"model": "demo", "prompt": [999]}, "prompt", "outside the vocabulary"),
    ({"model": "demo", "prompt": "x", "temperature": -1}, "temperature", "[0, 2]"),
    ({"model": "demo", "prompt": "x", "temperature": "hot"}, "temperature", "number"),
    ({"model": "demo", "prompt": "x", "top_p": 0}, "top_p", "(0, 1]"),
    ({"model": "demo", "prompt": "x", "top_k": -5}, "top_k", ">= 1"),
    ({"model": "demo", "prompt": "x", "max_tokens": 0}, "max_tokens", ">= 1"),
    ({"model": "demo", "prompt": "x", "max_tokens": 1.5}, "max_tokens", "integer"),
    ({"model": "demo", "prompt": "x", "max_tokens": 10_000}, "max_tokens", "tokens left"),
    ({"model": "demo", "prompt": "x" * 200}, "prompt", "no room"),
    ({"model": "demo", "prompt": "x", "seed": "s"}, "seed", "integer"),
    ({"model": "demo", "prompt": "x", "priority": 1.5}, "priority", "integer"),
    ({"model": "demo", "prompt": "x", "stop": ["a", ""]}, "stop", "non-empty"),
    ({"model": "demo", "prompt": "x", "stop": list("abcde")}, "stop", "at most 4"),
    ({"model": "demo", "prompt": "x", "n": 2}, "n", "n=1"),
    ({"model": "demo", "prompt": "x", "logprobs": 2}, "logprobs", "not supported"),
    ({"model": "demo", "prompt": "x", "stream": "yes"}, "stream", "true or false"),
    ({"model": "demo", "prompt": "x", "stream_options": {"include_usage": True}}, "stream_options", "stream: true"),
])
def test_bad_completion_fields_are_400_naming_the_field(server, body, param, words):
    _, url = server
    err = error_of(post(url, "/v1/completions", body), 400)
    assert err["param"] == param and words in err["message"], err


@pytest.mark.parametrize("body, param", [
    ({"model": "demo"}, "messages"),
    ({"model": "demo", "messages": []}, "messages"),
    ({"model": "demo", "messages": ["hi"]}, "messages[0]"),
    ({"model": "demo", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
    ({"model": "demo", "messages": [{"role": "user", "content": 3}]}, "messages[0].content"),
    ({"model": "demo", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
     "messages[0].content[0]"),
    # the demo model has no chat template
    ({"model": "demo", "messages": [{"role": "user", "content": "hi"}]}, "messages"),
])
def test_bad_chat_fields_are_400(server, body, param):
    _, url = server
    assert error_of(post(url, "/v1/chat/completions", body), 400)["param"] == param


def test_malformed_json_wrong_shape_and_bad_length(server):
    _, url = server
    assert "not valid JSON" in error_of(post(url, "/v1/completions", content=b"{nope"), 400)["message"]
    assert "not valid JSON" in error_of(post(url, "/v1/completions", content=b"\xff\xfe"), 400)["message"]
    assert "JSON object" in error_of(post(url, "/v1/completions", [1, 2]), 400)["message"]


def test_unknown_model_is_404_and_unknown_route_is_json(server):
    _, url = server
    err = error_of(post(url, "/v1/completions", {"model": "gpt-4", "prompt": "x"}), 404)
    assert err["param"] == "model" and "'demo'" in err["message"]
    error_of(httpx.get(url + "/v1/nothing"), 404)
    error_of(httpx.get(url + "/v1/completions"), 405)


def test_body_too_large_is_413(server):
    _, url = server
    err = error_of(post(url, "/v1/completions", {"model": "demo", "prompt": "x" * 5000}), 413)
    assert "4096" in err["message"]

    def chunked():  # no Content-Length: counted while reading
        for _ in range(10):
            yield b" " * 1000

    error_of(httpx.post(url + "/v1/completions", content=chunked(), timeout=60), 413)


def test_server_still_serves_after_the_errors(server):
    _, url = server
    ok = post(url, "/v1/completions", {"model": "demo", "prompt": "The", "max_tokens": 3, "temperature": 0})
    assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] == 3


def test_api_key_is_required_and_compared():
    with serving(paged_loader("demo", pages=16), api_key="s3cret") as (_, url):
        body = {"model": "demo", "prompt": "The", "max_tokens": 2}
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"},
                        {"Authorization": "Bearer s3cre"}):
            assert error_of(post(url, "/v1/completions", body, headers=headers), 401)["code"] == "invalid_api_key"
        error_of(httpx.get(url + "/v1/models"), 401)
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url + "/v1", api_key="nope", max_retries=0).models.list()
        good = openai.OpenAI(base_url=url + "/v1", api_key="s3cret", max_retries=0)
        assert good.completions.create(**body).usage.completion_tokens == 2
        assert httpx.get(url + "/health").status_code == 200  # health and metrics need no key


def test_503_while_loading_then_ready():
    gate = threading.Event()
    load = paged_loader("demo", pages=16)

    def slow_load():
        assert gate.wait(60)
        return load()

    with serving(slow_load, wait_ready=False) as (srv, url):
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(url + "/health", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert health.status_code == 503 and health.json()["status"] == "loading"
        r = post(url, "/v1/completions", {"model": "demo", "prompt": "x"})
        assert error_of(r, 503) and r.headers["retry-after"] == "1"
        gate.set()
        assert srv.loop.loaded.wait(60)
        assert httpx.get(url + "/health").status_code == 200


def test_queue_full_is_429_with_retry_after():
    load = paged_loader("demo", pages=32)
    with serving(lambda: Wrapped(load(), lambda: time.sleep(0.05)), max_batch=1, max_queue=1) as (srv, url):
        body = {"model": "demo", "prompt": "The", "max_tokens": 100, "temperature": 0, "stream": True}
        with httpx.stream("POST", url + "/v1/completions", json=body, timeout=60) as first:
            lines = first.iter_lines()  # kept: a dropped iterator closes the stream
            next(lines)  # admitted and streaming
            with httpx.stream("POST", url + "/v1/completions", json=body, timeout=60):
                wait_for(lambda: srv.loop.waiting >= 1)  # the second waits for the only slot
                r = post(url, "/v1/completions", {"model": "demo", "prompt": "x", "max_tokens": 2})
                assert error_of(r, 429)["code"] == "queue_full" and r.headers["retry-after"] == "1"
                assert metric(url, 'edgecore_rejections_total{reason="queue_full"}') == 1
        # both clients are gone; their cancellations reach the loop within a step
        # or two, and only then is there room again (posting at once races them)
        wait_for(lambda: srv.loop.waiting == 0, what="a disconnected waiting request still holds the queue")
        ok = post(url, "/v1/completions", {"model": "demo", "prompt": "x", "max_tokens": 2})
        assert ok.status_code == 200


def failing_once(engine):
    """The first step raises (an engine bug, say)."""
    calls = []

    def before_step():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("simulated step failure")

    return Wrapped(engine, before_step)


def test_a_failing_step_is_a_500_and_the_server_keeps_serving(capsys):
    load = paged_loader("demo", pages=16)
    with serving(lambda: failing_once(load())) as (_, url):
        body = {"model": "demo", "prompt": "The", "max_tokens": 4, "temperature": 0}
        err = error_of(post(url, "/v1/completions", body), 500)
        assert "simulated step failure" in err["message"]
        assert metric(url, "edgecore_kv_pages_used") == 0
        ok = post(url, "/v1/completions", body)
        assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] == 4
    assert "engine step failed" in capsys.readouterr().err


def test_a_batch_wider_than_a_step_fails_the_load_with_a_reason():
    # a step must hold every decode row plus some prefill: max_batch >= step_tokens cannot work
    with serving(paged_loader("demo", pages=16, step_tokens=4), max_batch=4, wait_ready=False) as (srv, url):
        assert srv.loop.loaded.wait(60)
        assert srv.loop.status == "failed" and "step_tokens (4) must exceed the max batch (4)" in srv.loop.error


def test_the_port_is_known_after_a_failed_load_closed_the_socket():
    """A model that fails to load stops the server, which closes its socket:
    asking for the port then (as the test above may, on a slow host) must
    not raise EBADF."""
    from edgecore.serve.server import EdgecoreServer, bind

    sock = bind("127.0.0.1", 0)
    server = EdgecoreServer(lambda: None, "demo", sock)
    port = sock.getsockname()[1]
    sock.close()
    assert server.port == port
