"""The AVX-VNNI gemm micro-kernels (csrc/x86/avx2/avx_vnni) run on a CPU
without AVX-VNNI, through an emulated vpdpbusd.

The native suite runs them only where the CPU has AVX-VNNI (Alder Lake and
later, Zen 5), so on this project's AVX2 development box they would never
execute. Here the feature's sources are compiled with the avx2 tier's flags
and a forced-include shim (`avx_vnni_emu/vnni_shim.h`) that defines
`_mm256_dpbusd_avx_epi32` as a lane loop from the Intel SDM's definition,
loaded with ctypes, and called directly (no dispatch) on every tile shape
(mr 1..4, nr 1..8) and on whole matrices cut into tiles as the driver does.
Their raw sums must be bit for bit the scalar kernel's (the contract for
these types: the block dot products are exact integers) and within the
float64 reference's bound.

What emulation cannot show: speed, and instruction-encoding problems (the
real build compiles the same C with -mavxvnni; only vpdpbusd's lowering
differs).
"""

from __future__ import annotations

import ctypes
import platform
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from support.quant import NEEDS_GGUF, assert_within, linear_reference, random_weights, use

from edgecore import ops

CC = "gcc"
ROOT = Path(__file__).resolve().parents[2]
SOURCES = ROOT / "csrc" / "x86" / "avx2" / "avx_vnni"
SHIM = Path(__file__).resolve().parent / "avx_vnni_emu" / "vnni_shim.h"
# setup.py's COMMON_FLAGS and the avx2 tier's flags, as a shared library
FLAGS = [
    "-O2",
    "-std=gnu11",
    "-Wall",
    "-Wextra",
    "-ffp-contract=off",
    "-fno-math-errno",
    "-fPIC",
    "-shared",
    "-mavx2",
    "-mfma",
    "-mf16c",
    "-include",
    str(SHIM),
    f"-I{ROOT / 'csrc' / 'include'}",
    f"-I{ROOT / 'csrc'}",
]
TYPES = {"q8_0": 34, "q4_0": 18, "q4_1": 20, "q5_0": 22, "q5_1": 24}
MR, NR = 4, 8


def _skip_reason() -> str | None:
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return f"the emulation runs on x86_64 hosts (AVX2 underneath); this is {platform.machine()}"
    if not SOURCES.is_dir():
        return f"kernel sources not found at {SOURCES} (run from a source checkout)"
    if shutil.which(CC) is None:
        return f"no C compiler ({CC}) on PATH"
    if "avx2" not in ops.capabilities()["available"]:
        return "this CPU has no AVX2+FMA+F16C for the emulation to run on"
    return None


SKIP = _skip_reason()
pytestmark = pytest.mark.skipif(SKIP is not None, reason=f"LOUD SKIP: AVX-VNNI kernels not emulated: {SKIP}")


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    out = tmp_path_factory.mktemp("vnni_emu") / "libvnni_emu.so"
    srcs = sorted(str(p) for p in SOURCES.glob("*.c"))
    proc = subprocess.run([CC, *FLAGS, *srcs, "-o", str(out)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"the AVX-VNNI kernels do not compile with the emulation shim:\n{proc.stdout}{proc.stderr}")
    lib = ctypes.CDLL(str(out))
    for name in TYPES:
        fn = getattr(lib, f"ec_qgemm_{name}_avx_vnni")
        fn.restype = None
        s, p = ctypes.c_size_t, ctypes.c_void_p
        fn.argtypes = [s, s, s, p, s, p, s, p, s]
    return lib


def run_tiles(lib, name, x, w):
    """y = x W^T through the VNNI kernel, cut into MR x NR tiles (tails smaller)."""
    m, k = x.shape
    n = w.shape[0]
    xq = ops.quantize_activations(x, "q8_32")
    y = np.full((m, n), np.nan, np.float32)
    fn = getattr(lib, f"ec_qgemm_{name}_avx_vnni")
    xs, ws = xq.shape[1], w.shape[1]
    for m0 in range(0, m, MR):
        for j0 in range(0, n, NR):
            fn(
                k,
                min(MR, m - m0),
                min(NR, n - j0),
                xq.ctypes.data + m0 * xs,
                xs,
                w.ctypes.data + j0 * ws,
                ws,
                y.ctypes.data + (m0 * n + j0) * 4,
                n,
            )
    return y


def inputs(rng, m, k):
    # per-block magnitudes vary, as hidden states do
    scale = np.exp(rng.uniform(-2, 1, (m, k // 32, 1))).repeat(32, 1).reshape(m, k)
    return (rng.standard_normal((m, k)) * scale).astype(np.float32)


@pytest.mark.parametrize("name", list(TYPES))
def test_every_tile_shape_equals_scalar_kernel(lib, name):
    """Each (mr, nr) tile alone, bitwise against the scalar kernel's raw sums."""
    rng = np.random.default_rng(list(TYPES).index(name))
    fn = getattr(lib, f"ec_qgemm_{name}_avx_vnni")
    for k in (32, 96, 576):
        x, w = inputs(rng, MR, k), random_weights(rng, name, NR, k)
        with use(("scalar", ())):
            want = ops.linear(x, w, wtype=name)
        xq = ops.quantize_activations(x, "q8_32")
        for mr in range(1, MR + 1):
            for nr in range(1, NR + 1):
                y = np.full((mr, nr), np.nan, np.float32)
                fn(k, mr, nr, xq.ctypes.data, xq.shape[1], w.ctypes.data, w.shape[1], y.ctypes.data, nr)
                np.testing.assert_array_equal(y, want[:mr, :nr], err_msg=f"{name} k={k} mr={mr} nr={nr}")


@NEEDS_GGUF
@pytest.mark.parametrize("name", list(TYPES))
def test_matrices_match_scalar_and_float64_reference(lib, name):
    rng = np.random.default_rng(100 + list(TYPES).index(name))
    for m, n, k in [(1, 300, 576), (3, 129, 64), (8, 64, 1536), (37, 50, 288)]:
        x, w = inputs(rng, m, k), random_weights(rng, name, n, k)
        y = run_tiles(lib, name, x, w)
        with use(("scalar", ())):
            want = ops.linear(x, w, wtype=name)
        np.testing.assert_array_equal(y, want, err_msg=f"{name} m={m} n={n} k={k}")
        ref, tol = linear_reference(x, w, name)
        assert_within(y, ref, tol, f"{name} m={m} n={n} k={k}")


def test_emulated_dpbusd_is_the_sdm_definition(tmp_path):
    """The shim itself, against NumPy: unsigned x signed bytes, four per lane, wrapping."""
    rng = np.random.default_rng(7)
    src = tmp_path / "probe.c"
    src.write_text(
        "#include <immintrin.h>\n"
        "void probe(const void *s, const void *a, const void *b, void *out) {\n"
        "  __m256i r = _mm256_dpbusd_avx_epi32(_mm256_loadu_si256(s), _mm256_loadu_si256(a), _mm256_loadu_si256(b));\n"
        "  _mm256_storeu_si256(out, r);\n}\n"
    )
    so = tmp_path / "probe.so"
    subprocess.run([CC, *FLAGS, str(src), "-o", str(so)], check=True)
    probe = ctypes.CDLL(str(so)).probe
    probe.restype = None
    probe.argtypes = [ctypes.c_void_p] * 4
    for _ in range(50):
        s = rng.integers(-(2**31), 2**31, 8, dtype=np.int64).astype(np.int32)
        a = rng.integers(0, 256, 32, dtype=np.uint8)
        b = rng.integers(-128, 128, 32, dtype=np.int64).astype(np.int8)
        out = np.empty(8, np.int32)
        probe(s.ctypes.data, a.ctypes.data, b.ctypes.data, out.ctypes.data)
        want = (s.astype(np.int64) + (a.astype(np.int64) * b).reshape(8, 4).sum(1) + 2**31) % 2**32 - 2**31
        np.testing.assert_array_equal(out, want.astype(np.int32))
