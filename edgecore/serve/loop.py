"""The engine thread: loads the model, then runs scheduler ticks.

Everything that computes runs here (loading, every ``engine.step``,
sampling, detokenizing), never on the HTTP event loop. The HTTP side talks
to it through a queue of commands (submit, cancel, stop) that the thread
reads between ticks, so a cancelled request leaves the scheduler, and its
pages the pool, before the next step. Idle, the thread sleeps on that
queue. The other way, every event of a tick (tokens, ends) goes to the HTTP
side in one hand-over when the tick ends (serve/outbox.py).

The scheduler runs in on_demand mode on the engine's own page allocator:
pages are taken as tokens are stored, and under KV pressure the latest
admitted request is preempted and later recomputed (see
docs/scheduler.md). Every request ends with exactly one event: done
(completed), or error (rejected by the scheduler, the engine failed, or
the server is stopping).
"""

from __future__ import annotations

import queue
import sys
import threading
import time
import traceback
from collections.abc import Callable

from edgecore.scheduler import ON_DEMAND, Request, Scheduler, SchedulerConfig

from .executor import EngineExecutor
from .job import Job
from .metrics import Metrics
from .outbox import Outbox
from .prefix_cache import AUTO_TOKENS, PrefixCache, tokens_that_fit

LOADING, READY, FAILED, STOPPED = "loading", "ready", "failed", "stopped"


class QueueFull(Exception):
    pass


class EngineLoop:
    def __init__(self, load: Callable[[], object], *, max_batch: int, max_queue: int, metrics: Metrics,
                 aging_ticks: int = 64, prefix_cache_tokens: int | None = None):
        self._load = load
        # None: AUTO_TOKENS, or fewer if the memory budget has less room; 0: no prefix cache
        self.prefix_cache_tokens = prefix_cache_tokens
        self.prefix_cache: PrefixCache | None = None
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.metrics = metrics
        self.aging_ticks = aging_ticks
        self.status = LOADING
        self.error: str | None = None
        self.engine = None
        self.scheduler: Scheduler | None = None
        self.executor: EngineExecutor | None = None
        self.loaded = threading.Event()  # set once status leaves LOADING
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._waiting = 0  # submitted, never admitted (what the queue limit counts)
        self._jobs: dict[str, Job] = {}  # unfinished, submitted to the scheduler
        self.outbox = Outbox()  # the jobs' events, handed to the HTTP side after each tick and command batch
        self._preemptions = 0  # of schedulers replaced after a failed step
        self._thread = threading.Thread(target=self._run, name="edgecore-engine", daemon=True)

    # ---- called from the HTTP side ----------------------------------------

    def start(self) -> None:
        self._thread.start()

    @property
    def waiting(self) -> int:
        return self._waiting

    def submit(self, job: Job) -> None:
        """Queue a job; raises QueueFull when ``max_queue`` jobs wait already."""
        with self._lock:
            if self._waiting >= self.max_queue:
                raise QueueFull
            self._waiting += 1
        self._inbox.put(("submit", job))

    def cancel(self, rid: str) -> None:
        self._inbox.put(("cancel", rid))

    def stop(self, timeout: float | None = None) -> None:
        """Cancel whatever is left and end the thread (the engine is closed)."""
        self._inbox.put(("stop", None))
        self._thread.join(timeout)

    def gauges(self) -> dict[str, tuple[str, float]]:
        sched = self.scheduler
        pages = sched.pages if sched is not None else None
        active = len(sched._active) if sched is not None else 0
        return {
            "edgecore_queue_depth": ("requests waiting for admission (new and preempted)",
                                     self._waiting + (len(sched._requeued) if sched is not None else 0)),
            "edgecore_active_sequences": ("requests holding KV pages", active),
            "edgecore_kv_pages_used": ("KV cache pages in use", pages.used if pages else 0),
            "edgecore_kv_pages_free": ("KV cache pages free", pages.free if pages else 0),
            "edgecore_kv_pages_total": ("KV cache pages", pages.total if pages else 0),
            "edgecore_ready": ("1 once the model is loaded", 1 if self.status == READY else 0),
            **self._prefix_gauges(),
        }

    def _prefix_gauges(self) -> dict[str, tuple[str, float]]:
        cache = self.prefix_cache
        if cache is None:
            return {}
        return {
            "edgecore_prefix_cache_entries": ("completed requests' prefixes held", cache.entries),
            "edgecore_prefix_cache_pages_used": ("prefix cache pages in use", cache.allocator.used),
            "edgecore_prefix_cache_pages_total": ("prefix cache pages", cache.allocator.total),
        }

    def counters(self) -> dict[str, tuple[str, float]]:
        sched = self.scheduler
        out = {
            "edgecore_preemptions_total": ("requests preempted under KV pressure (recomputed later)",
                                           self._preemptions + (sched.preemptions if sched else 0)),
            "edgecore_engine_step_seconds_total": ("time inside engine.step",
                                                   self.executor.step_seconds if self.executor else 0.0),
            "edgecore_step_sequences_total": ("sequences run by engine steps (divided by steps: the mean batch)",
                                              self.executor.sequences if self.executor else 0),
        }
        cache = self.prefix_cache
        if cache is not None:
            out["edgecore_prefix_cache_lookups_total"] = ("prefills that looked for a stored prefix", cache.lookups)
            out["edgecore_prefix_cache_hits_total"] = ("prefills that reused a stored prefix", cache.hits)
            out["edgecore_prefix_cache_reused_tokens_total"] = ("context tokens copied instead of prefilled",
                                                                cache.reused_tokens)
            out["edgecore_prefix_cache_evictions_total"] = ("stored prefixes evicted for room", cache.evictions)
        return out

    # ---- the engine thread --------------------------------------------------

    def _run(self) -> None:
        engine = None
        try:
            engine = self.engine = self._load()
            tokens = self.prefix_cache_tokens
            if tokens is None:
                tokens = tokens_that_fit(engine, AUTO_TOKENS)
            if tokens:
                self.prefix_cache = PrefixCache(engine, tokens)
            self._new_scheduler()
        except BaseException as exc:  # reported by /health and the CLI, not raised into nowhere
            self.error = str(exc) or type(exc).__name__
            self.status = FAILED
            self.loaded.set()
            if self.prefix_cache is not None:
                self.prefix_cache.close()
            if engine is not None:
                engine.close()
            return
        self.status = READY
        self.loaded.set()
        try:
            while self._commands(block=not self._jobs):
                self.outbox.flush()  # what the commands ended (cancelled jobs)
                if self._jobs:
                    self._tick()
        finally:
            for job in list(self._jobs.values()):
                self._end(job, "cancelled", error=(503, "the server is shutting down"))
            self.outbox.flush()
            self.status = STOPPED
            if self.prefix_cache is not None:
                self.prefix_cache.close()
            engine.close()

    def _new_scheduler(self) -> None:
        kv = self.engine.kv
        if self.engine.step_tokens <= self.max_batch:
            raise ValueError(f"step_tokens ({self.engine.step_tokens}) must exceed the max batch ({self.max_batch}): "
                             f"one engine step holds every decode row plus some prefill")
        # a tick's rows (every decode row + the prefill chunks) must fit one engine step
        cfg = SchedulerConfig(kv_pages=kv.allocator.total, page_tokens=kv.page_tokens, max_active=self.max_batch,
                              prefill_budget=self.engine.step_tokens - self.max_batch, decode_width=self.max_batch,
                              admission=ON_DEMAND, aging_ticks=self.aging_ticks)
        self.executor = EngineExecutor(self.engine, self.metrics, self.prefix_cache)
        self.scheduler = Scheduler(cfg, self.executor, kv.allocator)

    def _commands(self, block: bool) -> bool:
        """Apply queued commands (waiting for one if ``block``); False on stop."""
        inbox = self._inbox
        while True:
            try:
                kind, arg = inbox.get() if block else inbox.get_nowait()
            except queue.Empty:
                return True
            block = False
            if kind == "stop":
                return False
            if kind == "submit":
                self._submit(arg)
            else:
                job = self._jobs.get(arg)
                if job is not None:
                    self.scheduler.cancel(arg)
                    self._end(job, "cancelled")

    def _submit(self, job: Job) -> None:
        sched = self.scheduler
        self._jobs[job.id] = job
        self.executor.add(job)
        with self.metrics.lock:
            self.metrics.prompt_tokens += len(job.prompt)
        sched.submit(Request(job.id, len(job.prompt), job.max_new, priority=job.priority, arrival_tick=sched.now))

    def _tick(self) -> None:
        t0 = time.perf_counter()
        try:
            record = self.scheduler.step()
        except Exception as exc:
            self._step_failed(exc)
            self.outbox.flush()  # the 500s of every request in flight
            return
        now = time.perf_counter()
        for rid in record.admitted:
            job = self._jobs[rid]
            if not job.admitted:
                job.admitted = True
                with self._lock:
                    self._waiting -= 1
        states = self.scheduler.states
        for rid in record.completed:
            job = self._jobs.pop(rid)
            job.complete()
            self._count_end(job, "completed")
        for rid in record.rejected:
            state = states[rid]
            self._end(self._jobs[rid], "rejected", error=(400, f"rejected ({state.reject_reason}): "
                                                          f"{state.reject_detail}"), reason=state.reject_reason)
        self.outbox.flush()  # part of the tick's time: the hand-over is the server's own work
        self.metrics.tick(time.perf_counter() - t0, self.executor.sampled, now)

    def _end(self, job: Job, outcome: str, error: tuple[int, str] | None = None, reason: str | None = None) -> None:
        """Finish a job that did not complete: tell its client, count it."""
        self._jobs.pop(job.id, None)
        if error is not None:
            job.fail(*error)
        self._count_end(job, outcome, reason)

    def _count_end(self, job: Job, outcome: str, reason: str | None = None) -> None:
        if not job.admitted:
            with self._lock:
                self._waiting -= 1
        self.metrics.finished(outcome, reason)

    def _step_failed(self, exc: Exception) -> None:
        """An engine step raised (a bug, or a resource the OS refused): every
        request in flight gets a 500 and the server keeps serving with a
        fresh scheduler; the traceback goes to the log."""
        print("edgecore serve: engine step failed:", file=sys.stderr)
        traceback.print_exception(exc, file=sys.stderr)
        old = self.scheduler
        for state in old.states.values():
            if state.pages:
                old.pages.release(state.pages)
        self._preemptions += old.preemptions
        for job in list(self._jobs.values()):
            self._end(job, "error", error=(500, f"internal error in the engine step: {exc}"))
        self._new_scheduler()
