"""Small cases worked out by hand (the derivations are in the comments)."""

from __future__ import annotations

import pytest

from edgecore.scheduler import Request, Scheduler, SchedulerConfig, SimulatedExecutor, Workload


def rows(trace):
    return [(r.tick, r.admitted, r.prefill, r.decoded, r.completed, r.preempted, r.rejected,
             r.queued, r.active, r.used_pages) for r in trace]


def test_skip_without_head_of_line_blocking_then_aging_barrier(checked_run):
    # 4 pages of 4 tokens, reserve mode. H needs 2 pages (4+5-1=8 tokens), L 3
    # pages (4+9-1=12), every s* 1 page (2+2-1=3). L is more urgent than the s*
    # but does not fit, so s1, s2, s3 are admitted past it; at tick 3 L has
    # waited aging_ticks=3 and becomes a barrier: s4 fits at ticks 3 and 4 but
    # waits; H completes at tick 4, L is admitted at tick 5 with s4 behind it.
    cfg = SchedulerConfig(kv_pages=4, page_tokens=4, max_active=3, prefill_budget=16, decode_width=3,
                          admission="reserve", aging_ticks=3)
    reqs = (
        Request("H", 4, 5, 0, 0), Request("L", 4, 9, 0, 0), Request("s1", 2, 2, 1, 0),
        Request("s2", 2, 2, 1, 1), Request("s3", 2, 2, 1, 2), Request("s4", 2, 2, 1, 3),
        Request("s5", 2, 2, 1, 4),
    )
    scheduler, trace = checked_run(Workload(cfg, reqs))
    assert rows(trace) == [
        (0, ["H", "s1"], [("H", 4), ("s1", 2)], [], [], [], [], 1, 2, 3),
        (1, ["s2"], [("s2", 2)], ["H", "s1"], ["s1"], [], [], 1, 3, 4),
        (2, ["s3"], [("s3", 2)], ["H", "s2"], ["s2"], [], [], 1, 3, 4),
        (3, [], [], ["H", "s3"], ["s3"], [], [], 2, 2, 3),
        (4, [], [], ["H"], ["H"], [], [], 3, 1, 2),
        (5, ["L", "s4"], [("L", 4), ("s4", 2)], [], [], [], [], 1, 2, 4),
        (6, [], [], ["L", "s4"], ["s4"], [], [], 1, 2, 4),
        # s5 arrived at 4 and has waited 3 ticks: aged, admitted first
        (7, ["s5"], [("s5", 2)], ["L"], [], [], [], 0, 2, 4),
        (8, [], [], ["L", "s5"], ["s5"], [], [], 0, 2, 4),
        (9, [], [], ["L"], [], [], [], 0, 1, 3),
        (10, [], [], ["L"], [], [], [], 0, 1, 3),
        (11, [], [], ["L"], [], [], [], 0, 1, 3),
        (12, [], [], ["L"], [], [], [], 0, 1, 3),
        (13, [], [], ["L"], ["L"], [], [], 0, 1, 3),
    ]
    st = scheduler.states
    assert (st["L"].waiting_ticks, st["L"].service_ticks) == (5, 9)
    assert (st["s4"].waiting_ticks, st["s5"].waiting_ticks) == (2, 3)


def test_preemption_requeues_at_head_and_recomputes(checked_run):
    # 4 pages of 2 tokens, on demand. Tick 0: A takes 2 pages (3-token prompt),
    # B 1 page; both sample their first token from the prefill. Tick 1: B's
    # page is full (2 tokens), it takes the last free page. Tick 2: A's pages
    # are full, none is free: the victim is B (higher key), its 2 pages go back,
    # A takes one. Tick 3: B (needs 2 pages for prompt 2 + 2 generated) does
    # not fit in the 1 free page and blocks. Tick 4: A has completed; B is
    # readmitted and recomputes 4 tokens, sampling its 3rd token; tick 5: 4th.
    cfg = SchedulerConfig(kv_pages=4, page_tokens=2, max_active=2, prefill_budget=8, decode_width=2,
                          admission="on_demand", aging_ticks=100)
    scheduler, trace = checked_run(Workload(cfg, (Request("A", 3, 4, 0, 0), Request("B", 2, 4, 1, 0))))
    assert rows(trace) == [
        (0, ["A", "B"], [("A", 3), ("B", 2)], [], [], [], [], 0, 2, 3),
        (1, [], [], ["A", "B"], [], [], [], 0, 2, 4),
        (2, [], [], ["A"], [], ["B"], [], 1, 1, 3),
        (3, [], [], ["A"], ["A"], [], [], 1, 1, 3),
        (4, ["B"], [("B", 4)], [], [], [], [], 0, 1, 2),
        (5, [], [], ["B"], ["B"], [], [], 0, 1, 3),
    ]
    b = scheduler.states["B"]
    assert (b.generated, b.preemptions, b.waiting_ticks, b.service_ticks) == (4, 1, 1, 5)
    assert (scheduler.prefill_tokens, scheduler.recompute_tokens, scheduler.decode_steps) == (9, 4, 5)


def test_request_that_outgrows_the_whole_cache_is_rejected_not_preempted_forever(checked_run):
    # 2 pages of 2 tokens. X (3-token prompt) fills 2 pages after one decode;
    # at tick 2 it is alone, holds both pages and needs a third: rejected.
    # Y, waiting for the only active slot, is admitted in the same tick.
    cfg = SchedulerConfig(kv_pages=2, page_tokens=2, max_active=1, prefill_budget=8, decode_width=1,
                          admission="on_demand", aging_ticks=10)
    scheduler, trace = checked_run(Workload(cfg, (Request("X", 3, 10, 0, 0), Request("Y", 2, 2, 1, 0))))
    assert rows(trace) == [
        (0, ["X"], [("X", 3)], [], [], [], [], 1, 1, 2),
        (1, [], [], ["X"], [], [], [], 1, 1, 2),
        (2, ["Y"], [("Y", 2)], [], [], [], ["X"], 0, 1, 1),
        (3, [], [], ["Y"], ["Y"], [], [], 0, 1, 2),
    ]
    x = scheduler.states["X"]
    assert (x.where, x.reject_reason, x.generated) == ("rejected", "outgrew_kv_capacity", 2)
    assert "holds all 2 KV pages" in x.reject_detail


@pytest.mark.parametrize(("admission", "prompt", "max_new", "rejected", "reason"), [
    # reserve: 30 + 11 - 1 = 40 tokens = 10 pages of 4 fits exactly; 41 does not
    ("reserve", 30, 11, False, None),
    ("reserve", 30, 12, True, "exceeds_kv_capacity"),
    # on demand only the prompt must fit at admission
    ("on_demand", 40, 500, False, None),
    ("on_demand", 41, 1, True, "prompt_exceeds_kv_capacity"),
])
def test_rejection_only_when_it_can_never_fit(admission, prompt, max_new, rejected, reason):
    cfg = SchedulerConfig(kv_pages=10, page_tokens=4, max_active=2, prefill_budget=64, decode_width=2,
                          admission=admission)
    sched = Scheduler(cfg, SimulatedExecutor({"big": 1}))
    sched.submit(Request("big", prompt, max_new, 0, 2))
    trace = sched.run()
    state = sched.states["big"]
    assert (state.where == "rejected") is rejected
    assert state.reject_reason == reason
    if rejected:
        assert trace[0].tick == 2 and trace[0].rejected == ["big"] and state.finish_tick == 2


def test_long_prompt_is_prefilled_in_chunks_of_the_budget(checked_run):
    # 10-token budget: P (25 tokens) takes 10, 10, 5; Q (4 tokens) arrives at
    # tick 1 and gets nothing until tick 2's leftover 5.
    cfg = SchedulerConfig(kv_pages=16, page_tokens=4, max_active=2, prefill_budget=10, decode_width=2)
    _, trace = checked_run(Workload(cfg, (Request("P", 25, 2, 0, 0), Request("Q", 4, 1, 0, 1))))
    assert [(r.tick, r.admitted, r.prefill, r.decoded, r.completed) for r in trace] == [
        (0, ["P"], [("P", 10)], [], []),
        (1, [], [("P", 10)], [], []),
        (2, ["Q"], [("P", 5), ("Q", 4)], [], ["Q"]),
        (3, [], [], ["P"], ["P"]),
    ]


def test_round_robin_decode_rotates_through_all_active():
    cfg = SchedulerConfig(kv_pages=64, page_tokens=4, max_active=5, prefill_budget=100, decode_width=2)
    sched = Scheduler(cfg, SimulatedExecutor())
    sched.submit_all(Request(f"r{i}", 1, 4, 0, 0) for i in range(5))
    trace = sched.run()
    assert [r.decoded for r in trace[1:5]] == [["r0", "r1"], ["r2", "r3"], ["r4", "r0"], ["r1", "r2"]]


def test_priority_orders_admission_then_arrival_then_id():
    cfg = SchedulerConfig(kv_pages=64, page_tokens=4, max_active=8, prefill_budget=1000, decode_width=1)
    sched = Scheduler(cfg, SimulatedExecutor())
    sched.submit_all([Request("b", 1, 1, 1, 0), Request("a", 1, 1, 1, 0), Request("z", 1, 1, -5, 0),
                      Request("c", 1, 1, 0, 0)])
    assert sched.step().admitted == ["z", "c", "a", "b"]


def test_idle_ticks_are_skipped_and_clock_jumps_to_next_arrival():
    cfg = SchedulerConfig(kv_pages=4, page_tokens=4, max_active=1, prefill_budget=8, decode_width=1)
    sched = Scheduler(cfg, SimulatedExecutor())
    sched.submit_all([Request("a", 2, 1, 0, 0), Request("b", 2, 1, 0, 1000)])
    assert [r.tick for r in sched.run()] == [0, 1000]


def test_api_misuse_is_refused_with_a_reason():
    cfg = SchedulerConfig(kv_pages=4, page_tokens=4, max_active=1, prefill_budget=8, decode_width=1)
    sched = Scheduler(cfg, SimulatedExecutor())
    sched.submit(Request("a", 2, 1, 0, 3))
    with pytest.raises(ValueError, match="already submitted"):
        sched.submit(Request("a", 2, 1, 0, 3))
    sched.run()
    with pytest.raises(ValueError, match="already at tick 4"):
        sched.submit(Request("late", 2, 1, 0, 1))
    with pytest.raises(RuntimeError, match="nothing to schedule"):
        sched.step()
    with pytest.raises(ValueError, match="prompt_tokens must be a positive integer"):
        Request("x", 0, 1)
    with pytest.raises(ValueError, match="admission must be one of"):
        SchedulerConfig(kv_pages=1, page_tokens=1, max_active=1, prefill_budget=1, decode_width=1,
                        admission="greedy")
    with pytest.raises(ValueError, match="lone surrogate"):
        Request("\ud800", 1, 1)


def test_executor_reporting_a_stop_for_an_idle_request_is_an_error():
    class Liar(SimulatedExecutor):
        def execute(self, batch):
            return {"ghost"}

    cfg = SchedulerConfig(kv_pages=4, page_tokens=4, max_active=1, prefill_budget=8, decode_width=1)
    sched = Scheduler(cfg, Liar())
    sched.submit(Request("a", 2, 3, 0, 0))
    with pytest.raises(RuntimeError, match="ghost"):
        sched.step()
