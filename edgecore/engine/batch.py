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
        if arr.ndim != 1 or arr.size == 0 or arr.dtype.kind not in "iu":
            raise ValueError(f"step: items[{i}] token ids must be a non-empty 1-D integer array, got {arr.dtype} "
                             f"shape {arr.shape}")
        # a decode item is a token or a few: Python's min/max beat two NumPy reductions there
        lo, hi = (min(small := arr.tolist()), max(small)) if arr.size <= 32 else (arr.min(), arr.max())
        if lo < 0 or hi >= vocab:
            bad = np.flatnonzero((arr < 0) | (arr >= vocab))
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
    # Python lists, one array each: a decode step's batch costs a few NumPy calls, not a dozen per item
    starts, pos0, positions = [0], [], []
    for seq, ids in items:
        starts.append(starts[-1] + len(ids))
        pos0.append(seq.length)
        positions.extend(range(seq.length, seq.length + len(ids)))
    width = max(len(seq.pages) for seq, _ in items)
    table = np.array([seq.pages + [0] * (width - len(seq.pages)) for seq, _ in items], np.int32)
    ids = items[0][1] if len(items) == 1 else np.concatenate([ids for _, ids in items])
    return StepBatch(ids, np.array(positions, np.int64), np.array(starts, np.int32), np.array(pos0, np.int32),
                     table, np.array(starts[1:], np.int64) - 1)
