"""How many CPUs this process may really use: affinity and cgroup quota.

`os.cpu_count()` reports the machine; a container limited to 2 CPUs by a
cgroup quota, or a process pinned with taskset, must not start 64 threads.
"""

from __future__ import annotations

import math
import os
from pathlib import Path


def affinity_cpus() -> int:
    """CPUs in this process's affinity mask (all CPUs where unsupported)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cgroup_cpu_limit(root: str | os.PathLike = "/sys/fs/cgroup", proc_self_cgroup: str | os.PathLike | None = None
                     ) -> float | None:
    """CPU quota in CPUs (e.g. 1.5), or None when there is no limit.

    cgroup v2: `cpu.max` ("max 100000" or "<quota> <period>") in this
    process's cgroup, walking up to the root (a parent's limit binds too).
    cgroup v1: `cpu/cpu.cfs_quota_us` / `cpu.cfs_period_us` (-1 = none).
    """
    root = Path(root)
    limits: list[float] = []
    v2_path = _own_cgroup_v2(proc_self_cgroup)
    if (root / "cgroup.controllers").exists():
        d = root / v2_path.lstrip("/") if v2_path else root
        while True:
            limit = _parse_cpu_max(d / "cpu.max")
            if limit is not None:
                limits.append(limit)
            if d == root or root not in d.parents:
                break
            d = d.parent
    else:
        for sub in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
            quota = _read_int(root / sub / "cpu.cfs_quota_us")
            period = _read_int(root / sub / "cpu.cfs_period_us")
            if quota is not None and period and quota > 0:
                limits.append(quota / period)
                break
    return min(limits) if limits else None


def usable_cpus() -> int:
    """CPUs worth running threads on: affinity, capped by the cgroup quota."""
    n = affinity_cpus()
    limit = cgroup_cpu_limit()
    if limit is not None:
        n = min(n, max(1, math.ceil(limit)))
    return max(1, n)


def _own_cgroup_v2(proc_self_cgroup: str | os.PathLike | None) -> str | None:
    path = Path(proc_self_cgroup or "/proc/self/cgroup")
    try:
        for line in path.read_text().splitlines():
            if line.startswith("0::"):
                return line[3:].strip()
    except OSError:
        pass
    return None


def _parse_cpu_max(path: Path) -> float | None:
    try:
        fields = path.read_text().split()
    except OSError:
        return None
    if len(fields) != 2 or fields[0] == "max":
        return None
    try:
        quota, period = int(fields[0]), int(fields[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None
