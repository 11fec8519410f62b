"""Replay a workload to completion with the simulated executor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .core import Scheduler
from .executor import SimulatedExecutor
from .fingerprint import fingerprint
from .report import build_report
from .trace import TickRecord
from .workload import Workload


@dataclass(frozen=True)
class ReplayResult:
    """A finished replay: the scheduler (final state), its trace and fingerprint."""

    scheduler: Scheduler
    trace: list[TickRecord]
    fingerprint: str

    def report(self, detail: bool = True) -> dict[str, Any]:
        """The JSON report (``detail`` adds per-request rows and the trace)."""
        return build_report(self.scheduler, self.trace, self.fingerprint, detail)


def replay(workload: Workload) -> ReplayResult:
    """Run every request of the workload to completion or rejection."""
    scheduler = Scheduler(workload.config, SimulatedExecutor(workload.output_tokens))
    scheduler.submit_all(workload.requests)
    trace = scheduler.run()
    return ReplayResult(scheduler, trace, fingerprint(trace))
