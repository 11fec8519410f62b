"""The KV page allocator lives in edgecore.memory (the engine's KV cache owns
the same object); re-exported here for the scheduler's callers."""

from edgecore.memory.pages import KVPagesExhausted, PageAllocator

__all__ = ["KVPagesExhausted", "PageAllocator"]
