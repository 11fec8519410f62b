"""What the scheduler is given: requests and its configuration."""

from __future__ import annotations

from dataclasses import dataclass

RESERVE = "reserve"
ON_DEMAND = "on_demand"
ADMISSION_MODES = (RESERVE, ON_DEMAND)


def _positive_int(owner: str, name: str, value: object, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{owner}.{name} must be {kind}, got {value!r}")


@dataclass(frozen=True, slots=True)
class Request:
    """One generation request.

    ``prompt_tokens`` is the prompt length; ``max_new_tokens`` caps the
    output; ``priority`` orders admission (lower is more urgent, negative
    allowed); ``arrival_tick`` is the tick at which the request reaches the
    scheduler. ``id`` must be a non-empty string that encodes to UTF-8 (it
    is part of the trace fingerprint).
    """

    id: str
    prompt_tokens: int
    max_new_tokens: int
    priority: int = 0
    arrival_tick: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ValueError(f"Request.id must be a non-empty string, got {self.id!r}")
        try:
            self.id.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"Request.id {self.id!r} is not valid Unicode text (lone surrogate)") from None
        _positive_int("Request", "prompt_tokens", self.prompt_tokens)
        _positive_int("Request", "max_new_tokens", self.max_new_tokens)
        if isinstance(self.priority, bool) or not isinstance(self.priority, int):
            raise ValueError(f"Request.priority must be an integer, got {self.priority!r}")
        _positive_int("Request", "arrival_tick", self.arrival_tick, minimum=0)

    @property
    def key(self) -> tuple[int, int, str]:
        """Admission order: (priority, arrival_tick, id); unique because ids are."""
        return (self.priority, self.arrival_tick, self.id)


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """Capacity and policy of one scheduler.

    - ``kv_pages`` x ``page_tokens``: the paged KV cache (every stored token
      takes one slot of a page; a page belongs to one request at a time).
    - ``max_active``: requests admitted at once (each holds KV pages).
    - ``prefill_budget``: prompt tokens prefilled per tick, over all requests;
      longer prompts are prefilled in chunks across ticks.
    - ``decode_width``: requests that decode one token per tick (round-robin).
    - ``admission``: ``"reserve"`` (pages for the whole request at admission,
      never preempts) or ``"on_demand"`` (pages as tokens are stored;
      preempts and recomputes when the cache runs out).
    - ``aging_ticks``: a request that has waited this many ticks stops being
      skipped: it is admitted before any newer request (see docs/scheduler.md
      for the bound this gives).
    """

    kv_pages: int
    page_tokens: int
    max_active: int
    prefill_budget: int
    decode_width: int
    admission: str = RESERVE
    aging_ticks: int = 64

    def __post_init__(self) -> None:
        for name in ("kv_pages", "page_tokens", "max_active", "prefill_budget", "decode_width",
                     "aging_ticks"):
            _positive_int("SchedulerConfig", name, getattr(self, name))
        if self.admission not in ADMISSION_MODES:
            modes = ", ".join(ADMISSION_MODES)
            raise ValueError(f"SchedulerConfig.admission must be one of {modes}, got {self.admission!r}")

    def to_json(self) -> dict[str, object]:
        """The configuration as a JSON object (the workload's ``config`` block)."""
        return {
            "kv_pages": self.kv_pages,
            "page_tokens": self.page_tokens,
            "max_active": self.max_active,
            "prefill_budget": self.prefill_budget,
            "decode_width": self.decode_width,
            "admission": self.admission,
            "aging_ticks": self.aging_ticks,
        }
