"""The engine's paged KV cache.

Every block layer has a K and a V array of shape [n_pages, kv_heads,
page_tokens, head_dim] in float16 or float32, or for "q8_0" uint8 [n_pages,
kv_heads, page_tokens, head_dim / 32 * 34]: each row as GGML Q8_0 blocks
(an f16 scale and 32 int8 per 32 elements, 1.0625 bytes an element, the
layout llama.cpp's `-ctk q8_0` uses), allocated from the engine's memory
pool (so the budget counts them). A sequence is a list of page
numbers (its page table, in position order) and a length: position p lives
in page pages[p // page_tokens], slot p % page_tokens, in every layer.

Page numbers come from one `PageAllocator` (edgecore/memory/pages.py):
`engine.kv.allocator`. The scheduler that admits requests uses that same
object, so what it counts as free is what the engine can store into.
"""

from __future__ import annotations

import numpy as np

from edgecore.memory import KVPagesExhausted, MemoryPool, PageAllocator, held_bytes

KV_DTYPES = {"f16": np.float16, "f32": np.float32, "q8_0": np.uint8}  # the array dtype of each
DEFAULT_PAGE_TOKENS = 16


class KVSequence:
    """One sequence's KV pages: `pages` (page numbers in position order) and
    `length` (tokens stored, positions 0..length-1). The engine fills it;
    a scheduler may append pages it took from `engine.kv.allocator`."""

    __slots__ = ("pages", "length")

    def __init__(self) -> None:
        self.pages: list[int] = []
        self.length = 0

    def __repr__(self) -> str:
        return f"KVSequence(length={self.length}, pages={self.pages})"


def check_kv_dtype(kv_dtype, head_dim: int | None = None) -> str:
    """kv_dtype, checked (and against the model's head_dim when given)."""
    if kv_dtype not in KV_DTYPES:
        raise ValueError(f"kv_dtype must be one of {', '.join(KV_DTYPES)}; got {kv_dtype!r}")
    if kv_dtype == "q8_0" and head_dim is not None and head_dim % 32:
        raise ValueError(f"kv_dtype q8_0 stores blocks of 32 elements, but this model's head_dim is {head_dim}; "
                         f"use kv_dtype f16")
    return kv_dtype


def kv_row_width(head_dim: int, kv_dtype: str) -> int:
    """The last dimension of a cache array: head_dim elements, or for q8_0
    the bytes of head_dim / 32 blocks."""
    return head_dim // 32 * 34 if kv_dtype == "q8_0" else head_dim


def kv_row_bytes(head_dim: int, kv_dtype: str) -> int:
    """Bytes of one K or V row (one head, one position)."""
    return kv_row_width(head_dim, kv_dtype) * np.dtype(KV_DTYPES[kv_dtype]).itemsize


def kv_cache_bytes(layers: int, kv_heads: int, head_dim: int, pages: int, page_tokens: int, kv_dtype: str) -> int:
    """What the paged cache holds in the pool: a K and a V buffer per layer,
    each with the pool's size-class and alignment slack (the plan must
    count what the pool will refuse over, not just the elements)."""
    row = kv_row_bytes(head_dim, check_kv_dtype(kv_dtype, head_dim))
    return 2 * layers * held_bytes(pages * kv_heads * page_tokens * row)


class PagedKV:
    """K/V pages for `layers` block layers plus the allocator handing them out.

    context: the most tokens one sequence may hold (the position tables
    the engine built cover that many)."""

    def __init__(self, pool: MemoryPool, layers: int, kv_heads: int, head_dim: int, *, pages: int,
                 page_tokens: int, kv_dtype: str, context: int):
        self.dtype = check_kv_dtype(kv_dtype, head_dim)
        self.page_tokens = page_tokens
        self.context = context
        self.allocator = PageAllocator(pages)
        shape = (pages, kv_heads, page_tokens, kv_row_width(head_dim, kv_dtype))
        dtype = KV_DTYPES[kv_dtype]
        self._buffers = []
        try:
            for i in range(layers):
                self._buffers.append(pool.allocate(shape, dtype, label=f"kv.{i}.k"))
                self._buffers.append(pool.allocate(shape, dtype, label=f"kv.{i}.v"))
        except BaseException:
            self.close()
            raise
        self.keys = [b.array for b in self._buffers[0::2]]
        self.values = [b.array for b in self._buffers[1::2]]
        self.page_bytes = 2 * layers * kv_heads * page_tokens * kv_row_bytes(head_dim, kv_dtype)

    @property
    def pages(self) -> int:
        return self.allocator.total

    @property
    def nbytes(self) -> int:
        return self.page_bytes * self.allocator.total

    def new_sequence(self) -> KVSequence:
        return KVSequence()

    def pages_for(self, tokens: int) -> int:
        """Pages needed to hold `tokens` tokens."""
        return -(-tokens // self.page_tokens)

    def reserve(self, seq: KVSequence, n_tokens: int) -> None:
        """Take pages so that seq can hold n_tokens more tokens. Raises
        KVPagesExhausted (nothing taken) if too few pages are free, ValueError
        if the sequence would pass the engine's context."""
        if isinstance(n_tokens, bool) or not isinstance(n_tokens, (int, np.integer)) or n_tokens < 0:
            raise ValueError(f"reserve: n_tokens must be an integer >= 0, got {n_tokens!r}")
        total = seq.length + int(n_tokens)
        if total > self.context:
            raise ValueError(f"reserve: {seq.length} stored + {n_tokens} new tokens exceed the context of "
                             f"{self.context} tokens (pass a larger context= if the model allows it)")
        need = self.pages_for(total) - len(seq.pages)
        if need > self.allocator.free:
            raise KVPagesExhausted(f"KV cache full: {need} more page(s) of {self.page_tokens} tokens needed, "
                                   f"{self.allocator.free} of {self.allocator.total} free; release or truncate "
                                   f"sequences, or pass a larger kv_pages (--kv-pages)")
        if need > 0:
            self.allocator.allocate(need, seq.pages)

    def release(self, seq: KVSequence) -> None:
        """Return all of seq's pages to the allocator at once; seq is empty after."""
        self.allocator.release(seq.pages)
        seq.length = 0

    def truncate(self, seq: KVSequence, n: int) -> None:
        """Drop tokens at positions >= n (and the pages no longer needed)."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 <= n <= seq.length:
            raise ValueError(f"truncate: n must be an integer in [0, {seq.length}] (the sequence's length), "
                             f"got {n!r}")
        seq.length = int(n)
        keep = self.pages_for(seq.length)
        if keep < len(seq.pages):
            tail = seq.pages[keep:]
            del seq.pages[keep:]
            self.allocator.release(tail)

    def close(self) -> None:
        for buffer in self._buffers:
            buffer.release()
        self._buffers = []
