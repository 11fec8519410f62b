# Reduced-precision widening (included by _kernels.pyx).

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
