"""Widen F32 / F16 / BF16 tensors to float32 for the kernels."""

from __future__ import annotations

import numpy as np

from edgecore import ops

FLOAT_DTYPES = ("F32", "F16", "BF16")


def to_float32(src: np.ndarray, dtype: str | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """``src`` as a C-contiguous, aligned float32 array, ready for the kernels.

    ``dtype`` is the safetensors dtype of ``src``: it may be left out for
    float32 and float16 arrays, and must be ``"BF16"`` for bfloat16 data
    (a ``uint16`` array could as well hold U16 integers, so it is never
    guessed). F16 and BF16 are widened exactly by the C kernels. An aligned
    contiguous F32 ``src`` is returned as is (no copy, possibly a read-only
    view into a mapped file) unless ``out`` is given. With ``out`` (a
    writable float32 array with as many elements), the result is written
    there and ``out`` is returned.
    """
    if not isinstance(src, np.ndarray):
        raise TypeError(f"to_float32: src must be a NumPy array, got {type(src).__name__}")
    if dtype is None:
        dtype = {np.dtype("<f4"): "F32", np.dtype("<f2"): "F16"}.get(src.dtype)
        if dtype is None:
            hint = " (pass dtype='BF16' for bfloat16 data)" if src.dtype == np.uint16 else ""
            raise TypeError(f"to_float32: cannot tell the safetensors dtype of a {src.dtype} array{hint}; "
                            f"it converts {', '.join(FLOAT_DTYPES)}")
    expected = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2")}.get(dtype)
    if expected is None:
        raise TypeError(f"to_float32: dtype must be one of {', '.join(FLOAT_DTYPES)}, got {dtype!r}")
    if src.dtype != expected:
        raise TypeError(f"to_float32: a {dtype} tensor must be a {expected} array, got {src.dtype}")
    if out is not None and (not isinstance(out, np.ndarray) or out.dtype != np.float32):
        raise TypeError("to_float32: out must be a float32 NumPy array")
    if out is not None and out.size != src.size:
        raise ValueError(f"to_float32: out has {out.size} elements, src has {src.size}")

    # The kernels take aligned contiguous input; a view into a file whose
    # offsets are not a multiple of the element size gets one copy here.
    source = src if src.flags.c_contiguous and src.flags.aligned else np.array(src, order="C")
    if dtype == "F32":
        if out is None:
            return source
        np.copyto(out, source.reshape(out.shape))
        return out
    widen = ops.bf16_to_f32 if dtype == "BF16" else ops.f16_to_f32
    return widen(source, out=out)
