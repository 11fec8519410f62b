# Weight types: the registry as Python sees it, weight argument checks, and
# the quantize / dequantize ops (included by _kernels.pyx).

FORMATS = ("f32", "q8_32", "q8_256")  # ec_act_format, in enum order

cdef dict _WT_ID_BY_NAME = {}
cdef list _WT_NAMES = []
for _i in range(ec_wtype_count()):
    _WT_ID_BY_NAME[ec_wtype_at(_i).name.decode()] = ec_wtype_at(_i).id
    _WT_NAMES.append(ec_wtype_at(_i).name.decode())


cdef const ec_wtype_info *_wtype(object wtype, str fn) except NULL:
    """The registry entry for a type given by name ("q4_k") or GGML id (12)."""
    cdef const ec_wtype_info *t = NULL
    if type(wtype) is str and wtype in _WT_ID_BY_NAME:  # the per-call path: one dict lookup
        return ec_wtype_find(_WT_ID_BY_NAME[wtype])
    if isinstance(wtype, str):
        if wtype.lower() in _WT_ID_BY_NAME:
            t = ec_wtype_find(_WT_ID_BY_NAME[wtype.lower()])
    elif isinstance(wtype, (int, np.integer)) and not isinstance(wtype, bool):
        if -2**31 <= wtype < 2**31:
            t = ec_wtype_find(int(wtype))
    else:
        raise TypeError(f"{fn}: wtype must be a weight type name or GGML type id, got {type(wtype).__name__}")
    if t == NULL:
        raise ValueError(f"{fn}: unknown weight type {wtype!r}; expected one of {', '.join(_WT_NAMES)} "
                         f"(or their GGML type ids)")
    return t


cdef str _wname(const ec_wtype_info *t):
    return t.name.decode()


cdef str _weight_dtype(const ec_wtype_info *t):
    if t.id == EC_WT_F32:
        return "float32"
    if t.block_elems > 1:
        return "uint8 (its blocks)"
    return "float16 or uint16" if t.name == b"f16" else "uint16 (bfloat16 bits)"


cdef int _check_weight_dtype(cnp.ndarray wa, const ec_wtype_info *t, str fn, str name) except -1:
    cdef int typenum = cnp.PyArray_TYPE(wa)
    cdef int want
    if t.id == EC_WT_F32:
        want = cnp.NPY_FLOAT32
    elif t.block_elems > 1:
        want = cnp.NPY_UINT8
    elif t.name == b"f16" and typenum == cnp.NPY_FLOAT16:
        want = cnp.NPY_FLOAT16
    else:
        want = cnp.NPY_UINT16
    if typenum != want or not cnp.PyArray_ISNOTSWAPPED(wa):
        raise TypeError(f"{fn}: {name} for {_wname(t)} must be a native-byte-order {_weight_dtype(t)} array, "
                        f"got dtype {wa.dtype}")
    _check(wa, want, fn, name, False)
    if cnp.PyArray_NDIM(wa) != 2:
        raise ValueError(f"{fn}: {name} for {_wname(t)} must be 2-D [N, row], got shape {_shape(wa)}")
    return 0


cdef int _check_weight(cnp.ndarray wa, const ec_wtype_info *t, cnp.npy_intp k, bint transposed, str fn,
                       str name, cnp.npy_intp *n_out) except -1:
    """Check a weight for x with K = k: dtype, layout, K a block multiple;
    set n_out to N."""
    _check_weight_dtype(wa, t, fn, name)
    if transposed and t.id != EC_WT_F32:
        raise ValueError(f"{fn}: transposed=True is for f32 weights only ({_wname(t)} is [N, K])")
    if k % <cnp.npy_intp>t.block_elems:
        raise ValueError(f"{fn}: {_wname(t)} weights need K to be a multiple of {t.block_elems}, "
                         f"x has K={k}")
    cdef cnp.npy_intp row = <cnp.npy_intp>ec_wtype_row_bytes(t, k) // (1 if t.block_elems > 1 else t.block_bytes)
    cdef cnp.npy_intp d0 = cnp.PyArray_DIM(wa, 0), d1 = cnp.PyArray_DIM(wa, 1)
    if transposed:
        n_out[0], d0 = d1, d0
        if d0 != k:
            raise ValueError(f"{fn}: {name} shape {_shape(wa)} does not match K={k}: expected [K, N]")
    else:
        n_out[0] = d0
        if d1 != row:
            unit = "bytes" if t.block_elems > 1 else "elements"
            raise ValueError(f"{fn}: {name} shape {_shape(wa)} does not match x with K={k}: {_wname(t)} "
                             f"expects [N, {row}] ({row} {unit} per row)")
    if n_out[0] < 1:
        raise ValueError(f"{fn}: {name} has no output features (N=0)")
    return 0


cdef cnp.npy_intp _weight_k(cnp.ndarray wa, const ec_wtype_info *t, str fn, str name) except -1:
    """K of an [N, row] weight (from its row length)."""
    _check_weight_dtype(wa, t, fn, name)
    cdef cnp.npy_intp row = cnp.PyArray_DIM(wa, 1)
    if t.block_elems == 1:
        return row
    if row % <cnp.npy_intp>t.block_bytes:
        raise ValueError(f"{fn}: {name} rows of {row} bytes are not whole {_wname(t)} blocks "
                         f"({t.block_bytes} bytes each)")
    return row // <cnp.npy_intp>t.block_bytes * <cnp.npy_intp>t.block_elems


cdef str _variant_label(int tier, unsigned features):
    names = [ec_tier_name(tier).decode()]
    for bit in range(EC_FEATURE_COUNT):
        if features & (1u << bit):
            names.append(ec_feature_name(bit).decode())
    return "+".join(names)


def weight_types():
    """The weight-type registry: one dict per type, in registry order.

    name, id (GGML type id), block_elems, block_bytes, activations (the
    format its dot product consumes: "f32", "q8_32" or "q8_256"),
    quantize (whether ``quantize`` supports it), and variants: the compiled
    micro-kernel variants, each {"tier", "features", "label", "gemm",
    "dequantize", "mr", "nr", "packs"} (packs: decodes a strip of weight
    rows once for all M tiles of a call) (f32 has no gemm variant: it runs the tier's
    tuned f32 linear kernel)."""
    cdef const ec_wtype_info *t
    cdef ec_wvariant_info v
    result = []
    for i in range(ec_wtype_count()):
        t = ec_wtype_at(i)
        variants = []
        for j in range(ec_wtype_variant_count(t.id)):
            ec_wtype_variant(t.id, j, &v)
            variants.append({
                "tier": ec_tier_name(v.tier).decode(),
                "features": [ec_feature_name(b).decode() for b in range(EC_FEATURE_COUNT) if v.features & (1u << b)],
                "label": _variant_label(v.tier, v.features),
                "gemm": bool(v.has_gemm), "dequantize": bool(v.has_dequant), "mr": v.mr, "nr": v.nr,
                "packs": bool(v.packs),
            })
        result.append({
            "name": t.name.decode(), "id": t.id, "block_elems": t.block_elems, "block_bytes": t.block_bytes,
            "activations": FORMATS[t.act_format], "quantize": bool(t.can_quantize), "variants": variants,
        })
    return result


def kernel_dispatch(wtype):
    """Which variants the dispatcher uses for ``wtype`` now (active tier and
    features): {"gemm", "dequantize", "activations"}, each a label such as
    "scalar" or "avx512+avx512_vnni" ("activations" is None for types that
    take float32 activations)."""
    cdef const ec_wtype_info *t = _wtype(wtype, "kernel_dispatch")
    cdef ec_wtype_dispatch d
    ec_wtype_dispatch_get(t.id, &d)
    return {
        "gemm": _variant_label(d.gemm_tier, d.gemm_features),
        "dequantize": _variant_label(d.dequant_tier, d.dequant_features),
        "activations": None if d.actq_tier < 0 else _variant_label(d.actq_tier, d.actq_features),
    }


def quantize(x, wtype):
    """Quantize float32 ``x`` ([rows, K] or [K]) to ``wtype``, bit for bit as
    the gguf package's ``gguf.quants.quantize`` does: q8_0, q4_0, q4_1,
    q5_0, q5_1 (K a multiple of 32) give uint8 [rows, row bytes]; f16 gives
    float16 and bf16 uint16 [rows, K] (the weight layouts ``linear`` takes).
    A 1-D x gives a 1-D result. Threaded over rows."""
    cdef str fn = "quantize"
    cdef const ec_wtype_info *t = _wtype(wtype, fn)
    cdef cnp.ndarray xa = _as_array(x, fn, "x")
    cdef cnp.ndarray out
    cdef cnp.npy_intp rows, k
    cdef int rc
    if not t.can_quantize:
        supported = [w["name"] for w in weight_types() if w["quantize"]]
        raise ValueError(f"{fn}: no quantizer for {_wname(t)}; supported: {', '.join(supported)}")
    _check(xa, cnp.NPY_FLOAT32, fn, "x", False)
    cdef int nd = cnp.PyArray_NDIM(xa)
    if nd == 2:
        rows, k = cnp.PyArray_DIM(xa, 0), cnp.PyArray_DIM(xa, 1)
    elif nd == 1:
        rows, k = 1, cnp.PyArray_DIM(xa, 0)
    else:
        raise ValueError(f"{fn}: x must be [rows, K] or [K], got shape {_shape(xa)}")
    if k % <cnp.npy_intp>t.block_elems:
        raise ValueError(f"{fn}: {_wname(t)} needs K to be a multiple of {t.block_elems}, x has K={k}")
    if t.block_elems > 1:
        shape = (rows, <cnp.npy_intp>ec_wtype_row_bytes(t, k))
        out = np.empty(shape, np.uint8)
    else:
        out = np.empty((rows, k), np.float16 if t.name == b"f16" else np.uint16)
    with nogil:
        rc = ec_quantize(t.id, <const float *>cnp.PyArray_DATA(xa), rows, k, cnp.PyArray_DATA(out))
    if rc != EC_OK:
        raise RuntimeError(f"{fn}: kernel error {rc}")  # arguments were checked above
    return out[0] if nd == 1 else out


def dequantize_rows(weight, rows, *, wtype, out=None):
    """Rows of a weight matrix as float32: ``out[..., :] = W(rows[...], :)``
    (an embedding lookup: only the selected rows are read). weight: the
    layout ``linear`` takes for ``wtype`` ([N, row]); rows: integer array of
    any shape, each in [0, N). Returns float32 ``rows.shape + (K,)``, bit for
    bit what ``gguf.quants.dequantize`` gives for those rows."""
    cdef str fn = "dequantize_rows"
    cdef const ec_wtype_info *t = _wtype(wtype, fn)
    cdef cnp.ndarray wa = _as_array(weight, fn, "weight")
    cdef cnp.ndarray ra = _as_array(rows, fn, "rows")
    cdef cnp.ndarray ya
    cdef cnp.npy_intp k = _weight_k(wa, t, fn, "weight")
    cdef cnp.npy_intp n_rows = cnp.PyArray_DIM(wa, 0)
    cdef size_t bad = 0
    cdef int rc
    if not cnp.PyArray_ISINTEGER(ra):
        raise TypeError(f"{fn}: rows must be an integer array, got dtype {ra.dtype}")
    if cnp.PyArray_SIZE(ra) and (ra.min() < 0 or ra.max() >= n_rows):
        flat = ra.reshape(-1)
        i = int(np.flatnonzero((flat < 0) | (flat >= n_rows))[0])
        raise ValueError(f"{fn}: rows[{i}] = {flat[i]} is outside [0, {n_rows}) (weight has {n_rows} rows)")
    ra = np.ascontiguousarray(ra, dtype=np.int64)
    shape = np.shape(ra) + (int(k),)
    if out is None:
        ya = np.empty(shape, np.float32)
    else:
        ya = _as_array(out, fn, "out")
        _check(ya, cnp.NPY_FLOAT32, fn, "out", True)
        if np.shape(ya) != shape:
            raise ValueError(f"{fn}: out must have shape {shape}, got {_shape(ya)}")
        if _overlaps(ya, wa):
            raise ValueError(f"{fn}: out must not overlap weight")
    with nogil:
        rc = ec_dequantize_rows(t.id, cnp.PyArray_DATA(wa), n_rows, k, <const int64_t *>cnp.PyArray_DATA(ra),
                                cnp.PyArray_SIZE(ra), <float *>cnp.PyArray_DATA(ya), &bad)
    if rc != EC_OK:
        raise RuntimeError(f"{fn}: kernel error {rc} at rows[{bad}]")  # checked above
    return ya


def dequantize(weight, *, wtype):
    """The whole weight matrix as float32 [N, K] (threaded over rows)."""
    cdef str fn = "dequantize"
    cdef const ec_wtype_info *t = _wtype(wtype, fn)
    cdef cnp.ndarray wa = _as_array(weight, fn, "weight")
    cdef cnp.npy_intp k = _weight_k(wa, t, fn, "weight")
    cdef cnp.npy_intp n_rows = cnp.PyArray_DIM(wa, 0)
    cdef cnp.ndarray ya = np.empty((n_rows, k), np.float32)
    cdef int rc
    with nogil:
        rc = ec_dequantize_rows(t.id, cnp.PyArray_DATA(wa), n_rows, k, NULL, 0, <float *>cnp.PyArray_DATA(ya),
                                NULL)
    if rc != EC_OK:
        raise RuntimeError(f"{fn}: kernel error {rc}")
    return ya


def quantize_activations(x, str format):
    """The linear driver's activation quantization, exposed for tests and
    tools: float32 x [M, K] -> uint8 [M, row bytes] of ``format`` blocks
    ("q8_32": 40-byte blocks of 32, "q8_256": 292-byte blocks of 256; the
    layouts and rounding are in docs/quantization.md)."""
    cdef str fn = "quantize_activations"
    cdef cnp.ndarray xa = _as_array(x, fn, "x")
    cdef cnp.ndarray out
    cdef int rc
    if format not in FORMATS[1:]:
        raise ValueError(f"{fn}: format must be one of {', '.join(FORMATS[1:])}, got {format!r}")
    cdef int f = FORMATS.index(format)
    _check(xa, cnp.NPY_FLOAT32, fn, "x", False)
    if cnp.PyArray_NDIM(xa) != 2:
        raise ValueError(f"{fn}: x must be [M, K], got shape {_shape(xa)}")
    cdef cnp.npy_intp m = cnp.PyArray_DIM(xa, 0), k = cnp.PyArray_DIM(xa, 1)
    cdef size_t row = ec_act_row_bytes(f, k)
    if row == 0:
        raise ValueError(f"{fn}: {format} needs K to be a positive multiple of {32 if f == EC_AF_Q8_32 else 256}, "
                         f"x has K={k}")
    out = np.empty((m, row), np.uint8)
    with nogil:
        rc = ec_quantize_activations(f, <const float *>cnp.PyArray_DATA(xa), m, k, cnp.PyArray_DATA(out))
    if rc != EC_OK:
        raise RuntimeError(f"{fn}: kernel error {rc}")
    return out
