"""`edgecore status`: the device's state and whether it is constrained."""

from __future__ import annotations

import argparse
import json

from edgecore.cli import CliError

EXIT_CONSTRAINED = 3  # with --check


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "status", help="show CPUs, load, memory, temperatures, throttling, and a 'constrained' verdict",
        description="Report the device as it is (values the system does not expose are shown as unknown) "
                    "and whether it is constrained: hot, low on memory, or loaded.")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--max-temp", type=float, default=80.0, metavar="C",
                   help="hot at or above this temperature in °C (default 80)")
    p.add_argument("--trip-margin", type=float, default=5.0, metavar="C",
                   help="hot within this many °C of a sensor's throttling trip point (default 5)")
    p.add_argument("--min-available", default="10%", metavar="SIZE|PCT",
                   help="low memory below this much available memory: a size (512M) or a percentage of "
                        "the total (default 10%%)")
    p.add_argument("--max-load", type=float, default=1.0, metavar="X",
                   help="loaded when the 1-minute load per usable CPU reaches X (default 1.0)")
    p.add_argument("--check", action="store_true",
                   help=f"exit with status {EXIT_CONSTRAINED} when the device is constrained")
    p.add_argument("--root", default="/", metavar="DIR",
                   help="read /proc and /sys under DIR (a recorded sample) instead of this machine's")
    p.set_defaults(func=run)


def _thresholds(args: argparse.Namespace):
    from edgecore.memory import parse_size
    from edgecore.monitor import Thresholds

    fraction, floor = 0.0, 0
    text = args.min_available.strip()
    if text.endswith("%"):
        try:
            fraction = float(text[:-1]) / 100
        except ValueError:
            raise CliError(f"--min-available: invalid percentage {args.min_available!r}") from None
    else:
        try:
            floor = parse_size(text)
        except ValueError as exc:
            raise CliError(f"--min-available: {exc}; or a percentage such as 10%") from None
    try:
        return Thresholds(max_temp_c=args.max_temp, trip_margin_c=args.trip_margin,
                          min_available_fraction=fraction, min_available_bytes=floor,
                          max_load_per_cpu=args.max_load)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from edgecore.monitor import assess, sample_device

    if not Path(args.root).is_dir():
        raise CliError(f"--root: {args.root} is not a directory")
    thresholds = _thresholds(args)
    status = sample_device(args.root)
    verdict = assess(status, thresholds)
    if args.json:
        document = status.as_dict()
        document["verdict"] = {"constrained": verdict.constrained, "reasons": list(verdict.reasons),
                               "unknown": list(verdict.unknown)}
        print(json.dumps(document, indent=2))
    else:
        print(format_table(status, verdict))
    return EXIT_CONSTRAINED if args.check and verdict.constrained else 0


def format_table(status, verdict) -> str:
    """The human-readable report."""
    from edgecore.memory import format_size

    def size(n: int | None) -> str:
        return "unknown" if n is None else format_size(n)

    def mhz(v: float | None) -> str:
        return "?" if v is None else f"{v:.0f}"

    rows: list[tuple[str, str]] = []
    cpu = status.cpu
    quota = "none" if cpu.quota is None else f"{cpu.quota:g} CPUs"
    usable = "unknown" if cpu.usable is None else cpu.usable
    rows.append(("CPUs", f"{usable} usable ({cpu.online or '?'} online, {cpu.affinity or '?'} in affinity, "
                         f"cgroup quota {quota})"))
    load = status.load
    rows.append(("Load", "unknown" if load is None else f"{load.one:.2f} {load.five:.2f} {load.fifteen:.2f} "
                                                       f"(1, 5, 15 min)"))
    if status.frequencies:
        for f in status.frequencies:
            detail = f"{mhz(f.current_mhz)} MHz"
            if f.max_mhz is not None:
                detail += f" (range {mhz(f.min_mhz)}-{mhz(f.max_mhz)}, cap {mhz(f.limit_mhz)})"
            if f.source == "cpuinfo":
                detail += " (from /proc/cpuinfo)"
            rows.append((f"Clock cpu{f.cpu}", detail))
    else:
        rows.append(("Clock", "unknown"))
    mem = status.memory
    cgroup = "none"
    if mem.cgroup_limit is not None:
        cgroup = f"{size(mem.cgroup_limit)} ({size(mem.cgroup_used)} used)"
    rows.append(("Memory", f"{size(mem.effective_available)} available of {size(mem.effective_total)} "
                           f"(machine {size(mem.available)} of {size(mem.total)}; cgroup limit {cgroup})"))
    rows.append(("Process", f"RSS {size(status.process.rss)}, peak {size(status.process.peak_rss)}"))
    if status.thermal:
        for zone in status.thermal:
            temp = "unknown" if zone.temp_c is None else f"{zone.temp_c:.1f} °C"
            trips = ", ".join(f"{t.type} {t.temp_c:.0f}" for t in zone.trips)
            detail = f"{temp} {zone.type}" + (f" (trips °C: {trips})" if trips else "")
            rows.append((f"Temp {zone.name}", detail))
    else:
        rows.append(("Temperature", "unknown (no thermal sensors)"))
    t = status.throttling
    if t.active is None:
        throttling = "unknown (not exposed)"
    else:
        throttling = "yes: " + "; ".join(t.reasons) if t.active else "no"
    if t.events_since_boot is not None:
        throttling += f" ({t.events_since_boot} throttle events since boot)"
    rows.append(("Throttling", throttling))
    rows.append(("Constrained", ("YES: " + "; ".join(verdict.reasons)) if verdict.constrained else "no"))
    if verdict.unknown:
        rows.append(("Not judged", ", ".join(verdict.unknown)))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
