"""The paged KV cache's page table: which page belongs to whom.

Pages are numbered 0..total-1. Freed pages are reused last-in first-out, so
the page numbers handed out are a deterministic function of the sequence of
calls (part of what makes a replay repeatable).
"""

from __future__ import annotations


class PageAllocator:
    """A fixed pool of KV pages that refuses to over-commit."""

    __slots__ = ("total", "_free", "_taken", "peak_used")

    def __init__(self, total: int):
        if isinstance(total, bool) or not isinstance(total, int) or total < 1:
            raise ValueError(f"total pages must be a positive integer, got {total!r}")
        self.total = total
        # reversed so that the first allocations hand out pages 0, 1, 2, ...
        self._free = list(range(total - 1, -1, -1))
        # pages handed out; catches a page returned twice. A set rather than a
        # flag per page so that a request's pages are checked and moved by a
        # few C-level set operations, not one Python step per page
        self._taken: set[int] = set()
        self.peak_used = 0

    @property
    def free(self) -> int:
        """Pages available now."""
        return len(self._free)

    @property
    def used(self) -> int:
        """Pages handed out now."""
        return len(self._taken)

    def take(self, count: int) -> list[int]:
        """Hand out ``count`` pages, in handout order; raises if fewer are free."""
        free = self._free
        if count > len(free):
            raise RuntimeError(f"KV page over-commit: {count} page(s) requested, {len(free)} free")
        if count <= 0:
            if count < 0:
                raise ValueError(f"page count must be >= 0, got {count}")
            return []
        # the free list is a stack: the pages handed out are its top, last first
        pages = free[-count:]
        del free[-count:]
        pages.reverse()
        taken = self._taken
        taken.update(pages)
        if len(taken) > self.peak_used:
            self.peak_used = len(taken)
        return pages

    def allocate(self, count: int, into: list[int]) -> None:
        """Append ``count`` page numbers to ``into``; raises if fewer are free."""
        into += self.take(count)

    def release(self, pages: list[int]) -> None:
        """Return every page in ``pages`` to the pool and empty the list."""
        taken = self._taken
        if not taken.issuperset(pages):
            page = next(page for page in pages if page not in taken)
            raise RuntimeError(f"KV page {page} released but not allocated")
        held = len(taken)
        taken.difference_update(pages)
        if len(taken) != held - len(pages):  # a page listed twice
            taken.update(pages)  # every page in the list was held: undo
            seen: set[int] = set()
            for page in pages:
                if page in seen:
                    raise RuntimeError(f"KV page {page} released but not allocated")
                seen.add(page)
        self._free.extend(reversed(pages))
        pages.clear()
