# Cython boundary of the C kernels: check every argument, take the data
# pointers, release the GIL, call the dispatched kernel.
#
# Arguments are checked here (not in ops.py) because the routing kernels are
# called once per token per layer and must cost well under a microsecond from
# Python: the raw NumPy C-API checks below cost ~20 ns per array, a typed
# memoryview ~110 ns and a Python-level check several hundred.

cimport cython
cimport numpy as cnp
from cpython.mem cimport PyMem_RawFree, PyMem_RawMalloc
from libc.math cimport isfinite
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint64_t
from libc.string cimport memcpy, memset

import os

import numpy as np

cnp.import_array()

ACTIVATIONS = ("none", "relu", "gelu", "gelu_tanh", "silu")
cdef dict _ACTIVATION_CODES = {name: code for code, name in enumerate(ACTIVATIONS)}
cdef dict _TIER_BY_NAME = {ec_tier_name(t).decode(): t for t in range(EC_TIER_COUNT)}
cdef dict _DTYPE_NAMES = {cnp.NPY_FLOAT32: "float32", cnp.NPY_FLOAT16: "float16", cnp.NPY_INT32: "int32",
                          cnp.NPY_INT64: "int64", cnp.NPY_UINT8: "uint8", cnp.NPY_UINT16: "uint16",
                          cnp.NPY_UINT64: "uint64"}

# One extension module, split by op family into included files: the
# dispatch table and the thread pool are process-global C state, which
# separate extension modules would each get a copy of.
include "_checks.pxi"
include "_quant.pxi"
include "_linear.pxi"
include "_routing.pxi"
include "_convert.pxi"
include "_pertoken.pxi"
include "_block.pxi"
include "_tiers.pxi"

_configure_from_env()
