"""One snapshot of the device: CPUs, load, clocks, memory, heat, throttling."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgecore.monitor.cpu import CoreFrequency, CpuInfo, LoadAverage, read_cpu, read_frequencies, read_load
from edgecore.monitor.ram import MemoryInfo, ProcessMemory, read_memory, read_process
from edgecore.monitor.thermal import ThermalZone, Throttling, read_thermal_zones, read_throttling


@dataclass(frozen=True)
class DeviceStatus:
    """Everything :func:`sample_device` measured. Values the system does not
    expose are None (or empty lists), never 0."""

    root: str
    time: float
    cpu: CpuInfo
    load: LoadAverage | None
    frequencies: tuple[CoreFrequency, ...]
    memory: MemoryInfo
    process: ProcessMemory
    thermal: tuple[ThermalZone, ...]
    throttling: Throttling

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data, derived values included."""
        result = asdict(self)
        result["memory"]["effective_available"] = self.memory.effective_available
        result["memory"]["effective_total"] = self.memory.effective_total
        for zone, data in zip(self.thermal, result["thermal"], strict=True):
            trip = zone.throttle_trip
            data["throttle_trip"] = None if trip is None else asdict(trip)
        for freq, data in zip(self.frequencies, result["frequencies"], strict=True):
            data["capped"] = freq.capped
        return result


def sample_device(root: str | os.PathLike = "/") -> DeviceStatus:
    """Read the device's state from ``/proc`` and ``/sys`` under ``root``
    (another root replays a recorded sample; "self" is then the recorded
    process)."""
    base = Path(root)
    return DeviceStatus(
        root=str(base), time=time.time(), cpu=read_cpu(base), load=read_load(base),
        frequencies=tuple(read_frequencies(base)), memory=read_memory(base), process=read_process(base),
        thermal=tuple(read_thermal_zones(base)), throttling=read_throttling(base))
