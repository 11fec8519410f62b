"""The release decision: rollback, hold or promote, with every reason.

- ``rollback``: a correctness check failed (outputs differ, numeric outputs
  out of tolerance) or the error rate rose more than allowed.
- ``hold``: latency, TTFT or decode p95 regressed, KV pressure is too high,
  evidence is missing (including evidence for a correctness check), too
  little traffic matched, or required provenance is absent.
- ``promote``: every enabled check passed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._jsoninput import Fields
from .checks import Check, Traffic, join_traffic, run_checks
from .observation import Observation, parse_observations
from .policy import Policy, parse_policy
from .segments import segment_summaries
from .triage import triage_items

FORMAT = "edgecore.gate.v1"
ROLLBACK, HOLD, PROMOTE = "rollback", "hold", "promote"


@dataclass(frozen=True)
class GateInput:
    """A parsed gate input document."""

    policy: Policy | None
    baseline: list[Observation]
    candidate: list[Observation]


def parse_gate_input(doc: Any) -> GateInput:
    """``{"description"?, "policy"?: {...}, "baseline": [...], "candidate": [...]}``;
    errors name the path."""
    f = Fields(doc, "", 'a gate input object with "baseline" and "candidate" lists')
    f.str("description", None)  # free text for people
    policy = parse_policy(f.raw("policy"), "policy") if f.has("policy") else None
    baseline = parse_observations(f.raw("baseline"), "baseline")
    candidate = parse_observations(f.raw("candidate"), "candidate")
    f.done()
    return GateInput(policy, baseline, candidate)


def decide(checks: list[Check]) -> str:
    """Apply the decision rules to check outcomes."""
    responses = {c.response for c in checks}
    if ROLLBACK in responses:
        return ROLLBACK
    if HOLD in responses:
        return HOLD
    return PROMOTE


def gate(baseline: list[Observation], candidate: list[Observation], policy: Policy) -> dict[str, Any]:
    """Compare a candidate run with a baseline run; returns the decision report."""
    traffic: Traffic = join_traffic(baseline, candidate)
    checks = run_checks(traffic, policy)
    decision = decide(checks)
    return {
        "decision": decision,
        "format": FORMAT,
        "reasons": [f"{c.name}: {c.detail}" for c in checks if c.response is not None],
        "traffic": {
            "baseline": len(baseline), "candidate": len(candidate), "matched": len(traffic.pairs),
            "baseline_only": list(traffic.baseline_only), "candidate_only": list(traffic.candidate_only),
            "model_mismatch": list(traffic.model_mismatch),
        },
        "checks": [c.to_json() for c in checks],
        "segments": segment_summaries(traffic, checks),
        "triage": triage_items(checks, traffic),
        "policy": policy.to_json(),
    }
