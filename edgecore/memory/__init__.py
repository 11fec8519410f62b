"""The memory budget: sizes, the buffer pool, and the process's real footprint.

See docs/weights-and-memory.md.
"""

from edgecore.memory.footprint import Footprint, read_status, reset_peak_rss, sample_footprint
from edgecore.memory.pool import (
    MemoryBudgetError,
    MemoryPool,
    PoolBuffer,
    PoolStats,
    Reservation,
    held_bytes,
    size_class,
)
from edgecore.memory.sizes import format_size, parse_size

__all__ = [
    "Footprint",
    "MemoryBudgetError",
    "MemoryPool",
    "PoolBuffer",
    "PoolStats",
    "Reservation",
    "format_size",
    "parse_size",
    "read_status",
    "reset_peak_rss",
    "sample_footprint",
    "held_bytes",
    "size_class",
]
