"""Gate input, observation and policy validation: paths and expectations."""

from __future__ import annotations

import pytest

from edgecore._jsoninput import InputError
from edgecore.gate import Policy, parse_gate_input, parse_observation, parse_policy

OBS = {"request_id": "a", "model": "m", "model_version": "1", "backend": "b", "accelerator": "x",
       "ok": True, "latency_ms": 5}


@pytest.mark.parametrize(("change", "message"), [
    ({"latency_ms": "5"}, 'obs.latency_ms: expected a finite number >= 0, got "5" (string)'),
    ({"latency_ms": None}, "obs.latency_ms: expected the latency of a successful request (ms), got null"),
    ({"ok": "yes"}, 'obs.ok: expected true or false, got "yes" (string)'),
    ({"error": "x"}, 'obs.error: expected no error message on an observation with "ok": true'),
    ({"decode_ms": [1, -2]}, "obs.decode_ms[1]: expected a finite number >= 0, got -2"),
    ({"output_tokens": [1, 2.0]}, "obs.output_tokens[1]: expected a non-negative integer, got 2.0"),
    ({"output_values": [[1, 2], [3]]}, "obs.output_values[1]: expected a list of 2 number(s) like row 0"),
    ({"output_values": []}, "obs.output_values: expected a non-empty list"),
    ({"output_values": [1, "x"]}, 'obs.output_values[1]: expected a number, got "x"'),
    ({"kv_pages": 9, "kv_pages_total": 8}, "obs.kv_pages: expected at most kv_pages_total (8), got 9"),
    ({"kv_pages_total": 0}, "obs.kv_pages_total: expected a positive integer, got 0"),
    ({"ttft": 3}, "obs.ttft: expected no such field"),
    ({"model": ""}, 'obs.model: expected a non-empty string, got "" (string)'),
])
def test_observation_errors(change, message):
    doc = {**OBS, **change}
    with pytest.raises(InputError) as info:
        parse_observation(doc, "obs")
    assert str(info.value).startswith(message), str(info.value)


def test_observation_matrix_values_are_flattened_row_major():
    o = parse_observation({**OBS, "output_values": [[1, 2], [3, 4]]}, "obs")
    assert o.output_values == (1.0, 2.0, 3.0, 4.0) and o.output_shape == (2, 2)
    assert o.to_json()["output_values"] == [[1.0, 2.0], [3.0, 4.0]]


def test_failed_observation_needs_no_latency():
    o = parse_observation({**OBS, "ok": False, "latency_ms": None, "error": "oom"}, "obs")
    assert (o.ok, o.error, o.latency_ms) == (False, "oom", None)


def test_gate_input_errors():
    duplicate = (r"candidate\[1\]\.request_id: expected a request id unique within "
                 r"candidate, got \"a\" \(string\) \(already used by candidate\[0\]\)")
    with pytest.raises(InputError, match=duplicate):
        parse_gate_input({"baseline": [OBS], "candidate": [OBS, OBS]})
    with pytest.raises(InputError, match=r"^baseline: expected a list of observations"):
        parse_gate_input({"baseline": {}, "candidate": []})
    with pytest.raises(InputError, match=r"^candidate: expected a value, got nothing"):
        parse_gate_input({"baseline": []})
    with pytest.raises(InputError, match=r"^baselines: expected no such field"):
        parse_gate_input({"baseline": [], "candidate": [], "baselines": []})


def test_policy_defaults_are_documented_values():
    p = parse_policy({})
    assert p == Policy()
    assert (p.max_error_rate_increase, p.max_latency_p95_regression, p.max_ttft_p95_regression,
            p.max_decode_p95_regression, p.max_kv_pressure, p.min_matched_requests,
            p.min_matched_fraction) == (0.01, 0.10, 0.10, 0.10, 0.90, 20, 0.90)
    assert p.output.mode == "exact" and p.required_provenance == () and p.disable == ()
    assert parse_policy(p.to_json(), "p") == p


@pytest.mark.parametrize(("doc", "message"), [
    ({"max_kv_pressure": "high"}, 'policy.max_kv_pressure: expected a finite number >= 0, got "high"'),
    ({"min_matched_fraction": 1.5}, "policy.min_matched_fraction: expected a fraction between 0 and 1"),
    ({"min_matched_requests": 2.5},
     "policy.min_matched_requests: expected a non-negative integer, got 2.5"),
    ({"disable": ["latency"]}, 'policy.disable[0]: expected a check name (matched_traffic, provenance'),
    ({"required_provenance": ["router"]}, 'policy.required_provenance[0]: expected one of "route", '
                                          '"scheduler", got "router"'),
    ({"output": {"mode": "fuzzy"}}, 'policy.output.mode: expected one of "exact", "numeric"'),
    ({"output": {"backend": "x"}}, "policy.output.backend: expected no such field"),
    ({"output": {"rules": [{"mode": "numeric", "abs_tol": -1}]}},
     "policy.output.rules[0].abs_tol: expected a finite number >= 0, got -1"),
    ({"output": {"rules": [{"model": "m", "tolerance": 1}]}},
     "policy.output.rules[0].tolerance: expected no such field"),
    ({"max_latency_regression": 0.2}, "policy.max_latency_regression: expected no such field"),
])
def test_policy_errors(doc, message):
    with pytest.raises(InputError) as info:
        parse_policy(doc)
    assert str(info.value).startswith(message), str(info.value)
