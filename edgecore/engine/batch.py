"""One engine step's rows: the new tokens of every item, concatenated.

Item s contributes rows starts[s] .. starts[s+1]-1 at positions pos0[s]..,
and attends over its own pages (table[s]). These are the arrays the paged
KV store and attention kernels take (ops.kv_store / ops.attention), built
once per step and shared by every layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgecore.engine.kv import KVSequence


@dataclass
class StepBatch:
    ids: np.ndarray  # int64 [M]: token ids of all rows
    positions: np.ndarray  # int64 [M]: each row's position in its sequence
    starts: np.ndarray  # int32 [S + 1]
    pos0: np.ndarray  # int32 [S]: position of each item's first row
    table: np.ndarray  # int32 [S, max_pages]: each item's pages (padded with page 0, never read)
    last: np.ndarray  # int64 [S]: the row of each item's last token

    @property
    def rows(self) -> int:
        return len(self.ids)


def check_items(items, vocab: int, context: int, page_tokens: int) -> list[tuple[KVSequence, np.ndarray]]:
    """Validate step() items: (KVSequence, 1+ token ids) pairs, each sequence
    once, with room in its pages. Returns (seq, int64 ids) pairs."""
    if isinstance(items, tuple) or not hasattr(items, "__len__") or len(items) == 0:
        raise ValueError("step: items must be a non-empty list of (KVSequence, token_ids) pairs")
    out, seen = [], set()
    for i, item in enumerate(items):
        if not isinstance(item, (tuple, list)) or len(item) != 2 or not isinstance(item[0], KVSequence):
            raise ValueError(f"step: items[{i}] must be a (KVSequence, token_ids) pair, got {type(item).__name__}")
        seq, ids = item
        if id(seq) in seen:
            raise ValueError(f"step: items[{i}] repeats a sequence; give each sequence's tokens as one item")
        seen.add(id(seq))
        try:
            arr = np.asarray(ids)
        except (TypeError, ValueError):
            raise TypeError(f"step: items[{i}] token ids must be a sequence of integers") from None
        if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"step: items[{i}] token ids must be a non-empty 1-D integer array, got {arr.dtype} "
                             f"shape {arr.shape}")
        bad = np.flatnonzero((arr < 0) | (arr >= vocab))
        if bad.size:
            raise ValueError(f"step: items[{i}] token id {arr[bad[0]]} at index {bad[0]} is outside the "
                             f"vocabulary [0, {vocab})")
        end = seq.length + arr.size
        if end > context:
            raise ValueError(f"step: items[{i}]: {seq.length} stored + {arr.size} new tokens exceed the context "
                             f"of {context} tokens")
        if end > len(seq.pages) * page_tokens:
            raise ValueError(f"step: items[{i}] needs room for {end} tokens but its {len(seq.pages)} page(s) hold "
                             f"{len(seq.pages) * page_tokens}; call engine.kv.reserve(seq, {arr.size}) first")
        out.append((seq, arr.astype(np.int64, copy=False)))
    return out


def build_batch(items: list[tuple[KVSequence, np.ndarray]]) -> StepBatch:
    counts = np.array([len(ids) for _, ids in items], np.int32)
    starts = np.zeros(len(items) + 1, np.int32)
    np.cumsum(counts, out=starts[1:])
    pos0 = np.array([seq.length for seq, _ in items], np.int32)
    width = max(len(seq.pages) for seq, _ in items)
    table = np.zeros((len(items), width), np.int32)
    for s, (seq, _) in enumerate(items):
        table[s, :len(seq.pages)] = seq.pages
    ids = np.concatenate([ids for _, ids in items])
    positions = np.concatenate([np.arange(seq.length, seq.length + len(ids), dtype=np.int64)
                                for seq, ids in items])
    return StepBatch(ids, positions, starts, pos0, table, starts[1:].astype(np.int64) - 1)
