"""Report fields, computed by hand for the preemption case of test_hand_cases.py."""

from __future__ import annotations

import pytest

from edgecore._stats import nearest_rank, summary
from edgecore.scheduler import Request, SchedulerConfig, Workload, replay


def test_nearest_rank_percentiles():
    # the textbook example: 5 values, nearest rank
    values = [15, 20, 35, 40, 50]
    assert [nearest_rank(values, p) for p in (5, 30, 40, 50, 100)] == [15, 20, 20, 35, 50]
    assert nearest_rank([], 50) is None
    assert summary([7, 1, 3]) == {"p50": 3, "p95": 7, "max": 7}
    with pytest.raises(ValueError):
        nearest_rank(values, 0)


def test_report_fields_of_the_preemption_case():
    cfg = SchedulerConfig(kv_pages=4, page_tokens=2, max_active=2, prefill_budget=8, decode_width=2,
                          admission="on_demand", aging_ticks=100)
    # an extra request that can never fit: its 9-token prompt needs 5 pages
    reqs = (Request("A", 3, 4, 0, 0), Request("B", 2, 4, 1, 0), Request("huge", 9, 1, 0, 0))
    report = replay(Workload(cfg, reqs)).report()
    # ticks: used pages 3,4,3,3,2,3; queued 0,0,1,1,0,0; active 2,2,1,1,1,1
    assert report["summary"] == {
        "requests": 3, "completed": 2, "rejected": 1,
        "total_ticks": 6, "first_tick": 0, "last_tick": 5, "idle_ticks_skipped": 0,
        "prompt_tokens": 5, "recompute_tokens": 4, "prefill_tokens": 9,
        "decode_tokens": 5, "output_tokens": 8, "preemptions": 1,
        "peak_pages": 4, "peak_kv_pressure_pct": 100.0,
        "max_queue_depth": 1, "queue_pressure_ticks": 2, "active_capacity_ticks": 2,
        "prefill_utilisation_pct": 18.75,  # 9 / (8 * 6)
        "decode_utilisation_pct": 41.67,  # 5 / (2 * 6)
        "kv_occupancy_pct": 75.0,  # 18 / (4 * 6)
    }
    # A: waits 0, serves ticks 0..3; B: waits 1 (tick 3), serves 0..2 and 4..5
    assert report["latency_ticks"] == {
        "waiting": {"p50": 0, "p95": 1, "max": 1},
        "service": {"p50": 4, "p95": 5, "max": 5},
        "first_token": {"p50": 0, "p95": 0, "max": 0},
        "end_to_end": {"p50": 4, "p95": 6, "max": 6},
    }
    assert report["rejections"] == [{
        "id": "huge", "tick": 0, "reason": "prompt_exceeds_kv_capacity",
        "detail": "the 9-token prompt needs 5 pages; the cache has 4 pages of 2 tokens"}]
    assert list(report)[:2] == ["fingerprint", "format"]
    assert len(report["fingerprint"]) == 16 and int(report["fingerprint"], 16) >= 0
    b = next(r for r in report["requests"] if r["id"] == "B")
    assert b == {"id": "B", "status": "completed", "priority": 1, "arrival_tick": 0, "first_admit_tick": 0,
                 "first_token_tick": 0, "finish_tick": 5, "waiting_ticks": 1, "service_ticks": 5,
                 "output_tokens": 4, "preemptions": 1}
    assert [t["tick"] for t in report["trace"]] == list(range(6))
    assert report["trace"][2] == {"tick": 2, "admitted": [], "prefill": [], "decoded": ["A"], "completed": [],
                                  "preempted": ["B"], "rejected": [], "queued": 1, "active": 1,
                                  "used_pages": 3}


def test_summary_only_report_leaves_out_rows_and_trace():
    cfg = SchedulerConfig(kv_pages=4, page_tokens=2, max_active=2, prefill_budget=8, decode_width=2)
    report = replay(Workload(cfg, (Request("a", 1, 1),))).report(detail=False)
    assert "trace" not in report and "requests" not in report
    assert report["summary"]["completed"] == 1


def test_empty_workload_reports_zeros():
    cfg = SchedulerConfig(kv_pages=4, page_tokens=2, max_active=2, prefill_budget=8, decode_width=2)
    report = replay(Workload(cfg, ())).report()
    assert report["summary"]["total_ticks"] == 0 and report["summary"]["first_tick"] is None
    assert report["latency_ticks"]["waiting"] == {"p50": None, "p95": None, "max": None}
    # magic + empty id table + zero ticks
    assert report["fingerprint"] == "84631fa4b1471383"
