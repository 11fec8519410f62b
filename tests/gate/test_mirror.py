"""Mirror adapters: timings derived by hand from small vLLM/SGLang-style logs,
and every malformed record named by its path."""

from __future__ import annotations

import copy

import pytest

from edgecore._jsoninput import InputError
from edgecore.gate.mirror import parse_log, parse_mirror_input

DEPLOY = {"model": "m", "model_version": "1", "backend": "avx2", "accelerator": "x86", "scheduler": "s"}

VLLM = {
    "request_id": "a",
    "prompt": "hi", "prompt_token_ids": [1, 2],
    "outputs": [{"index": 0, "text": "xyz", "token_ids": [5, 6, 7], "cumulative_logprob": None,
                 "logprobs": None, "finish_reason": "stop", "stop_reason": None}],
    "finished": True,
    "metrics": {"arrival_time": 100.0, "first_scheduled_time": 100.01, "first_token_time": 100.05,
                "last_token_time": 100.25, "finished_time": 100.3, "time_in_queue": 0.01},
}

VLLM_STREAM = {
    "request_id": "s",
    "metrics": {"arrival_time": 100.0},
    "stream": [
        {"time": 100.05, "token_ids": [5]},
        {"time": 100.10, "token_ids": [6, 7]},  # two tokens in one step: 25 ms each
        {"time": 100.13, "token_ids": [8]},
        {"time": 100.14, "token_ids": [], "finish_reason": "stop"},
    ],
}

SGLANG_STREAM = {
    "text": "",
    "meta_info": {"id": "g", "finish_reason": {"type": "stop", "matched": 2}, "prompt_tokens": 9,
                  "completion_tokens": 4, "cached_tokens": 0, "e2e_latency": 0.1},
    "chunks": [
        {"elapsed": 0.04, "output_ids": [1], "meta_info": {"id": "g", "completion_tokens": 1}},
        {"elapsed": 0.06, "output_ids": [2, 3], "meta_info": {"id": "g", "completion_tokens": 3}},
        {"elapsed": 0.09, "output_ids": [4], "meta_info": {"completion_tokens": 4}},
        {"elapsed": 0.1, "output_ids": [], "text": "",
         "meta_info": {"completion_tokens": 4, "finish_reason": {"type": "stop"}, "e2e_latency": 0.1}},
    ],
}


def log(fmt, *records):
    return {"format": fmt, "deployment": DEPLOY, "records": list(records)}


def one(fmt, record):
    return parse_log(log(fmt, record), "baseline")[0]


def test_vllm_request_output_with_metrics():
    o = one("vllm", VLLM)
    assert (o.request_id, o.ok, o.output_tokens, o.decode_ms) == ("a", True, (5, 6, 7), None)
    assert o.ttft_ms == pytest.approx(50.0) and o.latency_ms == pytest.approx(300.0)
    assert (o.model, o.model_version, o.backend, o.accelerator, o.scheduler) == ("m", "1", "avx2", "x86", "s")


def test_vllm_stream_gives_ttft_and_per_token_gaps():
    o = one("vllm", VLLM_STREAM)
    assert o.output_tokens == (5, 6, 7, 8)
    assert o.ttft_ms == pytest.approx(50.0)
    assert o.decode_ms == pytest.approx((25.0, 25.0, 30.0))
    assert o.latency_ms == pytest.approx(140.0)  # no finished_time: the last event


def test_sglang_stream_counts_tokens_from_cumulative_completion_tokens():
    o = one("sglang", SGLANG_STREAM)
    assert (o.request_id, o.ok, o.output_tokens) == ("g", True, (1, 2, 3, 4))
    assert o.ttft_ms == pytest.approx(40.0)
    assert o.decode_ms == pytest.approx((10.0, 10.0, 30.0))
    assert o.latency_ms == pytest.approx(100.0)


def test_sglang_non_streamed_response_has_no_ttft():
    rec = {"text": "ab", "output_ids": [1, 2],
           "meta_info": {"id": "n", "finish_reason": {"type": "length"}, "completion_tokens": 2,
                         "e2e_latency": 0.5}}
    o = one("sglang", rec)
    assert (o.ok, o.output_tokens, o.ttft_ms, o.latency_ms) == (True, (1, 2), None, 500.0)


def test_aborted_and_failed_requests_are_errors():
    rec = copy.deepcopy(SGLANG_STREAM)
    rec["chunks"][-1]["meta_info"]["finish_reason"] = {"type": "abort", "message": "client disconnected"}
    o = one("sglang", rec)
    assert (o.ok, o.error) == (False, "client disconnected")
    v = copy.deepcopy(VLLM)
    v["outputs"][0]["finish_reason"] = "abort"
    assert one("vllm", v).error == "finish_reason 'abort'"
    v = copy.deepcopy(VLLM)
    v["error"] = "CUDA error"
    assert (one("vllm", v).ok, one("vllm", v).error) == (False, "CUDA error")


def mutate(record, path, value):
    rec = copy.deepcopy(record)
    target = rec
    for part in path[:-1]:
        target = target[part]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return rec


@pytest.mark.parametrize(("fmt", "record", "path", "value", "message"), [
    ("vllm", VLLM, ("metrics", "arrival"), 1.0,
     "baseline.records[1].metrics.arrival: expected no such field"),
    ("vllm", VLLM, ("request_id",), KeyError,
     "baseline.records[1].request_id: expected a value, got nothing (field is missing)"),
    ("vllm", VLLM, ("metrics", "arrival_time"), KeyError,
     "baseline.records[1].metrics.arrival_time: expected the arrival time (seconds)"),
    ("vllm", VLLM, ("outputs", 0, "token_ids", 1), "6",
     'baseline.records[1].outputs[0].token_ids[1]: expected a non-negative integer, got "6" (string)'),
    ("vllm", VLLM, ("usage",), {}, "baseline.records[1].usage: expected no such field"),
    ("vllm", VLLM_STREAM, ("stream", 2, "time"), 100.09,
     "baseline.records[1].stream[2].time: expected a time at or after the previous event"),
    ("vllm", VLLM_STREAM, ("stream", 0, "tokens"), [1],
     "baseline.records[1].stream[0].tokens: expected no such field"),
    ("sglang", SGLANG_STREAM, ("meta_info", "id"), KeyError,
     "baseline.records[1].meta_info.id: expected the request id"),
    ("sglang", SGLANG_STREAM, ("chunks", 2, "meta_info", "completion_tokens"), 2,
     "baseline.records[1].chunks[2].meta_info.completion_tokens: expected a cumulative count >= "
     "the previous chunk's (3)"),
    ("sglang", SGLANG_STREAM, ("chunks", 1, "output_ids"), [2],
     "baseline.records[1].chunks[1].output_ids: expected 2 new token id(s)"),
    ("sglang", SGLANG_STREAM, ("chunks", 0, "meta_info", "completion_tokens"), KeyError,
     "baseline.records[1].chunks[0].meta_info.completion_tokens: expected a value"),
    ("sglang", SGLANG_STREAM, ("meta_info", "completion_tokens"), 5,
     "baseline.records[1].meta_info.completion_tokens: expected the chunks' final count (4)"),
    ("sglang", SGLANG_STREAM, ("meta_info", "finish_reason"), "stop",
     'baseline.records[1].meta_info.finish_reason: expected an object, got "stop" (string)'),
    ("sglang", SGLANG_STREAM, ("chunks", 0, "elapsed"), -1,
     "baseline.records[1].chunks[0].elapsed: expected a finite number >= 0"),
])
def test_malformed_records_name_the_record_and_field(fmt, record, path, value, message):
    good = copy.deepcopy(record)
    if fmt == "vllm":
        good["request_id"] = "first"
    else:
        good["meta_info"]["id"] = "first"
    with pytest.raises(InputError) as info:
        parse_log(log(fmt, good, mutate(record, path, value)), "baseline")
    assert str(info.value).startswith(message), str(info.value)


def test_stream_must_agree_with_outputs():
    rec = copy.deepcopy(VLLM_STREAM)
    rec["outputs"] = [{"index": 0, "token_ids": [5, 6, 7], "finish_reason": "stop"}]
    with pytest.raises(InputError, match=r"records\[0\]\.stream: expected streamed token_ids that add up"):
        parse_log(log("vllm", rec), "baseline")


def test_log_level_errors():
    with pytest.raises(InputError, match=r'baseline\.format: expected one of "vllm", "sglang"'):
        parse_log({"format": "tgi", "deployment": DEPLOY, "records": []}, "baseline")
    with pytest.raises(InputError, match=r"baseline\.deployment\.backend: expected a value"):
        parse_log({"format": "vllm", "deployment": {**DEPLOY, "backend": None}, "records": []}, "baseline")
    with pytest.raises(InputError,
                       match=r"baseline\.records\[1\]: expected a record with a request id unique"):
        parse_log(log("vllm", VLLM, VLLM), "baseline")
    with pytest.raises(InputError, match=r"candidate: expected an object"):
        parse_mirror_input({"baseline": log("vllm", VLLM), "candidate": []})
