"""The device as it is: CPUs, load, clocks, memory, temperatures, throttling,
and a "constrained" verdict. Every reader takes the filesystem root, so the
same code runs on a recorded sample. See docs/weights-and-memory.md."""

from edgecore.monitor.cpu import CoreFrequency, CpuInfo, LoadAverage
from edgecore.monitor.device import DeviceStatus, sample_device
from edgecore.monitor.ram import MemoryInfo, ProcessMemory
from edgecore.monitor.thermal import CoolingDevice, ThermalZone, Throttling, TripPoint
from edgecore.monitor.verdict import Thresholds, Verdict, assess

__all__ = [
    "CoolingDevice",
    "CoreFrequency",
    "CpuInfo",
    "DeviceStatus",
    "LoadAverage",
    "MemoryInfo",
    "ProcessMemory",
    "ThermalZone",
    "Thresholds",
    "Throttling",
    "TripPoint",
    "Verdict",
    "assess",
    "sample_device",
]
