"""Memory: the machine's, the cgroup's limit, and this process's."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgecore.monitor._files import key_values, read_int, read_text

# cgroup v1 writes "no limit" as the largest page-aligned signed 64-bit value
_UNLIMITED = 1 << 60


@dataclass(frozen=True)
class MemoryInfo:
    """Bytes. ``total``/``available`` are the machine's (``MemAvailable``:
    what can be allocated without swapping, reclaimable cache included).
    ``cgroup_limit`` is this process's cgroup memory limit (None when
    unlimited) and ``cgroup_used`` its usage without reclaimable inactive
    file cache. ``effective_available`` is what this process can really
    still get: the smaller of the machine's and the cgroup's headroom."""

    total: int | None
    available: int | None
    swap_total: int | None
    swap_free: int | None
    cgroup_limit: int | None
    cgroup_used: int | None

    @property
    def effective_available(self) -> int | None:
        candidates = [self.available] if self.available is not None else []
        if self.cgroup_limit is not None and self.cgroup_used is not None:
            candidates.append(max(0, self.cgroup_limit - self.cgroup_used))
        return min(candidates) if candidates else None

    @property
    def effective_total(self) -> int | None:
        """The machine's memory, or the cgroup limit when smaller."""
        if self.cgroup_limit is not None and (self.total is None or self.cgroup_limit < self.total):
            return self.cgroup_limit
        return self.total


@dataclass(frozen=True)
class ProcessMemory:
    """This process's resident memory now and at its peak (``VmHWM``)."""

    rss: int | None
    peak_rss: int | None


def _kib_fields(text: str | None) -> dict[str, int]:
    result = {}
    for key, value in key_values(text, ":").items():
        parts = value.split()
        if len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
            result[key] = int(parts[0]) * 1024
    return result


def read_memory(root: Path) -> MemoryInfo:
    info = _kib_fields(read_text(root / "proc/meminfo"))
    limit, used = _cgroup_memory(root)
    return MemoryInfo(info.get("MemTotal"), info.get("MemAvailable"), info.get("SwapTotal"),
                      info.get("SwapFree"), limit, used)


def read_process(root: Path) -> ProcessMemory:
    status = _kib_fields(read_text(root / "proc/self/status"))
    return ProcessMemory(status.get("VmRSS"), status.get("VmHWM"))


def _cgroup_dirs(mount: Path, path: str | None) -> list[Path]:
    """This process's cgroup directory and its ancestors up to the mount.
    Inside a container the cgroup path names a directory of the host's tree
    that the container does not see; its own cgroup is then the mount root."""
    own = mount / path.lstrip("/") if path else mount
    if not own.is_dir():
        own = mount
    dirs = [own]
    while dirs[-1] != mount and mount in dirs[-1].parents:
        dirs.append(dirs[-1].parent)
    return dirs


def _cgroup_memory(root: Path) -> tuple[int | None, int | None]:
    """(limit, usage without inactive file cache) of the tightest memory
    cgroup this process is in; (None, None) when there is no limit."""
    cgroups = {}
    for line in (read_text(root / "proc/self/cgroup") or "").splitlines():
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        for controller in controllers.split(","):
            cgroups[controller] = path
    mount = root / "sys/fs/cgroup"
    if (mount / "cgroup.controllers").exists():  # v2: one unified tree
        dirs = _cgroup_dirs(mount, cgroups.get(""))
        limit_file, usage_file, inactive_key = "memory.max", "memory.current", "inactive_file"
    else:  # v1: the memory controller has a hierarchy of its own
        dirs = _cgroup_dirs(mount / "memory", cgroups.get("memory"))
        limit_file, usage_file = "memory.limit_in_bytes", "memory.usage_in_bytes"
        inactive_key = "total_inactive_file"
    best: tuple[int, int] | None = None
    for d in dirs:
        limit = read_int(d / limit_file)  # "max" (v2) reads as None
        usage = read_int(d / usage_file)
        if limit is None or limit >= _UNLIMITED or usage is None:
            continue
        inactive_text = key_values(read_text(d / "memory.stat")).get(inactive_key, "")
        inactive = int(inactive_text) if inactive_text.isdigit() else 0
        used = max(0, usage - inactive)
        if best is None or limit - used < best[0] - best[1]:
            best = (limit, used)
    return best if best is not None else (None, None)
