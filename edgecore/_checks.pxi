# Argument checks shared by every op family (included by _kernels.pyx).

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
