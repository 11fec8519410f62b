"""Completed requests' K/V, kept for the next request that starts the same way.

A chat client sends the whole conversation every turn, and most clients
repeat a system prompt: without a cache, every request prefills all of its
prompt again. When a request completes, the K/V rows of the tokens it
stored (its prompt and all but its last generated token) are copied from
its pages into this store, before the scheduler frees the pages. A request
whose context starts with a stored entry's tokens has those rows copied
into its own pages when its prefill starts, and prefills only the rest
(always at least its last context token, whose logits choose the next
token). A preempted request being recomputed looks up the same way.

Why copies and not shared pages: the scheduler's invariant is one owner per
page (its accounting, preemption and replay rest on it), and copying a few
pages per layer costs well under a millisecond against the milliseconds of
compute a prefill takes. Why exact: a K/V row depends only on the tokens
up to its position (every kernel is batch and chunk invariant,
docs/quantization.md), so a copied row is bitwise the row the prefill would
have computed. Outputs do not change, only time.

The store has pages of its own, in the engine cache's layout, allocated
from the engine's memory pool (the budget counts them). Entries are evicted
least recently used first; saving an entry drops the entries that are
prefixes of it (the new one holds their rows). Only the first prefill chunk
of a request reuses rows (the pages the scheduler gave it then): an entry
can be evicted by the time a later chunk runs.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from edgecore.memory import MemoryBudgetError, PageAllocator, held_bytes
from edgecore.memory.sizes import format_size

# `edgecore serve`'s default size: shrunk to what the memory budget has left
AUTO_TOKENS = 1024


class _Entry:
    __slots__ = ("tokens", "pages")

    def __init__(self, tokens: np.ndarray, pages: list[int]):
        self.tokens = tokens  # int64: the stored positions' tokens
        self.pages = pages  # store pages, in position order


def _store_bytes(engine, pages: int) -> int:
    """What a store of ``pages`` pages takes from the pool (every layer's K and V buffer)."""
    keys = engine.kv.keys
    return 2 * len(keys) * held_bytes(pages * keys[0][0].nbytes)


def tokens_that_fit(engine, tokens: int) -> int:
    """``tokens`` rounded down to whole pages, fewer if the memory budget
    has no room for them (0: not one page)."""
    page = engine.kv.page_tokens
    pages = tokens // page
    available = engine.pool.available
    if available is not None:
        while pages and _store_bytes(engine, pages) > available:
            pages = pages * 7 // 8
    return pages * page


class PrefixCache:
    """Up to ``tokens`` tokens of K/V (rounded down to whole pages) for ``engine``'s cache layout."""

    def __init__(self, engine, tokens: int):
        kv = engine.kv
        self.page_tokens = kv.page_tokens
        n_pages = tokens // kv.page_tokens
        if n_pages < 1:
            raise ValueError(f"the prefix cache needs at least one page of {kv.page_tokens} tokens, got {tokens} "
                             f"tokens; pass --prefix-cache 0 to turn it off")
        self._engine_keys, self._engine_values = kv.keys, kv.values
        shape = (n_pages, *kv.keys[0].shape[1:])
        self._entries: OrderedDict[int, _Entry] = OrderedDict()  # least recently used first
        self._buffers = []
        try:
            for i in range(len(kv.keys)):
                self._buffers.append(engine.pool.allocate(shape, kv.keys[0].dtype, label=f"prefix_cache.{i}.k"))
                self._buffers.append(engine.pool.allocate(shape, kv.keys[0].dtype, label=f"prefix_cache.{i}.v"))
        except MemoryBudgetError:
            self.close()
            raise MemoryError(f"a prefix cache of {n_pages * kv.page_tokens} tokens "
                              f"({format_size(_store_bytes(engine, n_pages))}) does not fit the memory budget "
                              f"beside the model; pass a smaller --prefix-cache (0 turns it off)") from None
        except BaseException:
            self.close()
            raise
        self._keys = [b.array for b in self._buffers[0::2]]
        self._values = [b.array for b in self._buffers[1::2]]
        self.allocator = PageAllocator(n_pages)
        self.capacity = n_pages * kv.page_tokens
        self.nbytes = sum(b.array.nbytes for b in self._buffers)
        self._next_id = 0
        self.lookups = self.hits = self.reused_tokens = self.evictions = 0

    @property
    def entries(self) -> int:
        return len(self._entries)

    def _pages_for(self, tokens: int) -> int:
        return -(-tokens // self.page_tokens)

    def _copy(self, dst_keys, dst_values, dst_pages, src_keys, src_values, src_pages) -> None:
        dst = np.asarray(dst_pages, np.intp)
        src = np.asarray(src_pages, np.intp)
        for layer in range(len(dst_keys)):
            dst_keys[layer][dst] = src_keys[layer][src]
            dst_values[layer][dst] = src_values[layer][src]

    def save(self, tokens: list[int], pages: list[int]) -> None:
        """Keep the K/V of ``tokens`` (positions 0.., stored in the engine
        cache's ``pages``); longer than the store: its first pages' worth."""
        n = min(len(tokens), self.capacity)
        if n == 0:
            return
        arr = np.asarray(tokens[:n], np.int64)
        for key, entry in list(self._entries.items()):
            held = len(entry.tokens)
            if held >= n and np.array_equal(entry.tokens[:n], arr):
                self._entries.move_to_end(key)  # already held, as a prefix of this entry or itself
                return
            if held < n and np.array_equal(entry.tokens, arr[:held]):
                self._drop(key)  # the new entry holds its rows
        need = self._pages_for(n)
        while self.allocator.free < need:
            self._drop(next(iter(self._entries)))
            self.evictions += 1
        dst = self.allocator.take(need)
        self._copy(self._keys, self._values, dst, self._engine_keys, self._engine_values, pages[:need])
        self._entries[self._next_id] = _Entry(arr, dst)
        self._next_id += 1

    def _drop(self, key: int) -> None:
        self.allocator.release(self._entries.pop(key).pages)

    def load(self, context: list[int], limit: int, pages: list[int]) -> int:
        """Copy into ``pages`` (a fresh sequence's, from position 0) the rows of
        the longest stored prefix of ``context``, at most ``limit`` tokens
        (whole pages are copied: rows past the prefix are written again by
        the prefill before any attention reads them). Returns the tokens
        reused (0: none)."""
        self.lookups += 1
        limit = min(limit, len(context), len(pages) * self.page_tokens)
        if limit < 1 or not self._entries:
            return 0
        ctx = np.asarray(context[:limit], np.int64)
        best_key, best = None, 0
        for key, entry in self._entries.items():
            k = min(limit, len(entry.tokens))
            if k <= best:
                continue
            differ = np.flatnonzero(entry.tokens[:k] != ctx[:k])
            common = int(differ[0]) if differ.size else k
            if common > best:
                best_key, best = key, common
        if best == 0:
            return 0
        entry = self._entries[best_key]
        self._entries.move_to_end(best_key)
        need = self._pages_for(best)
        self._copy(self._engine_keys, self._engine_values, pages[:need], self._keys, self._values,
                   entry.pages[:need])
        self.hits += 1
        self.reused_tokens += best
        return best

    def close(self) -> None:
        for buffer in self._buffers:
            buffer.release()
        self._buffers = []
        self._entries.clear()
