"""A stand-in for the engine's paged step, until the engine has one: the
same interface (engine.kv.allocator / page_tokens / new_sequence,
engine.step), computed by running Engine.forward over each sequence's
whole token list. It keeps no KV values, only the token ids, and checks
that every step item has the pages it writes into."""

from __future__ import annotations

import numpy as np

from edgecore.engine import Engine
from edgecore.scheduler import PageAllocator


class Sequence:
    __slots__ = ("pages", "length", "ids")

    def __init__(self):
        self.pages: list[int] = []
        self.length = 0
        self.ids: list[int] = []


class KV:
    def __init__(self, pages: int, page_tokens: int):
        self.allocator = PageAllocator(pages)
        self.page_tokens = page_tokens

    def new_sequence(self) -> Sequence:
        return Sequence()


class RecomputeEngine:
    def __init__(self, model, pages: int, page_tokens: int = 4, **options):
        self.inner = Engine(model, **options)
        self.model = self.inner.model
        self.tokenizer = self.inner.tokenizer
        self.spec = self.inner.spec
        self.context = self.inner.context
        self.step_tokens = self.inner.step_tokens
        self.kv = KV(pages, page_tokens)
        self.steps = []  # rows per step, to see batching

    def step(self, items) -> np.ndarray:
        out = np.empty((len(items), self.spec.vocab_size), np.float32)
        for i, (seq, ids) in enumerate(items):
            end = seq.length + len(ids)
            assert end <= len(seq.pages) * self.kv.page_tokens, "step writes past the sequence's pages"
            assert len(set(seq.pages)) == len(seq.pages)
            seq.ids = seq.ids[:seq.length] + [int(t) for t in ids]
            out[i] = self.inner.forward(seq.ids)[-1]
        for seq, ids in items:
            seq.length += len(ids)
        self.steps.append([len(ids) for _, ids in items])
        return out

    def close(self) -> None:
        self.inner.close()
