"""The replay report: fingerprint, totals, pressure, utilisation, latencies.

Definitions (also in docs/scheduler.md): tick counts cover the ticks that
ran (idle stretches with nothing queued or active are skipped); "while the
batch ran" means after admission/preemption, before completions free pages.
Percentages are rounded to 2 decimals; latency percentiles use the
nearest-rank method over completed requests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._stats import summary
from .core import Scheduler
from .state import COMPLETED, REJECTED
from .trace import TickRecord

FORMAT = "edgecore.replay.v1"


def _pct(numerator: int, denominator: int) -> float:
    return round(100.0 * numerator / denominator, 2) if denominator else 0.0


def build_report(scheduler: Scheduler, trace: Sequence[TickRecord], fingerprint: str,
                 detail: bool = True) -> dict[str, Any]:
    """The report of a finished run; ``detail`` adds per-request rows and the trace."""
    if not scheduler.done:
        raise ValueError("the scheduler still has unfinished requests")
    cfg = scheduler.config
    states = list(scheduler.states.values())
    completed = [s for s in states if s.where == COMPLETED]
    rejected = sorted((s for s in states if s.where == REJECTED), key=lambda s: (s.finish_tick, s.id))
    ticks = len(trace)
    used = [rec.used_pages for rec in trace]
    queued = [rec.queued for rec in trace]
    peak_pages = max(used, default=0)
    summary_block = {
        "requests": len(states),
        "completed": len(completed),
        "rejected": len(rejected),
        "total_ticks": ticks,
        "first_tick": trace[0].tick if trace else None,
        "last_tick": trace[-1].tick if trace else None,
        "idle_ticks_skipped": (trace[-1].tick - trace[0].tick + 1 - ticks) if trace else 0,
        "prompt_tokens": scheduler.prefill_tokens - scheduler.recompute_tokens,
        "recompute_tokens": scheduler.recompute_tokens,
        "prefill_tokens": scheduler.prefill_tokens,
        "decode_tokens": scheduler.decode_steps,
        "output_tokens": sum(s.generated for s in states),
        "preemptions": scheduler.preemptions,
        "peak_pages": peak_pages,
        "peak_kv_pressure_pct": _pct(peak_pages, cfg.kv_pages),
        "max_queue_depth": max(queued, default=0),
        "queue_pressure_ticks": sum(1 for q in queued if q),
        "active_capacity_ticks": sum(1 for rec in trace if rec.active == cfg.max_active),
        "prefill_utilisation_pct": _pct(scheduler.prefill_tokens, cfg.prefill_budget * ticks),
        "decode_utilisation_pct": _pct(scheduler.decode_steps, cfg.decode_width * ticks),
        "kv_occupancy_pct": _pct(sum(used), cfg.kv_pages * ticks),
    }
    latency = {
        "waiting": summary([s.waiting_ticks for s in completed]),
        "service": summary([s.service_ticks for s in completed]),
        "first_token": summary([s.first_token_tick - s.request.arrival_tick for s in completed]),
        "end_to_end": summary([s.finish_tick - s.request.arrival_tick + 1 for s in completed]),
    }
    report: dict[str, Any] = {
        "fingerprint": fingerprint,
        "format": FORMAT,
        "config": cfg.to_json(),
        "summary": summary_block,
        "latency_ticks": latency,
        "rejections": [
            {"id": s.id, "tick": s.finish_tick, "reason": s.reject_reason, "detail": s.reject_detail}
            for s in rejected
        ],
    }
    if detail:
        report["requests"] = [
            {
                "id": s.id,
                "status": s.where,
                "priority": s.request.priority,
                "arrival_tick": s.request.arrival_tick,
                "first_admit_tick": s.first_admit_tick,
                "first_token_tick": s.first_token_tick,
                "finish_tick": s.finish_tick,
                "waiting_ticks": s.waiting_ticks,
                "service_ticks": s.service_ticks,
                "output_tokens": s.generated,
                "preemptions": s.preemptions,
            }
            for s in states
        ]
        report["trace"] = [rec.to_json() for rec in trace]
    return report
