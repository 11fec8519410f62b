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
from itertools import islice
from operator import attrgetter, indexOf, length_hint

from .executor import Batch, Executor, PrefillChunk
from .need_index import NeedIndex
from .pages import PageAllocator
from .request import ON_DEMAND, RESERVE, Request, SchedulerConfig
from .state import ACTIVE, AGED, CANCELLED, COMPLETED, PENDING, REJECTED, REQUEUED, WAITING, RequestState
from .trace import TickRecord
from .victims import TopKeys

# rejection reasons (stable codes; the detail text says the numbers)
EXCEEDS_KV_CAPACITY = "exceeds_kv_capacity"
PROMPT_EXCEEDS_KV_CAPACITY = "prompt_exceeds_kv_capacity"
OUTGREW_KV_CAPACITY = "outgrew_kv_capacity"

# PrefillChunk(seq, start, length) without the Python-level __new__ that a
# NamedTuple's constructor runs (a few chunks per tick)
_chunk = tuple.__new__
_need_of = attrgetter("need")
# PrefillChunk -> the record's (request id, tokens)
_prefill_entry = attrgetter("seq.id", "length")


class Scheduler:
    """Decides, tick by tick, what the executor runs (see the module docstring)."""

    def __init__(self, config: SchedulerConfig, executor: Executor, pages: PageAllocator | None = None):
        """``pages``: the allocator of an executor's real KV pages (the engine's),
        so that the scheduler's page accounting and the cache are one thing;
        it must have ``config.kv_pages`` pages, none in use. Default: a new one."""
        if not isinstance(config, SchedulerConfig):
            raise TypeError(f"config must be a SchedulerConfig, got {type(config).__name__}")
        if pages is None:
            pages = PageAllocator(config.kv_pages)
        elif pages.total != config.kv_pages or pages.used:
            raise ValueError(f"the page allocator has {pages.total} pages ({pages.used} in use); the scheduler "
                             f"needs one with config.kv_pages = {config.kv_pages}, none in use")
        self.config = config
        self.executor = executor
        self._on_demand = config.admission == ON_DEMAND
        self.now = 0  # the next tick to run
        self.pages = pages
        self.states: dict[str, RequestState] = {}  # every submitted request, submission order
        self._pending: list[tuple] = []  # heap of (arrival_tick, key, state) not yet arrived
        self._fifo: deque[RequestState] = deque()  # waiting, in queue-entry order (aging clock)
        self._aged: deque[RequestState] = deque()
        self._requeued: list[tuple] = []  # heap of (key, state), preempted
        self._index = NeedIndex()
        self._queued = 0  # waiting + aged + requeued
        # admission order; keyed by the state (an identity hash) rather than
        # its id, whose string a lookup would have to read
        self._active: dict[RequestState, None] = {}
        self._prefilling: deque[RequestState] = deque()  # active, context not yet prefilled
        # active, decode-ready, round-robin order: a batch is taken from the
        # front and what is still active goes to the back. Lists, so that both
        # are slices; the ids alongside, so that a record's `decoded` is one too
        self._ring: list[RequestState] = []
        self._ring_ids: list[str] = []
        # on_demand: ring members whose pages are full, in ring order (a dict
        # used as an ordered set); each needs a page before its next decode
        self._full: dict[RequestState, None] = {}
        # on_demand: finds the preemption victim (the highest active key)
        self._victims = TopKeys() if self._on_demand else None
        self._unfinished = 0
        self.prefill_tokens = 0
        self.recompute_tokens = 0  # part of prefill_tokens done again after a preemption
        self.decode_steps = 0
        self.preemptions = 0
        self.cancellations = 0

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

    def cancel(self, request_id: str) -> bool:
        """End an unfinished request now (between ticks): it leaves whatever
        queue or batch it is in, its pages go back to the pool at once and
        the executor is told to release it. False if it had already
        finished (completed, rejected or cancelled)."""
        state = self.states.get(request_id)
        if state is None:
            raise KeyError(f"unknown request id {request_id!r}")
        where = state.where
        if where in (COMPLETED, REJECTED, CANCELLED):
            return False
        if where == PENDING:
            self._pending.remove(next(e for e in self._pending if e[2] is state))
            heapq.heapify(self._pending)
        elif where == ACTIVE:
            self._deactivate(state, self.now - 1)
            if state.prefilled < state.prefill_target:
                self._prefilling.remove(state)
            else:
                at = self._ring.index(state)
                del self._ring[at]
                del self._ring_ids[at]
        else:
            # a waiting request's entries in the FIFO and the need index
            # are dropped lazily (they only hold WAITING states)
            if where == AGED:
                self._aged.remove(state)
            elif where == REQUEUED:
                self._requeued.remove(next(e for e in self._requeued if e[1] is state))
                heapq.heapify(self._requeued)
            self._queued -= 1
        state.where = CANCELLED
        state.finish_tick = self.now
        self._unfinished -= 1
        self.cancellations += 1
        self.executor.release(request_id)
        return True

    # -- queries ----------------------------------------------------------

    @property
    def done(self) -> bool:
        """True when every submitted request has completed or been rejected."""
        return self._unfinished == 0

    def pages_for(self, tokens: int) -> int:
        """KV pages that hold ``tokens`` tokens."""
        return -(-tokens // self.config.page_tokens)

    def _never_fits(self, request: Request) -> tuple[str, str] | None:
        """Why ``request`` can never be admitted (reason, detail), or None."""
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
        decode, decoded = self._plan_decode(tick, preempted, rejected)

        budget = cfg.prefill_budget
        chunks: list[PrefillChunk] = []
        for seq in self._prefilling:
            if budget == 0:
                break
            n = seq.prefill_target - seq.prefilled
            if n > budget:
                n = budget
            chunks.append(_chunk(PrefillChunk, (seq, seq.prefilled, n)))
            budget -= n
        admitted: list[str] = []
        # a tick that preempted admits nothing (the requeue barrier already
        # implies it: the last victim heads the queue and does not fit)
        if not preempted and budget:
            self._admit(tick, budget, chunks, admitted)

        # positional: TickRecord(tick, admitted, prefill, decoded, completed,
        # preempted, rejected, queued, active, used_pages)
        record = TickRecord(tick, admitted, list(map(_prefill_entry, chunks)), decoded, [], preempted,
                            rejected, self._queued, len(self._active), self.pages.used)
        stops = self.executor.execute(Batch(tick, chunks, decode, preempted))
        self._apply(tick, chunks, decode, decoded, stops, record.completed)
        self.now = tick + 1
        return record

    def _arrive(self, tick: int, rejected: list[str]) -> None:
        pending = self._pending
        while pending and pending[0][0] <= tick:
            state = heapq.heappop(pending)[2]
            need = self._admission_need(state)
            if need > self.config.kv_pages:
                self._reject(state, tick, *self._never_fits(state.request))
                rejected.append(state.id)
                continue
            state.where = WAITING
            state.need = need
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
        """Pages ``state`` takes when (re)admitted (``_never_fits`` says why
        a first admission that needs more than the cache can never happen)."""
        if self._on_demand:
            return -(-state.prefill_target // self.config.page_tokens)
        return -(-(state.request.prompt_tokens + state.max_new - 1) // self.config.page_tokens)

    def _plan_decode(self, tick: int, preempted: list[str],
                     rejected: list[str]) -> tuple[list[RequestState], list[str]]:
        """The tick's decode batch and its ids: the front of the ring, after
        giving a page to each member whose pages are full (on_demand)."""
        ring = self._ring
        count = min(self.config.decode_width, len(ring))
        full = self._full
        if full:
            # `full` is in ring order, so these are in batch order
            hits = list(full) if count == len(ring) else [seq for seq in ring[:count] if seq in full]
            short = len(hits) > self.pages.free
            if short:  # the first ones still get a page without preempting
                hits = hits[:self.pages.free]
            self._grow(hits)
            if short:
                return self._plan_decode_preempting(count, hits, tick, preempted, rejected)
        return self._take_batch(count)

    def _grow(self, hits: list[RequestState]) -> None:
        """Give one page each to these full requests (in ring order) and move
        their watch marks one page on (full means generated == watch <
        max_new, see ``_apply``)."""
        page_tokens = self.config.page_tokens
        pages = self.pages.take(len(hits))
        pages.reverse()  # so that pop() hands them out in order
        for seq in hits:
            seq.pages.append(pages.pop())
            watch = seq.generated + page_tokens
            seq.watch = watch if watch < seq.max_new else seq.max_new
        full = self._full
        if len(hits) == len(full):
            full.clear()
        else:
            for seq in hits:
                del full[seq]

    def _take_batch(self, count: int) -> tuple[list[RequestState], list[str]]:
        """Take ``count`` requests (and their ids) off the front of the ring."""
        ring = self._ring
        ids = self._ring_ids
        if count == len(ring):  # all of it: hand the lists over, no copies
            self._ring = []
            self._ring_ids = []
            return ring, ids
        decode = ring[:count]
        del ring[:count]
        decoded = ids[:count]
        del ids[:count]
        return decode, decoded

    def _plan_decode_preempting(self, count: int, grown: list[RequestState], tick: int,
                                preempted: list[str], rejected: list[str]) -> tuple[list[RequestState], list[str]]:
        """``_plan_decode`` when the full requests in the batch need more pages
        than are free; the first ones, ``grown``, got the free pages. The
        decisions are those of taking the batch one request at a time: each
        full request, in ring order, preempts until a page is free. A victim
        further on in the ring leaves it, so the batch reaches one request
        further; a victim already in the batch, or the request itself, leaves
        the batch. Only the full requests are visited, and once a preemption
        has freed pages, the full requests after it that they cover get theirs
        together (as one at a time would: none of them preempts).

        When the batch is the whole ring, every full request is in it and
        every victim from the ring leaves it whatever its place, so no ring
        position is needed."""
        ring = self._ring
        full = self._full
        whole = count == len(ring)
        left: list[RequestState] = []  # batch members that left the active set
        # ring[:walked] has been decided (all of it counts as such for a whole-ring batch)
        walked = count if whole else ring.index(grown[-1]) + 1 if grown else 0
        while full:
            seq = next(iter(full))  # the next full request in ring order
            if not whole:
                at = ring.index(seq, walked)
                if at >= count:
                    break
                walked = at + 1
            if not self._make_room(seq, tick, walked, left, preempted, rejected):
                continue
            hits = [seq]
            more = min(self.pages.free, len(full)) - 1
            if more > 0:
                after = list(islice(full, 1, 1 + more))
                if whole:
                    hits += after
                else:
                    at = ring.index(after[-1], walked)
                    if at < count:  # all in the batch (else: one at a time)
                        hits += after
                        walked = at + 1
            self._grow(hits)
        decode, decoded = self._take_batch(count)
        for seq in left:
            # from the back: victims, the latest admitted, are mostly there
            at = len(decode) - 1 - indexOf(reversed(decode), seq)
            del decode[at]
            del decoded[at]
        return decode, decoded

    def _make_room(self, seq: RequestState, tick: int, walked: int, left: list[RequestState],
                   preempted: list[str], rejected: list[str]) -> bool:
        """Free a page for ``seq`` (at ``ring[walked - 1]``) by preemption;
        False if ``seq`` itself left. Victims from ``ring[:walked]`` go to
        ``left``; victims further on leave the ring. ``walked`` equal to the
        batch size of a whole-ring batch means all of it."""
        ring = self._ring
        while not self.pages.free:
            victim = self._victims.highest(self._active)
            if victim is seq and len(self._active) == 1:
                # alone, holding every page, and still short: can never fit
                held = len(seq.pages)
                self._deactivate(seq, tick)
                self._reject(seq, tick, OUTGREW_KV_CAPACITY, (
                    f"after {seq.generated} generated tokens the request holds all {held} KV pages "
                    f"and needs another to continue"))
                self.executor.release(seq.id)
                rejected.append(seq.id)
                left.append(seq)
                return False
            if victim.prefilled < victim.prefill_target:
                self._prefilling.remove(victim)
            elif victim is not seq:
                if walked == len(ring):
                    left.append(victim)
                else:
                    at = ring.index(victim)
                    if at < walked:
                        left.append(victim)
                    else:
                        del ring[at]
                        del self._ring_ids[at]
            self._preempt(victim, tick)
            preempted.append(victim.id)
            if victim is seq:
                left.append(seq)
                return False
        return True

    def _preempt(self, state: RequestState, tick: int) -> None:
        self._deactivate(state, tick)
        state.where = REQUEUED
        state.preemptions += 1
        state.prefilled = 0
        state.ready_gen = state.generated  # no KV stored
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
        del self._active[state]
        self._full.pop(state, None)
        if self._victims is not None:
            self._victims.discard((state,))
        self.pages.release(state.pages)
        state.service_ticks += tick - state.activated_tick + 1

    def _reject(self, state: RequestState, tick: int, reason: str, detail: str) -> None:
        state.where = REJECTED
        state.reject_reason = reason
        state.reject_detail = detail
        state.finish_tick = tick
        self._unfinished -= 1

    def _admit(self, tick: int, budget: int, chunks: list[PrefillChunk], admitted: list[str]) -> None:
        """Admission: choose, then activate the chosen requests (take their
        pages and their first prefill chunks) in order."""
        chosen = self._choose(budget)
        if not chosen:
            return
        # one take for all of them hands out the same pages, in the same
        # order, as one take per request
        pages = self.pages.take(sum(map(_need_of, chosen)))
        active = self._active
        at = 0
        for state in chosen:
            state.pages += pages[at:at + state.need]
            at += state.need
            state.where = ACTIVE
            state.waiting_ticks += tick - state.queued_since
            state.activated_tick = tick
            if state.first_admit_tick is None:
                state.first_admit_tick = tick
            active[state] = None
            admitted.append(state.id)
            n = state.prefill_target if state.prefill_target < budget else budget
            chunks.append(_chunk(PrefillChunk, (state, 0, n)))
            budget -= n
        self._prefilling.extend(chosen)
        self._queued -= len(chosen)
        if self._victims is not None:
            self._victims.add(chosen)

    def _choose(self, budget: int) -> list[RequestState]:
        """The requests admitted this tick, in admission order, taken off
        their queues; ``budget`` is the prefill budget left."""
        chosen: list[RequestState] = []
        slots = self.config.max_active - len(self._active)
        free = self.pages.free
        requeued = self._requeued
        while requeued and slots and budget:
            state = requeued[0][1]
            if state.need > free:
                return chosen  # barrier: nothing passes a preempted request
            heapq.heappop(requeued)
            chosen.append(state)
            free -= state.need
            slots -= 1
            budget = budget - state.prefill_target if state.prefill_target < budget else 0
        if requeued:
            return chosen
        aged = self._aged
        while aged and slots and budget:
            state = aged[0]
            if state.need > free:
                return chosen  # barrier: an aged request is never skipped
            aged.popleft()
            chosen.append(state)
            free -= state.need
            slots -= 1
            budget = budget - state.prefill_target if state.prefill_target < budget else 0
        index = self._index
        while slots and budget:
            state = index.pop_best_within(free)
            if state is None:
                break
            chosen.append(state)
            free -= state.need
            slots -= 1
            budget = budget - state.prefill_target if state.prefill_target < budget else 0
        return chosen

    def _apply(self, tick: int, chunks: list[PrefillChunk], decode: list[RequestState],
               decoded: list[str], stops: Iterable[str], completed: list[str]) -> None:
        """Count what the executor did; complete finished requests."""
        stops = stops if isinstance(stops, (set, frozenset)) else set(stops)
        # Every request that samples a token this tick goes to the back of
        # the ring, in completion order (decode order, then prefill order):
        # ring[base:]. Finished ones are deleted from there at the end.
        ring = self._ring
        ring_ids = self._ring_ids
        base = len(ring)
        ring += decode
        ring_ids += decoded
        # The hot path of a tick: count each decoded token; only the few
        # requests at their watch mark need more. Below max_new_tokens the
        # mark means full pages (unless the executor stopped the request):
        # those join `full`, in ring order. Those that finish are noted by
        # ring position, worked out only for them from how much of the batch
        # the iterator has left (exact for a list iterator).
        full = self._full
        done = []
        last = base + len(decode) - 1
        batch = iter(decode)
        for seq in batch:
            g = seq.generated + 1
            seq.generated = g
            if g >= seq.watch:
                if g < seq.max_new and not (stops and seq.id in stops):
                    full[seq] = None
                else:
                    done.append(last - length_hint(batch))
        self.decode_steps += len(decode)
        if chunks:
            prefilling = self._prefilling
            page_tokens = self.config.page_tokens
            for seq, _start, n in chunks:
                seq.prefilled += n
                self.prefill_tokens += n
                if seq.preemptions:
                    self.recompute_tokens += n
                if seq.prefilled == seq.prefill_target:
                    # chunks follow the queue order and only the last can be partial
                    prefilling.popleft()
                    g = seq.ready_gen = seq.generated = seq.generated + 1
                    if seq.first_token_tick is None:
                        seq.first_token_tick = tick
                    # The context is prefilled and sampled a token: from now on
                    # each decode step stores one token (kv_tokens grows with
                    # generated - ready_gen). Its watch mark: the token count at
                    # which it reaches max_new_tokens or (on_demand) fills its
                    # pages; a request at its mark below max_new_tokens is full.
                    watch = seq.max_new
                    if self._on_demand:
                        # full when kv_tokens = prefill_target + (g - ready_gen) = capacity
                        full_at = len(seq.pages) * page_tokens - seq.prefill_target + g
                        if full_at < watch:
                            watch = full_at
                    seq.watch = watch
                    if g >= watch:
                        if g < seq.max_new and not (stops and seq.id in stops):
                            full[seq] = None
                        else:
                            done.append(len(ring))
                    ring.append(seq)
                    ring_ids.append(seq.id)
        strays = None
        if stops:
            stopped = [at for at, rid in enumerate(ring_ids[base:], base) if rid in stops]
            if len(stopped) != len(stops):
                strays = sorted(stops.difference(ring_ids[base:]))
            done = sorted(set(done).union(stopped))
        if done:
            active = self._active
            release_pages = self.pages.release
            release = self.executor.release
            for at in done:
                seq = ring[at]
                del active[seq]
                release_pages(seq.pages)
                seq.service_ticks += tick - seq.activated_tick + 1
                seq.where = COMPLETED
                seq.finish_tick = tick
                self._unfinished -= 1
                completed.append(seq.id)
                release(seq.id)
            if self._victims is not None:
                self._victims.discard([ring[at] for at in done])
            for at in reversed(done):
                del ring[at]
                del ring_ids[at]
        if strays:
            raise RuntimeError(f"executor reported end of sequence for {strays}, "
                               f"which sampled no token in tick {tick}")

