"""The boundary between deciding and doing.

The scheduler decides, once per tick, which prompt chunks to prefill and
which requests decode one token; an ``Executor`` does it (the engine runs
the model; ``SimulatedExecutor`` only says when each request would stop).
Keeping this interface small is what lets the engine take over later without
the scheduler changing.

Token accounting both sides agree on: a request whose context (prompt, plus
already generated tokens after a preemption) is fully prefilled samples one
token from the final prefill chunk; every decode step feeds the latest token
(storing its keys/values: one KV slot) and samples the next. A request that
generates M tokens from a P-token prompt therefore stores P + M - 1 tokens.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from .state import RequestState


class PrefillChunk(NamedTuple):
    """Prefill context positions ``start .. start+length-1`` of ``seq``.

    The chunk samples a token when ``start + length == seq.prefill_target``.
    """

    seq: RequestState
    start: int
    length: int


@dataclass(slots=True)
class Batch:
    """One tick's work. ``preempted`` requests lost their KV pages before this
    batch (their pages may already belong to others in it): drop their cached
    keys/values, keep their generated tokens (they will be recomputed)."""

    tick: int
    prefill: list[PrefillChunk]
    decode: list[RequestState]
    preempted: list[str]


class Executor(Protocol):
    """What the scheduler needs from whatever runs the model."""

    def execute(self, batch: Batch) -> Collection[str]:
        """Run the batch; return the ids of requests whose token sampled in
        this batch is their last (end of sequence). The scheduler itself stops
        a request at ``max_new_tokens``."""

    def release(self, request_id: str) -> None:
        """The request has left (completed, or rejected after admission):
        free everything held for it."""


class SimulatedExecutor:
    """Runs nothing; stops each request after a given number of tokens.

    ``output_tokens`` maps a request id to the number of tokens it generates
    before its end-of-sequence token; requests not in the map run to
    ``max_new_tokens``. Used for replay and for testing the scheduler.
    """

    def __init__(self, output_tokens: Mapping[str, int] | None = None):
        self._limits = dict(output_tokens or {})
        for rid, n in self._limits.items():
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ValueError(f"output_tokens[{rid!r}] must be a positive integer, got {n!r}")

    def execute(self, batch: Batch) -> Collection[str]:
        limits = self._limits
        if not limits:
            return ()
        never = 1 << 62
        stops = {seq.id for seq in batch.decode if seq.generated + 1 >= limits.get(seq.id, never)}
        for seq, start, length in batch.prefill:
            if start + length == seq.prefill_target and seq.generated + 1 >= limits.get(seq.id, never):
                stops.add(seq.id)
        return stops

    def release(self, request_id: str) -> None:
        """Nothing is held per request."""
