"""Hypothesis-generated workloads: every invariant of the scheduler, both modes.

The referee in conftest.py checks each batch (budget, width, page tables,
token accounting), each tick's admissions against a linear walk of the
documented rules, the end state, and the aging bound.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from edgecore.scheduler import Request, SchedulerConfig, Workload, fingerprint, replay


@st.composite
def workloads(draw, admission=None):
    config = SchedulerConfig(
        kv_pages=draw(st.integers(1, 24)),
        page_tokens=draw(st.integers(1, 8)),
        max_active=draw(st.integers(1, 6)),
        prefill_budget=draw(st.integers(1, 40)),
        decode_width=draw(st.integers(1, 4)),
        admission=admission or draw(st.sampled_from(["reserve", "on_demand"])),
        aging_ticks=draw(st.integers(1, 30)),
    )
    n = draw(st.integers(1, 14))
    requests = []
    outputs = {}
    for i in range(n):
        max_new = draw(st.integers(1, 20))
        requests.append(Request(
            id=f"r{i}",
            prompt_tokens=draw(st.integers(1, 60)),
            max_new_tokens=max_new,
            priority=draw(st.integers(-1, 3)),
            arrival_tick=draw(st.integers(0, 25)),
        ))
        if draw(st.booleans()):
            outputs[f"r{i}"] = draw(st.integers(1, max_new))
    return Workload(config, tuple(requests), outputs)


@settings(max_examples=150, deadline=None)
@given(workloads(admission="reserve"))
def test_reserve_mode_invariants(checked_run, workload):
    scheduler, trace = checked_run(workload)
    assert scheduler.preemptions == 0


@settings(max_examples=150, deadline=None)
@given(workloads(admission="on_demand"))
def test_on_demand_mode_invariants(checked_run, workload):
    checked_run(workload)


@settings(max_examples=40, deadline=None)
@given(workloads(), st.randoms(use_true_random=False))
def test_same_input_same_fingerprint_whatever_the_submission_order(workload, rnd):
    first = replay(workload)
    again = replay(workload)
    shuffled = list(workload.requests)
    rnd.shuffle(shuffled)
    reordered = replay(Workload(workload.config, tuple(shuffled), workload.output_tokens))
    assert first.fingerprint == again.fingerprint == reordered.fingerprint
    assert [r.to_json() for r in first.trace] == [r.to_json() for r in reordered.trace]
    assert fingerprint(first.trace) == first.fingerprint


def test_heavy_preemption_still_finishes(checked_run):
    # many long outputs on a tiny cache: preempted over and over, yet all finish
    rng = random.Random(3)
    reqs = tuple(Request(f"q{i}", rng.randint(1, 6), rng.randint(10, 30), rng.randint(0, 2),
                         rng.randint(0, 5)) for i in range(12))
    workload = Workload(SchedulerConfig(kv_pages=18, page_tokens=2, max_active=5, prefill_budget=8,
                                        decode_width=5, admission="on_demand", aging_ticks=4), reqs)
    scheduler, _ = checked_run(workload)
    assert scheduler.preemptions >= 15
    assert max(s.preemptions for s in scheduler.states.values()) >= 3
    assert all(s.where == "completed" for s in scheduler.states.values())
