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
from edgecore.weights import to_float32

EXPERT_ROLES = ("moe.gate_up", "moe.down")  # fused expert tensors


class _Loaded:
    __slots__ = ("array", "guard", "mapped", "refs")

    def __init__(self, array, guard, mapped):
        self.array, self.guard, self.mapped, self.refs = array, guard, mapped, 1


class WeightRuntime:
    def __init__(self, weights, layouts: list[LayerLayout], pool: MemoryPool, *, experts_cached: bool = False):
        """experts_cached: MoE experts are not part of their layer's load;
        an expert cache brings them in one at a time (load_expert)."""
        self.weights = weights
        self.layouts = layouts
        self.pool = pool
        self.experts_cached = experts_cached
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

    def _roles(self, layer: int) -> dict:
        tensors = self.layouts[layer].tensors
        if self.experts_cached:
            return {role: t for role, t in tensors.items() if role not in EXPERT_ROLES}
        return tensors

    def layer_names(self, layer: int) -> list[str]:
        names = [t.name for t in self._roles(layer).values()]
        if not self.experts_cached:
            names += [t.name for expert in self.layouts[layer].experts for t in expert.values()]
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
            w = {role: self._loaded[t.name].array for role, t in self._roles(layer).items()}
            if layout.experts and not self.experts_cached:
                w["experts"] = [{r: self._loaded[t.name].array for r, t in ex.items()} for ex in layout.experts]
        return w

    def load_expert(self, layer: int, expert: int, intermediate: int):
        """One expert's (gate [I, d], up [I, d], down [d, I]) as float32
        copies in one pool buffer, for an expert cache. The mapped source
        pages are dropped right after copying: experts are never used in
        place, because the kernel maps file pages in large folios and a single
        expert's range would drag its neighbours into this process. Returns
        ((gate, up, down), guard)."""
        layout = self.layouts[layer]
        if layout.experts:  # per-expert tensors w1 (gate), w3 (up), w2 (down)
            names = [layout.experts[expert][w].name for w in ("w1", "w3", "w2")]
            sources = [self.weights[n] for n in names]
        else:  # fused: gate_up [E, 2I, d] (gate rows first) and down [E, d, I]
            names = [layout.tensors["moe.gate_up"].name, layout.tensors["moe.down"].name]
            sources = [self.weights[n][expert] for n in names]
        d = sources[-1].shape[0]
        size = intermediate * d
        guard = self.pool.allocate(3 * size, np.float32, label=f"{layout.name}.expert{expert}")
        flat = guard.array
        try:
            at = 0
            for name, src in zip(names, sources, strict=True):
                to_float32(src, dtype=self.weights.info(name).dtype, out=flat[at:at + src.size])
                at += src.size
        except BaseException:
            guard.release()
            raise
        finally:
            del sources
            for name in names:
                self.weights.drop(name)
        gate = flat[:size].reshape(intermediate, d)
        up = flat[size:2 * size].reshape(intermediate, d)
        down = flat[2 * size:].reshape(d, intermediate)
        return (gate, up, down), guard

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
