# Linear ops: the float32 fused linear and the weight-type driver
# (included by _kernels.pyx).

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


# ---- the weight-type driver ---------------------------------------------------

cdef dict _LINEAR_ERRORS = {
    EC_ERR_WTYPE: "unknown weight type", EC_ERR_K: "K is not a multiple of the block",
    EC_ERR_SCRATCH: "scratch too small", EC_ERR_ARG: "invalid combination of arguments",
}


# argument names for the messages, built once (a call must not format strings)
cdef tuple _W_NAMES = tuple(f"weights[{i}]" for i in range(EC_LINEAR_MAX_OUTS))
cdef tuple _B_NAMES = tuple(f"biases[{i}]" for i in range(EC_LINEAR_MAX_OUTS))
cdef tuple _O_NAMES = tuple(f"outs[{i}]" for i in range(EC_LINEAR_MAX_OUTS))


cdef list _as_wtypes(object wtypes, Py_ssize_t count, str fn):
    """One wtype for every weight, or a sequence of one per weight."""
    if isinstance(wtypes, (str, int, np.integer)):
        return [wtypes] * count
    try:
        result = list(wtypes)
    except TypeError:
        raise TypeError(f"{fn}: wtypes must be a weight type or a sequence of them, "
                        f"got {type(wtypes).__name__}") from None
    if len(result) != count:
        raise ValueError(f"{fn}: {count} weights but {len(result)} wtypes")
    return result


def linear_scratch_bytes(wtypes, Py_ssize_t m, Py_ssize_t k, *, bint refine=False):
    """Bytes of scratch a ``linear`` / ``linear_multi`` call with these
    weight types and an [m, k] input needs (x quantized once per activation
    format, twice as many rows with ``refine``; 0 if every type reads float32
    x). Pass a uint8 array of at least this size as ``scratch=`` to make the call allocation-free."""
    cdef str fn = "linear_scratch_bytes"
    cdef list names = _as_wtypes(wtypes, 1, fn) if isinstance(wtypes, (str, int, np.integer)) else list(wtypes)
    cdef int ids[EC_LINEAR_MAX_OUTS]
    cdef size_t bytes = 0
    if not 1 <= len(names) <= EC_LINEAR_MAX_OUTS:
        raise ValueError(f"{fn}: between 1 and {EC_LINEAR_MAX_OUTS} weight types, got {len(names)}")
    if m < 0 or k < 0:
        raise ValueError(f"{fn}: m and k must be >= 0, got m={m}, k={k}")
    for i, w in enumerate(names):
        ids[i] = _wtype(w, fn).id
        if k % <Py_ssize_t>ec_wtype_find(ids[i]).block_elems:
            raise ValueError(f"{fn}: {_wname(ec_wtype_find(ids[i]))} needs K to be a multiple of "
                             f"{ec_wtype_find(ids[i]).block_elems}, got k={k}")
    ec_linear_scratch_bytes(ids, len(names), m, k, refine, &bytes)
    return bytes


cdef int _raise_overlap(str fn, str oname) except -1:
    raise ValueError(f"{fn}: {oname} must not overlap x, the weights, the biases or another output")


cdef object _run_linear(str fn, object x, list weights, list biases, list wtypes, object activation, bint glu,
                        object outs, bint transposed, object scratch, bint refine):
    cdef cnp.ndarray xa = _as_array(x, fn, "x")
    cdef cnp.ndarray wa, ba, ya, sa
    cdef cnp.npy_intp m, k, n
    cdef cnp.npy_intp dims[2]
    cdef ec_linear_out c_outs[EC_LINEAR_MAX_OUTS]
    cdef int ids[EC_LINEAR_MAX_OUTS]
    cdef const ec_wtype_info *t
    cdef size_t need = 0, have = 0
    cdef void *scratch_ptr = NULL
    cdef int act, rc
    cdef Py_ssize_t count = len(weights), o
    cdef bint single = fn == "linear"

    _check(xa, cnp.NPY_FLOAT32, fn, "x", False)
    cdef int xnd = cnp.PyArray_NDIM(xa)
    if xnd == 2:
        m, k = cnp.PyArray_DIM(xa, 0), cnp.PyArray_DIM(xa, 1)
    elif xnd == 1:
        m, k = 1, cnp.PyArray_DIM(xa, 0)
    else:
        raise ValueError(f"{fn}: x must be [M, K] or [K], got shape {_shape(xa)}")
    try:
        act = _ACTIVATION_CODES[activation]
    except (KeyError, TypeError):
        raise ValueError(f"{fn}: activation must be one of {', '.join(ACTIVATIONS)}; got {activation!r}") from None
    if not 1 <= count <= EC_LINEAR_MAX_OUTS:
        raise ValueError(f"{fn}: between 1 and {EC_LINEAR_MAX_OUTS} weights, got {count}")
    if glu and count != 2:
        raise ValueError(f"{fn}: glu=True needs exactly two weights (gate, up), got {count}")
    if biases is not None and len(biases) != count:
        raise ValueError(f"{fn}: {count} weights but {len(biases)} biases")
    if outs is not None and len(outs) != count:
        raise ValueError(f"{fn}: {count} weights but {len(outs)} outs")

    arrays = [xa]  # everything the outputs and scratch must not overlap
    results = []
    for o in range(count):
        wname = "weight" if single else _W_NAMES[o]
        t = _wtype(wtypes[o], fn)
        ids[o] = t.id
        wa = _as_array(weights[o], fn, wname)
        _check_weight(wa, t, k, transposed, fn, wname, &n)
        arrays.append(wa)
        c_outs[o].wtype = t.id
        c_outs[o].w = cnp.PyArray_DATA(wa)
        c_outs[o].n = n
        c_outs[o].transposed = transposed
        c_outs[o].bias = NULL
        b = None if biases is None else biases[o]
        if b is not None:
            bname = "bias" if single else _B_NAMES[o]
            ba = _as_array(b, fn, bname)
            _check(ba, cnp.NPY_FLOAT32, fn, bname, False)
            if cnp.PyArray_NDIM(ba) != 1 or cnp.PyArray_DIM(ba, 0) != n:
                raise ValueError(f"{fn}: {bname} must have shape ({n},), got {_shape(ba)}")
            arrays.append(ba)
            c_outs[o].bias = <const float *>cnp.PyArray_DATA(ba)
        if glu and o == 1 and <size_t>n != c_outs[0].n:
            raise ValueError(f"{fn}: glu=True needs gate and up of equal N, got {c_outs[0].n} and {n}")
        y = None if outs is None else outs[o]
        oname = "out" if single else _O_NAMES[o]
        if y is None:
            if xnd == 2:
                dims[0], dims[1] = m, n
            else:
                dims[0] = n
            ya = <cnp.ndarray>cnp.PyArray_EMPTY(xnd, dims, cnp.NPY_FLOAT32, 0)
        else:
            ya = _as_array(y, fn, oname)
            _check(ya, cnp.NPY_FLOAT32, fn, oname, True)
            if cnp.PyArray_NDIM(ya) != xnd or cnp.PyArray_DIM(ya, 0) != (m if xnd == 2 else n) or (
                    xnd == 2 and cnp.PyArray_DIM(ya, 1) != n):
                expected = (int(m), int(n)) if xnd == 2 else (int(n),)
                raise ValueError(f"{fn}: {oname} must have shape {expected}, got {_shape(ya)}")
        c_outs[o].y = <float *>cnp.PyArray_DATA(ya)
        results.append(ya)

    for o in range(count):
        ya = results[o]
        for a in arrays:
            if _overlaps(ya, a):
                _raise_overlap(fn, "out" if single else _O_NAMES[o])
        for i in range(o):
            if _overlaps(ya, results[i]):
                _raise_overlap(fn, _O_NAMES[o])

    ec_linear_scratch_bytes(ids, count, m, k, refine, &need)
    if need:
        if scratch is None:
            sa = np.empty(need, np.uint8)
        else:
            sa = _as_array(scratch, fn, "scratch")
            _check(sa, cnp.NPY_UINT8, fn, "scratch", True)
            have = <size_t>cnp.PyArray_NBYTES(sa)
            if have < need:
                raise ValueError(f"{fn}: scratch has {have} bytes, this call needs {need} "
                                 f"(ops.linear_scratch_bytes)")
            for a in arrays + results:  # only when the caller passes scratch
                if _overlaps(sa, a):
                    raise ValueError(f"{fn}: scratch must not overlap x, the weights, the biases or the outputs")
        scratch_ptr = cnp.PyArray_DATA(sa)
        have = <size_t>cnp.PyArray_NBYTES(sa)

    with nogil:
        rc = ec_linear_multi(<const float *>cnp.PyArray_DATA(xa), m, k, c_outs, count, act, glu, refine,
                             scratch_ptr, have)
    if rc != EC_OK:  # every condition is checked above; this would be a bug
        raise RuntimeError(f"{fn}: kernel rejected the arguments ({_LINEAR_ERRORS.get(rc, rc)})")
    return results


def linear(x, weight, bias=None, *, wtype, activation="none", out=None, bint transposed=False, scratch=None,
           bint refine=False):
    """y = activation(x @ W.T + bias) for a weight stored as ``wtype``.

    x: float32 [M, K] or [K]. weight, by type: f32 float32 [N, K] (or [K, N]
    with ``transposed=True``); f16 float16 or uint16 [N, K]; bf16 uint16
    [N, K]; block types (q8_0, q4_0, q4_1, q5_0, q5_1, q4_k, q5_k, q6_k)
    uint8 [N, K / block * block bytes], rows of GGML blocks. K must be a
    multiple of the type's block. bias: optional float32 [N]. out: optional
    float32 result array. scratch: optional uint8 array of at least
    ``linear_scratch_bytes(wtype, M, K, refine=refine)`` bytes (allocated
    per call when None) for x quantized to 8 bits (docs/quantization.md: the
    quantized types compute exact integer dot products against it).
    refine: for the 8-bit activation types, also quantize what the 8-bit
    blocks of each row leave out and add its product (two passes over one
    read of the weights; an input error about 250 times smaller). The f32,
    f16 and bf16 types read x exactly and ignore it.

    For a given tier, every output value is bitwise independent of M and of
    the thread count (docs/quantization.md).
    """
    return _run_linear("linear", x, [weight], [bias], [wtype], activation, False,
                       None if out is None else [out], transposed, scratch, refine)[0]


def linear_multi(x, weights, biases=None, *, wtypes, activation="none", bint glu=False, outs=None,
                 bint transposed=False, scratch=None, bint refine=False):
    """Several linears sharing one input, in one parallel run: returns
    ``[activation(x @ W_i.T + b_i) for each i]`` (x quantized once per format
    the types need; all outputs' columns split across threads together).

    weights: a sequence of weights (up to 16, types may differ); wtypes: one
    type for all, or one per weight; biases / outs: None or a sequence with
    None entries. With ``glu=True`` and two weights (gate, up) of equal N,
    the first result is ``activation(x @ Wg.T + bg) * (x @ Wu.T + bu)`` (SwiGLU
    with "silu", GeGLU with "gelu_tanh") and the second holds
    ``x @ Wu.T + bu``. Arguments as for ``linear``."""
    cdef str fn = "linear_multi"
    if isinstance(weights, np.ndarray) or not hasattr(weights, "__len__"):
        raise TypeError(f"{fn}: weights must be a sequence of weight arrays")
    weights = list(weights)
    return _run_linear(fn, x, weights, None if biases is None else list(biases), _as_wtypes(wtypes, len(weights), fn),
                       activation, glu, None if outs is None else list(outs), transposed, scratch, refine)
