"""The paged KV cache's page table: which page belongs to whom.

One allocator object is shared by the engine's KV cache (engine/kv.py,
`engine.kv.allocator`) and the scheduler that admits requests against it, so
page accounting has one source of truth. Pages are numbered 0..total-1. Freed pages are reused last-in first-out, so
the page numbers handed out are a deterministic function of the sequence of
calls (part of what makes a replay repeatable).
"""

from __future__ import annotations


class KVPagesExhausted(RuntimeError):
    """More KV pages were asked for than are free; nothing was taken."""


class PageAllocator:
    """A fixed pool of KV pages that refuses to over-commit."""

    __slots__ = ("total", "_free", "_taken", "_owner_count", "peak_used")

    def __init__(self, total: int):
        if isinstance(total, bool) or not isinstance(total, int) or total < 1:
            raise ValueError(f"total pages must be a positive integer, got {total!r}")
        self.total = total
        # reversed so that the first allocations hand out pages 0, 1, 2, ...
        self._free = list(range(total - 1, -1, -1))
        # 1 for each page handed out: catches a page returned twice. A list,
        # not a bytearray: indexing a list of ints is the faster bytecode
        self._taken = [0] * total
        self._owner_count = 0  # pages currently handed out
        self.peak_used = 0

    @property
    def free(self) -> int:
        """Pages available now."""
        return len(self._free)

    @property
    def used(self) -> int:
        """Pages handed out now."""
        return self._owner_count

    def take(self, count: int) -> list[int]:
        """Hand out ``count`` pages, in handout order; raises if fewer are free."""
        free = self._free
        if count > len(free):
            raise KVPagesExhausted(f"KV page over-commit: {count} page(s) requested, {len(free)} free of "
                                   f"{self.total}; free pages (release or truncate sequences) or pass more kv_pages")
        if count <= 0:
            if count < 0:
                raise ValueError(f"page count must be >= 0, got {count}")
            return []
        # the free list is a stack: the pages handed out are its top, last first
        pages = free[-count:]
        del free[-count:]
        pages.reverse()
        taken = self._taken
        for page in pages:
            taken[page] = 1
        self._owner_count += count
        if self._owner_count > self.peak_used:
            self.peak_used = self._owner_count
        return pages

    def allocate(self, count: int, into: list[int]) -> None:
        """Append ``count`` page numbers to ``into``; raises if fewer are free."""
        into += self.take(count)

    def release(self, pages: list[int]) -> None:
        """Return every page in ``pages`` to the pool and empty the list."""
        taken = self._taken
        for page in pages:
            if not taken[page]:
                raise RuntimeError(f"KV page {page} released but not allocated")
            taken[page] = 0
        self._free.extend(reversed(pages))
        self._owner_count -= len(pages)
        pages.clear()
