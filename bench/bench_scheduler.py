"""Scheduler overhead benchmark.

1. Per-tick cost of ``Scheduler.step()`` with 256 requests active and
   10,000 queued (target: median under 50 us), for several decode widths and
   both admission modes, in steady state (each request that leaves is
   replaced by a new arrival, outside the timed region). The executor is the
   simulated one, so the time is the scheduler's own bookkeeping (arrivals,
   aging, admission, paging, preemption, round-robin, trace record) plus a
   loop over the batch to decide stops.
2. Wall time to replay 100,000 requests end to end, split into scheduling,
   fingerprinting and report building.

Prints a table and writes bench/results/scheduler.json.

    python bench/bench_scheduler.py            # full run (a few minutes)
    python bench/bench_scheduler.py --quick    # smaller, for a smoke test
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path

from edgecore.scheduler import (
    Request,
    Scheduler,
    SchedulerConfig,
    SimulatedExecutor,
    Workload,
    canonical_bytes,
    fnv1a_64,
)
from edgecore.scheduler.report import build_report

RESULTS = Path(__file__).resolve().parent / "results" / "scheduler.json"


class Load:
    """A scheduler kept at ``active`` running and about ``queued`` waiting requests:
    every request that leaves is replaced by a new arrival (steady state)."""

    def __init__(self, admission: str, width: int, active: int, queued: int, seed: int):
        self.rng = random.Random(seed)
        self.outputs: dict[str, int] = {}
        self.count = 0
        # reserve: at most 256 + 255 tokens per request = 32 pages of 16. on_demand gets
        # 14 pages per active request, about what an average request grows to (~13),
        # so the steady state sometimes preempts
        pages = active * (32 if admission == "reserve" else 14)
        config = SchedulerConfig(kv_pages=pages, page_tokens=16, max_active=active, prefill_budget=2048,
                                 decode_width=width, admission=admission, aging_ticks=256)
        self.scheduler = Scheduler(config, SimulatedExecutor(self.outputs))
        self.add(active + queued)
        while True:  # warm up until the active set is full
            rec = self.scheduler.step()
            self.refill(rec)
            if rec.active >= active:
                break

    def add(self, n: int) -> None:
        rng = self.rng
        for _ in range(n):
            rid = f"req-{self.count:07d}"
            self.count += 1
            max_new = rng.randint(16, 256)
            self.outputs[rid] = rng.randint(1, max_new)
            self.scheduler.submit(Request(rid, rng.randint(16, 256), max_new, rng.randint(0, 3),
                                          self.scheduler.now))

    def refill(self, rec) -> None:
        self.add(len(rec.completed) + len(rec.rejected))


def tick_overhead(admission: str, width: int, ticks: int, active: int = 256, queued: int = 10_000) -> dict:
    load = Load(admission, width, active, queued, seed=width)
    times = []
    actives, queues, preempted = [], [], 0
    step = load.scheduler.step
    clock = time.perf_counter_ns
    for _ in range(ticks):
        t0 = clock()
        rec = step()
        times.append(clock() - t0)
        load.refill(rec)  # not timed: arrivals of the next tick
        actives.append(rec.active)
        queues.append(rec.queued)
        preempted += len(rec.preempted)
    times.sort()
    return {
        "admission": admission,
        "decode_width": width,
        "ticks": ticks,
        "median_us": round(statistics.median(times) / 1000, 2),
        "p95_us": round(times[int(0.95 * (len(times) - 1))] / 1000, 2),
        "min_active": min(actives),
        "min_queued": min(queues),
        "max_queued": max(queues),
        "preemptions": preempted,
    }


def replay_wall(requests: int) -> dict:
    rng = random.Random(42)
    reqs, outputs = [], {}
    for i in range(requests):
        max_new = rng.randint(8, 96)
        reqs.append(Request(f"req-{i:06d}", rng.randint(16, 384), max_new, rng.randint(0, 3), i // 2))
        outputs[reqs[-1].id] = rng.randint(1, max_new)
    workload = Workload(SchedulerConfig(kv_pages=4096, page_tokens=16, max_active=64, prefill_budget=1024,
                                        decode_width=32, admission="reserve", aging_ticks=256),
                        tuple(reqs), outputs)
    t0 = time.perf_counter()
    scheduler = Scheduler(workload.config, SimulatedExecutor(workload.output_tokens))
    scheduler.submit_all(workload.requests)
    trace = scheduler.run()
    t1 = time.perf_counter()
    data = canonical_bytes(trace)
    t2 = time.perf_counter()
    fp = f"{fnv1a_64(data):016x}"
    t3 = time.perf_counter()
    report = build_report(scheduler, trace, fp, detail=True)
    t4 = time.perf_counter()
    return {
        "requests": requests,
        "ticks": len(trace),
        "decode_steps": scheduler.decode_steps,
        "completed": report["summary"]["completed"],
        "schedule_s": round(t1 - t0, 2),
        "serialise_s": round(t2 - t1, 2),
        "fnv_s": round(t3 - t2, 2),
        "report_s": round(t4 - t3, 2),
        "total_s": round(t4 - t0, 2),
        "canonical_bytes": len(data),
        "fingerprint": fp,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer ticks and requests")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs per configuration; the run with the median median is reported")
    args = parser.parse_args()
    ticks = 300 if args.quick else 2000
    n_replay = 10_000 if args.quick else 100_000

    rows = []
    for admission in ("reserve", "on_demand"):
        for width in (16, 64, 256):
            runs = sorted((tick_overhead(admission, width, ticks) for _ in range(max(1, args.repeat))),
                          key=lambda r: r["median_us"])
            r = runs[len(runs) // 2]
            r["median_us_all_runs"] = [x["median_us"] for x in runs]
            rows.append(r)
            print(f"  {admission:<9} width {width:>3}: median {r['median_us']:8.2f} us/tick", file=sys.stderr)
    replay_row = replay_wall(n_replay)

    print()
    print(f"Scheduler overhead per tick (256 active, ~10,000 queued, simulated executor; "
          f"{ticks} ticks, median of {max(1, args.repeat)} runs)")
    head = (f"{'admission':<10} {'width':>5} {'median us':>10} {'p95 us':>9} {'active':>7} "
            f"{'queued':>13} {'preempt':>8}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['admission']:<10} {r['decode_width']:>5} {r['median_us']:>10.2f} {r['p95_us']:>9.2f} "
              f"{r['min_active']:>7} {r['min_queued']:>6}-{r['max_queued']:<6} {r['preemptions']:>8}")
    print()
    rr = replay_row
    print(f"Replay of {rr['requests']:,} requests: {rr['total_s']:.2f} s total "
          f"(schedule {rr['schedule_s']:.2f} s, serialise {rr['serialise_s']:.2f} s, "
          f"FNV-1a {rr['fnv_s']:.2f} s over {rr['canonical_bytes']:,} bytes, report {rr['report_s']:.2f} s); "
          f"{rr['ticks']:,} ticks, {rr['decode_steps']:,} decode steps, fingerprint {rr['fingerprint']}")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "benchmark": "scheduler",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "quick": args.quick,
        "repeat": args.repeat,
        "tick_overhead": rows,
        "replay": replay_row,
    }, indent=2) + "\n")
    print(f"\nwrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
