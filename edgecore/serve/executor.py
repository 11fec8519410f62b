"""The scheduler's ``Executor`` on the real engine: one tick = one ``engine.step``.

The scheduler's pages are the engine's: the scheduler is built on
``engine.kv.allocator`` and each request's KV sequence uses the very list
of page numbers the scheduler keeps for it (``RequestState.pages``), so
pages the scheduler takes, grows or frees are exactly the pages the
engine writes and reads. The scheduler frees them (completion,
preemption, cancellation); this executor only drops its KV sequence.

Token accounting follows ``scheduler/executor.py``: a prefill chunk feeds
context positions ``start .. start+length-1`` (the prompt, then after a
preemption every token generated so far: the recompute), and only the
chunk that completes the context samples; a decode row feeds the latest
token and samples the next. All of a tick's rows go to the engine in one
step, decode rows first, in the scheduler's order.

With a prefix cache (serve/prefix_cache.py), a request's first chunk
starts with the rows of its longest stored prefix copied in, and only the
rest of the chunk runs (a chunk the cache covers whole, not the one that
samples, runs no row at all); a completing request's rows are saved
before the scheduler frees its pages. The copies count as step time.
"""

from __future__ import annotations

import time

import numpy as np

from edgecore.scheduler import Batch

from .job import Job


class EngineExecutor:
    def __init__(self, engine, metrics, prefix_cache=None):
        self.engine = engine
        self.metrics = metrics
        self.prefix_cache = prefix_cache
        self.jobs: dict[str, Job] = {}
        self.step_seconds = 0.0  # inside engine.step and the prefix cache copies (the rest of a tick: overhead)
        self.sampled = 0  # tokens sampled by the last execute
        self.sequences = 0  # step items run, over all steps (/ steps = the mean batch)

    def add(self, job: Job) -> None:
        self.jobs[job.id] = job

    def _sequence(self, pages: list[int]):
        """A fresh KV sequence (length 0) whose page table is the scheduler's list."""
        kv = self.engine.kv.new_sequence()
        kv.pages = pages
        return kv

    def execute(self, batch: Batch) -> list[str]:
        jobs = self.jobs
        for rid in batch.preempted:
            jobs[rid].kv = None  # its pages are gone; the recompute starts a new sequence
        items = []
        samplers: list[Job | None] = []
        self.sampled = 0
        for seq in batch.decode:
            job = jobs[seq.id]
            _check_position(job, seq.kv_tokens)
            items.append((job.kv, np.array(job.tokens[-1:], np.int64)))
            samplers.append(job)
        cache = self.prefix_cache
        clock = time.perf_counter
        for seq, start, length in batch.prefill:
            job = jobs[seq.id]
            end = start + length
            sample = end == seq.prefill_target
            if start == 0:
                if seq.prefill_target != len(job.prompt) + len(job.tokens):
                    raise RuntimeError(f"request {job.id}: the scheduler prefills {seq.prefill_target} tokens, "
                                       f"the job has {len(job.prompt)} + {len(job.tokens)}")
                job.kv = self._sequence(seq.pages)
                if cache is not None:
                    # the sampling chunk runs at least its last token: its logits choose the next one
                    t0 = clock()
                    job.kv.length = start = cache.load(job.context(), end - 1 if sample else end, seq.pages)
                    self.step_seconds += clock() - t0
                    if start == end:
                        continue  # the whole chunk came from the cache
            _check_position(job, start)
            items.append((job.kv, np.array(job.context()[start:end], np.int64)))
            samplers.append(job if sample else None)
        if not items:
            return []
        self.sequences += len(items)
        t0 = clock()
        logits = self.engine.step(items)
        self.step_seconds += clock() - t0
        stops = []
        now = time.perf_counter()
        for row, (kv_seq, _), job in zip(logits, items, samplers, strict=True):
            if job is None:
                continue
            self.sampled += 1
            self.metrics.token(job, now)
            stop = job.accept(job.choose(row))
            if stop:
                stops.append(job.id)
            if cache is not None and (stop or len(job.tokens) >= job.max_new):
                # it completes this tick: keep what its pages hold before the scheduler frees them
                t0 = clock()
                cache.save(job.context()[:kv_seq.length], kv_seq.pages)
                self.step_seconds += clock() - t0
        return stops

    def release(self, request_id: str) -> None:
        job = self.jobs.pop(request_id, None)
        if job is not None:
            job.kv = None


def _check_position(job: Job, expected: int) -> None:
    """The engine's and the scheduler's token counts must agree before a
    step writes K/V: a disagreement is a bug that would corrupt the cache."""
    if job.kv is None or job.kv.length != expected:
        have = None if job.kv is None else job.kv.length
        raise RuntimeError(f"request {job.id}: the scheduler expects {expected} tokens in its KV sequence, "
                           f"the engine has {have}")
