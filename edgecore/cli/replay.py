"""`edgecore replay`: run a workload through the scheduler, report and fingerprint it."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "replay",
        help="replay a scheduler workload deterministically and report it",
        description=(
            "Run every request of a workload (JSON: config + requests) through the continuous-"
            "batching scheduler with a simulated executor. Prints a summary; --output writes the "
            "JSON report (per-tick trace, fingerprint, latencies). See docs/scheduler.md."
        ),
    )
    p.add_argument("--input", required=True, metavar="WORKLOAD.json", help="workload file")
    p.add_argument("--output", metavar="REPORT.json", help="write the JSON report here ('-' = stdout)")
    p.add_argument("--summary-only", action="store_true",
                   help="leave the per-request rows and the per-tick trace out of the report")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edgecore._jsoninput import InputError
    from edgecore.cli._io import input_error, write_json
    from edgecore.scheduler import load_workload, replay

    try:
        workload = load_workload(args.input)
    except InputError as exc:
        raise input_error(args.input, exc) from None
    result = replay(workload)
    report = result.report(detail=not args.summary_only)
    if args.output:
        write_json(report, args.output)
    if args.output != "-":
        _print_summary(report, workload.name or args.input)
    return 0


def _print_summary(report: dict, name: str) -> None:
    s = report["summary"]
    lat = report["latency_ticks"]
    rows = [
        ("workload", name),
        ("fingerprint", report["fingerprint"]),
        ("requests", f"{s['requests']} ({s['completed']} completed, {s['rejected']} rejected)"),
        ("ticks", f"{s['total_ticks']} (ticks {s['first_tick']}..{s['last_tick']})"),
        ("tokens", f"{s['prompt_tokens']} prompt, {s['recompute_tokens']} recomputed, "
                   f"{s['output_tokens']} output"),
        ("preemptions", str(s["preemptions"])),
        ("peak KV", f"{s['peak_pages']} pages ({s['peak_kv_pressure_pct']}%), "
                    f"mean occupancy {s['kv_occupancy_pct']}%"),
        ("queue", f"max depth {s['max_queue_depth']}, pressure on {s['queue_pressure_ticks']} ticks"),
        ("utilisation", f"prefill {s['prefill_utilisation_pct']}%, decode {s['decode_utilisation_pct']}%"),
    ]
    for label in ("waiting", "service", "first_token"):
        v = lat[label]
        rows.append((f"{label} ticks", f"p50 {v['p50']}  p95 {v['p95']}  max {v['max']}"))
    for r in report["rejections"]:
        rows.append(("rejected", f"{r['id']} at tick {r['tick']}: {r['reason']} ({r['detail']})"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
