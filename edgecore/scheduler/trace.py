"""One record per tick: what the scheduler decided and the state it left.

Counts describe the tick while its batch runs: after admission, preemption
and page allocation, before completed requests give their pages back.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class TickRecord:
    """What happened in one tick; lists are in decision order."""

    tick: int
    admitted: list[str]  # in admission order
    prefill: list[tuple[str, int]]  # (request id, tokens prefilled this tick), in prefill order
    decoded: list[str]  # requests that decoded one token, in round-robin order
    completed: list[str]  # decode order first, then prefill order
    preempted: list[str]  # in preemption order
    rejected: list[str]  # at arrival (can never fit) or after outgrowing the cache
    queued: int  # requests waiting (including preempted ones) while the batch ran
    active: int  # requests holding KV pages while the batch ran
    used_pages: int  # KV pages held while the batch ran

    def to_json(self) -> dict[str, object]:
        """The record as a JSON object (the report's ``trace`` items)."""
        return {
            "tick": self.tick,
            "admitted": self.admitted,
            "prefill": [[rid, n] for rid, n in self.prefill],
            "decoded": self.decoded,
            "completed": self.completed,
            "preempted": self.preempted,
            "rejected": self.rejected,
            "queued": self.queued,
            "active": self.active,
            "used_pages": self.used_pages,
        }
