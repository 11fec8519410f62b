"""Continuous batching with paged KV admission.

One ``step()`` is one tick:

1. Arrivals: requests whose ``arrival_tick`` has come join the queue, or are
   rejected at once if they can never fit the KV cache.
2. Aging: a request that has waited ``aging_ticks`` moves to the aged queue.
3. Decode: up to ``decode_width`` decode-ready requests, round-robin. In
   ``on_demand`` mode a request whose pages are full gets one more; when none
   is free the active request last in admission order (highest
   ``(priority, arrival_tick, id)``) is preempted, possibly the requester
   itself: its pages are freed and it is requeued ahead of every waiting
   request, to be recomputed (prompt + tokens generated so far).
4. Prefill: partly prefilled requests, in admission order, take the token
   budget in chunks.
5. Admission (skipped in a tick that preempted, so a tick never both
   preempts and admits): preempted requests first, by key, never skipped;
   then aged requests, oldest first, never skipped; then the rest by
   ``(priority, arrival_tick, id)``, skipping any that does not fit (no
   head-of-line blocking). Admission stops when ``max_active`` requests are
   active or the prefill budget is spent; each admitted request takes its
   first prefill chunk from what is left of the budget.
6. The executor runs the batch; the scheduler counts tokens, completes
   requests (end of sequence or ``max_new_tokens``) and frees their pages.

Why a preempted request cannot livelock: the victim is always the active
request with the highest key, so every requeued request has a higher key
than every active one, and nothing else is admitted while one is requeued.
The active request with the lowest key is thus never preempted while another
is active; it completes, and the set of active-or-requeued requests drains.
Generated tokens survive preemption, so each readmission makes progress. A
request that is alone, holds every page and needs another can never fit: it
is rejected (``outgrew_kv_capacity``) instead of being preempted forever.
The aging bound is derived in docs/scheduler.md and checked in the tests.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable

from .executor import Batch, Executor, PrefillChunk
from .need_index import NeedIndex
from .pages import PageAllocator
from .request import RESERVE, Request, SchedulerConfig
from .state import ACTIVE, AGED, COMPLETED, REJECTED, REQUEUED, WAITING, RequestState
from .trace import TickRecord

# rejection reasons (stable codes; the detail text says the numbers)
EXCEEDS_KV_CAPACITY = "exceeds_kv_capacity"
PROMPT_EXCEEDS_KV_CAPACITY = "prompt_exceeds_kv_capacity"
OUTGREW_KV_CAPACITY = "outgrew_kv_capacity"


class Scheduler:
    """Decides, tick by tick, what the executor runs (see the module docstring)."""

    def __init__(self, config: SchedulerConfig, executor: Executor):
        if not isinstance(config, SchedulerConfig):
            raise TypeError(f"config must be a SchedulerConfig, got {type(config).__name__}")
        self.config = config
        self.executor = executor
        self.now = 0  # the next tick to run
        self.pages = PageAllocator(config.kv_pages)
        self.states: dict[str, RequestState] = {}  # every submitted request, submission order
        self._pending: list[tuple] = []  # heap of (arrival_tick, key, state) not yet arrived
        self._fifo: deque[RequestState] = deque()  # waiting, in queue-entry order (aging clock)
        self._aged: deque[RequestState] = deque()
        self._requeued: list[tuple] = []  # heap of (key, state), preempted
        self._index = NeedIndex(config.kv_pages)
        self._queued = 0  # waiting + aged + requeued
        self._active: dict[str, RequestState] = {}  # admission order
        self._prefilling: deque[RequestState] = deque()  # active, context not yet prefilled
        self._ring: deque[RequestState] = deque()  # active, decode-ready, round-robin order
        self._unfinished = 0
        self.prefill_tokens = 0
        self.recompute_tokens = 0  # part of prefill_tokens done again after a preemption
        self.decode_steps = 0
        self.preemptions = 0

    # -- submission -------------------------------------------------------

    def submit(self, request: Request) -> RequestState:
        """Queue a request for its ``arrival_tick`` (which must not be in the past)."""
        if not isinstance(request, Request):
            raise TypeError(f"expected a Request, got {type(request).__name__}")
        if request.id in self.states:
            raise ValueError(f"request id {request.id!r} was already submitted")
        if request.arrival_tick < self.now:
            raise ValueError(
                f"request {request.id!r} arrives at tick {request.arrival_tick}, "
                f"but the scheduler is already at tick {self.now}"
            )
        state = RequestState(request)
        self.states[request.id] = state
        heapq.heappush(self._pending, (request.arrival_tick, state.key, state))
        self._unfinished += 1
        return state

    def submit_all(self, requests: Iterable[Request]) -> None:
        """``submit`` each request."""
        for request in requests:
            self.submit(request)

    # -- queries ----------------------------------------------------------

    @property
    def done(self) -> bool:
        """True when every submitted request has completed or been rejected."""
        return self._unfinished == 0

    def pages_for(self, tokens: int) -> int:
        """KV pages that hold ``tokens`` tokens."""
        return -(-tokens // self.config.page_tokens)

    def _never_fits(self, request: Request) -> tuple[str, str] | None:
        cfg = self.config
        if cfg.admission == RESERVE:
            stored = request.prompt_tokens + request.max_new_tokens - 1
            need = self.pages_for(stored)
            if need > cfg.kv_pages:
                return EXCEEDS_KV_CAPACITY, (
                    f"reserve mode needs {need} pages for {request.prompt_tokens} prompt + "
                    f"{request.max_new_tokens - 1} fed-back tokens; the cache has {cfg.kv_pages} pages "
                    f"of {cfg.page_tokens} tokens")
        else:
            need = self.pages_for(request.prompt_tokens)
            if need > cfg.kv_pages:
                return PROMPT_EXCEEDS_KV_CAPACITY, (
                    f"the {request.prompt_tokens}-token prompt needs {need} pages; the cache has "
                    f"{cfg.kv_pages} pages of {cfg.page_tokens} tokens")
        return None

    # -- one tick ---------------------------------------------------------

    def run(self) -> list[TickRecord]:
        """Run ticks until every submitted request has completed or been rejected."""
        trace = []
        while self._unfinished:
            trace.append(self.step())
        return trace

    def step(self) -> TickRecord:
        """Run one tick and return its record. When nothing is queued or
        active, the clock first jumps to the next arrival."""
        if not self._unfinished:
            raise RuntimeError("nothing to schedule: every submitted request has finished")
        if not self._active and not self._queued:
            self.now = max(self.now, self._pending[0][0])
        tick = self.now
        cfg = self.config
        rejected: list[str] = []
        self._arrive(tick, rejected)
        self._age(tick)

        preempted: list[str] = []
        decode = self._plan_decode(tick, preempted, rejected)

        budget = cfg.prefill_budget
        chunks: list[PrefillChunk] = []
        for seq in self._prefilling:
            if budget == 0:
                break
            n = seq.prefill_target - seq.prefilled
            if n > budget:
                n = budget
            chunks.append(PrefillChunk(seq, seq.prefilled, n))
            budget -= n
        admitted: list[str] = []
        # a tick that preempted admits nothing (the requeue barrier already
        # implies it: the last victim heads the queue and does not fit)
        if not preempted and budget:
            self._admit(tick, budget, chunks, admitted)

        record = TickRecord(
            tick=tick,
            admitted=admitted,
            prefill=[(c.seq.id, c.length) for c in chunks],
            decoded=[seq.id for seq in decode],
            completed=[],
            preempted=preempted,
            rejected=rejected,
            queued=self._queued,
            active=len(self._active),
            used_pages=self.pages.used,
        )
        stops = self.executor.execute(Batch(tick, chunks, decode, preempted))
        self._apply(tick, chunks, decode, stops, record.completed)
        self.now = tick + 1
        return record

    def _arrive(self, tick: int, rejected: list[str]) -> None:
        pending = self._pending
        while pending and pending[0][0] <= tick:
            state = heapq.heappop(pending)[2]
            never = self._never_fits(state.request)
            if never is not None:
                self._reject(state, tick, *never)
                rejected.append(state.id)
                continue
            state.where = WAITING
            state.need = self._admission_need(state)
            state.enqueue_tick = state.queued_since = tick
            self._index.push(state)
            self._fifo.append(state)
            self._queued += 1

    def _age(self, tick: int) -> None:
        fifo = self._fifo
        horizon = tick - self.config.aging_ticks
        while fifo and fifo[0].enqueue_tick <= horizon:
            state = fifo.popleft()
            if state.where == WAITING:
                state.where = AGED
                self._aged.append(state)

    def _admission_need(self, state: RequestState) -> int:
        if self.config.admission == RESERVE:
            return self.pages_for(state.request.prompt_tokens + state.max_new - 1)
        return self.pages_for(state.prefill_target)

    def _plan_decode(self, tick: int, preempted: list[str], rejected: list[str]) -> list[RequestState]:
        ring = self._ring
        decode: list[RequestState] = []
        count = min(self.config.decode_width, len(ring))
        if self.config.admission == RESERVE:
            # pages for every token were reserved at admission
            popleft = ring.popleft
            return [popleft() for _ in range(count)]
        page_tokens = self.config.page_tokens
        pages = self.pages
        for _ in range(count):
            if not ring:
                break  # preemptions emptied it
            seq = ring.popleft()
            if len(seq.pages) * page_tokens <= seq.kv_tokens:
                if not self._make_room(seq, tick, decode, preempted, rejected):
                    continue
                pages.allocate(1, seq.pages)
            decode.append(seq)
        return decode

    def _make_room(self, seq: RequestState, tick: int, decode: list[RequestState],
                   preempted: list[str], rejected: list[str]) -> bool:
        """Free a page for ``seq`` by preemption; False if ``seq`` itself left."""
        while not self.pages.free:
            victim = max(self._active.values(), key=_key_of)
            if victim is seq and len(self._active) == 1:
                # alone, holding every page, and still short: can never fit
                held = len(seq.pages)
                self._deactivate(seq, tick)
                self._reject(seq, tick, OUTGREW_KV_CAPACITY, (
                    f"after {seq.generated} generated tokens the request holds all {held} KV pages "
                    f"and needs another to continue"))
                self.executor.release(seq.id)
                rejected.append(seq.id)
                return False
            if victim is not seq:
                if victim.prefilled < victim.prefill_target:
                    self._prefilling.remove(victim)
                elif victim in decode:
                    decode.remove(victim)
                else:
                    self._ring.remove(victim)
            self._preempt(victim, tick)
            preempted.append(victim.id)
            if victim is seq:
                return False
        return True

    def _preempt(self, state: RequestState, tick: int) -> None:
        self._deactivate(state, tick)
        state.where = REQUEUED
        state.preemptions += 1
        state.prefilled = 0
        state.kv_tokens = 0
        # recompute the prompt and every generated token: the last generated
        # token was never fed back, so the final chunk samples the next one
        state.prefill_target = state.request.prompt_tokens + state.generated
        state.need = self._admission_need(state)
        state.queued_since = tick + 1
        heapq.heappush(self._requeued, (state.key, state))
        self._queued += 1
        self.preemptions += 1

    def _deactivate(self, state: RequestState, tick: int) -> None:
        """Leave the active set and give the pages back."""
        del self._active[state.id]
        self.pages.release(state.pages)
        state.service_ticks += tick - state.activated_tick + 1

    def _reject(self, state: RequestState, tick: int, reason: str, detail: str) -> None:
        state.where = REJECTED
        state.reject_reason = reason
        state.reject_detail = detail
        state.finish_tick = tick
        self._unfinished -= 1

    def _admit(self, tick: int, budget: int, chunks: list[PrefillChunk], admitted: list[str]) -> None:
        slots = self.config.max_active - len(self._active)
        free = self.pages.free
        requeued = self._requeued
        while requeued and slots and budget:
            state = requeued[0][1]
            if state.need > free:
                return  # barrier: nothing passes a preempted request
            heapq.heappop(requeued)
            budget = self._activate(state, tick, budget, chunks, admitted)
            free -= state.need
            slots -= 1
        if requeued:
            return
        aged = self._aged
        while aged and slots and budget:
            state = aged[0]
            if state.need > free:
                return  # barrier: an aged request is never skipped
            aged.popleft()
            budget = self._activate(state, tick, budget, chunks, admitted)
            free -= state.need
            slots -= 1
        index = self._index
        while slots and budget:
            state = index.pop_best_within(free)
            if state is None:
                return
            budget = self._activate(state, tick, budget, chunks, admitted)
            free -= state.need
            slots -= 1

    def _activate(self, state: RequestState, tick: int, budget: int,
                  chunks: list[PrefillChunk], admitted: list[str]) -> int:
        """Admit one request: take its pages and its first prefill chunk."""
        self.pages.allocate(state.need, state.pages)
        state.where = ACTIVE
        state.waiting_ticks += tick - state.queued_since
        state.activated_tick = tick
        if state.first_admit_tick is None:
            state.first_admit_tick = tick
        self._active[state.id] = state
        self._prefilling.append(state)
        self._queued -= 1
        admitted.append(state.id)
        n = min(state.prefill_target, budget)
        chunks.append(PrefillChunk(state, 0, n))
        return budget - n

    def _apply(self, tick: int, chunks: list[PrefillChunk], decode: list[RequestState],
               stops: Iterable[str], completed: list[str]) -> None:
        """Count what the executor did; complete finished requests."""
        stops = stops if isinstance(stops, (set, frozenset)) else set(stops)
        # every request that sampled a token this tick, in completion order
        # (decode order, then prefill order); the hot path of a tick
        sampled = decode
        finished = []
        for seq in decode:
            seq.kv_tokens += 1
            seq.generated += 1
            if seq.generated >= seq.max_new:
                finished.append(seq)
        self.decode_steps += len(decode)
        if chunks:
            sampled = list(decode)
            prefilling = self._prefilling
            for seq, _start, n in chunks:
                seq.prefilled += n
                seq.kv_tokens += n
                self.prefill_tokens += n
                if seq.preemptions:
                    self.recompute_tokens += n
                if seq.prefilled == seq.prefill_target:
                    # chunks follow the queue order and only the last can be partial
                    prefilling.popleft()
                    seq.generated += 1
                    if seq.first_token_tick is None:
                        seq.first_token_tick = tick
                    sampled.append(seq)
                    if seq.generated >= seq.max_new:
                        finished.append(seq)
        if stops:
            finished = [seq for seq in sampled if seq.generated >= seq.max_new or seq.id in stops]
        if finished:
            for seq in finished:
                self._complete(seq, tick, completed)
            self._ring.extend([seq for seq in sampled if seq.where == ACTIVE])
        else:
            self._ring.extend(sampled)
        if stops:
            strays = sorted(stops - {seq.id for seq in sampled})
            if strays:
                raise RuntimeError(f"executor reported end of sequence for {strays}, "
                                   f"which sampled no token in tick {tick}")

    def _complete(self, seq: RequestState, tick: int, completed: list[str]) -> None:
        self._deactivate(seq, tick)
        seq.where = COMPLETED
        seq.finish_tick = tick
        self._unfinished -= 1
        completed.append(seq.id)
        self.executor.release(seq.id)


def _key_of(state: RequestState) -> tuple:
    return state.key

