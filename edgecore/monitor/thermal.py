"""Temperatures, trip points and throttling, from /sys."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from edgecore.monitor._files import read_int, read_text

# Raspberry Pi firmware flags (/sys/.../soc:firmware/get_throttled, the
# value `vcgencmd get_throttled` prints): bits 0-3 now, 16-19 since boot.
PI_FLAGS_NOW = {0: "under-voltage", 1: "ARM frequency capped", 2: "throttled", 3: "soft temperature limit"}
PI_FIRMWARE = "sys/devices/platform/soc/soc:firmware/get_throttled"
# Cooling devices that act by lowering the CPU clock (fans do not throttle)
_CPU_COOLING = re.compile(r"cpufreq|processor|cpu", re.IGNORECASE)
_THROTTLE_TRIPS = ("passive", "hot", "critical")


@dataclass(frozen=True)
class TripPoint:
    """A temperature at which the kernel acts: ``passive`` (slow the CPU),
    ``active`` (run a fan), ``hot``, ``critical`` (shut down)."""

    type: str
    temp_c: float


@dataclass(frozen=True)
class ThermalZone:
    """A temperature sensor: a thermal zone (``source="thermal"``) or a hwmon
    sensor that no thermal zone mirrors (``"hwmon"``, where ``max`` and
    ``crit`` limits become ``hot`` and ``critical`` trip points)."""

    name: str
    type: str
    temp_c: float | None
    trips: tuple[TripPoint, ...]
    source: str

    @property
    def throttle_trip(self) -> TripPoint | None:
        """The lowest trip point at which the CPU is slowed or stopped."""
        trips = [t for t in self.trips if t.type in _THROTTLE_TRIPS]
        return min(trips, key=lambda t: t.temp_c) if trips else None


@dataclass(frozen=True)
class CoolingDevice:
    """A thermal cooling device; for a CPU one, a state above 0 means the
    clock is being lowered."""

    name: str
    type: str
    cur_state: int | None
    max_state: int | None

    @property
    def limits_cpu(self) -> bool:
        return bool(_CPU_COOLING.search(self.type))


@dataclass(frozen=True)
class Throttling:
    """Whether the CPU is being slowed now: ``active`` is None when the
    system exposes no current state (no CPU cooling device, no Raspberry Pi
    firmware flags). ``events_since_boot`` counts Intel thermal throttle
    events (None when not exposed); ``firmware_flags`` is the raw Raspberry
    Pi value."""

    active: bool | None
    reasons: tuple[str, ...]
    events_since_boot: int | None
    firmware_flags: int | None
    cooling: tuple[CoolingDevice, ...]


def _celsius(path: Path) -> float | None:
    millis = read_int(path)
    # sensors that are absent or broken read as errors, 0 or absurd values
    return None if millis is None or millis <= -273000 or millis == 0 else millis / 1000


def _numbered(directory: Path, prefix: str) -> list[Path]:
    if not directory.is_dir():
        return []
    entries = [p for p in directory.iterdir() if p.name.startswith(prefix) and p.name[len(prefix):].isdigit()]
    return sorted(entries, key=lambda p: int(p.name[len(prefix):]))


def read_thermal_zones(root: Path) -> list[ThermalZone]:
    zones = []
    for zone in _numbered(root / "sys/class/thermal", "thermal_zone"):
        trips = []
        for n in range(64):
            kind = read_text(zone / f"trip_point_{n}_type")
            if kind is None:
                break
            temp = _celsius(zone / f"trip_point_{n}_temp")
            if temp is not None and temp > 0:  # unset trips read as 0 or negative
                trips.append(TripPoint(kind, temp))
        zones.append(ThermalZone(zone.name, read_text(zone / "type") or "unknown", _celsius(zone / "temp"),
                                 tuple(trips), "thermal"))
    mirrored = {z.type.replace("-", "_") for z in zones}  # a zone also registers as a hwmon chip
    for chip in _numbered(root / "sys/class/hwmon", "hwmon"):
        chip_name = read_text(chip / "name") or chip.name
        if chip_name in mirrored:
            continue
        for sensor in sorted(chip.glob("temp*_input"), key=lambda p: p.name):
            stem = sensor.name[: -len("_input")]
            trips = [TripPoint(kind, temp) for kind, temp in
                     (("hot", _celsius(chip / f"{stem}_max")), ("critical", _celsius(chip / f"{stem}_crit")))
                     if temp is not None and temp > 0]
            label = read_text(chip / f"{stem}_label") or stem
            zones.append(ThermalZone(f"{chip.name}/{stem}", f"{chip_name} {label}", _celsius(sensor),
                                     tuple(trips), "hwmon"))
    return zones


def read_throttling(root: Path) -> Throttling:
    cooling = tuple(CoolingDevice(d.name, read_text(d / "type") or "unknown", read_int(d / "cur_state"),
                                  read_int(d / "max_state"))
                    for d in _numbered(root / "sys/class/thermal", "cooling_device"))
    reasons = [f"cooling device {c.name} ({c.type}) at state {c.cur_state} of {c.max_state}"
               for c in cooling if c.limits_cpu and c.cur_state is not None and c.cur_state > 0]
    known = any(c.limits_cpu and c.cur_state is not None for c in cooling)

    flags = read_int(root / PI_FIRMWARE, 16)
    if flags is not None:
        known = True
        reasons += [f"Raspberry Pi firmware: {text} now"
                    for bit, text in PI_FLAGS_NOW.items() if flags >> bit & 1]

    events = None
    packages: dict[str, int] = {}
    for cpu in _numbered(root / "sys/devices/system/cpu", "cpu"):
        counters = cpu / "thermal_throttle"
        core = read_int(counters / "core_throttle_count")
        if core is not None:
            events = (events or 0) + core
        package = read_int(counters / "package_throttle_count")
        if package is not None:  # every CPU of a package repeats its count
            package_id = read_text(cpu / "topology/physical_package_id") or "0"
            packages[package_id] = package
    if packages:
        events = (events or 0) + sum(packages.values())
    return Throttling(bool(reasons) if known else None, tuple(reasons), events, flags, cooling)
