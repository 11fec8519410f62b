"""The scheduler's per-request bookkeeping.

A ``RequestState`` is created when a request is submitted and lives until the
end; executors read (never write) ``id``, ``request``, ``pages``,
``kv_tokens``, ``generated`` and ``prefill_target``.

A decode step is the hot path of a tick (up to ``decode_width`` requests), so
it touches as little as it can: it only counts ``generated`` and compares it
with ``watch``, the next token count at which the scheduler must look at the
request again (``max_new_tokens`` reached, or on_demand pages full).
``kv_tokens`` is derived rather than counted per decode step.
"""

from __future__ import annotations

from .request import Request

# Where a request is. A request moves PENDING -> WAITING -> (AGED) -> ACTIVE
# -> COMPLETED, with ACTIVE -> REQUEUED -> ACTIVE for every preemption, and
# may end REJECTED from PENDING (can never fit) or ACTIVE (outgrew the cache),
# or CANCELLED from any unfinished state (``Scheduler.cancel``, between ticks).
PENDING = "pending"
WAITING = "waiting"
AGED = "aged"
REQUEUED = "requeued"
ACTIVE = "active"
COMPLETED = "completed"
REJECTED = "rejected"
CANCELLED = "cancelled"


class RequestState:
    """Progress and accounting of one request (mutable, owned by the scheduler)."""

    __slots__ = (
        "request", "id", "key", "max_new", "where", "need", "prefill_target", "prefilled", "ready_gen",
        "generated", "watch", "pages", "enqueue_tick", "queued_since", "activated_tick", "first_admit_tick",
        "first_token_tick", "finish_tick", "waiting_ticks", "service_ticks", "preemptions",
        "reject_reason", "reject_detail",
    )

    def __init__(self, request: Request):
        self.request = request
        self.id = request.id
        self.key = request.key
        self.max_new = request.max_new_tokens
        self.where = PENDING
        self.need = 0  # pages taken at (re)admission
        # tokens whose keys/values must be computed before the next token can
        # be sampled: the prompt, plus every already generated token after a
        # preemption (recompute)
        self.prefill_target = request.prompt_tokens
        self.prefilled = 0
        self.generated = 0  # output tokens produced so far (kept across preemptions)
        # ``generated`` when the context was last fully prefilled (equal to it
        # while prefilling): every token generated since then was fed back by
        # a decode step and stored one KV slot (see ``kv_tokens``)
        self.ready_gen = 0
        # decode-ready only: ``generated`` at which the scheduler must look at
        # it again: max_new reached, or (on_demand) its pages full
        self.watch = 0
        self.pages: list[int] = []
        self.enqueue_tick = -1  # tick it entered the waiting queue (aging clock)
        self.queued_since = -1  # start of the current wait
        self.activated_tick = -1  # start of the current activation
        self.first_admit_tick: int | None = None
        self.first_token_tick: int | None = None
        self.finish_tick: int | None = None
        self.waiting_ticks = 0
        self.service_ticks = 0
        self.preemptions = 0
        self.reject_reason: str | None = None
        self.reject_detail: str | None = None

    @property
    def kv_tokens(self) -> int:
        """Tokens stored in this request's KV pages: its prefilled context plus
        one per decode step since."""
        return self.prefilled + self.generated - self.ready_gen

    def __repr__(self) -> str:
        return (f"RequestState({self.id!r}, {self.where}, generated={self.generated}, "
                f"kv_tokens={self.kv_tokens}, pages={len(self.pages)})")
