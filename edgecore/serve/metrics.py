"""Server metrics in the Prometheus text exposition format (version 0.0.4).

Written by hand rather than with prometheus_client: a few counters, gauges
and two histograms do not justify a dependency. Counters and histograms
are updated by the engine thread and read by the HTTP side under one lock.
"""

from __future__ import annotations

import threading
import time
from collections import deque

# seconds; TTFT spans queueing + prefill, inter-token latency one step
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
RATE_WINDOW_S = 10.0  # tokens/s gauge: tokens sampled over the last this many seconds


class Histogram:
    __slots__ = ("bounds", "counts", "total", "count")

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = bounds
        self.counts = [0] * len(bounds)  # per bucket (not cumulative)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1
                break
        self.total += value
        self.count += 1

    def lines(self, name: str) -> list[str]:
        out = []
        running = 0
        for bound, n in zip(self.bounds, self.counts, strict=True):
            running += n
            out.append(f'{name}_bucket{{le="{bound:g}"}} {running}')
        out.append(f'{name}_bucket{{le="+Inf"}} {self.count}')
        out.append(f"{name}_sum {self.total:.6f}")
        out.append(f"{name}_count {self.count}")
        return out


class Metrics:
    def __init__(self):
        self.lock = threading.Lock()
        self.ttft = Histogram(TTFT_BUCKETS)
        self.itl = Histogram(ITL_BUCKETS)
        self.generated_tokens = 0
        self.prompt_tokens = 0
        self.requests: dict[str, int] = {"completed": 0, "cancelled": 0, "rejected": 0, "error": 0}
        self.rejections: dict[str, int] = {}
        self.steps = 0
        self.tick_seconds = 0.0  # whole scheduler ticks (planning + engine step + sampling)
        self._recent: deque[tuple[float, int]] = deque()  # (time, tokens) per tick, for tokens/s

    def token(self, job, now: float) -> None:
        """A token was sampled for ``job`` (engine thread)."""
        if job.first_token_at is None:
            job.first_token_at = now
            with self.lock:
                self.ttft.observe(now - job.created)
        else:
            with self.lock:
                self.itl.observe(now - job.last_token_at)
        job.last_token_at = now

    def tick(self, seconds: float, tokens: int, now: float) -> None:
        with self.lock:
            self.steps += 1
            self.tick_seconds += seconds
            self.generated_tokens += tokens
            recent = self._recent
            recent.append((now, tokens))
            while recent and recent[0][0] < now - RATE_WINDOW_S:
                recent.popleft()

    def finished(self, outcome: str, reason: str | None = None) -> None:
        with self.lock:
            self.requests[outcome] += 1
            if reason is not None:
                self.rejections[reason] = self.rejections.get(reason, 0) + 1

    def tokens_per_second(self, now: float) -> float:
        with self.lock:
            recent = [n for t, n in self._recent if t >= now - RATE_WINDOW_S]
        return sum(recent) / RATE_WINDOW_S

    def render(self, gauges: dict[str, tuple[str, float]], counters: dict[str, tuple[str, float]]) -> str:
        """The exposition text; ``gauges``/``counters``: name -> (help, value)
        read from the engine loop by the caller."""
        now = time.perf_counter()
        lines: list[str] = []

        def metric(name: str, kind: str, help_text: str, samples: list[str]) -> None:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            lines.extend(samples)

        for name, (help_text, value) in gauges.items():
            metric(name, "gauge", help_text, [f"{name} {value:g}"])
        metric("edgecore_tokens_per_second", "gauge", f"tokens sampled per second over the last {RATE_WINDOW_S:g} s",
               [f"edgecore_tokens_per_second {self.tokens_per_second(now):.3f}"])
        for name, (help_text, value) in counters.items():
            metric(name, "counter", help_text, [f"{name} {value:g}"])
        with self.lock:
            metric("edgecore_generated_tokens_total", "counter", "tokens sampled",
                   [f"edgecore_generated_tokens_total {self.generated_tokens}"])
            metric("edgecore_prompt_tokens_total", "counter", "prompt tokens of submitted requests",
                   [f"edgecore_prompt_tokens_total {self.prompt_tokens}"])
            metric("edgecore_requests_total", "counter", "finished requests by outcome",
                   [f'edgecore_requests_total{{outcome="{k}"}} {v}' for k, v in self.requests.items()])
            metric("edgecore_rejections_total", "counter", "requests rejected, by reason",
                   [f'edgecore_rejections_total{{reason="{k}"}} {v}' for k, v in sorted(self.rejections.items())]
                   or ['edgecore_rejections_total{reason="none"} 0'])
            metric("edgecore_steps_total", "counter", "engine steps (scheduler ticks) run",
                   [f"edgecore_steps_total {self.steps}"])
            metric("edgecore_tick_seconds_total", "counter", "time in scheduler ticks (planning, engine, sampling)",
                   [f"edgecore_tick_seconds_total {self.tick_seconds:.6f}"])
            metric("edgecore_time_to_first_token_seconds", "histogram", "request arrival to its first token",
                   self.ttft.lines("edgecore_time_to_first_token_seconds"))
            metric("edgecore_inter_token_latency_seconds", "histogram", "time between a request's tokens",
                   self.itl.lines("edgecore_inter_token_latency_seconds"))
        return "\n".join(lines) + "\n"
