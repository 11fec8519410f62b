"""Continuous-batching scheduler with paged KV admission and deterministic replay.

Pure Python with no NumPy, so `edgecore replay` starts fast. See
docs/scheduler.md for the formats, the fingerprint definition, the
preemption rule and the aging bound.
"""

from .core import EXCEEDS_KV_CAPACITY, OUTGREW_KV_CAPACITY, PROMPT_EXCEEDS_KV_CAPACITY, Scheduler
from .executor import Batch, Executor, PrefillChunk, SimulatedExecutor
from .fingerprint import canonical_bytes, fingerprint, fnv1a_64
from .pages import PageAllocator
from .replay import ReplayResult, replay
from .request import ADMISSION_MODES, ON_DEMAND, RESERVE, Request, SchedulerConfig
from .state import RequestState
from .trace import TickRecord
from .workload import Workload, load_workload, parse_workload

__all__ = [
    "ADMISSION_MODES", "Batch", "EXCEEDS_KV_CAPACITY", "Executor", "ON_DEMAND", "OUTGREW_KV_CAPACITY",
    "PROMPT_EXCEEDS_KV_CAPACITY", "PageAllocator", "PrefillChunk", "RESERVE", "ReplayResult", "Request",
    "RequestState", "Scheduler", "SchedulerConfig", "SimulatedExecutor", "TickRecord", "Workload",
    "canonical_bytes", "fingerprint", "fnv1a_64", "load_workload", "parse_workload", "replay",
]
