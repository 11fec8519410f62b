"""What the process really holds: RSS, its peak, and mapped weight files.

Counting requests proves nothing about memory; these numbers come from the
kernel (``/proc/self/status``, and page-level residency of mapped files), so
the engine and the benchmarks can show that a budget held.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import psutil

STATUS_PATH = Path("/proc/self/status")
CLEAR_REFS_PATH = Path("/proc/self/clear_refs")
# After a reset the peak equals the RSS of that instant; a little growth
# between the reset and the check is normal.
_RESET_TOLERANCE = 1 << 20


class _Mapped(Protocol):
    def residency(self) -> Iterable[Any]: ...


@dataclass(frozen=True)
class Footprint:
    """One sample of the process's memory (bytes; None when the system does
    not report a value).

    ``rss`` is resident memory now and ``peak_rss`` its high-water mark
    (``VmHWM``) since start or the last :func:`reset_peak_rss`. ``rss_anon``
    is private memory (pool buffers, activations, Python objects) and
    ``rss_file`` file pages mapped in (weights). ``mapped`` has one entry per
    weight file passed to :func:`sample_footprint` (see
    ``SafetensorsFile.residency``)."""

    rss: int | None
    peak_rss: int | None
    rss_anon: int | None
    rss_file: int | None
    mapped: tuple[Any, ...] = ()

    @property
    def mapped_resident(self) -> int:
        """Bytes of the given weight files mapped into this process."""
        return sum(entry.resident for entry in self.mapped)

    def as_dict(self) -> dict[str, Any]:
        result = asdict(self)
        result["mapped"] = [{**asdict(entry), "path": str(entry.path)} for entry in self.mapped]
        result["mapped_resident"] = self.mapped_resident
        return result


def read_status(path: str | os.PathLike = STATUS_PATH) -> dict[str, int]:
    """The ``kB`` fields of a ``/proc/<pid>/status`` file, in bytes
    (``{"VmRSS": ..., "VmHWM": ..., "RssAnon": ..., ...}``)."""
    fields: dict[str, int] = {}
    for line in Path(path).read_text().splitlines():
        key, _, value = line.partition(":")
        parts = value.split()
        if len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
            fields[key] = int(parts[0]) * 1024
    return fields


def sample_footprint(mapped: Iterable[_Mapped] = (), *, status_path: str | os.PathLike = STATUS_PATH
                     ) -> Footprint:
    """Sample RSS, peak RSS and the residency of each file of the given
    loaded weights (``SafetensorsFile`` objects)."""
    entries = tuple(entry for weights in mapped for entry in weights.residency())
    try:
        status = read_status(status_path)
    except OSError:
        # no /proc (not Linux): psutil still knows the RSS; the rest is unknown
        return Footprint(psutil.Process().memory_info().rss, None, None, None, entries)
    return Footprint(status.get("VmRSS"), status.get("VmHWM"), status.get("RssAnon"),
                     status.get("RssFile"), entries)


def reset_peak_rss(*, clear_refs_path: str | os.PathLike = CLEAR_REFS_PATH,
                   status_path: str | os.PathLike = STATUS_PATH) -> bool:
    """Reset the peak RSS (``VmHWM``) to the current RSS, so the peak of the
    next phase can be measured. Writes ``5`` to ``/proc/self/clear_refs``
    (Linux >= 4.0). Returns whether the peak now equals the current RSS;
    False when the kernel does not allow or support it."""
    try:
        with open(clear_refs_path, "w") as f:
            f.write("5")
        status = read_status(status_path)
    except OSError:
        return False
    rss, peak = status.get("VmRSS"), status.get("VmHWM")
    return rss is not None and peak is not None and peak - rss <= _RESET_TOLERANCE
