"""The scheduler's per-request bookkeeping.

A ``RequestState`` is created when a request is submitted and lives until the
end; executors read (never write) ``id``, ``request``, ``pages``,
``kv_tokens``, ``generated`` and ``prefill_target``.
"""

from __future__ import annotations

from .request import Request

# Where a request is. A request moves PENDING -> WAITING -> (AGED) -> ACTIVE
# -> COMPLETED, with ACTIVE -> REQUEUED -> ACTIVE for every preemption, and
# may end REJECTED from PENDING (can never fit) or ACTIVE (outgrew the cache).
PENDING = "pending"
WAITING = "waiting"
AGED = "aged"
REQUEUED = "requeued"
ACTIVE = "active"
COMPLETED = "completed"
REJECTED = "rejected"


class RequestState:
    """Progress and accounting of one request (mutable, owned by the scheduler)."""

    __slots__ = (
        "request", "id", "key", "max_new", "where", "need", "prefill_target", "prefilled", "kv_tokens",
        "generated", "pages", "enqueue_tick", "queued_since", "activated_tick", "first_admit_tick",
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
        self.kv_tokens = 0  # tokens stored in this request's KV pages
        self.generated = 0  # output tokens produced so far (kept across preemptions)
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

    def __repr__(self) -> str:
        return (f"RequestState({self.id!r}, {self.where}, generated={self.generated}, "
                f"kv_tokens={self.kv_tokens}, pages={len(self.pages)})")
