"""The OpenAI request bodies we accept, checked field by field.

A request that is wrong in any way raises ``ApiError`` naming the field
(OpenAI's ``param``), so the client gets a 400 that says what to fix
instead of a traceback or a silently ignored value. Fields OpenAI defines
that this server cannot honour (``n`` > 1, ``logprobs``, ``echo``,
``best_of`` > 1, ``suffix``, tools) are refused rather than ignored;
fields nobody defines are ignored, as OpenAI's own server does for
forward compatibility of clients.

Sampling fields left out take the model's generation config
(``GenerationConfig.sampling``), exactly as ``Engine.generate`` does, so a
request and the same ``Engine.generate`` call give the same tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

MAX_STOP_STRINGS = 4  # OpenAI's limit


class ApiError(Exception):
    """An error answered as OpenAI's JSON error object."""

    def __init__(self, status: int, message: str, *, param: str | None = None, kind: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.kind = kind or _KINDS.get(status, "server_error")
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


_KINDS = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
          405: "invalid_request_error", 413: "invalid_request_error", 429: "rate_limit_error",
          503: "service_unavailable"}


@dataclass
class GenerationRequest:
    """What one request asks the engine for (prompt not yet tokenized)."""

    model: str
    stream: bool
    include_usage: bool
    max_tokens: int | None
    temperature: float | None
    top_p: float | None
    top_k: int | None
    min_p: float | None
    repetition_penalty: float | None
    seed: int | None
    stop: list[str]
    priority: int  # the scheduler's: lower is admitted first (vLLM's extension field)
    prompt: str | list[int] | None = None  # completions
    messages: list[dict[str, str]] | None = None  # chat


def _bad(param: str, message: str) -> ApiError:
    return ApiError(400, f"{param}: {message}", param=param)


def _number(body: dict, name: str, lo: float, hi: float, lo_open: bool = False) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _bad(name, f"must be a number, got {value!r}")
    if value < lo or (lo_open and value == lo) or value > hi:
        bracket = "(" if lo_open else "["
        raise _bad(name, f"must be in {bracket}{lo:g}, {hi:g}], got {value!r}")
    return float(value)


def _integer(body: dict, name: str, lo: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(name, f"must be an integer, got {value!r}")
    if lo is not None and value < lo:
        raise _bad(name, f"must be >= {lo}, got {value}")
    return value


def _flag(body: dict, name: str) -> bool:
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _bad(name, f"must be true or false, got {value!r}")
    return value


def _stop(body: dict) -> list[str]:
    value = body.get("stop")
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(s, str) and s for s in items):
        raise _bad("stop", "must be a non-empty string or a list of non-empty strings")
    if len(items) > MAX_STOP_STRINGS:
        raise _bad("stop", f"at most {MAX_STOP_STRINGS} stop strings, got {len(items)}")
    return list(items)


def _refuse_unsupported(body: dict) -> None:
    n = body.get("n")
    if n is not None and n != 1:
        raise _bad("n", f"only n=1 is supported, got {n!r}")
    best_of = body.get("best_of")
    if best_of is not None and best_of != 1:
        raise _bad("best_of", f"only best_of=1 is supported, got {best_of!r}")
    for name in ("logprobs", "top_logprobs", "suffix", "tools", "functions", "logit_bias", "response_format"):
        value = body.get(name)
        if value not in (None, False, {}, []):
            raise _bad(name, "is not supported by this server")
    if body.get("echo"):
        raise _bad("echo", "is not supported by this server")


def _common(body: Any, max_tokens_names: tuple[str, ...]) -> GenerationRequest:
    if not isinstance(body, dict):
        raise ApiError(400, f"the request body must be a JSON object, got {type(body).__name__}")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("model", "is required (a model id from GET /v1/models)")
    _refuse_unsupported(body)
    stream = _flag(body, "stream")
    options = body.get("stream_options")
    include_usage = False
    if options is not None:
        if not isinstance(options, dict):
            raise _bad("stream_options", "must be an object")
        if not stream:
            raise _bad("stream_options", "is only allowed with stream: true")
        include_usage = _flag(options, "include_usage")
    max_tokens = None
    for name in max_tokens_names:
        given = _integer(body, name, lo=1)
        if given is not None:
            max_tokens = given
    top_k = _integer(body, "top_k")
    if top_k is not None and top_k < 1:
        if top_k not in (0, -1):
            raise _bad("top_k", f"must be >= 1, or 0 / -1 for no top-k, got {top_k}")
        top_k = None
    return GenerationRequest(
        model=model, stream=stream, include_usage=include_usage, max_tokens=max_tokens,
        temperature=_number(body, "temperature", 0.0, 2.0), top_p=_number(body, "top_p", 0.0, 1.0, lo_open=True),
        top_k=top_k, min_p=_number(body, "min_p", 0.0, 1.0),
        repetition_penalty=_number(body, "repetition_penalty", 0.0, math.inf, lo_open=True),
        seed=_integer(body, "seed"), stop=_stop(body), priority=_integer(body, "priority") or 0)


def parse_completion(body: Any) -> GenerationRequest:
    """POST /v1/completions: ``prompt`` is a string or a list of token ids
    (a list holding one string is taken as that string, as n=1 needs)."""
    req = _common(body, ("max_tokens",))
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if isinstance(prompt, str):
        if not prompt:
            raise _bad("prompt", "must not be empty")
    elif isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        pass
    elif isinstance(prompt, list) and prompt and all(isinstance(t, list) for t in prompt):
        raise _bad("prompt", "a batch of prompts is not supported (send one request per prompt)")
    else:
        raise _bad("prompt", "must be a non-empty string or a non-empty list of token ids")
    req.prompt = prompt
    return req


_ROLES = ("system", "developer", "user", "assistant", "tool")


def parse_chat(body: Any) -> GenerationRequest:
    """POST /v1/chat/completions: ``messages`` with string content, or a
    list of text parts (joined), rendered with the model's chat template."""
    req = _common(body, ("max_tokens", "max_completion_tokens"))
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages", "must be a non-empty list of {role, content} objects")
    out = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise _bad(where, "must be an object with role and content")
        role = message.get("role")
        if role not in _ROLES:
            raise _bad(f"{where}.role", f"must be one of {', '.join(_ROLES)}, got {role!r}")
        content = message.get("content")
        if isinstance(content, list):
            parts = []
            for j, part in enumerate(content):
                if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                    raise _bad(f"{where}.content[{j}]", "only text parts ({type: text, text: ...}) are supported")
                parts.append(part["text"])
            content = "".join(parts)
        if not isinstance(content, str):
            raise _bad(f"{where}.content", "must be a string or a list of text parts")
        out.append({"role": role, "content": content})
    req.messages = out
    return req
