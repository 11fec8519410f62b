# Per-token ops: RMSNorm / LayerNorm (with the fused residual add), RoPE,
# the paged KV cache store and paged attention (included by _kernels.pyx).
#
# These run several times per layer per generated token, so the checks are
# raw NumPy C-API calls and typed loops; the page ids of long contexts are
# checked in C (csrc/common/kvcache.c), before anything is written.


# ---- shared checks ------------------------------------------------------------

cdef char *_span_end(cnp.ndarray a):
    """One past the last byte of `a` (positive strides)."""
    cdef char *end = <char *>cnp.PyArray_DATA(a) + cnp.PyArray_ITEMSIZE(a)
    cdef int i
    if cnp.PyArray_SIZE(a) == 0:
        return <char *>cnp.PyArray_DATA(a)
    for i in range(cnp.PyArray_NDIM(a)):
        end += (cnp.PyArray_DIM(a, i) - 1) * cnp.PyArray_STRIDE(a, i)
    return end


cdef inline bint _spans_overlap(cnp.ndarray a, cnp.ndarray b):
    cdef char *a0 = <char *>cnp.PyArray_DATA(a)
    cdef char *b0 = <char *>cnp.PyArray_DATA(b)
    return cnp.PyArray_SIZE(a) > 0 and cnp.PyArray_SIZE(b) > 0 and a0 < _span_end(b) and b0 < _span_end(a)


cdef Py_ssize_t _rows3(cnp.ndarray a, str fn, str name, bint writeable) except -1:
    """Check a float32 [M, A, B] array whose rows may be strided (a view such
    as qkv.reshape(M, 3 * H, D)[:, :H]) but are each contiguous; return the
    row stride in floats."""
    if cnp.PyArray_TYPE(a) != cnp.NPY_FLOAT32 or not cnp.PyArray_ISNOTSWAPPED(a):
        raise TypeError(f"{fn}: {name} must be a native-byte-order float32 array, got dtype {a.dtype}")
    if cnp.PyArray_NDIM(a) != 3:
        raise ValueError(f"{fn}: {name} must be 3-D [rows, heads, head_dim], got shape {_shape(a)}")
    if not cnp.PyArray_ISALIGNED(a):
        raise ValueError(f"{fn}: {name} must be aligned to its dtype (pass a copy)")
    if writeable and not cnp.PyArray_ISWRITEABLE(a):
        raise ValueError(f"{fn}: {name} is read-only but is written in place")
    cdef Py_ssize_t m = cnp.PyArray_DIM(a, 0), heads = cnp.PyArray_DIM(a, 1), hd = cnp.PyArray_DIM(a, 2)
    cdef Py_ssize_t s0 = cnp.PyArray_STRIDE(a, 0)
    if m == 0 or heads == 0 or hd == 0:
        return heads * hd
    cdef bint inner = (hd <= 1 or cnp.PyArray_STRIDE(a, 2) == 4) and (heads <= 1 or cnp.PyArray_STRIDE(a, 1) == hd * 4)
    if not inner or (m > 1 and (s0 % 4 != 0 or s0 < heads * hd * 4)):
        raise ValueError(f"{fn}: each row of {name} must be contiguous, rows at a positive stride "
                         f"(pass np.ascontiguousarray({name}))")
    return s0 // 4 if m > 1 else heads * hd


cdef cnp.ndarray _int32_vector(object a, str fn, str name, Py_ssize_t length):
    cdef cnp.ndarray arr = _as_array(a, fn, name)
    _check(arr, cnp.NPY_INT32, fn, name, False)
    if cnp.PyArray_NDIM(arr) != 1 or cnp.PyArray_DIM(arr, 0) != length:
        raise ValueError(f"{fn}: {name} must have shape ({length},), got {_shape(arr)}")
    return arr


@cython.final
@cython.freelist(8)
cdef class _Paged:
    """The checked arrays and C descriptors of one paged-cache call."""
    cdef cnp.ndarray k_cache, v_cache, table, starts, pos0
    cdef ec_kv_pages pages
    cdef ec_kv_batch batch
    cdef ec_kv_fault fault
    cdef Py_ssize_t m


cdef _Paged _paged(str fn, k_cache, v_cache, page_table, starts, pos0, bint writeable):
    cdef _Paged p = _Paged.__new__(_Paged)
    p.k_cache = _as_array(k_cache, fn, "k_cache")
    p.v_cache = _as_array(v_cache, fn, "v_cache")
    cdef int typenum = cnp.PyArray_TYPE(p.k_cache)
    if typenum != cnp.NPY_FLOAT32 and typenum != cnp.NPY_FLOAT16 and typenum != cnp.NPY_UINT8:
        raise TypeError(f"{fn}: k_cache must be float32, float16 or uint8 (Q8_0 blocks), got dtype "
                        f"{p.k_cache.dtype}")
    _check(p.k_cache, typenum, fn, "k_cache", writeable)
    if cnp.PyArray_TYPE(p.v_cache) != typenum:
        raise TypeError(f"{fn}: v_cache must have k_cache's dtype {p.k_cache.dtype}, got {p.v_cache.dtype}")
    _check(p.v_cache, typenum, fn, "v_cache", writeable)
    if cnp.PyArray_NDIM(p.k_cache) != 4:
        raise ValueError(f"{fn}: k_cache must be 4-D [n_pages, kv_heads, page_tokens, head_dim] (Q8_0: "
                         f"head_dim / 32 * 34 bytes in the last dimension), "
                         f"got shape {_shape(p.k_cache)}")
    if (<object>p.v_cache).shape != (<object>p.k_cache).shape:
        raise ValueError(f"{fn}: v_cache shape {_shape(p.v_cache)} must equal k_cache shape {_shape(p.k_cache)}")
    if writeable and _overlaps(p.k_cache, p.v_cache):
        raise ValueError(f"{fn}: k_cache and v_cache must not overlap")
    p.pages.k = cnp.PyArray_DATA(p.k_cache)
    p.pages.v = cnp.PyArray_DATA(p.v_cache)
    p.pages.dtype = EC_KV_F16 if typenum == cnp.NPY_FLOAT16 else EC_KV_Q8_0 if typenum == cnp.NPY_UINT8 else EC_KV_F32
    p.pages.n_pages = cnp.PyArray_DIM(p.k_cache, 0)
    p.pages.kv_heads = cnp.PyArray_DIM(p.k_cache, 1)
    p.pages.page_tokens = cnp.PyArray_DIM(p.k_cache, 2)
    p.pages.head_dim = cnp.PyArray_DIM(p.k_cache, 3)
    if p.pages.dtype == EC_KV_Q8_0:  # rows of 34-byte blocks of 32 elements
        if p.pages.head_dim % 34:
            raise ValueError(f"{fn}: a uint8 (Q8_0) k_cache's last dimension must be head_dim / 32 * 34 bytes "
                             f"(a multiple of 34), got shape {_shape(p.k_cache)}")
        p.pages.head_dim = p.pages.head_dim // 34 * 32
    if p.pages.kv_heads == 0 or p.pages.page_tokens == 0 or p.pages.head_dim == 0:
        raise ValueError(f"{fn}: k_cache needs kv_heads, page_tokens and head_dim >= 1, got shape "
                         f"{_shape(p.k_cache)}")

    p.table = _as_array(page_table, fn, "page_table")
    _check(p.table, cnp.NPY_INT32, fn, "page_table", False)
    if cnp.PyArray_NDIM(p.table) != 2:
        raise ValueError(f"{fn}: page_table must be 2-D [n_seqs, max_pages] int32, got shape {_shape(p.table)}")
    cdef Py_ssize_t n_seqs = cnp.PyArray_DIM(p.table, 0), max_pages = cnp.PyArray_DIM(p.table, 1)
    p.starts = _int32_vector(starts, fn, "starts", n_seqs + 1)
    p.pos0 = _int32_vector(pos0, fn, "pos0", n_seqs)
    cdef const int32_t *st = <const int32_t *>cnp.PyArray_DATA(p.starts)
    cdef const int32_t *ps = <const int32_t *>cnp.PyArray_DATA(p.pos0)
    cdef Py_ssize_t s
    cdef int64_t capacity = <int64_t>max_pages * <int64_t>p.pages.page_tokens
    if st[0] != 0:
        raise ValueError(f"{fn}: starts[0] must be 0, got {st[0]}")
    for s in range(n_seqs):
        if st[s + 1] < st[s]:
            raise ValueError(f"{fn}: starts must be non-decreasing; starts[{s + 1}] = {st[s + 1]} < "
                             f"starts[{s}] = {st[s]}")
        if ps[s] < 0:
            raise ValueError(f"{fn}: pos0[{s}] = {ps[s]} is negative")
        if <int64_t>ps[s] + st[s + 1] - st[s] > capacity:
            raise ValueError(f"{fn}: sequence {s} reaches position {<int64_t>ps[s] + st[s + 1] - st[s] - 1}, "
                             f"past its page table's capacity of {capacity} positions "
                             f"({max_pages} pages x {p.pages.page_tokens} tokens)")
    p.m = st[n_seqs]
    p.batch.n_seqs = n_seqs
    p.batch.starts = st
    p.batch.pos0 = ps
    p.batch.page_table = <const int32_t *>cnp.PyArray_DATA(p.table)
    p.batch.max_pages = max_pages
    return p


cdef _raise_paged(str fn, int rc, _Paged p):
    if rc == EC_ERR_PAGE:
        tab = p.table
        raise ValueError(f"{fn}: page_table[{p.fault.seq}, {p.fault.index}] = "
                         f"{int(tab[p.fault.seq, p.fault.index])} is not a page of the cache "
                         f"(expected 0 <= id < {p.pages.n_pages})")
    if rc == EC_ERR_POSITION:
        raise ValueError(f"{fn}: sequence {p.fault.seq} runs past its page table's capacity")
    raise ValueError(f"{fn}: inconsistent arguments (kernel code {rc}, sequence {p.fault.seq})")


# ---- norms --------------------------------------------------------------------

cdef _norm(str fn, bint layer, x, weight, bias, double eps, residual, out, bint unit_offset):
    cdef cnp.ndarray xa = _as_array(x, fn, "x")
    cdef cnp.ndarray wa = _as_array(weight, fn, "weight")
    cdef cnp.ndarray ba = None, ra = None, ya
    cdef const float *bias_ptr = NULL
    cdef const float *delta_ptr = NULL
    cdef float *sum_ptr = NULL
    cdef Py_ssize_t m, d
    cdef int rc, flags = EC_NORM_UNIT_OFFSET if unit_offset else 0

    _check(xa, cnp.NPY_FLOAT32, fn, "x", residual is not None)
    cdef int nd = cnp.PyArray_NDIM(xa)
    if nd == 2:
        m = cnp.PyArray_DIM(xa, 0)
        d = cnp.PyArray_DIM(xa, 1)
    elif nd == 1:
        m = 1
        d = cnp.PyArray_DIM(xa, 0)
    else:
        raise ValueError(f"{fn}: x must be [M, d] or [d], got shape {_shape(xa)}")
    if d < 1:
        raise ValueError(f"{fn}: x rows are empty (shape {_shape(xa)})")
    _check(wa, cnp.NPY_FLOAT32, fn, "weight", False)
    if cnp.PyArray_NDIM(wa) != 1 or cnp.PyArray_DIM(wa, 0) != d:
        raise ValueError(f"{fn}: weight must have shape ({d},), got {_shape(wa)}")
    if bias is not None:
        ba = _as_array(bias, fn, "bias")
        _check(ba, cnp.NPY_FLOAT32, fn, "bias", False)
        if cnp.PyArray_NDIM(ba) != 1 or cnp.PyArray_DIM(ba, 0) != d:
            raise ValueError(f"{fn}: bias must have shape ({d},), got {_shape(ba)}")
        bias_ptr = <const float *>cnp.PyArray_DATA(ba)
    if not (eps >= 0.0 and eps < float("inf")):
        raise ValueError(f"{fn}: eps must be finite and >= 0, got {eps}")
    if residual is not None:
        ra = _as_array(residual, fn, "residual")
        _check(ra, cnp.NPY_FLOAT32, fn, "residual", False)
        if (<object>ra).shape != (<object>xa).shape:
            raise ValueError(f"{fn}: residual must have x's shape {_shape(xa)}, got {_shape(ra)}")
        if _overlaps(ra, xa):
            raise ValueError(f"{fn}: residual must not overlap x (x is updated in place)")
        if _overlaps(xa, wa) or (ba is not None and _overlaps(xa, ba)):
            raise ValueError(f"{fn}: x is updated in place and must not overlap weight or bias")
        delta_ptr = <const float *>cnp.PyArray_DATA(ra)
        sum_ptr = <float *>cnp.PyArray_DATA(xa)
    if out is None:
        ya = <cnp.ndarray>cnp.PyArray_EMPTY(nd, cnp.PyArray_DIMS(xa), cnp.NPY_FLOAT32, 0)
    else:
        ya = _as_array(out, fn, "out")
        _check(ya, cnp.NPY_FLOAT32, fn, "out", True)
        if (<object>ya).shape != (<object>xa).shape:
            raise ValueError(f"{fn}: out must have x's shape {_shape(xa)}, got {_shape(ya)}")
        if _overlaps(ya, wa) or (ba is not None and _overlaps(ya, ba)) or (ra is not None and _overlaps(ya, ra)):
            raise ValueError(f"{fn}: out must not overlap weight, bias or residual")
        if _overlaps(ya, xa) and (ra is not None or cnp.PyArray_DATA(ya) != cnp.PyArray_DATA(xa)):
            raise ValueError(f"{fn}: out may be x itself (without residual), but must not otherwise overlap it")
    cdef const float *xp = <const float *>cnp.PyArray_DATA(xa)
    cdef const float *wp = <const float *>cnp.PyArray_DATA(wa)
    cdef float *yp = <float *>cnp.PyArray_DATA(ya)
    if m == 0:
        return ya
    with nogil:
        if layer:
            rc = ec_layer_norm_f32(xp, delta_ptr, sum_ptr, wp, bias_ptr, yp, m, d, <float>eps, flags)
        else:
            rc = ec_rms_norm_f32(xp, delta_ptr, sum_ptr, wp, yp, m, d, <float>eps, flags)
    if rc != EC_OK:
        raise ValueError(f"{fn}: inconsistent arguments (kernel code {rc})")
    return ya


def rms_norm(x, weight, double eps, *, residual=None, out=None, bint unit_offset=False):
    """RMSNorm of each row: ``out = s / sqrt(mean(s**2) + eps) * weight``.

    x: float32 [M, d] or [d]. weight: float32 [d] (used as ``1 + weight``
    with ``unit_offset=True``, Gemma's convention). With ``residual`` (x's
    shape) the residual add is fused: ``x += residual`` in place (float32),
    then s is the updated x; otherwise s is x. out: optional array of x's
    shape to write into (may be x itself when there is no residual).
    Returns out. Sums are float32 in blocked partial sums on SIMD tiers
    (double on the scalar tier); docs/kernel-tiers.md states the bounds.
    """
    return _norm("rms_norm", False, x, weight, None, eps, residual, out, unit_offset)


def layer_norm(x, weight, bias, double eps, *, residual=None, out=None, bint unit_offset=False):
    """LayerNorm of each row: ``out = (s - mean(s)) / sqrt(var(s) + eps) *
    weight + bias`` (two-pass mean and variance; bias may be None).

    Arguments as for :func:`rms_norm`: the fused ``x += residual`` in place,
    ``out=`` (may be x without residual), ``unit_offset`` (``1 + weight``).
    """
    return _norm("layer_norm", True, x, weight, bias, eps, residual, out, unit_offset)


# ---- RoPE ---------------------------------------------------------------------

def rope(x, positions, cos, sin, *, bint interleaved=False, rotary_dim=None):
    """Rotary position embedding, in place; returns x.

    x: float32 [M, heads, head_dim], each row contiguous (rows may be strided,
    e.g. a view of a fused QKV output). positions: int32 or int64 [M], the
    position of each row (rows of a batch may belong to different sequences).
    cos, sin: float32 [max_pos, rotary_dim / 2], precomputed by the caller
    (from float64 angles). Frequency i rotates the pair (i, i + rotary_dim/2)
    of every head (rotate-half: NeoX / Hugging Face Llama), or with
    ``interleaved=True`` the pair (2i, 2i + 1) (GPT-J / GGUF llama layout):
    ``(a, b) -> (a cos - b sin, b cos + a sin)``. Elements from rotary_dim to
    head_dim are untouched. rotary_dim defaults to 2 * cos.shape[1]; if
    given it must equal that. A position outside [0, max_pos) raises
    ValueError and leaves x unchanged.
    """
    cdef str fn = "rope"
    cdef cnp.ndarray xa = _as_array(x, fn, "x")
    cdef cnp.ndarray pa = _as_array(positions, fn, "positions")
    cdef cnp.ndarray ca = _as_array(cos, fn, "cos")
    cdef cnp.ndarray sa = _as_array(sin, fn, "sin")
    cdef Py_ssize_t stride = _rows3(xa, fn, "x", True)
    cdef Py_ssize_t m = cnp.PyArray_DIM(xa, 0), heads = cnp.PyArray_DIM(xa, 1), hd = cnp.PyArray_DIM(xa, 2)
    cdef int ptype = cnp.PyArray_TYPE(pa)
    if ptype != cnp.NPY_INT32 and ptype != cnp.NPY_INT64:
        raise TypeError(f"{fn}: positions must be int32 or int64, got dtype {pa.dtype}")
    _check(pa, ptype, fn, "positions", False)
    if cnp.PyArray_NDIM(pa) != 1 or cnp.PyArray_DIM(pa, 0) != m:
        raise ValueError(f"{fn}: positions must have shape ({m},) (one per row of x), got {_shape(pa)}")
    _check(ca, cnp.NPY_FLOAT32, fn, "cos", False)
    _check(sa, cnp.NPY_FLOAT32, fn, "sin", False)
    if cnp.PyArray_NDIM(ca) != 2 or cnp.PyArray_DIM(ca, 1) < 1:
        raise ValueError(f"{fn}: cos must be [max_pos, rotary_dim / 2], got shape {_shape(ca)}")
    if (<object>sa).shape != (<object>ca).shape:
        raise ValueError(f"{fn}: sin shape {_shape(sa)} must equal cos shape {_shape(ca)}")
    cdef Py_ssize_t rot = 2 * cnp.PyArray_DIM(ca, 1), max_pos = cnp.PyArray_DIM(ca, 0)
    if rotary_dim is not None and rotary_dim != rot:
        raise ValueError(f"{fn}: rotary_dim={rotary_dim} does not match the tables: cos has "
                         f"{rot // 2} columns, i.e. rotary_dim {rot}")
    if rot > hd:
        raise ValueError(f"{fn}: rotary_dim {rot} (from cos.shape[1] = {rot // 2}) exceeds head_dim {hd}")
    if heads < 1:
        raise ValueError(f"{fn}: x has no heads (shape {_shape(xa)})")
    if _spans_overlap(xa, ca) or _spans_overlap(xa, sa) or _spans_overlap(xa, pa):
        raise ValueError(f"{fn}: x must not overlap cos, sin or positions")
    cdef size_t bad = 0
    cdef int rc
    cdef float *xp = <float *>cnp.PyArray_DATA(xa)
    cdef const void *pp = cnp.PyArray_DATA(pa)
    cdef int pbytes = 8 if ptype == cnp.NPY_INT64 else 4
    cdef const float *cp = <const float *>cnp.PyArray_DATA(ca)
    cdef const float *sp = <const float *>cnp.PyArray_DATA(sa)
    with nogil:
        rc = ec_rope_f32(xp, m, stride, heads, hd, rot, pp, pbytes, cp, sp, max_pos, interleaved, &bad)
    if rc == EC_ERR_POSITION:
        raise ValueError(f"{fn}: positions[{bad}] = {int(pa[bad])} is outside the tables' [0, {max_pos})")
    if rc != EC_OK:
        raise ValueError(f"{fn}: inconsistent arguments (kernel code {rc})")
    return x


# ---- paged KV cache -----------------------------------------------------------

def kv_store(k, v, k_cache, v_cache, page_table, starts, pos0):
    """Write new keys and values into a layer's paged cache.

    k, v: float32 [M, kv_heads, head_dim] (rows may be strided, the same
    stride for both). k_cache, v_cache: [n_pages, kv_heads, page_tokens,
    head_dim], both float32 or both float16 (values are rounded to nearest
    even, as ``astype(np.float16)``), or both uint8 [n_pages, kv_heads,
    page_tokens, head_dim / 32 * 34]: each row quantized to GGML Q8_0 blocks,
    bit for bit ``gguf.quants.quantize(row, Q8_0)``. page_table: int32 [S, max_pages], the
    page ids of each sequence in position order. starts: int32 [S + 1]: rows
    starts[s] .. starts[s+1]-1 belong to sequence s (starts[0] = 0,
    non-decreasing, starts[S] = M). pos0: int32 [S]: the position of each
    sequence's first row. Row starts[s] + i goes to position pos0[s] + i:
    page page_table[s, p // page_tokens], slot p % page_tokens. Two rows must
    not map to the same slot. A bad page id or position raises ValueError
    and writes nothing.
    """
    cdef str fn = "kv_store"
    cdef _Paged p = _paged(fn, k_cache, v_cache, page_table, starts, pos0, True)
    cdef cnp.ndarray ka = _as_array(k, fn, "k")
    cdef cnp.ndarray va = _as_array(v, fn, "v")
    cdef Py_ssize_t ks = _rows3(ka, fn, "k", False), vs = _rows3(va, fn, "v", False)
    expected = (int(p.m), int(p.pages.kv_heads), int(p.pages.head_dim))
    if (<object>ka).shape != expected:
        raise ValueError(f"{fn}: k must have shape {expected} ([rows, kv_heads, head_dim] of the cache), "
                         f"got {_shape(ka)}")
    if (<object>va).shape != expected:
        raise ValueError(f"{fn}: v must have shape {expected}, got {_shape(va)}")
    if ks != vs and p.m > 1:
        raise ValueError(f"{fn}: k and v rows must have the same stride ({ks} vs {vs} floats)")
    for name, arr in (("k", ka), ("v", va)):
        if _spans_overlap(arr, p.k_cache) or _spans_overlap(arr, p.v_cache):
            raise ValueError(f"{fn}: {name} must not overlap k_cache or v_cache")
    cdef const float *kp = <const float *>cnp.PyArray_DATA(ka)
    cdef const float *vp = <const float *>cnp.PyArray_DATA(va)
    cdef int rc
    with nogil:
        rc = ec_kv_store(&p.pages, &p.batch, kp, vp, p.m, ks, &p.fault)
    if rc != EC_OK:
        _raise_paged(fn, rc, p)


def attention(q, k_cache, v_cache, page_table, starts, pos0, *, double scale, window=0, double softcap=0.0,
              out=None):
    """Causal attention of a batch of sequences over their paged KV cache.

    q: float32 [M, n_heads, head_dim] (rows may be strided); n_heads a
    multiple of the cache's kv_heads (query head j reads KV head
    j // (n_heads // kv_heads)); head_dim <= 256. k_cache, v_cache,
    page_table, starts, pos0: as for :func:`kv_store` (the keys of the rows
    themselves must already be stored). The row at position p attends to
    its own sequence's keys at positions [max(0, p - window + 1), p]
    (window 0: unlimited) with scores ``scale * q.k``, soft-capped as
    ``softcap * tanh(score / softcap)`` when softcap > 0. out: optional
    float32 [M, n_heads * head_dim] (C-contiguous, not overlapping the
    inputs). Returns out.

    Online softmax over blocks of keys, fixed scratch: nothing of size
    [M, context] is allocated. Each output row is bitwise a function of its
    own q row, its own keys and values and the parameters: the same alone,
    decoded one row at a time, or in any batch, for any thread count. A row
    whose scores include a NaN or +inf gets NaN.
    """
    cdef str fn = "attention"
    cdef _Paged p = _paged(fn, k_cache, v_cache, page_table, starts, pos0, False)
    cdef cnp.ndarray qa = _as_array(q, fn, "q")
    cdef cnp.ndarray ya
    cdef Py_ssize_t qs = _rows3(qa, fn, "q", False)
    cdef Py_ssize_t n_heads = cnp.PyArray_DIM(qa, 1), hd = p.pages.head_dim
    cdef cnp.npy_intp dims[2]
    if cnp.PyArray_DIM(qa, 0) != p.m:
        raise ValueError(f"{fn}: q has {cnp.PyArray_DIM(qa, 0)} rows but starts[-1] = {p.m}")
    if cnp.PyArray_DIM(qa, 2) != hd:
        raise ValueError(f"{fn}: q head_dim {cnp.PyArray_DIM(qa, 2)} does not match the cache's {hd}")
    if n_heads < 1 or n_heads % p.pages.kv_heads:
        raise ValueError(f"{fn}: q has {n_heads} heads, not a positive multiple of the cache's "
                         f"{p.pages.kv_heads} KV heads")
    if hd > EC_ATTN_MAX_HEAD_DIM:
        raise ValueError(f"{fn}: head_dim {hd} is above the supported {EC_ATTN_MAX_HEAD_DIM}")
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 0:
        raise ValueError(f"{fn}: window must be an int >= 0 (0: unlimited), got {window!r}")
    if not (-float("inf") < scale < float("inf")):
        raise ValueError(f"{fn}: scale must be finite, got {scale}")
    if not (softcap >= 0.0 and softcap < float("inf")):
        raise ValueError(f"{fn}: softcap must be finite and >= 0 (0: off), got {softcap}")
    dims[0] = p.m
    dims[1] = n_heads * hd
    if out is None:
        ya = <cnp.ndarray>cnp.PyArray_EMPTY(2, dims, cnp.NPY_FLOAT32, 0)
    else:
        ya = _as_array(out, fn, "out")
        _check(ya, cnp.NPY_FLOAT32, fn, "out", True)
        if cnp.PyArray_NDIM(ya) != 2 or cnp.PyArray_DIM(ya, 0) != dims[0] or cnp.PyArray_DIM(ya, 1) != dims[1]:
            raise ValueError(f"{fn}: out must have shape ({dims[0]}, {dims[1]}), got {_shape(ya)}")
        if _spans_overlap(ya, qa) or _spans_overlap(ya, p.k_cache) or _spans_overlap(ya, p.v_cache):
            raise ValueError(f"{fn}: out must not overlap q, k_cache or v_cache")
    cdef size_t win = <size_t>window
    cdef const float *qp = <const float *>cnp.PyArray_DATA(qa)
    cdef float *yp = <float *>cnp.PyArray_DATA(ya)
    cdef int rc
    with nogil:
        rc = ec_attention_f32(&p.pages, &p.batch, qp, p.m, qs, n_heads, <float>scale, win, <float>softcap,
                              yp, &p.fault)
    if rc != EC_OK:
        _raise_paged(fn, rc, p)
    return ya
