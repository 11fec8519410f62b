# Cython boundary of the C kernels: check every argument, take the data
# pointers, release the GIL, call the dispatched kernel.
#
# Arguments are checked here (not in ops.py) because the routing kernels are
# called once per token per layer and must cost well under a microsecond from
# Python: the raw NumPy C-API checks below cost ~20 ns per array, a typed
# memoryview ~110 ns and a Python-level check several hundred.

cimport numpy as cnp
from libc.math cimport isfinite
from libc.stdint cimport int32_t, int64_t, uint16_t, uint64_t

import os

import numpy as np

cnp.import_array()

ACTIVATIONS = ("none", "relu", "gelu", "gelu_tanh", "silu")
cdef dict _ACTIVATION_CODES = {name: code for code, name in enumerate(ACTIVATIONS)}
cdef dict _TIER_BY_NAME = {ec_tier_name(t).decode(): t for t in range(EC_TIER_COUNT)}
cdef dict _DTYPE_NAMES = {cnp.NPY_FLOAT32: "float32", cnp.NPY_FLOAT16: "float16", cnp.NPY_INT32: "int32",
                          cnp.NPY_UINT16: "uint16", cnp.NPY_UINT64: "uint64"}


# ---- argument checking ------------------------------------------------------

cdef inline cnp.ndarray _as_array(object a, str fn, str name):
    if cnp.PyArray_Check(a):
        return <cnp.ndarray>a
    try:
        return np.asarray(a)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{fn}: {name} must be a NumPy array or support the buffer protocol, "
                        f"got {type(a).__name__}") from exc


cdef int _check(cnp.ndarray a, int typenum, str fn, str name, bint writeable) except -1:
    if cnp.PyArray_TYPE(a) != typenum or not cnp.PyArray_ISNOTSWAPPED(a):
        raise TypeError(f"{fn}: {name} must be a native-byte-order {_DTYPE_NAMES[typenum]} "
                        f"array, got dtype {a.dtype}")
    if not cnp.PyArray_IS_C_CONTIGUOUS(a):
        raise ValueError(f"{fn}: {name} must be C-contiguous (pass np.ascontiguousarray({name}))")
    if not cnp.PyArray_ISALIGNED(a):
        raise ValueError(f"{fn}: {name} must be aligned to its dtype (pass a copy)")
    if writeable and not cnp.PyArray_ISWRITEABLE(a):
        raise ValueError(f"{fn}: {name} is read-only but is written in place")
    return 0


cdef inline bint _overlaps(cnp.ndarray a, cnp.ndarray b):
    cdef char *a0 = <char *>cnp.PyArray_DATA(a)
    cdef char *b0 = <char *>cnp.PyArray_DATA(b)
    return a0 < b0 + cnp.PyArray_NBYTES(b) and b0 < a0 + cnp.PyArray_NBYTES(a)


cdef str _shape(object a):
    return str(tuple(a.shape))


# ---- fused linear -----------------------------------------------------------

def fused_linear(x, weight, bias=None, *, activation="none", bint transposed=False, out=None):
    """y = activation(x @ W.T + bias), float32, fused in one pass over W.

    x: [M, K] or [K] float32. weight: [N, K] (PyTorch/HF layout) or, with
    ``transposed=True``, [K, N] (GPT-2 Conv1D layout). bias: optional [N].
    activation: "none", "relu", "gelu" (erf form), "gelu_tanh" or "silu".
    out: optional float32 array of the result's shape ([M, N], or [N] for 1-D
    x) to write into; it must not overlap the inputs.

    All arrays must be C-contiguous, aligned, native-byte-order float32;
    nothing is copied or converted implicitly. Each weight row is read once
    for all M rows. Large calls are split across threads; the result is
    bitwise identical for any thread count. Raises TypeError / ValueError
    naming the offending argument.
    """
    cdef str fn = "fused_linear"
    cdef cnp.ndarray xa = _as_array(x, fn, "x")
    cdef cnp.ndarray wa = _as_array(weight, fn, "weight")
    cdef cnp.ndarray ba = None
    cdef cnp.ndarray ya
    cdef cnp.npy_intp m, n, k, kw
    cdef cnp.npy_intp dims[2]
    cdef int act
    cdef const float *bias_ptr = NULL

    _check(xa, cnp.NPY_FLOAT32, fn, "x", False)
    _check(wa, cnp.NPY_FLOAT32, fn, "weight", False)
    cdef int xnd = cnp.PyArray_NDIM(xa)
    if xnd == 2:
        m = cnp.PyArray_DIM(xa, 0)
        k = cnp.PyArray_DIM(xa, 1)
    elif xnd == 1:
        m = 1
        k = cnp.PyArray_DIM(xa, 0)
    else:
        raise ValueError(f"{fn}: x must be [M, K] or [K], got shape {_shape(xa)}")
    if cnp.PyArray_NDIM(wa) != 2:
        raise ValueError(f"{fn}: weight must be 2-D ({'[K, N]' if transposed else '[N, K]'}), "
                         f"got shape {_shape(wa)}")
    if transposed:
        kw = cnp.PyArray_DIM(wa, 0)
        n = cnp.PyArray_DIM(wa, 1)
    else:
        n = cnp.PyArray_DIM(wa, 0)
        kw = cnp.PyArray_DIM(wa, 1)
    if kw != k:
        raise ValueError(f"{fn}: weight shape {_shape(wa)} does not match x shape {_shape(xa)}: "
                         f"expected {'[K, N]' if transposed else '[N, K]'} with K={k}")
    if n < 1:
        raise ValueError(f"{fn}: weight has no output features (N=0)")
    if bias is not None:
        ba = _as_array(bias, fn, "bias")
        _check(ba, cnp.NPY_FLOAT32, fn, "bias", False)
        if cnp.PyArray_NDIM(ba) != 1 or cnp.PyArray_DIM(ba, 0) != n:
            raise ValueError(f"{fn}: bias must have shape ({n},), got {_shape(ba)}")
        bias_ptr = <const float *>cnp.PyArray_DATA(ba)
    try:
        act = _ACTIVATION_CODES[activation]
    except (KeyError, TypeError):
        raise ValueError(f"{fn}: activation must be one of {', '.join(ACTIVATIONS)}; got {activation!r}") from None

    if out is None:
        if xnd == 2:
            dims[0] = m
            dims[1] = n
        else:
            dims[0] = n
        ya = <cnp.ndarray>cnp.PyArray_EMPTY(xnd, dims, cnp.NPY_FLOAT32, 0)
    else:
        ya = _as_array(out, fn, "out")
        _check(ya, cnp.NPY_FLOAT32, fn, "out", True)
        if cnp.PyArray_NDIM(ya) != xnd or cnp.PyArray_DIM(ya, 0) != (m if xnd == 2 else n) or (
                xnd == 2 and cnp.PyArray_DIM(ya, 1) != n):
            expected = (int(m), int(n)) if xnd == 2 else (int(n),)
            raise ValueError(f"{fn}: out must have shape {expected}, got {_shape(ya)}")
        if _overlaps(ya, xa) or _overlaps(ya, wa) or (ba is not None and _overlaps(ya, ba)):
            raise ValueError(f"{fn}: out must not overlap x, weight or bias")

    with nogil:
        ec_linear_f32(<const float *>cnp.PyArray_DATA(xa), <const float *>cnp.PyArray_DATA(wa), bias_ptr,
                      <float *>cnp.PyArray_DATA(ya), m, n, k, transposed, act)
    return ya


# ---- EMA affinity update ----------------------------------------------------

def ema_update(scores, activated, *, double decay, double boost, double max_score=1.0, counts=None):
    """Expert affinity, in place: scores *= decay; scores[i] += boost for each
    distinct id i in ``activated`` (an id listed twice counts once); then
    clamp every score to [0, max_score] (a NaN score becomes 0).

    scores: float32 [E], writeable. activated: int32 or int64 ids, any shape
    (int64 ids are range-checked and narrowed). counts: optional uint64 [E],
    incremented once per distinct activated id. decay must be in [0, 1],
    boost >= 0 and max_score > 0, all finite. An id outside [0, E) raises
    ValueError and leaves scores and counts untouched.
    """
    cdef str fn = "ema_update"
    cdef cnp.ndarray sa = _as_array(scores, fn, "scores")
    cdef cnp.ndarray ia = _as_array(activated, fn, "activated")
    cdef cnp.ndarray ca = None
    cdef cnp.ndarray scratch = None
    cdef uint64_t *counts_ptr = NULL
    cdef uint64_t *scratch_ptr = NULL
    cdef int64_t bad
    cdef size_t e, n_ids
    cdef int itype = cnp.PyArray_TYPE(ia)

    _check(sa, cnp.NPY_FLOAT32, fn, "scores", True)
    if cnp.PyArray_NDIM(sa) != 1 or cnp.PyArray_DIM(sa, 0) < 1:
        raise ValueError(f"{fn}: scores must be 1-D [E] with E >= 1, got shape {_shape(sa)}")
    e = <size_t>cnp.PyArray_DIM(sa, 0)
    if not (isfinite(decay) and 0.0 <= decay <= 1.0):
        raise ValueError(f"{fn}: decay must be in [0, 1], got {decay}")
    if not (isfinite(boost) and boost >= 0.0):
        raise ValueError(f"{fn}: boost must be finite and >= 0, got {boost}")
    if not (isfinite(max_score) and max_score > 0.0):
        raise ValueError(f"{fn}: max_score must be finite and > 0, got {max_score}")
    if itype == cnp.NPY_INT64 and cnp.PyArray_ISNOTSWAPPED(ia):
        if cnp.PyArray_SIZE(ia) and (ia.min() < 0 or ia.max() >= <int64_t>e):
            _raise_bad_id(fn, ia.reshape(-1), e)
        ia = ia.astype(np.int32)
    elif itype != cnp.NPY_INT32:
        raise TypeError(f"{fn}: activated must hold int32 or int64 expert ids, got dtype {ia.dtype}")
    _check(ia, cnp.NPY_INT32, fn, "activated", False)
    n_ids = <size_t>cnp.PyArray_SIZE(ia)
    if counts is not None:
        ca = _as_array(counts, fn, "counts")
        _check(ca, cnp.NPY_UINT64, fn, "counts", True)
        if cnp.PyArray_NDIM(ca) != 1 or <size_t>cnp.PyArray_DIM(ca, 0) != e:
            raise ValueError(f"{fn}: counts must have shape ({e},), got {_shape(ca)}")
        if _overlaps(ca, sa):
            raise ValueError(f"{fn}: counts must not overlap scores")
        counts_ptr = <uint64_t *>cnp.PyArray_DATA(ca)
    if e > EC_EMA_STACK_EXPERTS:
        scratch = np.empty((e + 63) // 64, dtype=np.uint64)
        scratch_ptr = <uint64_t *>cnp.PyArray_DATA(scratch)

    with nogil:
        bad = ec_ema_update_f32(<float *>cnp.PyArray_DATA(sa), e, <const int32_t *>cnp.PyArray_DATA(ia),
                                n_ids, <float>decay, <float>boost, <float>max_score, counts_ptr, scratch_ptr)
    if bad >= 0:
        _raise_bad_id(fn, ia.reshape(-1), e)


def _raise_bad_id(str fn, ids, size_t e):
    bad = np.flatnonzero((ids < 0) | (ids >= e))[0]
    raise ValueError(f"{fn}: activated[{bad}] = {ids[bad]} is not an expert id in [0, {e})")


# ---- top-k routing ----------------------------------------------------------

def route_topk(logits, Py_ssize_t k, *, bonus=None):
    """Choose the top-k experts per token from gate logits.

    logits: float32 [T, E] (or [E] for one token). bonus: optional float32 [E]
    added to every row before ranking (finite values only). Per row, the k
    experts with the highest ``logit + bonus`` are chosen (NaN ranks as -inf;
    ties go to the lower id). Returns ``(ids, weights)``: int32 and float32
    [T, k] (or [k]), ids in descending adjusted-score order, weights the
    softmax of the chosen *original* logits, renormalised over the k (the
    Mixtral rule). A row with fewer than k finite logits, or whose choice
    includes a +inf logit, has undefined weights and raises ValueError naming
    the row.
    """
    cdef str fn = "route_topk"
    cdef cnp.ndarray la = _as_array(logits, fn, "logits")
    cdef cnp.ndarray ba = None
    cdef cnp.ndarray ids, weights
    cdef const float *bias_ptr = NULL
    cdef cnp.npy_intp t, e, j
    cdef cnp.npy_intp dims[2]
    cdef int64_t bad

    _check(la, cnp.NPY_FLOAT32, fn, "logits", False)
    cdef int nd = cnp.PyArray_NDIM(la)
    if nd == 2:
        t = cnp.PyArray_DIM(la, 0)
        e = cnp.PyArray_DIM(la, 1)
    elif nd == 1:
        t = 1
        e = cnp.PyArray_DIM(la, 0)
    else:
        raise ValueError(f"{fn}: logits must be [T, E] or [E], got shape {_shape(la)}")
    if e < 1:
        raise ValueError(f"{fn}: logits must have at least one expert column, got shape {_shape(la)}")
    if k < 1 or k > e:
        raise ValueError(f"{fn}: k must be in [1, {e}] for {e} experts, got {k}")
    if bonus is not None:
        ba = _as_array(bonus, fn, "bonus")
        _check(ba, cnp.NPY_FLOAT32, fn, "bonus", False)
        if cnp.PyArray_NDIM(ba) != 1 or cnp.PyArray_DIM(ba, 0) != e:
            raise ValueError(f"{fn}: bonus must have shape ({e},) to match logits {_shape(la)}, got {_shape(ba)}")
        bias_ptr = <const float *>cnp.PyArray_DATA(ba)
        for j in range(e):
            if not isfinite(bias_ptr[j]):
                raise ValueError(f"{fn}: bonus[{j}] = {bias_ptr[j]} is not finite")

    if nd == 2:
        dims[0] = t
        dims[1] = k
    else:
        dims[0] = k
    ids = <cnp.ndarray>cnp.PyArray_EMPTY(nd, dims, cnp.NPY_INT32, 0)
    weights = <cnp.ndarray>cnp.PyArray_EMPTY(nd, dims, cnp.NPY_FLOAT32, 0)
    with nogil:
        bad = ec_route_topk_f32(<const float *>cnp.PyArray_DATA(la), bias_ptr, t, e, k,
                                <int32_t *>cnp.PyArray_DATA(ids), <float *>cnp.PyArray_DATA(weights))
    if bad >= 0:
        row = la.reshape(t, e)[bad]
        finite = int(np.isfinite(row).sum())
        if finite < k:
            raise ValueError(f"{fn}: row {bad} has {finite} finite logits, fewer than k={k}; "
                             f"its routing weights are undefined")
        raise ValueError(f"{fn}: row {bad} selects a +inf logit (expert {int(np.argmax(row))}); "
                         f"its routing weights are undefined")
    return ids, weights


# ---- reduced-precision conversion -------------------------------------------

def _widen(src, out, int src_type, str fn, bint bf16):
    cdef cnp.ndarray sa = _as_array(src, fn, "src")
    cdef cnp.ndarray ya
    if bf16:
        _check(sa, cnp.NPY_UINT16, fn, "src", False)
    elif cnp.PyArray_TYPE(sa) == cnp.NPY_UINT16:
        _check(sa, cnp.NPY_UINT16, fn, "src", False)
    else:
        _check(sa, cnp.NPY_FLOAT16, fn, "src", False)
    if out is None:
        ya = <cnp.ndarray>cnp.PyArray_EMPTY(cnp.PyArray_NDIM(sa), cnp.PyArray_DIMS(sa), cnp.NPY_FLOAT32, 0)
    else:
        ya = _as_array(out, fn, "out")
        _check(ya, cnp.NPY_FLOAT32, fn, "out", True)
        if cnp.PyArray_SIZE(ya) != cnp.PyArray_SIZE(sa):
            raise ValueError(f"{fn}: out has {cnp.PyArray_SIZE(ya)} elements, src has {cnp.PyArray_SIZE(sa)}")
        if _overlaps(ya, sa):
            raise ValueError(f"{fn}: out must not overlap src")
    cdef size_t count = <size_t>cnp.PyArray_SIZE(sa)
    cdef const uint16_t *sp = <const uint16_t *>cnp.PyArray_DATA(sa)
    cdef float *yp = <float *>cnp.PyArray_DATA(ya)
    with nogil:
        if bf16:
            ec_cvt_bf16_f32(sp, yp, count)
        else:
            ec_cvt_f16_f32(sp, yp, count)
    return ya


def bf16_to_f32(src, out=None):
    """Widen bfloat16 values (stored as a uint16 array, as safetensors BF16
    tensors are exposed) to float32. Exact. Returns ``out`` (allocated with
    src's shape when None; an ``out`` of any shape with as many elements is
    accepted)."""
    return _widen(src, out, cnp.NPY_UINT16, "bf16_to_f32", True)


def f16_to_f32(src, out=None):
    """Widen IEEE half values (float16 or their uint16 bits) to float32. Exact."""
    return _widen(src, out, cnp.NPY_FLOAT16, "f16_to_f32", False)


# ---- tiers and threads ------------------------------------------------------

def capabilities():
    """Kernel tiers: ``{"compiled": [...], "available": [...], "active": name}``.

    compiled: tiers built into this wheel; available: compiled and supported
    by this CPU and OS; active: the tier in use (the best available one, or
    the best one allowed by ``EDGECORE_ISA``)."""
    return {
        "compiled": [ec_tier_name(t).decode() for t in range(EC_TIER_COUNT) if ec_tier_compiled(t)],
        "available": [ec_tier_name(t).decode() for t in range(EC_TIER_COUNT) if ec_tier_available(t)],
        "active": ec_tier_name(ec_active_tier()).decode(),
    }


def _use_tier(str name):
    """Point the dispatch table at one tier (tests and debugging only: not
    synchronised with kernels running on other threads). Returns the name of
    the tier that was active."""
    previous = ec_tier_name(ec_active_tier()).decode()
    tier = _TIER_BY_NAME.get(name)
    if tier is None or not ec_tier_available(tier):
        raise ValueError(f"tier {name!r} is not available here; available: {capabilities()['available']}")
    ec_set_active_tier(tier)
    return previous


def set_num_threads(n):
    """Set how many threads large kernel calls may use (the caller counts as
    one). Small calls stay on one thread regardless; see thread_calibration()."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"set_num_threads: n must be an int, got {type(n).__name__}")
    if ec_set_num_threads(int(n)) != 0:
        raise ValueError(f"set_num_threads: n must be in [1, {EC_MAX_THREADS}], got {n}")


def get_num_threads():
    """Threads large kernel calls may use."""
    return ec_get_num_threads()


def thread_calibration():
    """The measurements behind the "is threading worth it" decision:
    dispatch_ns (round trip of an empty parallel run), linear_macs_per_ns
    (one thread) and min_parallel_macs (smaller calls stay on one thread).
    Measured on first use per (tier, thread count)."""
    cdef ec_thread_calibration c = ec_thread_calibration_get()
    return {
        "threads": ec_get_num_threads(),
        "calibrated": bool(c.calibrated),
        "dispatch_ns": c.dispatch_ns if c.calibrated else None,
        "linear_macs_per_ns": c.linear_macs_per_ns if c.calibrated else None,
        "min_parallel_macs": c.min_parallel_macs if c.calibrated else None,
    }


# ---- configuration from the environment (read once, never written) ----------

def _configure_from_env():
    from edgecore._cpus import usable_cpus

    cap = os.environ.get("EDGECORE_ISA", "").strip().lower()
    compiled = [ec_tier_name(t).decode() for t in range(EC_TIER_COUNT) if ec_tier_compiled(t)]
    if cap and cap not in compiled:
        raise ValueError(f"EDGECORE_ISA={cap!r} is not a tier of this build; choose one of {', '.join(compiled)}")
    best = EC_TIER_SCALAR
    for t in range(EC_TIER_COUNT):
        # tiers are numbered in increasing capability within an architecture
        if ec_tier_available(t) and (not cap or t <= _TIER_BY_NAME[cap]):
            best = t
    ec_set_active_tier(best)

    raw = os.environ.get("EDGECORE_NUM_THREADS", "").strip()
    if raw:
        try:
            threads = int(raw)
        except ValueError:
            raise ValueError(f"EDGECORE_NUM_THREADS must be a positive integer, got {raw!r}") from None
        if not 1 <= threads <= EC_MAX_THREADS:
            raise ValueError(f"EDGECORE_NUM_THREADS must be in [1, {EC_MAX_THREADS}], got {threads}")
    else:
        threads = min(usable_cpus(), EC_MAX_THREADS)
    ec_set_num_threads(threads)


_configure_from_env()
