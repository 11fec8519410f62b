"""Weights under a budget: load a group of layers, use it, let it go.

Weights run in their stored type (F32, F16, BF16, GGML block types):
- A matrix is used in place from the mapped checkpoint (zero copy) and
  handed to the layers as a `Weight` (engine/weight.py). To load one, its
  pages are faulted in and its bytes are reserved in the memory pool; to
  unload it, madvise(MADV_DONTNEED) removes its pages from this process and
  the reservation is released.
- Copies into pool buffers, each dropping the mapped source pages right
  after: a view the kernels cannot take as is (misaligned), a GPT-2 Conv1D
  weight ([in, out]) not stored as F32 (transposed to [out, in] in its own
  type: the non-f32 kernels read [N, K]), and 1-D tensors (norms, biases)
  not stored as F32 (widened to float32 arrays).
- A tensor used by several loaded layers is reference-counted.
- A stacked expert tensor [E, ...] loads as one Weight per expert.

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
from edgecore.engine.weight import Weight
from edgecore.memory import MemoryPool
from edgecore.models.graph import ALL_EXPERT_ROLES, copied_in_pool, padded
from edgecore.models.layout import LayerLayout, TensorSpec, all_tensors
from edgecore.weights import to_float32
from edgecore.weights.ggml_types import GGML_TYPES_BY_NAME

EXPERT_ROLES = ALL_EXPERT_ROLES  # tensors holding every expert of a layer

# stored type (safetensors dtype or GGML type name) -> ops weight-type name, from the kernels' registry
WTYPES = {t["name"].upper(): t["name"] for t in ops.weight_types()}


def weight_type(dtype: str) -> str:
    """The ops weight type of a stored type (KeyError if the kernels have none)."""
    return WTYPES[dtype]


class _Loaded:
    __slots__ = ("guard", "mapped", "nbytes", "refs", "value")

    def __init__(self, value, guard, mapped, nbytes):
        self.value, self.guard, self.mapped, self.nbytes, self.refs = value, guard, mapped, nbytes, 1


class WeightRuntime:
    def __init__(self, weights, layouts: list[LayerLayout], pool: MemoryPool, *, experts_cached: bool = False):
        """experts_cached: MoE experts are not part of their layer's load;
        an expert cache brings them in one at a time (load_expert)."""
        self.weights = weights
        self.layouts = layouts
        self.specs: dict[str, TensorSpec] = all_tensors(layouts)
        self.pool = pool
        self.experts_cached = experts_cached
        self._loaded: dict[str, _Loaded] = {}
        self._lock = threading.Lock()
        self._prefetcher: ThreadPoolExecutor | None = None
        self.bytes_loaded = 0  # bytes brought in (mapped or copied), for stats

    # ---- tensors -----------------------------------------------------------

    def acquire(self, name: str):
        """A loaded tensor: a Weight for a matrix, a tuple of per-expert
        Weights for a stacked expert tensor, a float32 array for a 1-D one."""
        with self._lock:
            entry = self._loaded.get(name)
            if entry is not None:
                entry.refs += 1
                return entry.value
        # load outside the lock: the main thread keeps computing while the
        # prefetch thread faults pages in or copies a tensor
        info = self.weights.info(name)
        spec = self.specs[name]
        if not copied_in_pool(spec, info.dtype) and info.aligned:
            guard = self.pool.reserve(info.nbytes, label=name)
            try:
                self.weights.prefetch(name, wait=True)
            except BaseException:
                guard.release()
                raise
            array, mapped = self.weights[name], True
        else:
            guard, array = self._copy(name, info, spec)
            mapped = False
        value = _wrap(array, info.dtype, spec.transposed and info.dtype == "F32")
        with self._lock:
            entry = self._loaded.get(name)
            if entry is not None:  # loaded meanwhile by the other thread
                entry.refs += 1
                guard.release()
                return entry.value
            self._loaded[name] = _Loaded(value, guard, mapped, array.nbytes)
            self.bytes_loaded += array.nbytes
            return value

    def _copy(self, name: str, info, spec: TensorSpec):
        """(guard, array) of a pool copy of a tensor (see the module doc)."""
        src = self.weights[name]
        try:
            if len(info.shape) == 1:
                guard = self.pool.allocate(tuple(info.shape), np.float32, label=name)
                to_float32(src, dtype=info.dtype, out=guard.array)
            elif spec.transposed and info.dtype != "F32":  # [in, out] -> [out, in], same type
                guard = self.pool.allocate(src.shape[::-1], src.dtype, label=name)
                np.copyto(guard.array, src.T)
            else:  # misaligned: same bytes, aligned
                guard = self.pool.allocate(src.shape, src.dtype, label=name)
                np.copyto(guard.array, src)
        finally:
            del src
            self.weights.drop(name)  # the copy is what we keep
        return guard, guard.array

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
        """float32 rows of a 2-D tensor (an embedding lookup), dequantized
        from the stored type, touching only those rows' pages; they are
        dropped again unless the whole tensor is loaded for another layer
        (a tied output head)."""
        info = self.weights.info(name)
        with self._lock:
            entry = self._loaded.get(name)
            source = entry.value.data if entry is not None else self.weights[name]
            if info.dtype == "F32":
                out = np.ascontiguousarray(source[rows])
            else:
                if not source.flags.aligned:
                    source = source[np.unique(rows)]  # copy only what is read, then index into it
                    rows = np.searchsorted(np.unique(rows), rows)
                out = ops.dequantize_rows(source, rows, wtype=weight_type(info.dtype))
            del source
            if entry is None:
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

    def layer_weights(self, layer: int) -> dict:
        """role -> loaded tensor (see acquire) for a loaded layer (per-expert
        tensors under 'experts')."""
        layout = self.layouts[layer]
        with self._lock:
            w = {role: self._loaded[t.name].value for role, t in self._roles(layer).items()}
            if layout.experts and not self.experts_cached:
                w["experts"] = [{r: self._loaded[t.name].value for r, t in ex.items()} for ex in layout.experts]
        return w

    def load_expert(self, layer: int, expert: int, intermediate: int):
        """One expert's (gate [I, d], up [I, d], down [d, I]) Weights, copied
        in their stored type into one pool buffer (each part padded to
        graph.EXPERT_PART_ALIGN bytes, as graph.expert_bytes counts), for an
        expert cache. The mapped source pages are dropped right after
        copying: experts are never used in place, because the kernel maps
        file pages in large folios and a single expert's range would drag
        its neighbours into this process. Returns ((gate, up, down), guard)."""
        layout = self.layouts[layer]
        if layout.experts:  # per-expert tensors w1 (gate), w3 (up), w2 (down)
            names = [layout.experts[expert][w].name for w in ("w1", "w3", "w2")]
            sources = [self.weights[n] for n in names]
        elif "moe.gate_up" in layout.tensors:  # HF fused: gate_up [E, 2I, d] (gate rows first), down [E, d, I]
            names = [layout.tensors["moe.gate_up"].name, layout.tensors["moe.down"].name]
            sources = [self.weights[n][expert] for n in names]
        else:  # GGUF stacked: gate [E, I, d], up [E, I, d], down [E, d, I]
            names = [layout.tensors[r].name for r in ("moe.gate_exps", "moe.up_exps", "moe.down_exps")]
            sources = [self.weights[n][expert] for n in names]
        sizes = [padded(src.nbytes) for src in sources]
        guard = self.pool.allocate(sum(sizes), np.uint8, label=f"{layout.name}.expert{expert}")
        parts = []
        try:
            at = 0
            for name, src, size in zip(names, sources, sizes, strict=True):
                part = guard.array[at:at + src.nbytes].view(src.dtype).reshape(src.shape)
                np.copyto(part, src)
                parts.append(_wrap(part, self.weights.info(name).dtype, False))
                at += size
        except BaseException:
            guard.release()
            raise
        finally:
            del sources
            for name in names:
                self.weights.drop(name)
        if len(parts) == 2:
            gate_up, down = parts
            parts = [gate_up.rows(0, intermediate), gate_up.rows(intermediate, 2 * intermediate), down]
        return tuple(parts), guard

    def prefetch_layers(self, layers: list[int]) -> Future:
        """Load on the background thread; the Future's result() re-raises."""
        if self._prefetcher is None:
            self._prefetcher = ThreadPoolExecutor(1, thread_name_prefix="edgecore-prefetch")
        return self._prefetcher.submit(self.load_layers, layers)

    def loaded_bytes(self) -> int:
        with self._lock:
            return sum(e.nbytes for e in self._loaded.values())

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


def _wrap(array: np.ndarray, dtype: str, transposed: bool):
    """A loaded array as the layers take it: 1-D as is (float32), a matrix
    as a Weight, a stacked expert tensor as one Weight per expert."""
    if array.ndim == 1:
        return array
    wtype = weight_type(dtype)
    k = array.shape[-1] if dtype in ("F32", "F16", "BF16") else None
    if array.ndim == 2:
        if transposed:
            return Weight(wtype, array, array.shape[1], array.shape[0], transposed=True)
        return Weight(wtype, array, array.shape[0], k or _block_k(array.shape[1], dtype))
    return tuple(_wrap(array[e], dtype, transposed) for e in range(array.shape[0]))


def _block_k(row_bytes: int, dtype: str) -> int:
    t = GGML_TYPES_BY_NAME[dtype]
    return row_bytes // t.block_bytes * t.block_elems
