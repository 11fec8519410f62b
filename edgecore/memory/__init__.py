"""The memory budget: sizes, the buffer pool, the KV page allocator, and the
process's real footprint.

See docs/weights-and-memory.md. The pool (NumPy) and the footprint (psutil)
load on first use: the scheduler imports the page allocator from here and
must stay importable without NumPy (its replay runs on a bare Python).
"""

from importlib import import_module

from edgecore.memory.pages import KVPagesExhausted, PageAllocator
from edgecore.memory.sizes import format_size, parse_size

_LAZY = {
    "Footprint": "footprint", "read_status": "footprint", "reset_peak_rss": "footprint",
    "sample_footprint": "footprint",
    "MemoryBudgetError": "pool", "MemoryPool": "pool", "PoolBuffer": "pool", "PoolStats": "pool",
    "Reservation": "pool", "held_bytes": "pool", "size_class": "pool",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'edgecore.memory' has no attribute {name!r}")
    value = getattr(import_module(f"edgecore.memory.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "Footprint",
    "KVPagesExhausted",
    "MemoryBudgetError",
    "MemoryPool",
    "PageAllocator",
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
