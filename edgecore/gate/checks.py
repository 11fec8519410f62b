"""The gate's checks: each measures one thing over the matched traffic and
compares it with the policy.

A check's status is ``pass``, ``fail``, ``missing`` (no evidence to decide),
``disabled`` (by the policy) or ``not_applicable`` (nothing in its scope).
Latency-like regressions are ``candidate_p95 / baseline_p95 - 1`` with
nearest-rank p95 over the matched requests that succeeded on both sides.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .._stats import nearest_rank
from .observation import Observation, values_close
from .policy import CHECKS, NUMERIC, Policy

PASS, FAIL, MISSING, DISABLED, NOT_APPLICABLE = "pass", "fail", "missing", "disabled", "not_applicable"


@dataclass(frozen=True)
class Pair:
    """A request seen by both runs."""

    request_id: str
    baseline: Observation
    candidate: Observation

    @property
    def both_ok(self) -> bool:
        return self.baseline.ok and self.candidate.ok


@dataclass(frozen=True)
class Traffic:
    """Baseline and candidate joined by request id (and model)."""

    pairs: tuple[Pair, ...]
    baseline_only: tuple[str, ...]
    candidate_only: tuple[str, ...]
    model_mismatch: tuple[str, ...]  # same id, different model: not comparable

    @property
    def distinct_requests(self) -> int:
        return len(self.pairs) + len(self.baseline_only) + len(self.candidate_only) + len(self.model_mismatch)


def join_traffic(baseline: list[Observation], candidate: list[Observation]) -> Traffic:
    """Pair observations by request id; pairs are sorted by id."""
    base = {o.request_id: o for o in baseline}
    cand = {o.request_id: o for o in candidate}
    pairs, mismatch = [], []
    for rid in sorted(base.keys() & cand.keys()):
        if base[rid].model != cand[rid].model:
            mismatch.append(rid)
        else:
            pairs.append(Pair(rid, base[rid], cand[rid]))
    return Traffic(tuple(pairs), tuple(sorted(base.keys() - cand.keys())),
                   tuple(sorted(cand.keys() - base.keys())), tuple(mismatch))


@dataclass
class Check:
    """One check's outcome, with what was measured and the threshold it met or missed."""

    name: str
    status: str
    measured: Any
    threshold: Any
    detail: str
    requests: list[str] = field(default_factory=list)  # implicated request ids

    @property
    def response(self) -> str | None:
        """The decision this check asks for: rollback/hold, or None when it passed."""
        if self.status == FAIL:
            return CHECKS[self.name]
        if self.status == MISSING:
            return "hold"
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "status": self.status, "response": self.response,
            "measured": self.measured, "threshold": self.threshold, "detail": self.detail,
            "requests": self.requests,
        }


def _r(x: float | None) -> float | None:
    """Round a measured ratio for the report (the comparison used the exact value)."""
    return None if x is None else round(x, 6)


def matched_traffic(t: Traffic, p: Policy) -> Check:
    n = len(t.pairs)
    total = t.distinct_requests
    fraction = n / total if total else 0.0
    threshold = {"min_requests": p.min_matched_requests, "min_fraction": p.min_matched_fraction}
    measured = {"matched": n, "fraction": _r(fraction), "baseline_only": len(t.baseline_only),
                "candidate_only": len(t.candidate_only), "model_mismatch": len(t.model_mismatch)}
    ok = n >= p.min_matched_requests and fraction >= p.min_matched_fraction
    detail = f"{n} of {total} distinct requests matched ({fraction:.1%})"
    unmatched = sorted(t.baseline_only + t.candidate_only + t.model_mismatch)
    return Check("matched_traffic", PASS if ok else FAIL, measured, threshold, detail,
                 [] if ok else unmatched)


def provenance(t: Traffic, p: Policy) -> Check:
    if not p.required_provenance:
        return Check("provenance", NOT_APPLICABLE, None, [], "no provenance required by the policy")
    lacking = sorted({pair.request_id for pair in t.pairs for obs in (pair.baseline, pair.candidate)
                      for name in p.required_provenance if getattr(obs, name) is None})
    status = FAIL if lacking else PASS
    detail = (f"{len(lacking)} matched request(s) lack {' or '.join(p.required_provenance)} "
              "on at least one side" if lacking else "every matched observation carries it")
    return Check("provenance", status, {"requests_lacking": len(lacking)},
                 {"required": list(p.required_provenance), "max_requests_lacking": 0}, detail, lacking)


def error_rate(t: Traffic, p: Policy) -> Check:
    n = len(t.pairs)
    threshold = {"max_increase": p.max_error_rate_increase}
    if not n:
        return Check("error_rate", MISSING, None, threshold, "no matched requests")
    base_errors = sum(1 for pair in t.pairs if not pair.baseline.ok)
    cand_errors = sum(1 for pair in t.pairs if not pair.candidate.ok)
    base, cand = base_errors / n, cand_errors / n
    increase = cand - base
    new_errors = [pair.request_id for pair in t.pairs if pair.baseline.ok and not pair.candidate.ok]
    ok = cand_errors - base_errors <= p.max_error_rate_increase * n
    detail = f"error rate {base:.2%} -> {cand:.2%} ({increase:+.2%})"
    return Check("error_rate", PASS if ok else FAIL,
                 {"baseline": _r(base), "candidate": _r(cand), "increase": _r(increase)},
                 threshold, detail, [] if ok else new_errors)


def _exact_equal(b: Observation, c: Observation) -> bool | None:
    """Compare the strongest output evidence both sides have; None when none."""
    if b.output_tokens is not None and c.output_tokens is not None:
        return b.output_tokens == c.output_tokens
    if b.output_fingerprint is not None and c.output_fingerprint is not None:
        return b.output_fingerprint == c.output_fingerprint
    if b.output_values is not None and c.output_values is not None:
        return b.output_shape == c.output_shape and all(
            values_close(x, y, 0.0, 0.0) for x, y in zip(b.output_values, c.output_values, strict=True))
    return None


def output_exact(t: Traffic, p: Policy) -> Check:
    scoped = [pair for pair in t.pairs if p.rule_for(pair.candidate).mode != NUMERIC]
    threshold = {"max_mismatches": 0,
                 "evidence": "output_tokens, else output_fingerprint, else output_values"}
    if not scoped:
        return Check("output_exact", NOT_APPLICABLE, None, threshold, "no request under exact comparison")
    compared = [pair for pair in scoped if pair.both_ok]
    mismatched, lacking = [], []
    for pair in compared:
        equal = _exact_equal(pair.baseline, pair.candidate)
        if equal is None:
            lacking.append(pair.request_id)
        elif not equal:
            mismatched.append(pair.request_id)
    measured = {"compared": len(compared) - len(lacking), "mismatches": len(mismatched),
                "missing_evidence": len(lacking)}
    if mismatched:
        return Check("output_exact", FAIL, measured, threshold,
                     f"{len(mismatched)} of {measured['compared']} outputs differ from the baseline",
                     mismatched)
    if lacking or not compared:
        return Check("output_exact", MISSING, measured, threshold,
                     f"{len(lacking)} request(s) have no output evidence comparable with the baseline"
                     if lacking else "no request succeeded on both sides", lacking)
    return Check("output_exact", PASS, measured, threshold, f"all {len(compared)} outputs identical")


def output_numeric(t: Traffic, p: Policy) -> Check:
    scoped = [pair for pair in t.pairs if p.rule_for(pair.candidate).mode == NUMERIC]
    rules = [r for r in (p.output, *p.output_rules) if r.mode == NUMERIC]
    threshold = {"rules": [r.to_json() for r in rules],
                 "test": "|candidate - baseline| <= abs_tol + rel_tol * |baseline|, every element"}
    if not scoped:
        return Check("output_numeric", NOT_APPLICABLE, None, threshold, "no request under numeric comparison")
    violations, lacking = [], []
    max_abs = max_rel = 0.0
    compared = 0
    for pair in scoped:
        if not pair.both_ok:
            continue
        b, c = pair.baseline, pair.candidate
        if b.output_values is None or c.output_values is None:
            lacking.append(pair.request_id)
            continue
        compared += 1
        rule = p.rule_for(c)
        if b.output_shape != c.output_shape:
            violations.append(pair.request_id)
            continue
        bad = False
        for x, y in zip(b.output_values, c.output_values, strict=True):
            if not values_close(x, y, rule.abs_tol, rule.rel_tol):
                bad = True
            diff = abs(y - x)
            if math.isfinite(diff):  # NaN/inf agreement is judged by values_close alone
                max_abs = max(max_abs, diff)
                if x != 0:
                    max_rel = max(max_rel, diff / abs(x))
        if bad:
            violations.append(pair.request_id)
    measured = {"compared": compared, "violations": len(violations), "missing_evidence": len(lacking),
                "max_abs_error": _r(max_abs), "max_rel_error": _r(max_rel)}
    if violations:
        return Check("output_numeric", FAIL, measured, threshold,
                     f"{len(violations)} of {compared} output vectors outside tolerance", violations)
    if lacking or not compared:
        return Check("output_numeric", MISSING, measured, threshold,
                     f"{len(lacking)} request(s) lack output_values on a side" if lacking
                     else "no request succeeded on both sides", lacking)
    return Check("output_numeric", PASS, measured, threshold,
                 f"all {compared} output vectors within tolerance (max abs error {max_abs:.3g})")


def _regression(name: str, limit: float, unit: str, base: list[float], cand: list[float],
                what: str, slowest: Callable[[], list[str]]) -> Check:
    threshold = {"max_regression": limit}
    if not base or not cand:
        return Check(name, MISSING, None, threshold, f"no {what} recorded on both sides")
    b95 = nearest_rank(sorted(base), 95)
    c95 = nearest_rank(sorted(cand), 95)
    regression = c95 / b95 - 1 if b95 > 0 else (0.0 if c95 == 0 else None)  # None: up from zero
    # compared as a product, so that "exactly 10 % slower" passes a 10 % limit despite rounding
    ok = c95 <= b95 * (1 + limit)
    detail = (f"p95 {what} {b95:.3f} -> {c95:.3f} {unit} "
              + (f"({regression:+.1%})" if regression is not None else "(from zero)"))
    return Check(name, PASS if ok else FAIL,
                 {f"baseline_p95_{unit}": _r(b95), f"candidate_p95_{unit}": _r(c95),
                  "regression": _r(regression), "samples": len(cand)},
                 threshold, detail, [] if ok else slowest())


def _slowest(pairs: list[Pair], value: Callable[[Observation], float]) -> Callable[[], list[str]]:
    """The requests whose candidate got slower than the baseline, worst first (up to 10)."""
    def pick() -> list[str]:
        worse = sorted(((value(pr.candidate) - value(pr.baseline), pr.request_id) for pr in pairs),
                       key=lambda x: (-x[0], x[1]))
        return [rid for delta, rid in worse if delta > 0][:10]
    return pick


def latency_p95(t: Traffic, p: Policy) -> Check:
    pairs = [pr for pr in t.pairs if pr.both_ok]
    return _regression("latency_p95", p.max_latency_p95_regression, "ms",
                       [pr.baseline.latency_ms for pr in pairs], [pr.candidate.latency_ms for pr in pairs],
                       "latency", _slowest(pairs, lambda o: o.latency_ms))


def ttft_p95(t: Traffic, p: Policy) -> Check:
    pairs = [pr for pr in t.pairs if pr.both_ok and pr.baseline.ttft_ms is not None
             and pr.candidate.ttft_ms is not None]
    return _regression("ttft_p95", p.max_ttft_p95_regression, "ms",
                       [pr.baseline.ttft_ms for pr in pairs], [pr.candidate.ttft_ms for pr in pairs],
                       "time to first token", _slowest(pairs, lambda o: o.ttft_ms))


def decode_p95(t: Traffic, p: Policy) -> Check:
    pairs = [pr for pr in t.pairs if pr.both_ok and pr.baseline.decode_ms and pr.candidate.decode_ms]
    base = [x for pr in pairs for x in pr.baseline.decode_ms]
    cand = [x for pr in pairs for x in pr.candidate.decode_ms]
    return _regression("decode_p95", p.max_decode_p95_regression, "ms", base, cand,
                       "per-token decode latency", _slowest(pairs, lambda o: max(o.decode_ms)))


def kv_pressure(t: Traffic, p: Policy) -> Check:
    threshold = {"max_pressure": p.max_kv_pressure}
    seen = [(pr.candidate.kv_pressure, pr.request_id) for pr in t.pairs
            if pr.candidate.kv_pressure is not None]
    if not seen:
        return Check("kv_pressure", MISSING, None, threshold,
                     "no candidate observation records kv_pages and kv_pages_total")
    peak = max(x for x, _ in seen)
    base = [pr.baseline.kv_pressure for pr in t.pairs if pr.baseline.kv_pressure is not None]
    over = sorted(pr.request_id for pr in t.pairs if pr.candidate.kv_pressure is not None
                  and pr.candidate.kv_pages > p.max_kv_pressure * pr.candidate.kv_pages_total)
    detail = f"peak candidate KV pressure {peak:.1%} over {len(seen)} request(s)"
    return Check("kv_pressure", FAIL if over else PASS,
                 {"candidate_peak": _r(peak), "baseline_peak": _r(max(base)) if base else None,
                  "requests_over": len(over)}, threshold, detail, over)


RUNNERS: dict[str, Callable[[Traffic, Policy], Check]] = {
    "matched_traffic": matched_traffic,
    "provenance": provenance,
    "output_exact": output_exact,
    "output_numeric": output_numeric,
    "error_rate": error_rate,
    "latency_p95": latency_p95,
    "ttft_p95": ttft_p95,
    "decode_p95": decode_p95,
    "kv_pressure": kv_pressure,
}


def run_checks(t: Traffic, p: Policy) -> list[Check]:
    """Every check, in the order of ``policy.CHECKS``; disabled ones say so."""
    out = []
    for name in CHECKS:
        if name in p.disable:
            out.append(Check(name, DISABLED, None, None, "disabled by the policy"))
        else:
            out.append(RUNNERS[name](t, p))
    return out
