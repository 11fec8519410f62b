"""Per-segment summaries: the matched traffic split by the candidate's
(backend, accelerator, model version), so a regression confined to one
backend or one accelerator is visible."""

from __future__ import annotations

from typing import Any

from .._stats import nearest_rank
from .checks import Check, Traffic


def _p95(values: list[float]) -> float | None:
    return nearest_rank(sorted(values), 95) if values else None


def segment_summaries(traffic: Traffic, checks: list[Check]) -> list[dict[str, Any]]:
    """One summary per candidate segment, sorted by (backend, accelerator, model_version)."""
    flagged = {c.name: set(c.requests) for c in checks if c.status == "fail"}
    groups: dict[tuple[str, str, str], list] = {}
    for pair in traffic.pairs:
        groups.setdefault(pair.candidate.segment, []).append(pair)
    out = []
    for (backend, accelerator, version), pairs in sorted(groups.items()):
        ok = [p for p in pairs if p.both_ok]
        ids = {p.request_id for p in pairs}
        ttft = [p for p in ok if p.baseline.ttft_ms is not None and p.candidate.ttft_ms is not None]
        kv = [p.candidate.kv_pressure for p in pairs if p.candidate.kv_pressure is not None]
        queue = [p.candidate.queue_depth for p in pairs if p.candidate.queue_depth is not None]
        out.append({
            "backend": backend,
            "accelerator": accelerator,
            "model_version": version,
            "baseline_model_versions": sorted({p.baseline.model_version for p in pairs}),
            "requests": len(pairs),
            "baseline_errors": sum(1 for p in pairs if not p.baseline.ok),
            "candidate_errors": sum(1 for p in pairs if not p.candidate.ok),
            "output_mismatches": len(ids & flagged.get("output_exact", set())),
            "numeric_violations": len(ids & flagged.get("output_numeric", set())),
            "latency_p95_ms": {"baseline": _p95([p.baseline.latency_ms for p in ok]),
                               "candidate": _p95([p.candidate.latency_ms for p in ok])},
            "ttft_p95_ms": {"baseline": _p95([p.baseline.ttft_ms for p in ttft]),
                            "candidate": _p95([p.candidate.ttft_ms for p in ttft])},
            "candidate_peak_kv_pressure": round(max(kv), 6) if kv else None,
            "candidate_max_queue_depth": max(queue) if queue else None,
        })
    return out
