"""The HTTP API: OpenAI's completions and chat completions, models, health, metrics.

Each request is checked in this order, and the first failure answers
(OpenAI's JSON error object, never a traceback): API key (401), model
loaded (503 + Retry-After), body size (413), JSON and fields (400, naming
the field), model id (404), prompt length against the context and the KV
cache (400), queue room (429 + Retry-After). Tokenizing and chat-template
rendering run in a worker thread and generation in the engine thread, so
the event loop only moves bytes.

A client that goes away (mid-stream, or while waiting for a non-streamed
answer) cancels its request: the engine thread takes it out of the
scheduler, and its pages out of the cache, before its next step.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import sys
import time
import traceback
import uuid

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from edgecore.models import ModelError

from .job import Job
from .loop import FAILED, LOADING, READY, EngineLoop, QueueFull
from .protocol import ApiError, GenerationRequest, parse_chat, parse_completion

DEFAULT_MAX_BODY = 1 << 20  # bytes of request body accepted
RETRY_AFTER_S = 1


class SSEResponse(StreamingResponse):
    """Server-sent events that notice a disconnect while idle: the stream
    and a listener for ``http.disconnect`` run side by side, and whichever
    ends first ends the other (the stream's generator then runs its
    ``finally``, which cancels the request)."""

    media_type = "text/event-stream"

    async def __call__(self, scope, receive, send) -> None:
        async with anyio.create_task_group() as group:
            async def stream() -> None:
                try:
                    await self.stream_response(send)
                except OSError:  # the transport went away while writing
                    pass
                group.cancel_scope.cancel()

            group.start_soon(stream)
            await self.listen_for_disconnect(receive)
            group.cancel_scope.cancel()


def _sse(data: dict | str) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n"


class Api:
    def __init__(self, loop: EngineLoop, model_id: str, api_key: str | None, max_body: int):
        self.loop = loop
        self.model_id = model_id
        self.api_key = api_key.encode() if api_key else None
        self.max_body = max_body
        self.created = int(time.time())

    # ---- checks -----------------------------------------------------------

    def _authorize(self, request: Request) -> None:
        if self.api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        # compare_digest: the time taken does not say how much of the key matched
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.api_key):
            raise ApiError(401, "missing or wrong API key: send the header 'Authorization: Bearer <key>'",
                           code="invalid_api_key")

    def _ready(self) -> None:
        status = self.loop.status
        if status == LOADING:
            raise ApiError(503, "the model is still loading; retry shortly",
                           headers={"Retry-After": str(RETRY_AFTER_S)})
        if status != READY:
            detail = f": {self.loop.error}" if status == FAILED else ""
            raise ApiError(503, f"the engine is {status}{detail}")

    async def _json(self, request: Request):
        length = request.headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise ApiError(400, f"invalid Content-Length header {length!r}")
            if int(length) > self.max_body:
                raise ApiError(413, f"the request body is {length} bytes; the limit is {self.max_body}")
        chunks = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:
                raise ApiError(413, f"the request body exceeds the limit of {self.max_body} bytes")
            chunks.append(chunk)
        try:
            return json.loads(b"".join(chunks))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ApiError(400, f"the request body is not valid JSON ({exc})") from None

    def _check_model(self, name: str) -> None:
        if name not in (self.model_id, self.loop.engine.model.name):
            raise ApiError(404, f"model {name!r} is not served here; this server serves {self.model_id!r}",
                           param="model", code="model_not_found")

    # ---- endpoints ----------------------------------------------------------

    async def health(self, request: Request) -> Response:
        status = self.loop.status
        body = {"status": "ok" if status == READY else status}
        if status == FAILED:
            body["error"] = self.loop.error
        return JSONResponse(body, status_code=200 if status == READY else 503)

    async def metrics(self, request: Request) -> Response:
        loop = self.loop
        text = loop.metrics.render(loop.gauges(), loop.counters())
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    def _model_card(self) -> dict:
        return {"id": self.model_id, "object": "model", "created": self.created, "owned_by": "edgecore"}

    async def models(self, request: Request) -> Response:
        self._authorize(request)
        return JSONResponse({"object": "list", "data": [self._model_card()]})

    async def model(self, request: Request) -> Response:
        self._authorize(request)
        name = request.path_params["name"]
        if name != self.model_id:
            raise ApiError(404, f"model {name!r} is not served here; this server serves {self.model_id!r}",
                           param="model", code="model_not_found")
        return JSONResponse(self._model_card())

    async def completions(self, request: Request) -> Response:
        return await self._generate(request, chat=False)

    async def chat(self, request: Request) -> Response:
        return await self._generate(request, chat=True)

    async def _generate(self, request: Request, chat: bool) -> Response:
        created = time.perf_counter()
        self._authorize(request)
        self._ready()
        body = await self._json(request)
        req = parse_chat(body) if chat else parse_completion(body)
        self._check_model(req.model)
        events: asyncio.Queue = asyncio.Queue()
        aio = asyncio.get_running_loop()

        def sink(event: tuple) -> None:  # engine thread -> this request's queue, at the end of the tick
            self.loop.outbox.put(aio, events.put_nowait, event)

        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        job = await anyio.to_thread.run_sync(self._job, rid, req, chat, sink, created)
        try:
            self.loop.submit(job)
        except QueueFull:
            self.loop.metrics.finished("rejected", "queue_full")
            raise ApiError(429, f"the server queue is full ({self.loop.max_queue} requests waiting); retry later",
                           headers={"Retry-After": str(RETRY_AFTER_S)}, code="queue_full") from None
        if req.stream:
            return SSEResponse(self._stream(job, req, events, chat), headers={"Cache-Control": "no-cache"})
        return await self._answer(request, job, req, events, chat)

    def _job(self, rid: str, req: GenerationRequest, chat: bool, sink, created: float) -> Job:
        """Tokenize and size the request (worker thread)."""
        engine = self.loop.engine
        tok = engine.tokenizer
        if chat:
            if tok.chat_template is None:
                raise ApiError(400, f"model {self.model_id!r} has no chat template; use /v1/completions",
                               param="messages")
            try:
                ids = tok.apply_chat_template(req.messages)
            except ModelError as exc:
                raise ApiError(400, f"the chat template failed on these messages: {exc}", param="messages") from None
            where = "messages"
        elif isinstance(req.prompt, str):
            ids = tok.encode(req.prompt)
            where = "prompt"
        else:
            ids = req.prompt
            vocab = engine.spec.vocab_size
            bad = next((t for t in ids if not 0 <= t < vocab), None)
            if bad is not None:
                raise ApiError(400, f"prompt: token id {bad} is outside the vocabulary [0, {vocab})", param="prompt")
            where = "prompt"
        if not ids:
            raise ApiError(400, f"{where}: encodes to no tokens", param=where)
        kv = engine.kv
        capacity = kv.allocator.total * kv.page_tokens
        # positions: prompt + new <= context; stored: prompt + new - 1 <= the whole cache, so a request
        # alone always fits (the scheduler never has to reject it mid-way)
        room = min(engine.context - len(ids), capacity + 1 - len(ids))
        limit = f"the context is {engine.context} tokens and the KV cache holds {capacity}"
        if room < 1:
            raise ApiError(400, f"{where}: {len(ids)} tokens leave no room for an answer ({limit})", param=where,
                           code="context_length_exceeded")
        if req.max_tokens is not None and req.max_tokens > room:
            raise ApiError(400, f"max_tokens: {req.max_tokens} is more than the {room} tokens left after the "
                           f"{len(ids)}-token {where} ({limit})", param="max_tokens", code="context_length_exceeded")
        sampling = engine.model.generation_config.sampling(req.temperature, req.top_k, req.top_p, req.min_p,
                                                           req.repetition_penalty)
        return Job(rid, ids, req.max_tokens or room, sampling, req.seed, req.stop, engine.model.eos_token_ids, tok,
                   sink, created, req.priority)

    # ---- responses ----------------------------------------------------------

    def _usage(self, job: Job) -> dict:
        n = len(job.tokens)
        return {"prompt_tokens": len(job.prompt), "completion_tokens": n, "total_tokens": len(job.prompt) + n}

    def _chunk(self, job: Job, req: GenerationRequest, chat: bool, text: str | None, finish: str | None,
               role: bool = False) -> dict:
        if chat:
            delta = {} if text is None else {"content": text}
            if role:
                delta["role"] = "assistant"
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
        return {"id": job.id, "object": "chat.completion.chunk" if chat else "text_completion",
                "created": int(time.time()), "model": req.model, "choices": [choice]}

    async def _stream(self, job: Job, req: GenerationRequest, events: asyncio.Queue, chat: bool):
        ended = False
        try:
            if chat:
                yield _sse(self._chunk(job, req, chat, "", None, role=True))
            while True:
                event = await events.get()
                if event[0] == "token":
                    if event[1]:
                        yield _sse(self._chunk(job, req, chat, event[1], None))
                    continue
                ended = True
                if event[0] == "done":
                    _, finish, rest = event
                    if rest:
                        yield _sse(self._chunk(job, req, chat, rest, None))
                    yield _sse(self._chunk(job, req, chat, None if chat else "", finish))
                    if req.include_usage:
                        usage = self._chunk(job, req, chat, None, None)
                        usage["choices"] = []
                        usage["usage"] = self._usage(job)
                        yield _sse(usage)
                else:
                    _, status, message = event
                    yield _sse(ApiError(status, message).body())
                yield _sse("[DONE]")
                return
        finally:
            if not ended:  # the client left, or the server is cancelling this response
                self.loop.cancel(job.id)

    async def _answer(self, request: Request, job: Job, req: GenerationRequest, events: asyncio.Queue,
                      chat: bool) -> Response:
        pieces: list[str] = []
        final: tuple | None = None

        async def collect() -> None:
            nonlocal final
            while True:
                event = await events.get()
                if event[0] == "token":
                    pieces.append(event[1])
                else:
                    final = event
                    return

        try:
            async with anyio.create_task_group() as group:
                async def watch() -> None:
                    while (await request.receive())["type"] != "http.disconnect":
                        pass
                    group.cancel_scope.cancel()

                group.start_soon(watch)
                await collect()
                group.cancel_scope.cancel()
        finally:
            if final is None:
                self.loop.cancel(job.id)
        if final is None:  # the client is gone: nobody reads this
            return Response(status_code=499)
        if final[0] == "error":
            raise ApiError(final[1], final[2])
        _, finish, rest = final
        text = "".join(pieces) + rest
        if chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                      "finish_reason": finish}
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        return JSONResponse({"id": job.id, "object": "chat.completion" if chat else "text_completion",
                             "created": int(time.time()), "model": req.model, "choices": [choice],
                             "usage": self._usage(job)})


async def _api_error(request: Request, exc: ApiError) -> Response:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    return JSONResponse(ApiError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}").body(),
                        status_code=exc.status_code, headers=exc.headers)


async def _internal_error(request: Request, exc: Exception) -> Response:
    print(f"edgecore serve: internal error on {request.method} {request.url.path}:", file=sys.stderr)
    traceback.print_exception(exc, file=sys.stderr)
    return JSONResponse(ApiError(500, f"internal server error ({type(exc).__name__})").body(), status_code=500)


def create_app(loop: EngineLoop, model_id: str, *, api_key: str | None = None, max_body: int = DEFAULT_MAX_BODY,
               lifespan=None) -> Starlette:
    api = Api(loop, model_id, api_key, max_body)
    routes = [
        Route("/health", api.health, methods=["GET"]),
        Route("/metrics", api.metrics, methods=["GET"]),
        Route("/v1/models", api.models, methods=["GET"]),
        Route("/v1/models/{name:path}", api.model, methods=["GET"]),
        Route("/v1/completions", api.completions, methods=["POST"]),
        Route("/v1/chat/completions", api.chat, methods=["POST"]),
    ]
    handlers = {ApiError: _api_error, HTTPException: _http_error, Exception: _internal_error}
    return Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)
