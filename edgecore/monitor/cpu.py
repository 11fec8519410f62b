"""CPUs: how many this process may use, how loaded they are, how fast they run."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from edgecore._cpus import cgroup_cpu_limit
from edgecore.monitor._files import key_values, parse_cpu_list, read_int, read_text


@dataclass(frozen=True)
class CpuInfo:
    """``online``: CPUs the kernel runs; ``affinity``: those this process may
    be scheduled on; ``quota``: the cgroup CPU limit in CPUs (None when
    unlimited); ``usable``: affinity capped by the quota (rounded up)."""

    online: int | None
    affinity: int | None
    quota: float | None
    usable: int | None


@dataclass(frozen=True)
class LoadAverage:
    """Run-queue averages over 1, 5 and 15 minutes (``/proc/loadavg``)."""

    one: float
    five: float
    fifteen: float


@dataclass(frozen=True)
class CoreFrequency:
    """One CPU's clock in MHz. ``limit_mhz`` is the policy's current cap
    (``scaling_max_freq``), below ``max_mhz`` when something (a thermal
    governor, a power profile, the user) capped it. ``source`` is
    ``"cpufreq"`` or ``"cpuinfo"`` (``/proc/cpuinfo``'s "cpu MHz": often
    the nominal clock on virtual machines, with no limits known)."""

    cpu: int
    current_mhz: float | None
    min_mhz: float | None
    max_mhz: float | None
    limit_mhz: float | None
    source: str

    @property
    def capped(self) -> bool | None:
        if self.limit_mhz is None or self.max_mhz is None:
            return None
        return self.limit_mhz < self.max_mhz


def read_cpu(root: Path) -> CpuInfo:
    online = parse_cpu_list(read_text(root / "sys/devices/system/cpu/online"))
    status = key_values(read_text(root / "proc/self/status"), ":")
    affinity = parse_cpu_list(status.get("Cpus_allowed_list"))
    quota = cgroup_cpu_limit(root / "sys/fs/cgroup", root / "proc/self/cgroup")
    base = len(affinity) if affinity else (len(online) if online else None)
    usable = None
    if base is not None:
        usable = max(1, min(base, math.ceil(quota))) if quota is not None else base
    return CpuInfo(len(online) if online else None, len(affinity) if affinity else None, quota, usable)


def read_load(root: Path) -> LoadAverage | None:
    fields = (read_text(root / "proc/loadavg") or "").split()
    try:
        return LoadAverage(float(fields[0]), float(fields[1]), float(fields[2]))
    except (IndexError, ValueError):
        return None


def _mhz(path: Path) -> float | None:
    khz = read_int(path)
    return None if khz is None or khz <= 0 else khz / 1000


def read_frequencies(root: Path) -> list[CoreFrequency]:
    cpus_dir = root / "sys/devices/system/cpu"
    result = []
    for cpu in sorted(parse_cpu_list(read_text(cpus_dir / "online")) or ()):
        freq = cpus_dir / f"cpu{cpu}/cpufreq"
        if not freq.is_dir():
            continue
        current = _mhz(freq / "scaling_cur_freq") or _mhz(freq / "cpuinfo_cur_freq")
        low, high, limit = (_mhz(freq / name) for name in ("cpuinfo_min_freq", "cpuinfo_max_freq",
                                                            "scaling_max_freq"))
        result.append(CoreFrequency(cpu, current, low, high, limit, "cpufreq"))
    if result:
        return result
    # no cpufreq (virtual machines, some boards): the kernel's "cpu MHz"
    cpu = None
    for line in (read_text(root / "proc/cpuinfo") or "").splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "processor":
            cpu = int(value) if value.strip().isdigit() else None
        elif key == "cpu MHz" and cpu is not None:
            try:
                result.append(CoreFrequency(cpu, float(value), None, None, None, "cpuinfo"))
            except ValueError:
                pass
    return result
