# One llama-family decoder block per call (csrc/common/decoder_block.c),
# included by _kernels.pyx.
#
# A decode step of a small model spends 10-13% of its time in the Python
# and argument-checking cost of ~10 kernel calls per layer. DecoderBlock
# checks a layer's weights, norms, RoPE tables, cache and workspace once,
# when it is built; run() checks only what changes per step (x, delta and
# the batch) and crosses into C once.

cdef tuple _BLOCK_PROJECTIONS = ("q", "k", "v", "o", "gate", "up", "down")


cdef int _block_out(ec_linear_out *o, str name, object spec, cnp.npy_intp k, cnp.npy_intp rows, list keep,
                    list outs) except -1:
    """Fill o from spec = (weight array, wtype, bias or None, transposed, out
    [rows, N] workspace) for an input of K = k."""
    cdef str fn = "DecoderBlock"
    cdef cnp.npy_intp n
    try:
        weight, wtype, bias, transposed, out = spec
    except (TypeError, ValueError):
        raise TypeError(f"{fn}: {name} must be a (weight, wtype, bias, transposed, out) tuple") from None
    cdef const ec_wtype_info *t = _wtype(wtype, fn)
    cdef cnp.ndarray wa = _as_array(weight, fn, name)
    _check_weight(wa, t, k, bool(transposed), fn, name, &n)
    o.wtype = t.id
    o.w = cnp.PyArray_DATA(wa)
    o.n = n
    o.transposed = bool(transposed)
    o.bias = NULL
    keep.append(wa)
    if bias is not None:
        ba = _as_array(bias, fn, name + " bias")
        _check(ba, cnp.NPY_FLOAT32, fn, name + " bias", False)
        if cnp.PyArray_NDIM(ba) != 1 or cnp.PyArray_DIM(ba, 0) != n:
            raise ValueError(f"{fn}: {name} bias must have shape ({n},), got {_shape(ba)}")
        o.bias = <const float *>cnp.PyArray_DATA(ba)
        keep.append(ba)
    cdef cnp.ndarray ya = _workspace(out, fn, name + " out", rows, n)
    o.y = <float *>cnp.PyArray_DATA(ya)
    outs.append(ya)
    return 0


cdef size_t _scratch_need(const ec_linear_out *first, int n, size_t rows, size_t k, bint refine):
    """Scratch of one linear call over n consecutive outputs of the block."""
    cdef int ids[3]
    cdef size_t bytes = 0
    for i in range(n):
        ids[i] = first[i].wtype
    ec_linear_scratch_bytes(ids, n, rows, k, refine, &bytes)
    return bytes


cdef cnp.ndarray _workspace(object a, str fn, str name, cnp.npy_intp rows, cnp.npy_intp width):
    cdef cnp.ndarray arr = _as_array(a, fn, name)
    _check(arr, cnp.NPY_FLOAT32, fn, name, True)
    if cnp.PyArray_NDIM(arr) != 2 or cnp.PyArray_DIM(arr, 0) != rows or cnp.PyArray_DIM(arr, 1) != width:
        raise ValueError(f"{fn}: {name} must have shape ({rows}, {width}), got {_shape(arr)}")
    return arr


cdef cnp.ndarray _norm_weight(object a, str fn, str name, cnp.npy_intp d):
    cdef cnp.ndarray arr = _as_array(a, fn, name)
    _check(arr, cnp.NPY_FLOAT32, fn, name, False)
    if cnp.PyArray_NDIM(arr) != 1 or cnp.PyArray_DIM(arr, 0) != d:
        raise ValueError(f"{fn}: {name} must have shape ({d},), got {_shape(arr)}")
    return arr


@cython.final
cdef tuple _step_inputs(str fn, object x, object delta, object positions, Py_ssize_t rows, Py_ssize_t d,
                        cnp.ndarray h, str h_name):
    """A decoder step's x [m, d] float32 (m <= rows, writable), delta (x's
    shape, or None) and positions (int64 [m]), checked; delta must not
    overlap x or `h`, which the first norm writes before it consumes delta.
    Returns (x, delta or None, positions) as arrays."""
    cdef cnp.ndarray xa = _as_array(x, fn, "x")
    cdef cnp.ndarray da = None
    cdef cnp.ndarray pa = _as_array(positions, fn, "positions")
    _check(xa, cnp.NPY_FLOAT32, fn, "x", True)
    if cnp.PyArray_NDIM(xa) != 2 or cnp.PyArray_DIM(xa, 1) != d or cnp.PyArray_DIM(xa, 0) > rows:
        raise ValueError(f"{fn}: x must be [m, {d}] with m <= {rows}, got {_shape(xa)}")
    cdef Py_ssize_t m = cnp.PyArray_DIM(xa, 0)
    if delta is not None:
        da = _as_array(delta, fn, "delta")
        _check(da, cnp.NPY_FLOAT32, fn, "delta", False)
        if (<object>da).shape != (<object>xa).shape:
            raise ValueError(f"{fn}: delta must have x's shape {_shape(xa)}, got {_shape(da)}")
        if _overlaps(da, xa) or _overlaps(da, h):
            raise ValueError(f"{fn}: delta must not overlap x or {h_name}")
    _check(pa, cnp.NPY_INT64, fn, "positions", False)
    if cnp.PyArray_NDIM(pa) != 1 or cnp.PyArray_DIM(pa, 0) != m:
        raise ValueError(f"{fn}: positions must be int64 [{m}], got {_shape(pa)}")
    return xa, da, pa


cdef _raise_step_failure(str fn, int rc, int failed, cnp.ndarray pa, _Paged p, size_t rope_max_pos, str where):
    """The one-line error for a failed decoder step (`where`: which block)."""
    if failed == EC_BLOCK_ROPE and rc == EC_ERR_POSITION:
        raise ValueError(f"{fn}: positions[{p.fault.index}] = {int(pa[p.fault.index])} is outside the "
                         f"RoPE tables' [0, {rope_max_pos})")
    if failed == EC_BLOCK_KV_STORE or failed == EC_BLOCK_ATTENTION:
        _raise_paged(fn, rc, p)
    raise RuntimeError(f"{fn}: kernel rejected the arguments{where} at stage {failed} (code {rc})")


cdef class DecoderBlock:
    """A pre-norm llama-family decoder block (RMSNorm, q/k/v, RoPE, the paged
    KV store, attention, o; then RMSNorm and the gated MLP unless
    ``mlp=None``) run by one C call per step, with the same kernels in the
    same order as the per-op path, so bitwise its result.

    Gemma 3's block: ``qk_norm=(q_norm, k_norm)`` float32 [head_dim] each,
    applied to every query and key head before RoPE; ``post_norms=
    (post_attn_norm, post_ffn_norm)`` float32 [d], on the attention output
    before its residual add and on the MLP output (post_ffn_norm None
    without the MLP); ``unit_offset`` uses every norm weight as 1 + w
    (Hugging Face Gemma files); ``mlp_activation`` "gelu_tanh" for GeGLU
    (default "silu": SwiGLU).

    Built once per layer from: ``attn_norm`` float32 [d]; ``q``, ``k``,
    ``v``, ``o`` (and in ``mlp`` the tuple ``(ffn_norm, gate, up, down)``),
    each a ``(weight, wtype, bias, transposed, out)`` tuple as ``linear``
    takes them, ``out`` the float32 [rows, N] workspace its result goes to;
    ``h`` [rows, d] and ``a`` [rows, n_heads * head_dim] two more
    workspaces; RoPE ``cos``, ``sin`` [max_pos, rotary_dim / 2] and
    ``interleaved``; the layer's ``k_cache``, ``v_cache`` (as for
    ``kv_store``); ``scratch`` uint8 of at least what the block's linear
    calls need at ``rows`` rows (``scratch_bytes``). Every array is kept
    referenced and must not be resized; the workspaces must not overlap
    each other or the inputs.
    """
    cdef ec_decoder_block b
    cdef list keep
    cdef cnp.ndarray k_cache, v_cache, out_rows
    cdef readonly Py_ssize_t rows, d

    def __init__(self, *, attn_norm, q, k, v, o, mlp, h, a, Py_ssize_t n_heads, Py_ssize_t head_dim,
                 double eps, double scale, window, bint refine, cos, sin, bint interleaved, k_cache, v_cache,
                 scratch, qk_norm=None, post_norms=None, bint unit_offset=False, str mlp_activation="silu"):
        cdef str fn = "DecoderBlock"
        cdef cnp.ndarray ha, aa, ca, sa, na, fa, xa
        cdef list outs = []
        self.keep = []
        na = _as_array(attn_norm, fn, "attn_norm")
        _check(na, cnp.NPY_FLOAT32, fn, "attn_norm", False)
        if cnp.PyArray_NDIM(na) != 1 or cnp.PyArray_DIM(na, 0) < 1:
            raise ValueError(f"{fn}: attn_norm must be float32 [d], got shape {_shape(na)}")
        cdef cnp.npy_intp d = cnp.PyArray_DIM(na, 0)
        ha = _as_array(h, fn, "h")
        if cnp.PyArray_NDIM(ha) != 2 or cnp.PyArray_DIM(ha, 0) < 1:
            raise ValueError(f"{fn}: h must be float32 [rows, d], got shape {_shape(ha)}")
        cdef cnp.npy_intp rows = cnp.PyArray_DIM(ha, 0)
        ha = _workspace(ha, fn, "h", rows, d)
        if n_heads < 1 or head_dim < 1 or head_dim > EC_ATTN_MAX_HEAD_DIM:
            raise ValueError(f"{fn}: n_heads >= 1 and 1 <= head_dim <= {EC_ATTN_MAX_HEAD_DIM} needed, "
                             f"got {n_heads}, {head_dim}")
        cdef cnp.npy_intp q_dim = n_heads * head_dim
        aa = _workspace(a, fn, "a", rows, q_dim)
        self.keep.extend([na, ha, aa])
        outs.extend([ha, aa])

        # the cache, checked as kv_store checks it (a dummy one-sequence batch)
        cdef _Paged p = _paged(fn, k_cache, v_cache, np.zeros((1, 1), np.int32), np.zeros(2, np.int32),
                               np.zeros(1, np.int32), True)
        cdef size_t kvh = p.pages.kv_heads
        if <size_t>head_dim != p.pages.head_dim or n_heads % kvh:
            raise ValueError(f"{fn}: {n_heads} heads of {head_dim} do not fit the cache's {kvh} KV heads "
                             f"of {p.pages.head_dim}")
        self.b.cache = p.pages
        self.k_cache, self.v_cache = p.k_cache, p.v_cache
        self._gemma_norms(fn, qk_norm, post_norms, mlp is not None, d, head_dim)
        if mlp_activation not in ("silu", "gelu_tanh"):
            raise ValueError(f"{fn}: mlp_activation must be silu or gelu_tanh, got {mlp_activation!r}")
        self.b.mlp_act = _ACTIVATION_CODES[mlp_activation]
        self.b.norm_flags = EC_NORM_UNIT_OFFSET if unit_offset else 0

        _block_out(&self.b.qkv[0], "q", q, d, rows, self.keep, outs)
        _block_out(&self.b.qkv[1], "k", k, d, rows, self.keep, outs)
        _block_out(&self.b.qkv[2], "v", v, d, rows, self.keep, outs)
        _block_out(&self.b.o, "o", o, q_dim, rows, self.keep, outs)
        if self.b.qkv[0].n != <size_t>q_dim or self.b.qkv[1].n != kvh * head_dim or self.b.qkv[2].n != kvh * head_dim:
            raise ValueError(f"{fn}: q, k, v produce {self.b.qkv[0].n}, {self.b.qkv[1].n}, {self.b.qkv[2].n} features; "
                             f"{q_dim}, {kvh * head_dim}, {kvh * head_dim} expected")
        if self.b.o.n != <size_t>d:
            raise ValueError(f"{fn}: o produces {self.b.o.n} features, d = {d} expected")
        self.out_rows = outs[len(outs) - 1]  # (no wraparound in this module)
        memset(&self.b.down, 0, sizeof(ec_linear_out))
        if mlp is not None:
            try:
                ffn_norm, gate, up, down = mlp
            except (TypeError, ValueError):
                raise TypeError(f"{fn}: mlp must be None or (ffn_norm, gate, up, down)") from None
            fa = _norm_weight(ffn_norm, fn, "ffn_norm", d)
            self.keep.append(fa)
            self.b.ffn_norm = <const float *>cnp.PyArray_DATA(fa)
            _block_out(&self.b.gate_up[0], "gate", gate, d, rows, self.keep, outs)
            _block_out(&self.b.gate_up[1], "up", up, d, rows, self.keep, outs)
            if self.b.gate_up[0].n != self.b.gate_up[1].n:
                raise ValueError(f"{fn}: gate and up must have equal N, got {self.b.gate_up[0].n} and {self.b.gate_up[1].n}")
            _block_out(&self.b.down, "down", down, self.b.gate_up[0].n, rows, self.keep, outs)
            if self.b.down.n != <size_t>d:
                raise ValueError(f"{fn}: down produces {self.b.down.n} features, d = {d} expected")
            self.out_rows = outs[len(outs) - 1]  # (no wraparound in this module)
        for i in range(len(outs)):
            for j in range(len(self.keep)):
                if outs[i] is not self.keep[j] and _overlaps(outs[i], self.keep[j]):
                    raise ValueError(f"{fn}: the workspaces must not overlap the weights, norms or each other")
            for j in range(i):
                if _overlaps(outs[i], outs[j]):
                    raise ValueError(f"{fn}: the workspaces must not overlap each other")
            if _overlaps(outs[i], p.k_cache) or _overlaps(outs[i], p.v_cache):
                raise ValueError(f"{fn}: the workspaces must not overlap the cache")
        self.keep.extend(outs)

        ca = _as_array(cos, fn, "cos")
        sa = _as_array(sin, fn, "sin")
        _check(ca, cnp.NPY_FLOAT32, fn, "cos", False)
        _check(sa, cnp.NPY_FLOAT32, fn, "sin", False)
        if cnp.PyArray_NDIM(ca) != 2 or cnp.PyArray_DIM(ca, 1) < 1 or (<object>sa).shape != (<object>ca).shape:
            raise ValueError(f"{fn}: cos and sin must both be [max_pos, rotary_dim / 2], got {_shape(ca)} and "
                             f"{_shape(sa)}")
        if 2 * cnp.PyArray_DIM(ca, 1) > head_dim:
            raise ValueError(f"{fn}: rotary_dim {2 * cnp.PyArray_DIM(ca, 1)} exceeds head_dim {head_dim}")
        self.keep.extend([ca, sa])
        if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 0:
            raise ValueError(f"{fn}: window must be an int >= 0 (0: unlimited), got {window!r}")
        if not (-float("inf") < scale < float("inf")) or not (0.0 < eps < float("inf")):
            raise ValueError(f"{fn}: scale must be finite and eps finite and > 0, got {scale}, {eps}")

        # scratch for the largest linear call of the block at `rows` rows
        cdef size_t need = _scratch_need(&self.b.qkv[0], 3, rows, d, refine)
        need = max(need, _scratch_need(&self.b.o, 1, rows, q_dim, refine))
        if mlp is not None:
            need = max(need, _scratch_need(&self.b.gate_up[0], 2, rows, d, refine))
            need = max(need, _scratch_need(&self.b.down, 1, rows, self.b.gate_up[0].n, refine))
        xa = _as_array(scratch, fn, "scratch")
        _check(xa, cnp.NPY_UINT8, fn, "scratch", True)
        if <size_t>cnp.PyArray_NBYTES(xa) < need:
            raise ValueError(f"{fn}: scratch has {cnp.PyArray_NBYTES(xa)} bytes, the block needs {need} "
                             f"(DecoderBlock.scratch_bytes)")
        for arr in self.keep:
            if _overlaps(xa, arr):
                raise ValueError(f"{fn}: scratch must not overlap the weights or the workspaces")
        self.keep.append(xa)

        self.b.d, self.b.n_heads, self.b.head_dim, self.b.rows = d, n_heads, head_dim, rows
        self.b.norm_eps, self.b.attn_scale, self.b.window, self.b.refine = eps, scale, window, refine
        self.b.attn_norm = <const float *>cnp.PyArray_DATA(na)
        self.b.rope_cos = <const float *>cnp.PyArray_DATA(ca)
        self.b.rope_sin = <const float *>cnp.PyArray_DATA(sa)
        self.b.rope_max_pos = cnp.PyArray_DIM(ca, 0)
        self.b.rotary_dim = 2 * cnp.PyArray_DIM(ca, 1)
        self.b.rope_interleaved = interleaved
        self.b.h = <float *>cnp.PyArray_DATA(ha)
        self.b.a = <float *>cnp.PyArray_DATA(aa)
        self.b.scratch = cnp.PyArray_DATA(xa)
        self.b.scratch_bytes = cnp.PyArray_NBYTES(xa)
        self.rows, self.d = rows, d

    cdef _gemma_norms(self, str fn, qk_norm, post_norms, bint mlp, cnp.npy_intp d, cnp.npy_intp head_dim):
        """The optional q/k and post norms, checked and kept (NULL when None)."""
        cdef cnp.ndarray arr
        cdef const float *ptrs[4]
        ptrs[0] = ptrs[1] = ptrs[2] = ptrs[3] = NULL
        pairs = (("qk_norm", qk_norm, ("q_norm", "k_norm"), (head_dim, head_dim)),
                 ("post_norms", post_norms, ("post_attn_norm", "post_ffn_norm"), (d, d)))
        for i, (label, given, names, widths) in enumerate(pairs):
            if given is None:
                continue
            try:
                first, second = given
            except (TypeError, ValueError):
                raise TypeError(f"{fn}: {label} must be None or a pair ({', '.join(names)})") from None
            if first is None or (second is None and (i == 0 or mlp)):
                raise ValueError(f"{fn}: {label} needs both {names[0]} and {names[1]}"
                                 + (" (post_ffn_norm is None only without the MLP)" if i else ""))
            for j, w in enumerate((first, second)):
                if w is None:
                    continue
                arr = _norm_weight(w, fn, names[j], widths[j])
                self.keep.append(arr)
                ptrs[2 * i + j] = <const float *>cnp.PyArray_DATA(arr)
        self.b.q_norm, self.b.k_norm, self.b.post_attn_norm, self.b.post_ffn_norm = ptrs[0], ptrs[1], ptrs[2], ptrs[3]

    def run(self, x, delta, positions, page_table, starts, pos0):
        """x [m, d] float32 (m <= rows) += delta (the previous block's output
        or None), through the block, for the batch (positions int64 [m]; the
        page arrays as for ``kv_store``). Returns the block's output rows (a
        view of the last workspace: the next block's delta)."""
        cdef str fn = "DecoderBlock.run"
        cdef cnp.ndarray xa, da, pa
        xa, da, pa = _step_inputs(fn, x, delta, positions, self.rows, self.d, self.keep[1], "the block's h")
        for arr in self.keep:
            if _overlaps(xa, arr):
                raise ValueError(f"{fn}: x must not overlap the block's weights or workspaces")
        cdef Py_ssize_t m = cnp.PyArray_DIM(xa, 0)
        cdef _Paged p = _paged(fn, self.k_cache, self.v_cache, page_table, starts, pos0, True)
        if p.m != m:
            raise ValueError(f"{fn}: x has {m} rows but starts[-1] = {p.m}")
        cdef float *xp = <float *>cnp.PyArray_DATA(xa)
        cdef const float *dp = NULL
        if da is not None:
            dp = <const float *>cnp.PyArray_DATA(da)
        cdef const int64_t *pp = <const int64_t *>cnp.PyArray_DATA(pa)
        cdef int rc, failed = EC_BLOCK_ARGS
        with nogil:
            rc = ec_decoder_block_f32(&self.b, xp, dp, m, &p.batch, pp, &p.fault, &failed)
        if rc != EC_OK:
            _raise_step_failure(fn, rc, failed, pa, p, self.b.rope_max_pos, "")
        return self.out_rows[:m]


cdef class DecoderStack:
    """Consecutive dense DecoderBlocks (each with its MLP) run by one C call
    per step: block i takes block i-1's output as its delta, so a step of
    an n-layer model crosses into C once for all of them instead of n times,
    and the per-step checks (x, delta, positions, the batch) run once.

    The blocks must share rows and d, and their caches one page geometry
    (n_pages, kv_heads, page_tokens, head_dim, dtype), so one check of the
    page table holds for every layer. Results are bitwise those of running
    the blocks one by one (the same C block function, in order).
    """
    cdef list blocks
    cdef const ec_decoder_block **ptrs
    cdef char **lo
    cdef char **hi
    cdef Py_ssize_t n_ranges
    cdef readonly Py_ssize_t rows, d

    def __cinit__(self):
        self.ptrs = NULL
        self.lo = self.hi = NULL

    def __dealloc__(self):
        PyMem_RawFree(self.ptrs)
        PyMem_RawFree(self.lo)
        PyMem_RawFree(self.hi)

    def __init__(self, blocks):
        cdef str fn = "DecoderStack"
        cdef DecoderBlock first, blk, prev
        cdef Py_ssize_t i, j, n
        self.blocks = list(blocks)
        n = len(self.blocks)
        if n < 1:
            raise ValueError(f"{fn}: needs at least one DecoderBlock")
        for i in range(n):
            if not isinstance(self.blocks[i], DecoderBlock):
                raise TypeError(f"{fn}: blocks[{i}] is {type(self.blocks[i]).__name__}, not a DecoderBlock")
        first = self.blocks[0]
        cdef Py_ssize_t total = 0
        for i in range(n):
            blk = self.blocks[i]
            if blk.b.down.w == NULL:
                raise ValueError(f"{fn}: blocks[{i}] has no MLP (an attention-only block runs on its own)")
            if blk.rows != first.rows or blk.d != first.d:
                raise ValueError(f"{fn}: blocks[{i}] has rows, d = {blk.rows}, {blk.d}; blocks[0] has "
                                 f"{first.rows}, {first.d}")
            if (blk.b.cache.n_pages != first.b.cache.n_pages or blk.b.cache.kv_heads != first.b.cache.kv_heads
                    or blk.b.cache.page_tokens != first.b.cache.page_tokens
                    or blk.b.cache.head_dim != first.b.cache.head_dim or blk.b.cache.dtype != first.b.cache.dtype):
                raise ValueError(f"{fn}: blocks[{i}]'s cache has another page geometry than blocks[0]'s "
                                 f"(one page table serves every layer)")
            if i > 0:
                prev = self.blocks[i - 1]
                # block i reads block i-1's output as delta while it writes x and its h
                if _overlaps(prev.out_rows, blk.keep[1]):
                    raise ValueError(f"{fn}: blocks[{i - 1}]'s output overlaps blocks[{i}]'s h")
            total += len(blk.keep)
        self.ptrs = <const ec_decoder_block **>PyMem_RawMalloc(n * sizeof(ec_decoder_block *))
        self.lo = <char **>PyMem_RawMalloc(total * sizeof(char *))
        self.hi = <char **>PyMem_RawMalloc(total * sizeof(char *))
        if self.ptrs == NULL or self.lo == NULL or self.hi == NULL:
            raise MemoryError()
        # every array a block keeps, as address ranges: x is checked against them in C
        cdef cnp.ndarray arr
        self.n_ranges = 0
        for i in range(n):
            blk = self.blocks[i]
            self.ptrs[i] = &blk.b
            for j in range(len(blk.keep)):
                arr = blk.keep[j]
                self.lo[self.n_ranges] = <char *>cnp.PyArray_DATA(arr)
                self.hi[self.n_ranges] = self.lo[self.n_ranges] + cnp.PyArray_NBYTES(arr)
                self.n_ranges += 1
        self.rows, self.d = first.rows, first.d

    def __len__(self):
        return len(self.blocks)

    def run(self, x, delta, positions, page_table, starts, pos0):
        """As DecoderBlock.run, through every block: x [m, d] float32 (m <=
        rows) += delta, then each block in turn. Returns the last block's
        output rows (the next delta)."""
        cdef str fn = "DecoderStack.run"
        cdef DecoderBlock first = self.blocks[0]
        cdef cnp.ndarray xa, da, pa
        xa, da, pa = _step_inputs(fn, x, delta, positions, self.rows, self.d, first.keep[1], "the first block's h")
        cdef Py_ssize_t i, m = cnp.PyArray_DIM(xa, 0)
        cdef char *x0 = <char *>cnp.PyArray_DATA(xa)
        cdef char *x1 = x0 + cnp.PyArray_NBYTES(xa)
        for i in range(self.n_ranges):
            if x0 < self.hi[i] and self.lo[i] < x1:
                raise ValueError(f"{fn}: x must not overlap the blocks' weights or workspaces")
        # one check of the batch holds for every block (one page geometry)
        cdef _Paged p = _paged(fn, first.k_cache, first.v_cache, page_table, starts, pos0, True)
        if p.m != m:
            raise ValueError(f"{fn}: x has {m} rows but starts[-1] = {p.m}")
        cdef float *xp = <float *>x0
        cdef const float *dp = NULL
        if da is not None:
            dp = <const float *>cnp.PyArray_DATA(da)
        cdef const int64_t *pp = <const int64_t *>cnp.PyArray_DATA(pa)
        cdef int rc, failed = EC_BLOCK_ARGS
        cdef size_t at = 0
        cdef Py_ssize_t n = len(self.blocks)
        with nogil:
            rc = ec_decoder_stack_f32(self.ptrs, n, xp, dp, m, &p.batch, pp, &p.fault, &failed, &at)
        cdef DecoderBlock last = self.blocks[n - 1]
        if rc != EC_OK:
            _raise_step_failure(fn, rc, failed, pa, p, (<DecoderBlock>self.blocks[at]).b.rope_max_pos,
                                f" in block {at}")
        return last.out_rows[:m]
