"""Weights under a budget: load a group of layers, use it, let it go.

- F32 tensors are used in place from the mapped checkpoint (zero copy). To
  load one, its pages are faulted in and its bytes are reserved in the
  memory pool; to unload it, madvise(MADV_DONTNEED) removes its pages from
  this process and the reservation is released.
- F16/BF16 tensors (and F32 ones the file stores misaligned) are widened
  into float32 pool buffers; the mapped source pages are dropped right
  after, so only the float32 copy stays.
- A tensor used by several loaded layers is reference-counted.

Because every load goes through the pool, a plan that under-counts fails
loudly with MemoryBudgetError instead of silently exceeding the budget.
Loads may run on a background thread (the speculative strategy prefetches
the next group while the current one computes).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from edgecore import ops
from edgecore.memory import MemoryPool
from edgecore.models.layout import LayerLayout


class _Loaded:
    __slots__ = ("array", "guard", "mapped", "refs")

    def __init__(self, array, guard, mapped):
        self.array, self.guard, self.mapped, self.refs = array, guard, mapped, 1


class WeightRuntime:
    def __init__(self, weights, layouts: list[LayerLayout], pool: MemoryPool):
        self.weights = weights
        self.layouts = layouts
        self.pool = pool
        self._loaded: dict[str, _Loaded] = {}
        self._lock = threading.Lock()
        self._prefetcher: ThreadPoolExecutor | None = None
        self.bytes_loaded = 0  # float32 bytes brought in (mapped or widened), for stats

    # ---- tensors -----------------------------------------------------------

    def acquire(self, name: str) -> np.ndarray:
        with self._lock:
            entry = self._loaded.get(name)
            if entry is not None:
                entry.refs += 1
                return entry.array
        # load outside the lock: the main thread keeps computing while the
        # prefetch thread faults pages in or widens a tensor
        info = self.weights.info(name)
        if info.dtype == "F32" and info.aligned:
            guard = self.pool.reserve(info.nbytes, label=name)
            try:
                self.weights.prefetch(name, wait=True)
            except BaseException:
                guard.release()
                raise
            array, mapped = self.weights[name], True
        else:
            guard = self.pool.allocate(tuple(info.shape), np.float32, label=name)
            try:
                self.weights.to_float32(name, out=guard.array)
            finally:
                self.weights.drop(name)  # the float32 copy is what we keep
            array, mapped = guard.array, False
        with self._lock:
            entry = self._loaded.get(name)
            if entry is not None:  # loaded meanwhile by the other thread
                entry.refs += 1
                guard.release()
                return entry.array
            self._loaded[name] = _Loaded(array, guard, mapped)
            self.bytes_loaded += array.nbytes
            return array

    def release(self, name: str) -> None:
        with self._lock:
            entry = self._loaded[name]
            entry.refs -= 1
            if entry.refs:
                return
            del self._loaded[name]
            if entry.mapped:
                self.weights.drop(name)
            entry.guard.release()

    def gather_rows(self, name: str, rows: np.ndarray) -> np.ndarray:
        """float32 copies of some rows of a 2-D tensor (an embedding lookup),
        touching only those rows' pages; they are dropped again unless the
        whole tensor is loaded for another layer (a tied output head)."""
        info = self.weights.info(name)
        with self._lock:
            entry = self._loaded.get(name)
            if entry is not None:
                return entry.array[rows]
            raw = self.weights[name][rows]
            if info.dtype == "F32":
                out = np.ascontiguousarray(raw)
            else:
                out = np.empty(raw.shape, np.float32)
                (ops.bf16_to_f32 if info.dtype == "BF16" else ops.f16_to_f32)(np.ascontiguousarray(raw), out=out)
            self.weights.drop(name)
            return out

    # ---- layers and groups ---------------------------------------------------

    def layer_names(self, layer: int) -> list[str]:
        layout = self.layouts[layer]
        names = [t.name for t in layout.tensors.values()]
        names += [t.name for expert in layout.experts for t in expert.values()]
        return names

    def load_layers(self, layers: list[int]) -> None:
        done = []
        try:
            for i in layers:
                if self.layouts[i].kind == "embed":
                    continue  # embeddings are gathered row by row
                for name in self.layer_names(i):
                    self.acquire(name)
                    done.append(name)
        except BaseException:
            for name in reversed(done):
                self.release(name)
            raise

    def unload_layers(self, layers: list[int]) -> None:
        for i in layers:
            if self.layouts[i].kind == "embed":
                continue
            for name in self.layer_names(i):
                self.release(name)

    def layer_weights(self, layer: int) -> dict[str, np.ndarray]:
        """role -> array for a loaded layer (experts under 'experts')."""
        layout = self.layouts[layer]
        with self._lock:
            w = {role: self._loaded[t.name].array for role, t in layout.tensors.items()}
            if layout.experts:
                w["experts"] = [{r: self._loaded[t.name].array for r, t in ex.items()} for ex in layout.experts]
        return w

    def prefetch_layers(self, layers: list[int]) -> Future:
        """Load on the background thread; the Future's result() re-raises."""
        if self._prefetcher is None:
            self._prefetcher = ThreadPoolExecutor(1, thread_name_prefix="edgecore-prefetch")
        return self._prefetcher.submit(self.load_layers, layers)

    def loaded_bytes(self) -> int:
        with self._lock:
            return sum(e.array.nbytes for e in self._loaded.values())

    def close(self) -> None:
        if self._prefetcher is not None:
            self._prefetcher.shutdown(wait=True)
            self._prefetcher = None
        with self._lock:
            for name, entry in list(self._loaded.items()):
                if entry.mapped:
                    self.weights.drop(name)
                entry.guard.release()
            self._loaded.clear()
