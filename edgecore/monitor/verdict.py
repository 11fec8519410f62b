"""Is the device constrained right now, and why: hot, low on memory, loaded."""

from __future__ import annotations

from dataclasses import dataclass

from edgecore.memory.sizes import format_size
from edgecore.monitor.device import DeviceStatus


@dataclass(frozen=True)
class Thresholds:
    """When the device counts as constrained.

    hot: a sensor at or above ``max_temp_c``, or within ``trip_margin_c`` of
    its lowest throttling trip point (passive, hot or critical); or the
    kernel / firmware reports throttling now. low memory: the memory this
    process can still get is below ``min_available_fraction`` of the total
    or below ``min_available_bytes``. loaded: the 1-minute load per usable
    CPU is at least ``max_load_per_cpu``.
    """

    max_temp_c: float = 80.0
    trip_margin_c: float = 5.0
    min_available_fraction: float = 0.10
    min_available_bytes: int = 0
    max_load_per_cpu: float = 1.0

    def __post_init__(self) -> None:
        if not 0 <= self.min_available_fraction < 1:
            raise ValueError(f"min_available_fraction must be in [0, 1), got {self.min_available_fraction}")
        if self.min_available_bytes < 0 or self.trip_margin_c < 0 or self.max_load_per_cpu <= 0:
            raise ValueError("min_available_bytes and trip_margin_c must be >= 0, max_load_per_cpu > 0")


@dataclass(frozen=True)
class Verdict:
    """``constrained`` with its ``reasons`` (each starts with "hot:",
    "throttled:", "low memory:" or "loaded:"); ``unknown`` lists what could
    not be judged because the system does not report it."""

    constrained: bool
    reasons: tuple[str, ...]
    unknown: tuple[str, ...]


def assess(status: DeviceStatus, thresholds: Thresholds | None = None) -> Verdict:
    """Judge a snapshot against the thresholds."""
    t = thresholds or Thresholds()
    reasons: list[str] = []
    unknown: list[str] = []

    zones = [z for z in status.thermal if z.temp_c is not None]
    if not zones:
        unknown.append("temperature (no readable thermal sensor)")
    for zone in zones:
        trip = zone.throttle_trip
        if zone.temp_c >= t.max_temp_c:
            reasons.append(f"hot: {zone.type} ({zone.name}) at {zone.temp_c:.1f} °C, "
                           f"limit {t.max_temp_c:.1f} °C")
        elif trip is not None and zone.temp_c >= trip.temp_c - t.trip_margin_c:
            reasons.append(f"hot: {zone.type} ({zone.name}) at {zone.temp_c:.1f} °C, within "
                           f"{t.trip_margin_c:.1f} °C of its {trip.type} trip point at {trip.temp_c:.1f} °C")
    if status.throttling.active:
        reasons += [f"throttled: {r}" for r in status.throttling.reasons]
    elif status.throttling.active is None:
        unknown.append("throttling (not exposed by this system)")

    memory = status.memory
    available, total = memory.effective_available, memory.effective_total
    if available is None or total is None:
        unknown.append("memory")
    else:
        floor = max(t.min_available_bytes, int(t.min_available_fraction * total))
        if available < floor:
            reasons.append(f"low memory: {format_size(available)} available of {format_size(total)}, "
                           f"below {format_size(floor)}")

    if status.load is None or status.cpu.usable is None:
        unknown.append("load")
    else:
        per_cpu = status.load.one / status.cpu.usable
        if per_cpu >= t.max_load_per_cpu:
            reasons.append(f"loaded: 1-minute load {status.load.one:.2f} over {status.cpu.usable} usable "
                           f"CPU(s) = {per_cpu:.2f} per CPU, limit {t.max_load_per_cpu:.2f}")
    return Verdict(bool(reasons), tuple(reasons), tuple(unknown))
