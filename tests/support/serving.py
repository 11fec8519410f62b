"""Running a server in this process (a thread) on a free 127.0.0.1 port."""

from __future__ import annotations

import contextlib
import threading
import time

import httpx

from edgecore.engine import Engine
from edgecore.serve.server import EdgecoreServer, bind


def paged_loader(model, pages: int, page_tokens: int = 4, **options):
    """A loader for the server's engine thread: `model` with a paged KV
    cache of `pages` pages of `page_tokens` tokens."""
    return lambda: Engine(model, kv_pages=pages, page_tokens=page_tokens, **options)


@contextlib.contextmanager
def serving(load, model_id: str = "demo", wait_ready: bool = True, **options):
    sock = bind("127.0.0.1", 0)
    server = EdgecoreServer(load, model_id, sock, **options)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.port}"
    try:
        if wait_ready:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(url + "/health", timeout=5).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if server.loop.status == "failed":
                    raise RuntimeError(f"the model failed to load: {server.loop.error}")
                if time.monotonic() > deadline:
                    raise TimeoutError("the server did not become ready in 120 s")
                time.sleep(0.05)
        yield server, url
    finally:
        server.stop()
        thread.join(60)
        assert not thread.is_alive(), "the server thread did not stop"



def wait_for(predicate, seconds: float = 10.0, what: str = "timed out") -> None:
    """Poll predicate() every 10 ms until true; fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)

def metric(url: str, name: str) -> float:
    """One sample of /metrics by its full name (with labels, if any)."""
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise KeyError(name)


class Wrapped:
    """An engine whose step first calls ``before_step()`` (to slow it down or
    make it fail); everything else is the engine's."""

    def __init__(self, engine, before_step):
        self.__dict__.update(_engine=engine, _before=before_step)

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def step(self, items):
        self._before()
        return self._engine.step(items)
