"""SGLang-style request logs -> gate observations.

A record is a ``/generate`` response: ``text``, ``output_ids`` and
``meta_info`` (``id``, ``finish_reason`` as ``{"type": ..., "message"?:
...}``, ``prompt_tokens``, ``completion_tokens``, ``cached_tokens``,
``e2e_latency`` in seconds), plus optionally ``error`` and ``chunks``: the
streamed responses, each ``{"elapsed": s since the request was sent,
"meta_info": {"completion_tokens": cumulative, ...}, "output_ids"?: new ids,
"text"?: ...}``. Per-chunk token counts come from the cumulative
``completion_tokens``. Any field not listed here is an error.
"""

from __future__ import annotations

from typing import Any

from ..._jsoninput import Fields, InputError, check_int, join
from ..observation import Observation
from .deployment import Deployment
from .stream import stream_timing

_OK_FINISH = ("stop", "length")


def _ids(value: Any, path: str) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise InputError(path, "a list of token ids", value)
    return tuple(check_int(t, join(path, i), 0) for i, t in enumerate(value))


def _meta(f: Fields, chunk: bool) -> dict[str, Any]:
    """meta_info; a streamed chunk must carry its cumulative completion_tokens."""
    meta: dict[str, Any] = {
        "id": f.str("id", None),
        "completion_tokens": f.int("completion_tokens", minimum=0) if chunk
        else f.int("completion_tokens", None, minimum=0),
        "prompt_tokens": f.int("prompt_tokens", None, minimum=0),
        "cached_tokens": f.int("cached_tokens", None, minimum=0),
        "e2e_latency": f.number("e2e_latency", None, minimum=0),
        "finish_reason": None,
        "finish_message": None,
    }
    if f.has("finish_reason"):
        fr = f.obj("finish_reason")
        meta["finish_reason"] = fr.str("type")
        meta["finish_message"] = fr.str("message", None)
        fr.raw("matched", None)
        fr.int("length", None, minimum=0)
        fr.done()
    f.done()
    return meta


def parse_sglang_record(value: Any, path: str, deployment: Deployment) -> Observation:
    """One SGLang-style record as an observation; errors name the record and field."""
    f = Fields(value, path)
    meta_f = f.obj("meta_info")
    meta = _meta(meta_f, chunk=False)
    rid = meta["id"]
    if rid is None:
        raise InputError(join(meta_f.path, "id"), "the request id (a non-empty string)",
                         meta_f.value.get("id"))
    f.raw("text", None)  # the decoded text: not compared (token ids are)
    error = f.str("error", None)
    tokens = _ids(f.raw("output_ids"), join(path, "output_ids")) if f.has("output_ids") else None
    finish, message = meta["finish_reason"], meta["finish_message"]
    e2e = meta["e2e_latency"]
    ttft_ms = None
    decode_ms = None
    last_elapsed = None
    if f.has("chunks"):
        events = []
        streamed: list[int] = []
        all_ids = True
        count = 0
        for i, item in enumerate(f.list("chunks")):
            c = Fields(item, join(join(path, "chunks"), i))
            elapsed = c.number("elapsed", minimum=0)
            cm_f = c.obj("meta_info")
            cm = _meta(cm_f, chunk=True)
            c.raw("text", None)
            ids = _ids(c.raw("output_ids"), join(c.path, "output_ids")) if c.has("output_ids") else None
            c.done()
            total = cm["completion_tokens"]
            if total < count:
                raise InputError(join(cm_f.path, "completion_tokens"),
                                 f"a cumulative count >= the previous chunk's ({count})", total)
            new = total - count
            count = total
            if ids is None:
                all_ids = False
            elif len(ids) != new:
                raise InputError(join(c.path, "output_ids"), f"{new} new token id(s) "
                                 f"(completion_tokens went to {total})", ids)
            else:
                streamed.extend(ids)
            finish = cm["finish_reason"] or finish
            message = cm["finish_message"] or message
            e2e = cm["e2e_latency"] if cm["e2e_latency"] is not None else e2e
            events.append((elapsed, new, join(c.path, "elapsed")))
            last_elapsed = elapsed
        ttft_ms, gaps = stream_timing(0.0, events)
        decode_ms = tuple(gaps)
        if all_ids and events:
            if tokens is not None and tokens != tuple(streamed):
                raise InputError(join(path, "output_ids"), "the concatenation of the chunks' output_ids",
                                 list(tokens))
            tokens = tuple(streamed)
        if meta["completion_tokens"] is not None and meta["completion_tokens"] != count:
            raise InputError(join(meta_f.path, "completion_tokens"),
                             f"the chunks' final count ({count})", meta["completion_tokens"])
    elif tokens is None:
        raise InputError(join(path, "output_ids"), "the output token ids (or streamed chunks)",
                         value.get("output_ids"))
    declared = meta["completion_tokens"]
    if tokens is not None and declared is not None and len(tokens) != declared:
        raise InputError(join(meta_f.path, "completion_tokens"), f"len(output_ids) = {len(tokens)}",
                         meta["completion_tokens"])
    f.done()
    ok = error is None and finish in _OK_FINISH
    if not ok and error is None:
        error = message or f"finish_reason {finish!r}"
    end = e2e if e2e is not None else last_elapsed
    if end is None and ok:
        raise InputError(join(meta_f.path, "e2e_latency"), "the end-to-end latency of a completed request",
                         note="or streamed chunks with elapsed times")
    return Observation(
        request_id=rid, model=deployment.model, model_version=deployment.model_version,
        backend=deployment.backend, accelerator=deployment.accelerator, ok=ok,
        error=None if ok else error, latency_ms=None if end is None else end * 1000.0,
        ttft_ms=ttft_ms, decode_ms=decode_ms, output_tokens=tokens,
        route=deployment.route, scheduler=deployment.scheduler,
    )
