"""`edgecore serve`: an OpenAI-compatible HTTP server (needs the `serve` extra).

The port answers at once (503 while the model loads); requests go through
the continuous-batching scheduler onto the engine's batched step. SIGTERM
or Ctrl-C stops accepting, lets in-flight requests finish for
--shutdown-timeout seconds, cancels the rest and exits 0.
"""

from __future__ import annotations

from edgecore.cli import CliError
from edgecore.cli.options import RUN_OPTIONS

ENGINE_FLAGS = ("model", "memory_budget", "threads", "context", "step_tokens", "kv_dtype", "act_precision")


def register(sub) -> None:
    p = sub.add_parser("serve", help="serve a model over an OpenAI-compatible HTTP API",
                       description="Serve a model over HTTP: POST /v1/completions and /v1/chat/completions "
                                   "(streaming with stream: true), GET /v1/models, /health, /metrics (Prometheus). "
                                   "Concurrent requests are batched into one engine step; under KV pressure the "
                                   "latest admitted request is preempted and recomputed later. Install with "
                                   "pip install 'edgecore[serve]'.")
    for name in ENGINE_FLAGS:
        kind, help_text = RUN_OPTIONS[name]
        p.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, default=None, help=help_text)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 = any free port, printed)")
    p.add_argument("--max-batch", type=int, default=8, help="requests decoded together per step (default 8)")
    p.add_argument("--kv-pages", type=int, default=None,
                   help="KV cache pages (default: --max-batch full contexts); fewer pages preempt under load")
    p.add_argument("--page-tokens", type=int, default=16, help="tokens per KV page (default 16)")
    p.add_argument("--prefix-cache", type=int, default=None, metavar="TOKENS",
                   help="K/V of completed requests kept for requests that start the same way (a conversation's "
                        "next turn, a repeated system prompt), in tokens; 0 turns it off (default 1024, fewer "
                        "if the memory budget has less room)")
    p.add_argument("--max-queue", type=int, default=128,
                   help="requests waiting for admission before new ones get 429 (default 128)")
    p.add_argument("--api-key", default=None,
                   help="require 'Authorization: Bearer KEY' on the /v1 endpoints (default: no key)")
    p.add_argument("--max-body", type=int, default=1 << 20, help="largest request body in bytes (default 1 MiB)")
    p.add_argument("--shutdown-timeout", type=float, default=10.0,
                   help="seconds in-flight requests may finish after SIGTERM/SIGINT before being cancelled")
    p.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"],
                   help="Uvicorn's log level (default warning)")
    p.set_defaults(func=run)


def _check(args) -> None:
    for name in ("max_batch", "max_queue", "max_body", "page_tokens"):
        if getattr(args, name) < 1:
            raise CliError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.kv_pages is not None and args.kv_pages < 1:
        raise CliError(f"--kv-pages must be >= 1, got {args.kv_pages}")
    if args.prefix_cache is not None and args.prefix_cache < 0:
        raise CliError(f"--prefix-cache must be >= 0 tokens (0 turns it off), got {args.prefix_cache}")
    if not 0 <= args.port <= 65535:
        raise CliError(f"--port must be in 0..65535, got {args.port}")
    if not args.shutdown_timeout >= 0:
        raise CliError(f"--shutdown-timeout must be >= 0 seconds, got {args.shutdown_timeout}")
    if args.api_key is not None and not args.api_key.strip():
        raise CliError("--api-key must not be empty")


def engine_loader(args):
    """What the engine thread calls to load the model (errors end the server with one line)."""
    def load():
        from edgecore.engine import Engine
        from edgecore.engine.engine import DEFAULT_CONTEXT
        from edgecore.models import Model, ModelError

        opts = {k: getattr(args, k) for k in ("memory_budget", "threads", "context", "step_tokens")}
        for name in ("kv_dtype", "act_precision"):  # left out: the engine's default
            if getattr(args, name) is not None:
                opts[name] = getattr(args, name)
        kv_pages = args.kv_pages
        if kv_pages is None:  # every admitted request can reach the whole context without preemption
            model = Model(args.model)
            context = args.context or min(model.spec.max_positions, DEFAULT_CONTEXT)
            model.close()
            kv_pages = args.max_batch * -(-context // args.page_tokens)
        engine = Engine(args.model, kv_pages=kv_pages, page_tokens=args.page_tokens, **opts)
        if engine.tokenizer is None:
            engine.close()
            raise ModelError(f"{engine.model.name} has no tokenizer; the server needs one to read and write text")
        return engine
    return load


def run(args) -> int:
    _check(args)
    try:
        from edgecore.serve.server import EdgecoreServer, bind, serve_forever
    except ImportError as exc:
        if exc.name not in ("starlette", "uvicorn"):
            raise
        raise CliError(f"the server needs the serve extra ({exc.name} is missing): "
                       f"pip install 'edgecore[serve]'", status=1) from None
    try:
        sock = bind(args.host, args.port)
    except OSError as exc:
        raise CliError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", status=1) from None
    server = EdgecoreServer(engine_loader(args), args.model or "demo", sock, max_batch=args.max_batch,
                            max_queue=args.max_queue, api_key=args.api_key, max_body=args.max_body,
                            shutdown_timeout=args.shutdown_timeout, log_level=args.log_level,
                            prefix_cache_tokens=args.prefix_cache)
    return serve_forever(server, args.host)
