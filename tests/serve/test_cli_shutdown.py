"""`edgecore serve` as a command: it binds 127.0.0.1 and reports the port,
answers the openai client, and on SIGTERM or SIGINT stops accepting, lets
in-flight requests finish (or cancels them at the --shutdown-timeout
deadline) and exits 0. Flag mistakes are one line, exit 2."""

from __future__ import annotations

import pytest

# the server is an optional extra, and its tests drive it with the openai client
for _module in ("httpx", "openai", "starlette", "uvicorn"):
    pytest.importorskip(_module, reason=f"SKIPPED LOUDLY: {_module} missing (pip install 'edgecore[serve,test]')")

import re  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import httpx  # noqa: E402
import openai  # noqa: E402

# The server runs in a fresh interpreter that imports edgecore as this one
# does (the installed package, or PYTHONPATH's build), from a neutral
# directory: `python -m` puts the working directory first on sys.path, and a
# checkout there (no compiled extension) would shadow the installed package.
NEUTRAL = tempfile.gettempdir()


def start(*flags: str) -> tuple[subprocess.Popen, str, list[str]]:
    proc = subprocess.Popen([sys.executable, "-m", "edgecore", "serve", "--port", "0", *flags], cwd=NEUTRAL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    url = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        m = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        if m:
            url = m.group(1)
        if "ready" in line:
            break
    assert url and "ready" in lines[-1], f"the server did not start: {''.join(lines)}"
    # keep draining stderr so the child never blocks on a full pipe
    threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True).start()
    return proc, url, lines


def stream(url: str, max_tokens: int, out: list, started: threading.Semaphore) -> None:
    client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=60)
    pieces, finish = [], None
    try:
        for chunk in client.completions.create(model="demo", prompt="The", max_tokens=max_tokens, temperature=0,
                                               stream=True):
            if not pieces:
                started.release()
            for c in chunk.choices:
                pieces.append(c.text)
                finish = c.finish_reason or finish
        out.append(("ok", "".join(pieces), finish))
    except (openai.APIError, httpx.HTTPError) as exc:
        out.append(("cut", "".join(pieces), type(exc).__name__))
        if not pieces:
            started.release()


def in_flight(url: str, max_tokens: int, clients: int, out: list) -> list[threading.Thread]:
    """Start streaming clients; return once each has its first chunk (or failed)."""
    started = threading.Semaphore(0)
    threads = [threading.Thread(target=stream, args=(url, max_tokens, out, started)) for _ in range(clients)]
    for t in threads:
        t.start()
    for _ in threads:
        assert started.acquire(timeout=60)
    return threads


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_in_flight_requests_finish_then_exit_0(sig):
    proc, url, lines = start("--model", "demo", "--shutdown-timeout", "30")
    try:
        out: list = []
        threads = in_flight(url, 200, 3, out)
        proc.send_signal(sig)
        for t in threads:
            t.join(60)
        assert proc.wait(60) == 0, "".join(lines)
    finally:
        proc.kill()
    assert [r[0] for r in out] == ["ok"] * 3 and all(r[2] == "length" for r in out), out
    with pytest.raises(httpx.TransportError):
        httpx.get(url + "/health", timeout=5)
    assert "stopped" in "".join(lines)


def test_deadline_cancels_what_is_left_and_exits_0():
    # max-batch 1: 24 requests wait; a 0.2 s deadline cannot finish 250 tokens each (the demo decodes
    # 250 tokens in about 60 ms on a 2-core Zen 4: eight queued ones all finished inside a 0.5 s deadline)
    proc, url, lines = start("--model", "demo", "--shutdown-timeout", "0.2", "--max-batch", "1")
    try:
        out: list = []
        threads = in_flight(url, 250, 1, out)
        threads += [threading.Thread(target=stream, args=(url, 250, out, threading.Semaphore(0)))
                    for _ in range(24)]
        for t in threads[1:]:
            t.start()
        time.sleep(0.3)  # queued behind the first
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, "".join(lines)
        assert time.monotonic() - t0 < 30
        for t in threads:
            t.join(60)
    finally:
        proc.kill()
    assert len(out) == 25 and any(r[0] == "cut" for r in out), out


@pytest.mark.parametrize("flags, message", [
    (["--max-batch", "0"], "--max-batch must be >= 1"),
    (["--kv-pages", "0"], "--kv-pages must be >= 1"),
    (["--api-key", " "], "--api-key must not be empty"),
    (["--port", "70000"], "--port must be in 0..65535"),
    (["--prefix-cache", "-1"], "--prefix-cache must be >= 0 tokens (0 turns it off)"),
])
def test_flag_mistakes_are_one_line(flags, message, capsys):
    from edgecore.cli import main

    assert main(["serve", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_model_that_does_not_load_ends_the_server_with_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "edgecore", "serve", "--model", str(tmp_path / "nothing"), "--port",
                        "0"], cwd=NEUTRAL, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "could not load the model" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_engine_flags_reach_the_engine():
    """--act-precision and --kv-dtype are the engine's (the numerical contract, the KV type); left out, its defaults."""
    import argparse

    from edgecore.cli.serve import engine_loader

    base = dict(model="demo", memory_budget=None, threads=1, context=64, step_tokens=None, kv_pages=4,
                page_tokens=16, max_batch=1)
    engine = engine_loader(argparse.Namespace(**base, kv_dtype="f32", act_precision="q8"))()
    try:
        assert engine.act_precision == "q8" and engine.kv.keys[0].dtype == "float32"
    finally:
        engine.close()
    engine = engine_loader(argparse.Namespace(**base, kv_dtype=None, act_precision=None))()
    try:
        assert engine.act_precision == "q8x2" and engine.kv.keys[0].dtype == "float16"
    finally:
        engine.close()


def test_an_unknown_act_precision_ends_the_server_with_one_line():
    r = subprocess.run([sys.executable, "-m", "edgecore", "serve", "--model", "demo", "--act-precision", "q4",
                        "--port", "0"], cwd=NEUTRAL, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "act_precision must be one of q8, q8x2; got 'q4'" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
