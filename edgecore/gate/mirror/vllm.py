"""vLLM-style request logs -> gate observations.

A record is a serialised ``RequestOutput``: ``request_id``, ``outputs``
(completions with ``token_ids`` and ``finish_reason``), ``finished`` and
``metrics`` (``arrival_time``, ``first_token_time``, ``last_token_time``,
``finished_time``... in seconds), plus optionally ``error`` and ``stream``:
the streamed deltas as ``{"time": s, "token_ids": [...]}`` events (same
clock as ``arrival_time``). Fields vLLM emits that the gate does not use
(prompt, logprobs, ...) are accepted and ignored; any other field is an error.
"""

from __future__ import annotations

from typing import Any

from ..._jsoninput import Fields, InputError, check_int, check_number, join
from ..observation import Observation
from .deployment import Deployment
from .stream import stream_timing

_IGNORED = ("prompt", "prompt_token_ids", "prompt_logprobs", "encoder_prompt", "encoder_prompt_token_ids",
            "lora_request", "num_cached_tokens", "kv_transfer_params")
_IGNORED_OUTPUT = ("text", "cumulative_logprob", "logprobs", "stop_reason", "lora_request")
_METRIC_TIMES = ("arrival_time", "last_token_time", "first_scheduled_time", "first_token_time",
                 "time_in_queue", "finished_time", "scheduler_time", "model_forward_time",
                 "model_execute_time")
_OK_FINISH = ("stop", "length")


def _token_ids(value: Any, path: str) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise InputError(path, "a list of token ids", value)
    return tuple(check_int(t, join(path, i), 0) for i, t in enumerate(value))


def parse_vllm_record(value: Any, path: str, deployment: Deployment) -> Observation:
    """One vLLM-style record as an observation; errors name the record and field."""
    f = Fields(value, path)
    rid = f.str("request_id")
    for name in _IGNORED:
        f.raw(name, None)
    error = f.str("error", None)
    finished = f.bool("finished", True)

    metrics = f.obj("metrics")
    times = {name: metrics.number(name, None) for name in _METRIC_TIMES}
    metrics.done()
    arrival = times["arrival_time"]
    if arrival is None:
        raise InputError(join(metrics.path, "arrival_time"), "the arrival time (seconds)",
                         metrics.value.get("arrival_time"))

    finish_reason = None
    tokens = None
    if f.has("outputs"):
        outputs = f.list("outputs")
        if not outputs:
            raise InputError(join(path, "outputs"), "at least one completion", outputs)
        first = Fields(outputs[0], join(join(path, "outputs"), 0))
        first.int("index", 0, minimum=0)
        for name in _IGNORED_OUTPUT:
            first.raw(name, None)
        tokens = _token_ids(first.raw("token_ids"), join(first.path, "token_ids"))
        finish_reason = first.str("finish_reason", None)
        first.done()

    ttft_ms = None
    decode_ms = None
    last_event = None
    if f.has("stream"):
        events = []
        streamed: list[int] = []
        stream_path = join(path, "stream")
        for i, item in enumerate(f.list("stream")):
            ev = Fields(item, join(stream_path, i))
            t = ev.number("time")
            ids = _token_ids(ev.raw("token_ids", []), join(ev.path, "token_ids"))
            reason = ev.str("finish_reason", None)
            ev.done()
            finish_reason = reason or finish_reason
            streamed.extend(ids)
            events.append((t, len(ids), join(ev.path, "time")))
            last_event = t
        if tokens is not None and tuple(streamed) != tokens:
            raise InputError(stream_path, "streamed token_ids that add up to outputs[0].token_ids",
                             note=f"{len(streamed)} streamed vs {len(tokens)} in outputs")
        tokens = tuple(streamed)
        ttft_ms, gaps = stream_timing(arrival, events)
        decode_ms = tuple(gaps)
    elif tokens is None:
        raise InputError(join(path, "outputs"), "the completion (outputs) or its stream",
                         value.get("outputs"))
    if ttft_ms is None and times["first_token_time"] is not None:
        ttft_ms = (check_number(times["first_token_time"], join(metrics.path, "first_token_time"), arrival)
                   - arrival) * 1000.0
    f.done()

    end = end_path = None
    for name in ("finished_time", "last_token_time"):
        if times[name] is not None:
            end, end_path = times[name], join(metrics.path, name)
            break
    if end is None and last_event is not None:
        end, end_path = last_event, join(path, "stream")
    ok = error is None and finished and finish_reason in _OK_FINISH
    if not ok and error is None:
        error = "unfinished" if not finished else f"finish_reason {finish_reason!r}"
    if end is None and ok:
        raise InputError(join(metrics.path, "finished_time"), "the finish time of a completed request",
                         note="or last_token_time, or a stream")
    latency_ms = None if end is None else (check_number(end, end_path, arrival) - arrival) * 1000.0
    return Observation(
        request_id=rid, model=deployment.model, model_version=deployment.model_version,
        backend=deployment.backend, accelerator=deployment.accelerator, ok=ok,
        error=None if ok else error, latency_ms=latency_ms, ttft_ms=ttft_ms, decode_ms=decode_ms,
        output_tokens=tokens, route=deployment.route, scheduler=deployment.scheduler,
    )
