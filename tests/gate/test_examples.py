"""The shipped gate and mirror-gate examples give their documented decisions."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecore._jsoninput import read_document
from edgecore.gate import Policy, gate, load_policy, parse_gate_input, parse_policy
from edgecore.gate.mirror import parse_mirror_input

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def decide_example(name: str, policy: Policy | None = None) -> dict:
    parsed = parse_gate_input(read_document(EXAMPLES / name))
    return gate(parsed.baseline, parsed.candidate, policy or parsed.policy or Policy())


def statuses(report: dict) -> dict[str, str]:
    return {c["name"]: c["status"] for c in report["checks"]}


def test_promote_example():
    report = decide_example("gate_promote.json")
    assert report["decision"] == "promote"
    assert report["reasons"] == [] and report["triage"] == []
    assert set(statuses(report).values()) == {"pass", "not_applicable"}
    assert statuses(report)["provenance"] == "pass"


def test_numeric_tolerance_promote_example_and_its_exact_counterpart():
    report = decide_example("gate_promote_numeric.json")
    assert report["decision"] == "promote"
    numeric = next(c for c in report["checks"] if c["name"] == "output_numeric")
    assert numeric["status"] == "pass" and numeric["measured"]["compared"] == 24
    assert 0 < numeric["measured"]["max_abs_error"] < 4.1e-3
    # the same observations compared exactly: the bf16 outputs are not bit-identical
    strict = decide_example("gate_promote_numeric.json", parse_policy({"disable": ["decode_p95"]}))
    assert strict["decision"] == "rollback"
    assert statuses(strict)["output_exact"] == "fail"


def test_hold_example_names_the_regressed_segment():
    report = decide_example("gate_hold.json")
    assert report["decision"] == "hold"
    s = statuses(report)
    assert (s["latency_p95"], s["ttft_p95"], s["decode_p95"]) == ("fail", "fail", "fail")
    assert s["output_exact"] == "pass" and s["error_rate"] == "pass"
    segments = {(g["backend"], g["accelerator"]): g for g in report["segments"]}
    neon, avx2 = segments[("neon", "rpi5")], segments[("avx2", "x86_64-desktop")]
    assert neon["latency_p95_ms"]["candidate"] > 1.2 * neon["latency_p95_ms"]["baseline"]
    assert avx2["latency_p95_ms"]["candidate"] < 1.05 * avx2["latency_p95_ms"]["baseline"]
    latency = next(t for t in report["triage"] if t["check"] == "latency_p95")
    assert latency["response"] == "hold" and latency["owner_hint"] == "performance"
    assert {"backend": "neon", "accelerator": "rpi5", "model_version": "1.1.0"} in latency["segments"]


def test_rollback_example():
    report = decide_example("gate_rollback.json")
    assert report["decision"] == "rollback"
    exact = next(c for c in report["checks"] if c["name"] == "output_exact")
    assert exact["measured"] == {"compared": 28, "mismatches": 2, "missing_evidence": 0}
    assert exact["requests"] == ["req-007", "req-023"]
    errors = next(c for c in report["checks"] if c["name"] == "error_rate")
    assert errors["status"] == "fail" and errors["requests"] == ["req-004", "req-017"]
    assert errors["measured"]["increase"] == pytest.approx(2 / 30, abs=1e-6)
    assert [t["response"] for t in report["triage"]] == ["rollback", "rollback"]
    assert "KV page table exhausted" in report["triage"][1]["errors"]["req-004"]


def test_toml_policy_example_is_the_documented_defaults_plus_a_numeric_rule():
    policy = load_policy(EXAMPLES / "gate_policy.toml")
    defaults = Policy()
    assert policy.output == defaults.output
    assert [r.to_json() for r in policy.output_rules] == [
        {"model": "tiny-encoder", "backend": "avx512-bf16", "mode": "numeric", "abs_tol": 1e-4,
         "rel_tol": 1e-3}]
    for name in ("max_error_rate_increase", "max_latency_p95_regression", "max_ttft_p95_regression",
                 "max_decode_p95_regression", "max_kv_pressure", "min_matched_requests",
                 "min_matched_fraction", "required_provenance", "disable"):
        assert getattr(policy, name) == getattr(defaults, name), name


@pytest.mark.parametrize(("name", "decision", "failing"), [
    ("mirror_gate_vllm_promote.json", "promote", set()),
    ("mirror_gate_sglang_streaming_hold.json", "hold", {"ttft_p95"}),
    ("mirror_gate_vllm_sglang_rollback.json", "rollback", {"output_exact"}),
])
def test_mirror_examples(name, decision, failing):
    parsed = parse_mirror_input(read_document(EXAMPLES / name))
    report = gate(parsed.baseline, parsed.candidate, parsed.policy)
    assert report["decision"] == decision
    assert {c["name"] for c in report["checks"] if c["status"] in ("fail", "missing")} == failing


def test_streaming_mirror_derives_timings_from_events():
    parsed = parse_mirror_input(read_document(EXAMPLES / "mirror_gate_sglang_streaming_hold.json"))
    # first record, built with ttft and per-token gaps: every token streamed alone
    first = parsed.baseline[0]
    assert first.decode_ms is not None and len(first.decode_ms) == len(first.output_tokens) - 1
    assert first.ttft_ms > 0 and first.latency_ms > first.ttft_ms + sum(first.decode_ms) - 1e-6
    # the candidate's first tokens come 45 % later, its gaps are the same
    c = parsed.candidate[0]
    assert c.ttft_ms == pytest.approx(first.ttft_ms * 1.45, rel=1e-4)
    assert c.decode_ms == pytest.approx(first.decode_ms, rel=1e-4)
