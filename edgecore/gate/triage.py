"""Triage items: for every check that failed or lacked evidence, what was
seen, what the gate does about it, who is likely to own it and what to do
next."""

from __future__ import annotations

from typing import Any

from .checks import Check, Traffic

# check -> (owner hint, next action)
_PLAYBOOK = {
    "matched_traffic": (
        "traffic mirroring",
        "mirror more traffic to the candidate, or fix request ids/models so both runs join"),
    "provenance": (
        "release engineering",
        "record the required provenance (route, scheduler) on every observation and re-run"),
    "output_exact": (
        "kernels / model numerics",
        "replay the listed requests on both builds with identical inputs and bisect the change "
        "that alters their output tokens"),
    "output_numeric": (
        "kernels (numeric accuracy)",
        "compare the listed requests' output vectors element by element; check accumulation order, "
        "dtype and quantisation of the changed kernels, or justify a wider tolerance in the policy"),
    "error_rate": (
        "serving runtime",
        "read the candidate's error messages for the listed requests and reproduce one locally"),
    "latency_p95": (
        "performance",
        "profile the slowest listed requests on the candidate; compare ISA tier, thread count and "
        "batch width with the baseline"),
    "ttft_p95": (
        "scheduler / prefill path",
        "compare prefill chunking, admission queueing and prompt kernels between the runs"),
    "decode_p95": (
        "decode kernels",
        "profile one decode step of the listed requests; compare matvec kernels and KV layout"),
    "kv_pressure": (
        "memory / scheduler",
        "give the candidate more KV pages or lower max_active; check its page size and KV dtype"),
}


def triage_items(checks: list[Check], traffic: Traffic) -> list[dict[str, Any]]:
    """One item per failed or evidence-less check, rollback causes first."""
    segment_of = {p.request_id: p.candidate.segment for p in traffic.pairs}
    errors = {p.request_id: p.candidate.error for p in traffic.pairs if not p.candidate.ok}
    items = []
    for check in checks:
        if check.response is None:
            continue
        owner, action = _PLAYBOOK[check.name]
        if check.status == "missing":
            action = "collect the missing evidence: " + check.detail
        segments = sorted({segment_of[r] for r in check.requests if r in segment_of})
        item: dict[str, Any] = {
            "check": check.name,
            "signal": f"{check.name} {check.status}: {check.detail}",
            "response": check.response,
            "owner_hint": owner,
            "next_action": action,
            "requests": check.requests[:10],
            "segments": [{"backend": b, "accelerator": a, "model_version": v} for b, a, v in segments],
        }
        if check.name == "error_rate":
            item["errors"] = {r: errors[r] for r in check.requests[:10] if r in errors}
        items.append(item)
    items.sort(key=lambda i: i["response"] != "rollback")
    return items
