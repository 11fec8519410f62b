"""An independent referee for scheduler runs.

``checked_run(workload)`` runs the scheduler with a ``CheckingExecutor`` that
keeps its own account of every request (tokens stored, tokens generated, page
tables) and checks each batch against the rules from first principles; after
the run it re-derives admission decisions from the trace with a plain linear
walk over the waiting requests (the scheduler uses an index) and checks the
documented aging bound. Nothing here reuses the scheduler's bookkeeping.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from edgecore.scheduler import ON_DEMAND, RESERVE, Scheduler, Workload


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass
class Seen:
    """The referee's own view of one request."""

    prompt: int
    max_new: int
    stop_after: int
    stored: int = 0  # tokens whose KV is in the cache
    generated: int = 0
    target: int = 0  # context to prefill before the next sample
    pages: list[int] | None = None  # the scheduler's live page list while active
    released: bool = False
    preempted_at: list[int] = field(default_factory=list)


class CheckingExecutor:
    """Checks every batch; stops requests like the simulated executor does."""

    def __init__(self, workload: Workload):
        self.cfg = workload.config
        self.key = {r.id: (r.priority, r.arrival_tick, r.id) for r in workload.requests}
        self.ready_since: dict[str, int] = {}  # decode-ready request -> tick of its last token
        self.seen = {
            r.id: Seen(r.prompt_tokens, r.max_new_tokens,
                       workload.output_tokens.get(r.id, r.max_new_tokens), target=r.prompt_tokens)
            for r in workload.requests
        }
        self.live: dict[str, Seen] = {}  # requests holding pages, as far as batches told us
        self.pages_at_tick: dict[int, int] = {}
        self.preempt_generated: dict[tuple[int, str], int] = {}  # (tick, id) -> tokens at preemption

    def execute(self, batch):
        cfg = self.cfg
        tick = batch.tick
        for rid in batch.preempted:
            s = self.seen[rid]
            assert cfg.admission == ON_DEMAND, "reserve mode must never preempt"
            assert rid in self.live, f"{rid} preempted but not active"
            # the victim is the active request last in admission order
            assert rid == max(self.live, key=self.key.__getitem__), f"tick {tick}: wrong victim {rid}"
            del self.live[rid]
            self.ready_since.pop(rid, None)
            s.pages = None
            s.stored = 0
            s.target = s.prompt + s.generated  # recompute everything generated so far
            s.preempted_at.append(tick)
            self.preempt_generated[(tick, rid)] = s.generated
        assert sum(c.length for c in batch.prefill) <= cfg.prefill_budget, "prefill budget exceeded"
        assert len(batch.decode) <= cfg.decode_width, "decode width exceeded"
        prefill_ids = [c.seq.id for c in batch.prefill]
        decode_ids = [seq.id for seq in batch.decode]
        assert len(set(prefill_ids)) == len(prefill_ids)
        assert len(set(decode_ids)) == len(decode_ids)
        assert not set(prefill_ids) & set(decode_ids), "a request both prefilled and decoded in one tick"
        for chunk in batch.prefill:
            s = self.seen[chunk.seq.id]
            assert not s.released
            if chunk.start == 0 and s.stored == 0 and chunk.seq.id not in self.live:
                self.live[chunk.seq.id] = s  # (re)admitted this tick
            s.pages = chunk.seq.pages
            assert chunk.start == s.stored, f"{chunk.seq.id}: chunk does not continue the prefill"
            assert chunk.length >= 1
            assert chunk.seq.prefill_target == s.target, f"{chunk.seq.id}: wrong recompute target"
            assert chunk.start + chunk.length <= s.target
            assert len(s.pages) * cfg.page_tokens >= chunk.start + chunk.length, "prefill beyond pages"
        for seq in batch.decode:
            s = self.seen[seq.id]
            assert seq.id in self.live and not s.released
            assert s.stored >= s.target, f"{seq.id} decodes before its prefill finished"
            assert s.generated >= 1
            s.pages = seq.pages
            # the decode step stores the fed-back token at slot `stored`
            assert len(s.pages) * cfg.page_tokens > s.stored, f"{seq.id}: no KV slot for the decode"
        # pages: in range, disjoint, never more than the cache
        owned: dict[int, str] = {}
        for rid, s in self.live.items():
            assert s.pages is not None and len(s.pages) >= 1
            for page in s.pages:
                assert 0 <= page < cfg.kv_pages
                assert page not in owned, f"page {page} held by {owned[page]} and {rid}"
                owned[page] = rid
        assert len(owned) <= cfg.kv_pages
        if cfg.admission == RESERVE:
            for rid, s in self.live.items():
                assert len(s.pages) == ceil_div(s.prompt + s.max_new - 1, cfg.page_tokens), rid
        self.pages_at_tick[tick] = len(owned)
        # round-robin: a decode-ready request waits fewer than ceil(max_active / width) ticks
        rounds = ceil_div(cfg.max_active, cfg.decode_width)
        decoding = set(decode_ids)
        for rid, since in self.ready_since.items():
            if rid not in decoding:
                assert tick - since < rounds, f"tick {tick}: {rid} not decoded since tick {since}"
        # account for what the batch produces, and decide the stops
        stops = set()
        for chunk in batch.prefill:
            s = self.seen[chunk.seq.id]
            s.stored += chunk.length
            if s.stored == s.target:
                s.generated += 1
                self.ready_since[chunk.seq.id] = tick
                if s.generated >= s.stop_after:
                    stops.add(chunk.seq.id)
        for seq in batch.decode:
            s = self.seen[seq.id]
            s.stored += 1
            s.generated += 1
            self.ready_since[seq.id] = tick
            if s.generated >= s.stop_after:
                stops.add(seq.id)
        return stops

    def release(self, request_id):
        s = self.seen[request_id]
        assert not s.released, f"{request_id} released twice"
        s.released = True
        self.live.pop(request_id, None)
        self.ready_since.pop(request_id, None)


def admission_need(cfg, prompt: int, max_new: int, generated: int) -> int:
    if cfg.admission == RESERVE:
        return ceil_div(prompt + max_new - 1, cfg.page_tokens)
    return ceil_div(prompt + generated, cfg.page_tokens)


def never_fits(cfg, prompt: int, max_new: int) -> bool:
    return admission_need(cfg, prompt, max_new, 0) > cfg.kv_pages


def aging_bound(workload: Workload) -> int:
    """D of docs/scheduler.md: ticks for the admitted set to drain with no admissions."""
    cfg = workload.config
    fitting = [r for r in workload.requests if not never_fits(cfg, r.prompt_tokens, r.max_new_tokens)]
    if not fitting:
        return 0
    p_max = max(r.prompt_tokens for r in fitting)
    m_max = max(r.max_new_tokens for r in fitting)
    rounds = ceil_div(cfg.max_active, cfg.decode_width)
    if cfg.admission == RESERVE:
        return ceil_div(cfg.max_active * p_max, cfg.prefill_budget) + (m_max - 1) * rounds
    c_max = p_max + m_max - 1
    one = ceil_div(cfg.max_active * c_max, cfg.prefill_budget) + (m_max - 1) * rounds
    return cfg.max_active * (one + 1)


@dataclass
class Walk:
    """Room left while walking the waiting requests of one tick."""

    free: int
    slots: int
    budget: int
    admitted: list[str] = field(default_factory=list)

    def open(self) -> bool:
        return self.slots > 0 and self.budget > 0


def check_admissions(workload: Workload, trace, referee: CheckingExecutor) -> None:
    """Re-derive every tick's admissions with a linear walk over the waiting
    requests (the rules of docs/scheduler.md) and compare with the trace."""
    cfg = workload.config
    req = {r.id: r for r in workload.requests}
    key = {r.id: (r.priority, r.arrival_tick, r.id) for r in workload.requests}
    waiting: set[str] = set()  # never admitted yet (normal or aged)
    requeued: dict[str, int] = {}  # preempted, waiting: id -> tokens generated
    previous = -1
    for rec in trace:
        arriving = {r.id for r in workload.requests if previous < r.arrival_tick <= rec.tick}
        assert all(req[rid].arrival_tick == rec.tick for rid in arriving), "arrival in a skipped tick"
        waiting |= arriving - set(rec.rejected)
        previous = rec.tick
        for rid in rec.preempted:
            requeued[rid] = referee.preempt_generated[(rec.tick, rid)]
        if rec.preempted:
            assert rec.admitted == [], f"tick {rec.tick}: admitted in a tick that preempted"
            continue

        def need(rid: str, requeued=requeued) -> int:
            r = req[rid]
            return admission_need(cfg, r.prompt_tokens, r.max_new_tokens, requeued.get(rid, 0))

        admitted = set(rec.admitted)
        assert admitted <= waiting | set(requeued), f"tick {rec.tick}: admitted a request not waiting"
        # state before admission, from the trace: admission is the last decision of a tick
        walk = Walk(
            free=cfg.kv_pages - rec.used_pages + sum(need(rid) for rid in rec.admitted),
            slots=cfg.max_active - (rec.active - len(rec.admitted)),
            budget=cfg.prefill_budget - sum(n for rid, n in rec.prefill if rid not in admitted),
        )

        def take(rid: str, walk=walk, need=need, requeued=requeued) -> bool:
            """Admit rid if there is room; False when it does not fit."""
            if need(rid) > walk.free:
                return False
            walk.admitted.append(rid)
            walk.free -= need(rid)
            walk.slots -= 1
            walk.budget -= min(req[rid].prompt_tokens + requeued.get(rid, 0), walk.budget)
            return True

        blocked = False
        # preempted requests first, by key, never skipped
        for rid in sorted(requeued, key=key.__getitem__):
            if not walk.open() or not take(rid):
                blocked = True
                break
        # then aged requests, oldest first, never skipped
        aged = [rid for rid in waiting if rec.tick - req[rid].arrival_tick >= cfg.aging_ticks]
        if not blocked:
            for rid in sorted(aged, key=lambda rid: (req[rid].arrival_tick, key[rid])):
                if not walk.open() or not take(rid):
                    blocked = True
                    break
        # then the rest by key, skipping what does not fit
        if not blocked:
            for rid in sorted(waiting - set(aged), key=key.__getitem__):
                if not walk.open():
                    break
                take(rid)
        expected = walk.admitted
        assert rec.admitted == expected, (
            f"tick {rec.tick}: admitted {rec.admitted}, the rules admit {expected}")
        waiting -= admitted
        for rid in admitted:
            requeued.pop(rid, None)


def check_run(workload: Workload):
    """Run ``workload`` under the referee and check every invariant; returns (scheduler, trace)."""
    referee = CheckingExecutor(workload)
    scheduler = Scheduler(workload.config, referee)
    scheduler.submit_all(workload.requests)
    trace = scheduler.run()
    cfg = workload.config
    # every request accounted for
    for r in workload.requests:
        st = scheduler.states[r.id]
        s = referee.seen[r.id]
        assert st.where in ("completed", "rejected"), f"{r.id} ended {st.where}"
        if never_fits(cfg, r.prompt_tokens, r.max_new_tokens):
            assert st.where == "rejected" and st.first_admit_tick is None, r.id
            assert st.reject_reason in ("exceeds_kv_capacity", "prompt_exceeds_kv_capacity")
            assert st.finish_tick == r.arrival_tick
        elif st.where == "rejected":
            # only on_demand, and only when it filled the whole cache alone
            assert cfg.admission == ON_DEMAND and st.reject_reason == "outgrew_kv_capacity", r.id
            assert s.stored == cfg.kv_pages * cfg.page_tokens, r.id
            assert s.released
        else:
            assert s.generated == min(s.stop_after, r.max_new_tokens), r.id
            assert s.released
            assert st.waiting_ticks + st.service_ticks == st.finish_tick - r.arrival_tick + 1
        assert st.reject_reason is None or st.reject_detail
    # all pages free at the end
    assert scheduler.pages.used == 0 and scheduler.pages.free == cfg.kv_pages
    assert not referee.live
    # the trace agrees with what the executor saw
    for rec in trace:
        assert rec.used_pages == referee.pages_at_tick[rec.tick], f"tick {rec.tick}"
        assert rec.used_pages <= cfg.kv_pages
        assert rec.active <= cfg.max_active
        assert sum(n for _, n in rec.prefill) <= cfg.prefill_budget
        assert len(rec.decoded) <= cfg.decode_width
    ticks = [rec.tick for rec in trace]
    assert ticks == sorted(set(ticks))
    check_admissions(workload, trace, referee)
    # aging bound on the first admission
    bound_d = aging_bound(workload)
    order = sorted(workload.requests, key=lambda r: (r.arrival_tick, r.priority, r.id))
    for r in workload.requests:
        st = scheduler.states[r.id]
        if st.first_admit_tick is None:
            continue
        ages_at = r.arrival_tick + cfg.aging_ticks
        k = sum(1 for o in order
                if (o.arrival_tick, o.priority, o.id) < (r.arrival_tick, r.priority, r.id)
                and scheduler.states[o.id].first_admit_tick is not None
                and scheduler.states[o.id].first_admit_tick >= ages_at)
        wait = st.first_admit_tick - r.arrival_tick
        assert wait <= cfg.aging_ticks + (k + 1) * bound_d, (
            f"{r.id} waited {wait} ticks; bound {cfg.aging_ticks} + ({k}+1)*{bound_d}")
    return scheduler, trace


@pytest.fixture(scope="session")
def checked_run():
    """``checked_run(workload) -> (scheduler, trace)`` with every invariant checked."""
    return check_run
