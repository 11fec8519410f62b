"""Running the app: Uvicorn on a socket we bind, the engine thread beside it.

The socket is bound before anything loads, so the port answers at once
(503 while the model loads) and ``--port 0`` can report the port the OS
chose. Shutdown (SIGTERM or SIGINT, or ``Server.should_exit``): Uvicorn
stops accepting, lets in-flight responses finish for ``shutdown_timeout``
seconds and then cancels them (each cancelled response cancels its
request); the lifespan's end stops the engine thread, which cancels what
is left and closes the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
import time
from collections.abc import Callable

import uvicorn

from .app import DEFAULT_MAX_BODY, create_app
from .loop import FAILED, LOADING, EngineLoop
from .metrics import Metrics


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class EdgecoreServer:
    """The engine loop + app + Uvicorn server, for the CLI and the tests."""

    def __init__(self, load: Callable[[], object], model_id: str, sock: socket.socket, *, max_batch: int = 8,
                 max_queue: int = 128, api_key: str | None = None, max_body: int = DEFAULT_MAX_BODY,
                 shutdown_timeout: float = 10.0, log_level: str = "warning", prefix_cache_tokens: int | None = None):
        self.metrics = Metrics()
        self.loop = EngineLoop(load, max_batch=max_batch, max_queue=max_queue, metrics=self.metrics,
                               prefix_cache_tokens=prefix_cache_tokens)
        self.sock = sock
        # read now: a server whose model fails to load stops and closes the
        # socket, and a caller asking for the port after that must still get it
        self._port = sock.getsockname()[1]
        self.shutdown_timeout = shutdown_timeout
        app = create_app(self.loop, model_id, api_key=api_key, max_body=max_body, lifespan=self._lifespan)
        config = uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=shutdown_timeout,
                                lifespan="on", access_log=False)
        self.server = uvicorn.Server(config)

    @property
    def port(self) -> int:
        return self._port

    @contextlib.asynccontextmanager
    async def _lifespan(self, app):
        self.loop.start()
        watcher = asyncio.create_task(self._watch_loading())
        try:
            yield
        finally:
            watcher.cancel()
            # the engine thread finishes its current step, cancels the rest, closes the engine
            await asyncio.to_thread(self.loop.stop, self.shutdown_timeout + 30)

    async def _watch_loading(self) -> None:
        """A model that fails to load stops the server (the CLI says why)."""
        t0 = time.perf_counter()
        while self.loop.status == LOADING:
            await asyncio.to_thread(self.loop.loaded.wait, 0.5)
        if self.loop.status == FAILED:
            self.server.should_exit = True
        else:
            print(f"edgecore serve: ready ({time.perf_counter() - t0:.1f} s to load)", file=sys.stderr, flush=True)

    def run(self) -> None:
        """Serve until told to stop (blocks; call from the main thread for signals)."""
        self.server.run(sockets=[self.sock])

    def stop(self) -> None:
        self.server.should_exit = True


def _note_signal(signum, frame) -> None:
    """Uvicorn handles SIGTERM/SIGINT while it serves and re-raises them to
    the previous handler afterwards; this one lets the command return 0."""


def serve_forever(server: EdgecoreServer, host: str) -> int:
    previous = {sig: signal.signal(sig, _note_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(f"edgecore serve: listening on http://{host}:{server.port} (loading the model)", file=sys.stderr,
              flush=True)
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if server.loop.status == FAILED:
        print(f"edgecore serve: error: could not load the model: {server.loop.error}", file=sys.stderr)
        return 1
    print("edgecore serve: stopped", file=sys.stderr)
    return 0
