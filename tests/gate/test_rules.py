"""Each gate rule in isolation, on synthetic runs where only one thing differs."""

from __future__ import annotations

import math

import pytest

from edgecore.gate import Policy, gate, parse_policy


def check(report: dict, name: str) -> dict:
    return next(c for c in report["checks"] if c["name"] == name)


def test_identical_runs_promote(make_run):
    report = gate(*make_run(), Policy())
    assert report["decision"] == "promote"
    assert report["traffic"]["matched"] == 20


def test_one_different_output_token_is_a_rollback(make_run, make_obs):
    base, cand = make_run()
    cand[3] = make_obs("r03", model_version="2", output_tokens=(1, 2, 4))
    report = gate(base, cand, Policy())
    assert report["decision"] == "rollback"
    assert check(report, "output_exact")["requests"] == ["r03"]
    assert report["triage"][0]["owner_hint"] == "kernels / model numerics"


def test_output_fingerprints_are_compared_when_tokens_are_absent(make_run, make_obs):
    base = [make_obs(f"r{i:02d}", output_tokens=None, output_fingerprint=f"fp{i}") for i in range(20)]
    same = [make_obs(f"r{i:02d}", output_tokens=None, output_fingerprint=f"fp{i}") for i in range(20)]
    assert gate(base, same, Policy())["decision"] == "promote"
    same[5] = make_obs("r05", output_tokens=None, output_fingerprint="other")
    assert gate(base, same, Policy())["decision"] == "rollback"


def test_no_comparable_output_evidence_is_a_hold(make_run, make_obs):
    base, cand = make_run()
    cand[0] = make_obs("r00", output_tokens=None, output_fingerprint="x")  # baseline has tokens only
    report = gate(base, cand, Policy())
    assert report["decision"] == "hold"
    assert check(report, "output_exact")["status"] == "missing"
    assert check(report, "output_exact")["requests"] == ["r00"]


NUMERIC = {"output": {"rules": [{"backend": "bf16", "mode": "numeric", "abs_tol": 0.01, "rel_tol": 0.1}]}}


@pytest.mark.parametrize(("baseline", "candidate", "decision"), [
    ((1.0, -2.0), (1.1, -2.2), "promote"),   # |d| = 0.1 <= 0.01 + 0.1 * 1; 0.2 <= 0.01 + 0.2
    ((1.0, 0.0), (1.0, 0.01), "promote"),    # zero baseline: the absolute tolerance
    ((1.0, 0.0), (1.0, 0.02), "rollback"),
    ((10.0,), (11.2,), "rollback"),          # 1.2 > 0.01 + 1.0
    ((math.nan, 1.0), (math.nan, 1.0), "promote"),
    ((math.nan,), (0.0,), "rollback"),
    ((math.inf,), (math.inf,), "promote"),
    ((math.inf,), (1e308,), "rollback"),
    ((1.0, 2.0), (1.0,), "rollback"),        # shape differs
])
def test_numeric_tolerance(make_obs, baseline, candidate, decision):
    base = [make_obs(f"r{i:02d}", output_tokens=None, output_values=baseline, output_shape=(len(baseline),))
            for i in range(20)]
    cand = [make_obs(f"r{i:02d}", backend="bf16", output_tokens=(9,), output_values=candidate,
                     output_shape=(len(candidate),)) for i in range(20)]
    report = gate(base, cand, parse_policy(NUMERIC))
    assert report["decision"] == decision
    assert check(report, "output_exact")["status"] == "not_applicable"


def test_numeric_rule_applies_only_to_its_scope(make_obs):
    values = dict(output_tokens=None, output_values=(1.0,), output_shape=(1,))
    base = [make_obs(f"r{i:02d}", **values) for i in range(20)]
    cand = [make_obs(f"r{i:02d}", backend="avx2", output_tokens=None, output_values=(1.05,),
                     output_shape=(1,)) for i in range(20)]
    report = gate(base, cand, parse_policy(NUMERIC))  # rule is for backend bf16, this is avx2
    assert report["decision"] == "rollback"
    assert check(report, "output_exact")["status"] == "fail"


def test_error_rate_rule(make_run, make_obs):
    base, cand = make_run(100)
    cand[0] = make_obs("r00", ok=False, error="boom", latency_ms=None)
    # 1 new error in 100 = +0.01: exactly at the default limit
    assert check(gate(base, cand, Policy()), "error_rate")["status"] == "pass"
    cand[1] = make_obs("r01", ok=False, error="boom", latency_ms=None)
    report = gate(base, cand, Policy())
    assert report["decision"] == "rollback"
    assert check(report, "error_rate")["measured"] == {"baseline": 0.0, "candidate": 0.02, "increase": 0.02}
    # errors on both sides do not count against the candidate
    base[0] = make_obs("r00", ok=False, error="also", latency_ms=None)
    base[1] = make_obs("r01", ok=False, error="also", latency_ms=None)
    assert gate(base, cand, Policy())["decision"] == "promote"


def test_latency_p95_rule_nearest_rank(make_obs):
    # 20 latencies 1..20 ms: nearest-rank p95 is the 19th value
    base = [make_obs(f"r{i:02d}", latency_ms=float(i + 1)) for i in range(20)]
    at_limit = [make_obs(f"r{i:02d}", latency_ms=(i + 1) * 1.1) for i in range(20)]
    over = [make_obs(f"r{i:02d}", latency_ms=(i + 1) * 1.1 + (0.1 if i == 18 else 0)) for i in range(20)]
    ok = check(gate(base, at_limit, Policy()), "latency_p95")
    assert ok["status"] == "pass"
    assert ok["measured"]["baseline_p95_ms"] == 19.0
    assert ok["measured"]["candidate_p95_ms"] == pytest.approx(20.9)
    report = gate(base, over, Policy())
    assert report["decision"] == "hold"
    assert check(report, "latency_p95")["requests"][0] == "r18"


def test_ttft_and_decode_rules(make_run):
    assert gate(*make_run(ttft_ms=23.0), Policy())["decision"] == "hold"  # +15 %
    assert gate(*make_run(ttft_ms=22.0), Policy())["decision"] == "promote"  # +10 %
    report = gate(*make_run(decode_ms=(10.0, 12.0)), Policy())  # pooled p95 10 -> 12
    assert report["decision"] == "hold"
    assert check(report, "decode_p95")["measured"]["regression"] == pytest.approx(0.2)


def test_missing_timing_evidence_is_a_hold_unless_disabled(make_run):
    base, cand = make_run(ttft_ms=None)
    report = gate(base, cand, Policy())
    assert report["decision"] == "hold"
    assert check(report, "ttft_p95")["status"] == "missing"
    relaxed = gate(base, cand, parse_policy({"disable": ["ttft_p95"]}))
    assert relaxed["decision"] == "promote"
    assert check(relaxed, "ttft_p95")["status"] == "disabled"


def test_regression_from_zero_latency_is_unbounded(make_run, make_obs):
    base = [make_obs(f"r{i:02d}", ttft_ms=0.0) for i in range(20)]
    cand = [make_obs(f"r{i:02d}", ttft_ms=1.0) for i in range(20)]
    ttft = check(gate(base, cand, Policy()), "ttft_p95")
    assert ttft["status"] == "fail" and ttft["measured"]["regression"] is None


def test_kv_pressure_rule(make_run):
    assert gate(*make_run(kv_pages=90), Policy())["decision"] == "promote"
    report = gate(*make_run(kv_pages=91), Policy())
    assert report["decision"] == "hold"
    assert check(report, "kv_pressure")["measured"]["candidate_peak"] == 0.91


def test_matched_traffic_rule(make_run, make_obs):
    assert gate(*make_run(19), Policy())["decision"] == "hold"  # fewer than 20
    base, cand = make_run(30)
    extra = [make_obs(f"x{i}") for i in range(4)]  # 30 of 34 = 88 % < 90 %
    report = gate(base, cand + extra, Policy())
    assert report["decision"] == "hold"
    assert check(report, "matched_traffic")["measured"]["candidate_only"] == 4
    # a different model under the same id is not a match
    cand[0] = make_obs("r00", model="other")
    report = gate(base, cand, parse_policy({"min_matched_fraction": 0.5}))
    assert report["traffic"]["model_mismatch"] == ["r00"] and report["traffic"]["matched"] == 29


def test_required_provenance_rule(make_run, make_obs):
    base, cand = make_run()
    policy = parse_policy({"required_provenance": ["route", "scheduler"]})
    assert gate(base, cand, policy)["decision"] == "promote"
    cand[2] = make_obs("r02", scheduler=None)
    report = gate(base, cand, policy)
    assert report["decision"] == "hold"
    assert check(report, "provenance")["requests"] == ["r02"]


def test_rollback_outranks_hold(make_run, make_obs):
    base, cand = make_run(latency_ms=500.0)
    cand[0] = make_obs("r00", latency_ms=500.0, output_tokens=(0,))
    report = gate(base, cand, Policy())
    assert report["decision"] == "rollback"
    assert [t["response"] for t in report["triage"]] == ["rollback", "hold"]
    assert list(report)[0] == "decision"


def test_segments_split_by_candidate_backend_accelerator_version(make_run, make_obs):
    base, cand = make_run()
    for i in range(0, 20, 2):
        cand[i] = make_obs(f"r{i:02d}", backend="neon", accelerator="rpi5", model_version="2",
                           latency_ms=150.0)
    segments = gate(base, cand, Policy())["segments"]
    assert [(s["backend"], s["accelerator"], s["model_version"], s["requests"]) for s in segments] == [
        ("avx2", "x86", "2", 10), ("neon", "rpi5", "2", 10)]
    assert segments[1]["latency_p95_ms"] == {"baseline": 100.0, "candidate": 150.0}
