"""Load/release callbacks for ExpertCache that copy expert tensors into
budgeted MemoryPool buffers.

The engine passes its own callbacks (its weight runtime widens reduced
precision tensors into the pool); this one copies tensors as they are, which
is what a float32 checkpoint, the tests and the benchmarks need.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

import numpy as np

from edgecore.memory import MemoryPool, PoolBuffer

__all__ = ["PooledExpertLoader"]


class PooledExpertLoader:
    """``load``/``release`` for :class:`~edgecore.moe.ExpertCache`: an
    expert's tensors (``tensors(expert) -> {name: array}``, e.g. read-only
    views into a mapped checkpoint) are copied into buffers from ``pool``,
    so a cache larger than the budget fails with MemoryBudgetError instead of
    overrunning it. ``load`` returns ``{name: array}`` over the pool buffers;
    ``release`` gives the buffers back."""

    def __init__(self, pool: MemoryPool, tensors: Callable[[int], Mapping[str, np.ndarray]], *,
                 label: str = "expert"):
        self.pool = pool
        self.tensors = tensors
        self.label = label
        self._guards: dict[int, list[PoolBuffer]] = {}
        self._lock = threading.Lock()  # loads run on the caller's and the prefetch thread

    def expert_bytes(self, expert: int) -> int:
        """Bytes the expert's tensors take (what one cache slot holds)."""
        return sum(np.asarray(t).nbytes for t in self.tensors(expert).values())

    def load(self, expert: int) -> dict[str, np.ndarray]:
        guards: list[PoolBuffer] = []
        weights: dict[str, np.ndarray] = {}
        try:
            for name, src in self.tensors(expert).items():
                src = np.asarray(src)
                guard = self.pool.allocate(src.shape, src.dtype, label=f"{self.label} {expert} {name}")
                guards.append(guard)
                np.copyto(guard.array, src)
                weights[name] = guard.array
        except BaseException:
            for guard in guards:  # nothing half-loaded stays held
                guard.release()
            raise
        with self._lock:
            if expert in self._guards:
                for guard in guards:
                    guard.release()
                raise RuntimeError(f"{self.label} {expert} is already loaded; release it first")
            self._guards[expert] = guards
        return weights

    def release(self, expert: int, weights: object) -> None:
        with self._lock:
            guards = self._guards.pop(expert, None)
        if guards is None:
            raise RuntimeError(f"{self.label} {expert} is not loaded")
        for guard in guards:
            guard.release()

    def loaded(self) -> list[int]:
        """Experts whose buffers are held, ascending."""
        with self._lock:
            return sorted(self._guards)
