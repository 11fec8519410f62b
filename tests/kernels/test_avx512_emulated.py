"""The avx512 kernels run on a CPU without AVX-512, through SIMD Everywhere.

The native suite can only force tiers the CPU supports, so on an AVX2-only
machine (this project's development box, most CI runners) it never executes
the avx512 kernels. This module compiles `csrc/x86/avx512/*.c` with
`-mavx2 -mfma -mf16c` and a forced-include shim (`avx512_emu/simde_avx512.h`)
that maps every `_mm512_*` intrinsic, `__m512` and `__mmask16` to SIMDe's
implementation on native 256-bit halves, links it with the scalar reference
and a small driver (`avx512_emu/driver.c`), and calls the kernels directly
through ctypes (no dispatch), checking them on the cases the native suite
uses: float64 NumPy references, integer-valued exactness, the scalar kernel,
ties/NaN for top-k, EMA clamps, exhaustive bf16/f16, and the per-token
kernels (norms, RoPE, f16 KV store, paged attention) through their own C
drivers (csrc/common/{norms,rope,kvcache,attention}.c) against the float64
references of support/pertoken.py. The driver puts every
buffer flush against a guard page, so reading or writing one element past
an array fails the test.

What emulation cannot show: speed, and instruction-encoding problems (the
real build compiles these files with -mavx512f and the same C; only the
compiler's lowering of each intrinsic differs).

Needs gcc and the SIMDe headers (Debian: `apt-get install libsimde-dev`) on
an x86_64 host with AVX2; otherwise every test here skips, saying why.
"""

from __future__ import annotations

import ctypes
import platform
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.kernels import EDGE_SIZES, assert_close, ema_ref, linear_ref, topk_ref
from support.pertoken import (
    U,
    assert_attention_close,
    attention_ref,
    batch_rows,
    build_paged,
    layer_norm_ref,
    norm_tolerance,
    rms_norm_ref,
    rope_ref,
    rope_tables,
)

from edgecore import ops

CC = "gcc"
ROOT = Path(__file__).resolve().parents[2]
CSRC = ROOT / "csrc"
EMU = Path(__file__).resolve().parent / "avx512_emu"
# setup.py's COMMON_FLAGS (the package build) plus -fPIC for a shared library,
# at -O2 instead of -O3: the same semantics (no fast-math, no FMA contraction),
# in a third of the compile time under SIMDe's large headers.
FLAGS = ["-O2", "-std=gnu11", "-Wall", "-Wextra", "-ffp-contract=off", "-fno-math-errno", "-fPIC"]
# what the emulated 512-bit operations run on; no -mavx512*: SIMDe must not
# find native AVX-512. -Wno-psabi: SIMDe's 64-byte vectors are passed by value
# between its helpers, an ABI note that only matters across compilers.
EMU_FLAGS = ["-mavx2", "-mfma", "-mf16c", "-Wno-psabi", "-include", str(EMU / "simde_avx512.h")]
INCLUDES = ["-I", str(CSRC / "include"), "-I", str(CSRC)]

SCALAR, AVX512 = 0, 2  # ec_tier values (csrc/include/edgecore/kernels.h)
ACT = {"none": 0, "relu": 1, "gelu": 2, "gelu_tanh": 3, "silu": 4}  # ec_activation
EMU_OK, EMU_FAULT = 0, 1  # driver.c return codes
TESTED_NAME = "avx512 (emulated via SIMDe)"
# quantize (+ wtypes): the Q8_0 KV store
PERTOKEN_DRIVERS = ("norms", "rope", "kvcache", "attention", "parallel_rows", "quantize", "wtypes")
QUANT_SCALAR = ("qgemm", "qdequant", "actquant", "qkernels", "epilogue")
# sub-feature folders of the avx512 tier (setup.py FEATURES) and the macros
# the package build defines for them
FEATURE_DIRS = ("vnni", "bf16")
FEATURE_MACROS = ["-DEC_BUILD_AVX512_VNNI=1", "-DEC_BUILD_AVX512_BF16=1"]
FEATURE_BITS = {1 << 1: "avx512_vnni", 1 << 2: "avx512_bf16"}  # ec_feature (kernels.h)


def _skip_reason() -> str | None:
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return f"the SIMDe emulation runs on x86_64 hosts (AVX2 underneath); this is {platform.machine()}"
    if not (CSRC / "x86" / "avx512").is_dir():
        return f"kernel sources not found at {CSRC} (run from a source checkout)"
    if shutil.which(CC) is None:
        return f"no C compiler ({CC}) on PATH"
    if "avx2" not in ops.capabilities()["available"]:
        return "this CPU has no AVX2+FMA+F16C for the emulation to run on"
    probe = subprocess.run(
        [CC, "-E", "-x", "c", "-", "-o", "/dev/null"],
        input="#include <simde/x86/avx512.h>\n",
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        return "SIMDe headers not found (<simde/x86/avx512.h>; Debian: apt-get install libsimde-dev)"
    return None


def _compile(out: Path) -> Path:
    # the tier with every sub-feature folder: SIMDe emulates VNNI and BF16 too,
    # and the table (qkernels_avx512.c) lists those lines under these macros
    avx512 = CSRC / "x86" / "avx512"
    sources = sorted(avx512.glob("*.c")) + [src for f in FEATURE_DIRS for src in sorted((avx512 / f).glob("*.c"))]
    jobs = [(src, FLAGS + EMU_FLAGS + FEATURE_MACROS) for src in sources]
    jobs += [(CSRC / "scalar" / "kernels_scalar.c", FLAGS), (EMU / "driver.c", FLAGS)]
    # the weight-type kernels' scalar reference, called through its table
    jobs += [(CSRC / "scalar" / f"{name}_scalar.c", FLAGS) for name in QUANT_SCALAR]
    # the per-token kernels run through their own C drivers (driver.c stubs the
    # dispatch table and the thread pool they call)
    jobs += [(CSRC / "scalar" / f"{name}_scalar.c", FLAGS) for name in ("pertoken", "attention")]
    jobs += [(CSRC / "common" / f"{name}.c", FLAGS) for name in PERTOKEN_DRIVERS]
    running = []
    for i, (src, flags) in enumerate(jobs):
        obj = out / f"{i}_{src.stem}.o"
        cmd = [CC, *flags, *INCLUDES, "-c", str(src), "-o", str(obj)]
        running.append((src, obj, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
    failures = []
    for src, _, proc in running:
        log, _ = proc.communicate()
        if proc.returncode != 0:
            failures.append(f"--- {src.relative_to(ROOT)}\n{log}")
    if failures:
        pytest.fail(
            "the avx512 kernels do not compile against SIMDe; an intrinsic SIMDe lacks needs a definition "
            "in tests/kernels/avx512_emu/simde_avx512.h\n" + "\n".join(failures),
            pytrace=False,
        )
    lib = out / "libedgecore_avx512_emu.so"
    link = subprocess.run(
        [CC, "-shared", *(str(obj) for _, obj, _ in running), "-lm", "-o", str(lib)], capture_output=True, text=True
    )
    if link.returncode != 0:
        pytest.fail(f"linking the emulated avx512 library failed:\n{link.stderr}", pytrace=False)
    return lib


def _ptr(a: np.ndarray | None) -> int | None:
    return None if a is None else a.ctypes.data


def _check(rc: int, what: str) -> None:
    assert rc != EMU_FAULT, f"{what}: the kernel read or wrote past the end of a buffer (guard page fault)"
    assert rc == EMU_OK, f"{what}: driver error {rc}"


class Emulated:
    """ctypes front end of driver.c: one tier's kernels, called directly."""

    def __init__(self, path: Path):
        lib = ctypes.CDLL(str(path))
        p, z, i, f = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_float
        lib.emu_linear.argtypes = [i, p, p, p, p, z, z, z, i, i, p, z]
        lib.emu_topk.argtypes = [i, p, p, z, z, z, p, p, p]
        lib.emu_ema.argtypes = [i, p, z, p, f, f, f]
        lib.emu_cvt.argtypes = [i, i, p, p, z]
        lib.emu_norm.argtypes = [i, i, p, p, p, p, p, z, z, f, i, p]
        lib.emu_rope.argtypes = [i, p, z, z, z, z, p, p, p, z, i, p]
        lib.emu_kv_store.argtypes = [i, p, p, z, p, p, i, z, z, z, z, p, z, z, p, p, p]
        lib.emu_attention.argtypes = [i, p, z, z, p, p, i, z, z, z, z, p, z, z, p, p, f, z, f, p, p]
        lib.emu_qline.argtypes = [i, i, p]
        lib.emu_qactline.argtypes = [i, i, p]
        lib.emu_qgemm.argtypes = [i, i, z, z, z, p, z, p, z, p, z, z, i]
        lib.emu_qdequant.argtypes = [i, i, p, z, p, z]
        lib.emu_qactquant.argtypes = [i, i, p, z, z, p, z]
        for fn in (
            lib.emu_linear,
            lib.emu_topk,
            lib.emu_ema,
            lib.emu_cvt,
            lib.emu_norm,
            lib.emu_rope,
            lib.emu_kv_store,
            lib.emu_attention,
            lib.emu_qline,
            lib.emu_qactline,
            lib.emu_qgemm,
            lib.emu_qdequant,
            lib.emu_qactquant,
        ):
            fn.restype = i
        self.lib = lib

    def linear(self, tier, x, w, b=None, activation="none", transposed=False, cuts=None):
        """y = act(x @ W.T + b), one kernel call per column range in `cuts`."""
        x, w = np.ascontiguousarray(x, np.float32), np.ascontiguousarray(w, np.float32)
        b = None if b is None else np.ascontiguousarray(b, np.float32)
        m, k = x.shape
        n = w.shape[1] if transposed else w.shape[0]
        assert w.shape == ((k, n) if transposed else (n, k))
        cuts = np.asarray([0, n] if cuts is None else cuts, np.uintp)
        y = np.full((m, n), np.nan, np.float32)  # an unwritten output stays NaN
        rc = self.lib.emu_linear(
            tier, _ptr(x), _ptr(w), _ptr(b), _ptr(y), m, n, k, int(transposed), ACT[activation], _ptr(cuts), len(cuts)
        )
        _check(rc, "linear")
        return y

    def topk(self, tier, logits, k, bonus=None):
        """(ids, weights, bad): bad is the kernel's return (-1 or the first bad row)."""
        logits = np.ascontiguousarray(logits, np.float32)
        t, e = logits.shape
        ids = np.full((t, k), -7, np.int32)
        weights = np.full((t, k), np.nan, np.float32)
        bad = np.zeros(1, np.int64)
        rc = self.lib.emu_topk(tier, _ptr(logits), _ptr(bonus), t, e, k, _ptr(ids), _ptr(weights), _ptr(bad))
        _check(rc, "top-k")
        return ids, weights, int(bad[0])

    def ema(self, tier, scores, activated, decay, boost, max_score):
        """The EMA pass on a copy of `scores` (ids deduplicated into a bitmap, as ops does)."""
        s = scores.copy()
        bits = np.zeros((len(s) + 63) // 64, np.uint64)
        for i in np.unique(activated):
            bits[i >> 6] |= np.uint64(1) << np.uint64(i & 63)
        _check(self.lib.emu_ema(tier, _ptr(s), len(s), _ptr(bits), decay, boost, max_score), "ema")
        return s

    def cvt(self, tier, half, src):
        src = np.ascontiguousarray(src, np.uint16)
        dst = np.full(src.shape, np.nan, np.float32)
        _check(self.lib.emu_cvt(tier, int(half), _ptr(src), _ptr(dst), src.size), "cvt")
        return dst

    def norm(self, tier, layer, x, w, b=None, eps=1e-5, delta=None, unit_offset=False):
        """(out, x after): out = norm(x (+ delta, stored to x))."""
        x = np.array(x, np.float32)
        m, d = x.shape
        out = np.full((m, d), np.nan, np.float32)
        rc = np.zeros(1, np.int32)
        r = self.lib.emu_norm(
            tier,
            int(layer),
            _ptr(x),
            _ptr(delta),
            _ptr(w),
            _ptr(b),
            _ptr(out),
            m,
            d,
            eps,
            1 if unit_offset else 0,
            _ptr(rc),
        )
        _check(r, "norm")
        assert rc[0] == 0, f"norm returned {rc[0]}"
        return out, x

    def rope(self, tier, x, positions, cos, sin, interleaved):
        x = np.array(x, np.float32)
        m, heads, hd = x.shape
        positions = np.ascontiguousarray(positions, np.int32)
        rc = np.zeros(1, np.int32)
        r = self.lib.emu_rope(
            tier,
            _ptr(x),
            m,
            heads,
            hd,
            2 * cos.shape[1],
            _ptr(positions),
            _ptr(cos),
            _ptr(sin),
            cos.shape[0],
            int(interleaved),
            _ptr(rc),
        )
        _check(r, "rope")
        assert rc[0] == 0, f"rope returned {rc[0]}"
        return x

    @staticmethod
    def _paged_args(k_cache, page_table, starts, pos0):
        n_pages, kv_heads, tokens, hd = k_cache.shape
        dtype = 1 if k_cache.dtype == np.float16 else 0
        return [
            dtype,
            n_pages,
            kv_heads,
            tokens,
            hd,
            _ptr(page_table),
            page_table.shape[0],
            page_table.shape[1],
            _ptr(starts),
            _ptr(pos0),
        ]

    def kv_store(self, tier, k, v, k_cache, v_cache, page_table, starts, pos0):
        """Stores into k_cache / v_cache in place; returns the entry point's code."""
        rc = np.zeros(1, np.int32)
        args = self._paged_args(k_cache, page_table, starts, pos0)
        r = self.lib.emu_kv_store(tier, _ptr(k), _ptr(v), k.shape[0], _ptr(k_cache), _ptr(v_cache), *args, _ptr(rc))
        _check(r, "kv_store")
        return int(rc[0])

    def attention(self, tier, q, k_cache, v_cache, page_table, starts, pos0, scale, window=0, softcap=0.0):
        q = np.ascontiguousarray(q, np.float32)
        m, heads, hd = q.shape
        out = np.full((m, heads * hd), -7.0, np.float32)
        rc = np.zeros(1, np.int32)
        args = self._paged_args(k_cache, page_table, starts, pos0)
        r = self.lib.emu_attention(
            tier, _ptr(q), m, heads, _ptr(k_cache), _ptr(v_cache), *args, scale, window, softcap, _ptr(out), _ptr(rc)
        )
        _check(r, "attention")
        assert rc[0] == 0, f"attention returned {rc[0]}"
        return out

    # ---- weight-type micro-kernels ----

    def qlines(self, tier) -> list[dict]:
        """The tier's weight table, line by line (index = line number)."""
        lines, info = [], np.zeros(7, np.int32)
        while self.lib.emu_qline(tier, len(lines), _ptr(info)) == 0:
            wtype, features, gemm, mr, nr, dequant, packed = (int(v) for v in info)
            lines.append(
                {
                    "wtype": wtype,
                    "features": features,
                    "gemm": bool(gemm),
                    "mr": mr,
                    "nr": nr,
                    "dequant": bool(dequant),
                    "packs": bool(packed),
                    "index": len(lines),
                }
            )
        return lines

    def qactlines(self, tier) -> list[dict]:
        lines, info = [], np.zeros(2, np.int32)
        while self.lib.emu_qactline(tier, len(lines), _ptr(info)) == 0:
            lines.append({"format": int(info[0]), "features": int(info[1]), "index": len(lines)})
        return lines

    def qgemm(self, tier, line, xq, w, k, mr, nr, packed=False):
        """Raw sums [m, n] of the activation blocks xq (bytes [m, row]) and the
        weight rows w (bytes [n, row]), in mr x nr tiles (packed: each strip of
        nr weight rows through the line's packer and packed kernel)."""
        xq, w = np.ascontiguousarray(xq), np.ascontiguousarray(w).view(np.uint8)
        m, n = xq.shape[0], w.shape[0]
        y = np.full((m, n), -7.0, np.float32)  # an unwritten output stays -7
        rc = self.lib.emu_qgemm(
            tier, line, k, m, n, _ptr(xq), xq.shape[1] if m else 0, _ptr(w), w.shape[1] if n else 0, _ptr(y), mr, nr,
            int(packed),
        )
        _check(rc, "qgemm")
        return y

    def qdequant(self, tier, line, w, k):
        """Each weight row -> float32, one call per row."""
        w = np.ascontiguousarray(w).view(np.uint8)
        out = np.full((w.shape[0], k), np.nan, np.float32)
        for r in range(w.shape[0]):
            row, o = np.ascontiguousarray(w[r]), np.full(k, np.nan, np.float32)
            _check(self.lib.emu_qdequant(tier, line, _ptr(row), row.size, _ptr(o), k), "dequant")
            out[r] = o
        return out

    def qactquant(self, tier, line, x, row_bytes):
        x = np.ascontiguousarray(x, np.float32)
        m, k = x.shape
        out = np.full((m, row_bytes), 0xAB, np.uint8)
        _check(self.lib.emu_qactquant(tier, line, _ptr(x), m, k, _ptr(out), row_bytes), "actquant")
        return out


@pytest.fixture(scope="module")
def emu(tmp_path_factory, tested_tiers) -> Emulated:
    reason = _skip_reason()
    if reason:
        pytest.skip(f"emulated AVX-512 check skipped: {reason}")
    emulated = Emulated(_compile(tmp_path_factory.mktemp("avx512_emu")))
    tested_tiers.add(TESTED_NAME)
    return emulated


def make(rng, m, n, k, transposed, bias=True):
    x = rng.standard_normal((m, k)).astype(np.float32)
    w = rng.standard_normal((k, n) if transposed else (n, k)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32) if bias else None
    return x, w, b


# ---- fused linear ---------------------------------------------------------------


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("m", [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33])
def test_linear_edge_sizes(emu, transposed, m):
    rng = np.random.default_rng(m)
    for n in EDGE_SIZES:
        k = EDGE_SIZES[(n * 7 + m) % len(EDGE_SIZES)]
        x, w, b = make(rng, m, n, k, transposed)
        ref, scale = linear_ref(x, w, b, transposed=transposed)
        assert_close(emu.linear(AVX512, x, w, b, transposed=transposed), ref, scale)


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("k", EDGE_SIZES + [255, 256, 257, 513, 1000])
def test_linear_exact_on_integers(emu, transposed, k):
    """Small integers keep every float32 partial sum exact: the result must
    equal the integer product bit for bit, whatever the tiling."""
    rng = np.random.default_rng(k)
    shapes = [(1, 1), (1, 9), (2, 17), (3, 33), (4, 7), (5, 65), (7, 31), (8, 32), (9, 20), (16, 47), (17, 64)]
    for m, n in shapes + [(33, 40)]:
        x = rng.integers(-3, 4, (m, k)).astype(np.float32)
        w = rng.integers(-3, 4, (k, n) if transposed else (n, k)).astype(np.float32)
        b = rng.integers(-5, 6, n).astype(np.float32)
        exact = x.astype(np.int64) @ (w.astype(np.int64) if transposed else w.astype(np.int64).T) + b
        np.testing.assert_array_equal(emu.linear(AVX512, x, w, b, transposed=transposed), exact.astype(np.float32))


@pytest.mark.parametrize("m", [1, 2, 4])
def test_linear_wide_conv1d_rows_exact(emu, m):
    """[K, N] weights at small M stream rows in column chunks sized to L1:
    N well past one chunk, with a tail."""
    rng = np.random.default_rng(m)
    n, k = 4100 // m + 37, 6
    x = rng.integers(-3, 4, (m, k)).astype(np.float32)
    w = rng.integers(-3, 4, (k, n)).astype(np.float32)
    b = rng.integers(-5, 6, n).astype(np.float32)
    exact = x.astype(np.int64) @ w.astype(np.int64) + b
    np.testing.assert_array_equal(emu.linear(AVX512, x, w, b, transposed=True), exact.astype(np.float32))


@pytest.mark.parametrize("activation", list(ACT))
@pytest.mark.parametrize("transposed", [False, True])
def test_linear_activations(emu, activation, transposed):
    rng = np.random.default_rng(7)
    for m, n, k in [(1, 37, 19), (4, 33, 64), (6, 100, 257), (16, 31, 5), (9, 70, 40)]:
        x, w, b = make(rng, m, n, k, transposed)
        x *= 0.5
        ref, scale = linear_ref(x, w, b, activation, transposed)
        assert_close(emu.linear(AVX512, x, w, b, activation, transposed), ref, scale, activation)


@pytest.mark.parametrize("activation", list(ACT))
def test_linear_activation_extremes(emu, activation):
    v = np.array([-100, -30, -10, -3, -1e-3, -0.0, 0.0, 1e-3, 3, 10, 30, 100], np.float32)
    x = np.ones((1, 1), np.float32)
    w = v.reshape(-1, 1).copy()
    ref, _ = linear_ref(x, w, None, activation)
    np.testing.assert_allclose(emu.linear(AVX512, x, w, None, activation)[0], ref[0], rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("m", [3, 12])
def test_linear_nan_propagates(emu, transposed, m):
    rng = np.random.default_rng(0)
    x, w, b = make(rng, m, 20, 40, transposed)
    x[1, 17] = np.nan
    for activation in ACT:
        y = emu.linear(AVX512, x, w, b, activation, transposed)
        assert np.all(np.isnan(y[1])), activation
        assert np.all(np.isfinite(np.delete(y, 1, axis=0))), activation


@pytest.mark.parametrize("transposed", [False, True])
def test_linear_large_m_blocked(emu, transposed):
    rng = np.random.default_rng(3)
    x, w, b = make(rng, 70, 90, 700, transposed)
    for activation in ("none", "relu", "silu"):
        ref, scale = linear_ref(x, w, b, activation, transposed)
        assert_close(emu.linear(AVX512, x, w, b, activation, transposed), ref, scale, activation)


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("m", [1, 2, 9])
def test_linear_empty_k_gives_activation_of_bias(emu, transposed, m):
    b = np.linspace(-2, 2, 21).astype(np.float32)
    w = np.zeros((0, 21) if transposed else (21, 0), np.float32)
    y = emu.linear(AVX512, np.zeros((m, 0), np.float32), w, b, "relu", transposed)
    np.testing.assert_array_equal(y, np.tile(np.maximum(b, 0), (m, 1)))


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("m", [1, 3, 8, 70])
def test_linear_column_split_is_bitwise_invisible(emu, transposed, m):
    """Threads split columns at multiples of 32 (ops.c); any split must give
    the same bits as one call over all columns."""
    rng = np.random.default_rng(42)
    x, w, b = make(rng, m, 777, 300, transposed)
    whole = emu.linear(AVX512, x, w, b, "gelu", transposed)
    for cuts in ([0, 32, 777], [0, 96, 384, 416, 777], list(range(0, 777, 32)) + [777]):
        np.testing.assert_array_equal(emu.linear(AVX512, x, w, b, "gelu", transposed, cuts), whole)


def test_linear_agrees_with_scalar_kernel(emu):
    rng = np.random.default_rng(11)
    for transposed in (False, True):
        for m, n, k in [(1, 300, 700), (3, 129, 65), (8, 64, 1024), (37, 50, 333), (4, 200, 100)]:
            x, w, b = make(rng, m, n, k, transposed)
            want = emu.linear(SCALAR, x, w, b, "silu", transposed)
            got = emu.linear(AVX512, x, w, b, "silu", transposed)
            _, scale = linear_ref(x, w, b, "silu", transposed)
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=4e-6 * scale.max())


@given(
    m=st.integers(1, 40),
    n=st.integers(1, 140),
    k=st.integers(1, 300),
    transposed=st.booleans(),
    bias=st.booleans(),
    activation=st.sampled_from(list(ACT)),
    seed=st.integers(0, 2**32 - 1),
)
@settings(max_examples=60, deadline=None)
def test_linear_random_shapes(emu, m, n, k, transposed, bias, activation, seed):
    rng = np.random.default_rng(seed)
    x, w, b = make(rng, m, n, k, transposed, bias)
    ref, scale = linear_ref(x, w, b, activation, transposed)
    assert_close(emu.linear(AVX512, x, w, b, activation, transposed), ref, scale, activation)


# ---- top-k routing --------------------------------------------------------------


def check_topk(emu, logits, k, bonus=None):
    ids, weights, bad = emu.topk(AVX512, logits, k, bonus)
    want_ids, want_w, want_bad = topk_ref(logits, k, bonus)
    assert bad == (want_bad[0] if want_bad else -1), f"first bad row: got {bad}, want {want_bad[:1] or -1}"
    if bad < 0:
        np.testing.assert_array_equal(ids, want_ids)
        np.testing.assert_allclose(weights, want_w, rtol=2e-6, atol=1e-7)
    s_ids, _, s_bad = emu.topk(SCALAR, logits, k, bonus)
    assert bad == s_bad
    if bad < 0:
        np.testing.assert_array_equal(ids, s_ids)


@pytest.mark.parametrize("e", EDGE_SIZES + [1000, 1024, 1025, 1500])
def test_topk_matches_reference(emu, e):
    rng = np.random.default_rng(e)
    for k in sorted({1, min(2, e), min(3, e), min(8, e), min(9, e), min(16, e), e}):
        logits = rng.standard_normal((9, e)).astype(np.float32)
        check_topk(emu, logits, k)
        check_topk(emu, logits, k, rng.uniform(0, 1.5, e).astype(np.float32))


def test_topk_ties_go_to_lower_id(emu):
    rng = np.random.default_rng(5)
    for e in (8, 16, 17, 64, 1100):
        logits = rng.integers(-2, 3, (40, e)).astype(np.float32)
        logits[logits == 0] = rng.choice([-0.0, 0.0], size=int((logits == 0).sum()))
        for k in sorted({min(v, e) for v in (1, 2, 4, 8, 9)}):
            check_topk(emu, logits, k)
            check_topk(emu, logits, k, rng.integers(0, 2, e).astype(np.float32))
    ids, _, _ = emu.topk(AVX512, np.zeros((1, 16), np.float32), 3)
    np.testing.assert_array_equal(ids, [[0, 1, 2]])


def test_topk_nan_never_wins_and_minus_inf_loses(emu):
    for e in (4, 8, 9, 16, 17, 33, 1030):
        logits = np.full((1, e), np.nan, np.float32)
        logits[0, [1, e - 1]] = [0.5, -3.0]
        ids, w, bad = emu.topk(AVX512, logits, 2)
        assert bad == -1
        np.testing.assert_array_equal(ids, [[1, e - 1]])
        np.testing.assert_allclose(w, [[1 / (1 + np.exp(-3.5)), 1 / (1 + np.exp(3.5))]], rtol=1e-6)
    ids, _, bad = emu.topk(AVX512, np.array([[-np.inf, 1.0, 2.0, -np.inf]], np.float32), 2)
    assert bad == -1
    np.testing.assert_array_equal(ids, [[2, 1]])


@pytest.mark.parametrize("e", [8, 20, 1100])
@pytest.mark.parametrize("bad_row", [0, 3, 6])
def test_topk_reports_first_bad_row(emu, e, bad_row):
    logits = np.random.default_rng(0).standard_normal((7, e)).astype(np.float32)
    logits[bad_row] = np.nan
    logits[bad_row, 2] = 1.0  # one finite logit, k = 2
    assert emu.topk(AVX512, logits, 2)[2] == bad_row
    logits[bad_row] = 0.0
    logits[bad_row, 5] = np.inf  # a chosen +inf logit
    assert emu.topk(AVX512, logits, 2)[2] == bad_row


@given(
    t=st.integers(1, 30),
    e=st.integers(1, 150),
    data=st.data(),
    with_bonus=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
@settings(max_examples=80, deadline=None)
def test_topk_random(emu, t, e, data, with_bonus, seed):
    k = data.draw(st.integers(1, e))
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((t, e)).astype(np.float32)
    if e > k:
        mask = rng.random((t, e)) < 0.15
        mask[:, :k] = False
        logits[mask] = np.nan
    logits[rng.random((t, e)) < 0.2] = 0.5
    bonus = rng.uniform(0, 2, e).astype(np.float32) if with_bonus else None
    check_topk(emu, logits, k, bonus)


# ---- EMA affinity -------------------------------------------------------------


@pytest.mark.parametrize("e", EDGE_SIZES + [1024, 65536, 70001])
def test_ema_matches_reference(emu, e):
    rng = np.random.default_rng(e)
    scores = rng.uniform(-0.2, 1.3, e).astype(np.float32)
    ids = rng.integers(0, e, min(3 * e, 40))
    for decay, boost, max_score, chosen in [(0.9, 0.25, 1.0, ids), (1.0, 0.0, 0.5, ids), (0.5, 1.0, 2.0, ids[:0])]:
        want, _ = ema_ref(scores, chosen, decay, boost, max_score)
        got = emu.ema(AVX512, scores, chosen, decay, boost, max_score)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_ema_nan_scores_become_zero_and_clamp(emu):
    s = np.array([np.nan, 5.0, -1.0, 0.5, np.inf, -np.inf, 0.2, 0.9, np.nan] * 3, np.float32)
    got = emu.ema(AVX512, s, [0, 8, 12, 19, 26], 0.5, 0.1, 1.0)
    want = [0.0, 1.0, 0.0, 0.25, 1.0, 0.0, 0.1, 0.45, 0.0] * 3
    want[12], want[19] = 0.35, 1.0  # boosted 0.25 and 2.5 (NaN + boost stays NaN -> 0)
    np.testing.assert_allclose(got, want, rtol=1e-6)


@given(
    e=st.integers(1, 300),
    n_ids=st.integers(0, 64),
    decay=st.floats(0, 1),
    boost=st.floats(0, 2),
    max_score=st.floats(0.01, 4),
    seed=st.integers(0, 2**32 - 1),
)
@settings(max_examples=60, deadline=None)
def test_ema_random(emu, e, n_ids, decay, boost, max_score, seed):
    rng = np.random.default_rng(seed)
    scores = rng.uniform(-1, 5, e).astype(np.float32)
    ids = rng.integers(0, e, n_ids)
    want, _ = ema_ref(scores, ids, decay, boost, max_score)
    np.testing.assert_allclose(emu.ema(AVX512, scores, ids, decay, boost, max_score), want, rtol=1e-6, atol=1e-7)


# ---- bf16 / f16 widening --------------------------------------------------------

ALL_BITS = np.arange(65536, dtype=np.uint32).astype(np.uint16)


def test_bf16_exhaustive(emu):
    want = (ALL_BITS.astype(np.uint32) << 16).view(np.float32)
    np.testing.assert_array_equal(emu.cvt(AVX512, False, ALL_BITS).view(np.uint32), want.view(np.uint32))


def test_f16_exhaustive(emu):
    want = ALL_BITS.view(np.float16).astype(np.float32)
    got = emu.cvt(AVX512, True, ALL_BITS)
    nan = np.isnan(want)
    np.testing.assert_array_equal(got[~nan].view(np.uint32), want[~nan].view(np.uint32))
    assert np.all(np.isnan(got[nan]))


@pytest.mark.parametrize("n", [0, 1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 1000])
def test_cvt_lengths(emu, n):
    src = ALL_BITS[12345 : 12345 + n].copy()
    np.testing.assert_array_equal(emu.cvt(AVX512, False, src).view(np.uint32), src.astype(np.uint32) << 16)
    np.testing.assert_array_equal(emu.cvt(AVX512, True, src), src.view(np.float16).astype(np.float32))


# ---- per-token kernels (norms, RoPE, paged KV cache, attention) --------------------


@pytest.mark.parametrize("layer", [False, True])
@pytest.mark.parametrize("d", EDGE_SIZES + [255, 256, 257, 576, 1024, 4099])
def test_norms(emu, layer, d):
    rng = np.random.default_rng(d)
    x = (rng.standard_normal((5, d)) + (20.0 if layer else 0.0)).astype(np.float32)
    w = rng.uniform(-2, 2, d).astype(np.float32)
    b = rng.standard_normal(d).astype(np.float32) if layer else None
    delta = rng.standard_normal((5, d)).astype(np.float32)
    for res, unit_offset in ((None, False), (delta, False), (delta, True)):
        out, x_after = emu.norm(AVX512, layer, x, w, b, 1e-5, res, unit_offset)
        s = x + res if res is not None else x
        np.testing.assert_array_equal(x_after, s)
        ref = layer_norm_ref(s, w, b, 1e-5, unit_offset) if layer else rms_norm_ref(s, w, 1e-5, unit_offset)
        tol = norm_tolerance(s, w, b, d, 1e-5, layer, unit_offset)
        assert np.all(np.abs(out - ref) <= tol)


@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize(
    "hd, rot",
    [
        (2, 2),
        (6, 6),
        (16, 16),
        (18, 18),
        (30, 30),
        (32, 32),
        (34, 34),
        (64, 64),
        (80, 80),
        (96, 48),
        (128, 128),
        (256, 256),
        (64, 30),
    ],
)
def test_rope(emu, interleaved, hd, rot):
    rng = np.random.default_rng(hd + rot)
    cos, sin = rope_tables(100, rot)
    x = rng.standard_normal((7, 3, hd)).astype(np.float32)
    positions = rng.integers(0, 100, 7).astype(np.int32)
    got = emu.rope(AVX512, x, positions, cos, sin, interleaved)
    ref, mag = rope_ref(x, positions, cos, sin, interleaved)
    assert np.all(np.abs(got[..., :rot] - ref[..., :rot]) <= 4 * U * mag[..., :rot] + 1e-38)
    np.testing.assert_array_equal(got[..., rot:], x[..., rot:])


@pytest.mark.parametrize("hd", [1, 7, 15, 16, 17, 33, 64])
def test_kv_store_f16_bitwise(emu, hd):
    rng = np.random.default_rng(hd)
    lens, pos0 = [3, 0, 20], [5, 0, 14]
    pg = build_paged(rng, [p + n for p, n in zip(pos0, lens, strict=True)], 2, hd, 16, np.float16)
    starts, p0 = batch_rows(lens, pos0)
    raw = rng.integers(0, 2**32, (2, 23, 2, hd), dtype=np.uint64).astype(np.uint32).view(np.float32)
    k, v = np.where(np.isnan(raw), 1.5, raw)  # NaN payloads are not compared
    assert emu.kv_store(AVX512, k, v, pg.k_cache, pg.v_cache, pg.page_table, starts, p0) == 0
    with np.errstate(over="ignore"):
        for s in range(3):
            for i in range(lens[s]):
                p = pos0[s] + i
                page, slot = pg.page_table[s, p // 16], p % 16
                row = starts[s] + i
                np.testing.assert_array_equal(
                    pg.k_cache[page, :, slot].view(np.uint16), k[row].astype(np.float16).view(np.uint16)
                )
                np.testing.assert_array_equal(
                    pg.v_cache[page, :, slot].view(np.uint16), v[row].astype(np.float16).view(np.uint16)
                )


@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=["f32", "f16"])
@pytest.mark.parametrize("hd", [1, 5, 16, 17, 32, 64, 80, 96, 128, 256])
@pytest.mark.parametrize("group, page_tokens, window", [(1, 16, 0), (3, 1, 0), (4, 16, 20), (17, 16, 0)])
def test_attention(emu, dtype, hd, group, page_tokens, window):
    rng = np.random.default_rng(hd * 31 + group)
    lens, pos0 = [1, 9, 1, 2], [70, 0, 15, 33]
    pg = build_paged(rng, [p + n for p, n in zip(pos0, lens, strict=True)], 2, hd, page_tokens, dtype)
    starts, p0 = batch_rows(lens, pos0)
    q = rng.standard_normal((int(starts[-1]), 2 * group, hd)).astype(np.float32)
    for softcap in (0.0, 20.0):
        got = emu.attention(AVX512, q, pg.k_cache, pg.v_cache, pg.page_table, starts, p0, hd**-0.5, window, softcap)
        ref, mag, n_keys = attention_ref(q, pg.keys, pg.values, starts, p0, hd**-0.5, window, softcap, dtype)
        assert_attention_close(got, ref, mag, n_keys, hd, softcap)


def test_attention_batch_invariance_and_nan(emu):
    rng = np.random.default_rng(0)
    lens, pos0 = [1, 13, 1, 4], [200, 3, 64, 70]
    pg = build_paged(rng, [p + n for p, n in zip(pos0, lens, strict=True)], 3, 64, 16, np.float16)
    starts, p0 = batch_rows(lens, pos0)
    q = rng.standard_normal((int(starts[-1]), 9, 64)).astype(np.float32)
    q[starts[3] + 1, 4, 10] = np.nan
    batch = emu.attention(AVX512, q, pg.k_cache, pg.v_cache, pg.page_table, starts, p0, 0.125)
    for s in range(4):
        rows = slice(starts[s], starts[s + 1])
        s1, q1 = batch_rows([lens[s]], [pos0[s]])
        alone = emu.attention(AVX512, q[rows], pg.k_cache, pg.v_cache, pg.page_table[s : s + 1], s1, q1, 0.125)
        np.testing.assert_array_equal(alone, batch[rows])
    poisoned = batch.reshape(-1, 9, 64)[starts[3] + 1, 4]
    assert np.all(np.isnan(poisoned)) and np.sum(np.isnan(batch)) == 64


# ---- weight-type micro-kernels: every line of qkernels_avx512.c -------------------
#
# Read from the tier's table, so a new line (plain, VNNI or BF16) is tested
# without editing this file. Integer-exact types must equal the scalar
# kernel bit for bit (docs/quantization.md: same per-block float order);
# all are checked against the float64 reference built from gguf's decoder.

QTYPES = {t["name"]: t for t in ops.weight_types()}
QNAMES = [n for n in QTYPES if n != "f32"]
QTYPES_BY_ID = {t["id"]: n for n, t in QTYPES.items()}
ACT_FORMATS = {1: "q8_32", 2: "q8_256"}  # ec_act_format
ACT_BLOCK = {"q8_32": (32, 40), "q8_256": (256, 292)}


def _label(line) -> str:
    feats = [name for bit, name in FEATURE_BITS.items() if line["features"] & bit]
    return "+".join(["avx512", *feats])


def _lines(emu, name, slot):
    lines = [ln for ln in emu.qlines(AVX512) if ln["wtype"] == QTYPES[name]["id"] and ln[slot]]
    if not lines:
        pytest.skip(f"qkernels_avx512.c has no {slot} line for {name}: the avx2 or scalar kernel runs there")
    return lines


def _scalar_line(emu, name, slot):
    return next(ln for ln in emu.qlines(SCALAR) if ln["wtype"] == QTYPES[name]["id"] and ln[slot])


def _qk_sizes(name):
    return [256, 512, 768] if QTYPES[name]["block_elems"] == 256 else [32, 64, 96, 288, 576]


def _qinputs(rng, m, k):
    x = rng.standard_normal((m, k)) * np.exp(rng.uniform(-2, 1, (m, k // 32, 1))).repeat(32, 1).reshape(m, k)
    return x.astype(np.float32)


def _activation_bytes(x, name):
    """x in the type's activation format, by the scalar quantizer (native)."""
    fmt = QTYPES[name]["activations"]
    if fmt == "f32":
        return np.ascontiguousarray(x, np.float32).view(np.uint8)
    with ops.forced_tier("scalar"):
        return ops.quantize_activations(x, fmt)


@pytest.mark.parametrize("name", QNAMES)
def test_qgemm_lines_match_scalar_and_reference(emu, name):
    """Every N tail and several tiles (the line's own, one row, one column,
    odd sizes): bitwise the scalar kernel for the integer-exact types, and
    within the float32 bound of the float64 reference for all; a line with
    a packer also through its packed strips."""
    from support.quant import assert_within, linear_reference, random_weights

    exact = QTYPES[name]["activations"] != "f32"
    sline = _scalar_line(emu, name, "gemm")
    ks = _qk_sizes(name)
    for line in _lines(emu, name, "gemm"):
        rng = np.random.default_rng([QNAMES.index(name), line["index"]])
        tiles = sorted(
            {
                (line["mr"], line["nr"]),
                (1, line["nr"]),
                (line["mr"], 1),
                (min(3, line["mr"]), min(5, line["nr"])),
                (min(2, line["mr"]), min(13, line["nr"])),
            }
        )
        for i, (m, n) in enumerate([(1, 1), (1, 16), (1, 33), (2, 17), (3, 15), (4, 16), (5, 7), (9, 65)]):
            k = ks[i % len(ks)]
            x, w = _qinputs(rng, m, k), random_weights(rng, name, n, k)
            xq = _activation_bytes(x, name)
            want = emu.qgemm(SCALAR, sline["index"], xq, w, k, sline["mr"], sline["nr"])
            ref, tol = linear_reference(x, w, name)
            for mr, nr in tiles:
                for packed in (False, True) if line["packs"] else (False,):
                    got = emu.qgemm(AVX512, line["index"], xq, w, k, mr, nr, packed)
                    what = f"{name} {_label(line)} m={m} n={n} k={k} tile {mr}x{nr}{' packed' if packed else ''}"
                    if exact:
                        np.testing.assert_array_equal(got, want, err_msg=what)
                    assert_within(got, ref, tol, what)


@pytest.mark.parametrize("name", [n for n in QNAMES if QTYPES[n]["activations"] != "f32"])
def test_qgemm_lines_nonfinite_rows(emu, name):
    """A NaN/inf activation makes its block scale NaN: that row's outputs
    are all NaN, the other rows are the scalar kernel's bits."""
    from support.quant import random_weights

    sline = _scalar_line(emu, name, "gemm")
    k = _qk_sizes(name)[-1]
    rng = np.random.default_rng(QNAMES.index(name))
    w = random_weights(rng, name, 21, k)
    x = _qinputs(rng, 5, k)
    x[1, 3], x[3, k - 1], x[4, k // 2] = np.nan, np.inf, -np.inf
    xq = _activation_bytes(x, name)
    want = emu.qgemm(SCALAR, sline["index"], xq, w, k, 4, 4)
    for line in _lines(emu, name, "gemm"):
        got = emu.qgemm(AVX512, line["index"], xq, w, k, line["mr"], line["nr"])
        assert np.isnan(got[[1, 3, 4]]).all(), _label(line)
        np.testing.assert_array_equal(got[[0, 2]], want[[0, 2]], err_msg=_label(line))


@pytest.mark.parametrize("name", [n for n in QNAMES if QTYPES[n]["activations"] != "f32"])
def test_qgemm_lines_extreme_codes(emu, name):
    """Every weight byte at its extremes (0x00, 0xFF, 0x80: q8_0's -128) and
    activations at +-127: the integer sums that could saturate a 16-bit
    pair must still equal the scalar kernel's."""
    from support.quant import random_weights

    sline = _scalar_line(emu, name, "gemm")
    k = _qk_sizes(name)[-1]
    rng = np.random.default_rng(7)
    base = random_weights(rng, name, 18, k).view(np.uint8)
    t = QTYPES[name]
    blocks = base.reshape(18, k // t["block_elems"], t["block_bytes"])
    scale_at = {"q6_k": (208,), "q4_1": (0, 2), "q5_1": (0, 2), "q4_k": (0, 2), "q5_k": (0, 2)}.get(name, (0,))
    keep = np.zeros(t["block_bytes"], bool)
    for at in scale_at:
        keep[at : at + 2] = True
    for fill in (0x00, 0xFF, 0x80, 0x7F):
        w = blocks.copy()
        w[:, :, ~keep] = fill
        w = w.reshape(18, -1)
        for sign in (1.0, -1.0):
            x = np.full((3, k), sign, np.float32)
            x[1, ::2] = -sign  # +-127 alternating
            xq = _activation_bytes(x, name)
            want = emu.qgemm(SCALAR, sline["index"], xq, w, k, 4, 4)
            for line in _lines(emu, name, "gemm"):
                got = emu.qgemm(AVX512, line["index"], xq, w, k, line["mr"], line["nr"])
                np.testing.assert_array_equal(got, want, err_msg=f"{name} {_label(line)} fill {fill:#x}")


@pytest.mark.parametrize("name", QNAMES)
def test_qdequant_lines_bitwise_gguf(emu, name):
    """Row dequantizers: bit for bit the gguf package's dequantize, for
    rows of one block up to several (and odd lengths for the float types)."""
    from support.quant import NEEDS_GGUF, dequantize_ref, random_weights

    if NEEDS_GGUF.args[0]:
        pytest.skip(NEEDS_GGUF.kwargs["reason"])
    block = QTYPES[name]["block_elems"]
    rng = np.random.default_rng(QNAMES.index(name) + 50)
    ks = [256, 512, 1024] if block == 256 else [32, 64, 96, 576, 1024]
    if block == 1:
        ks += [1, 7, 15, 17, 33]
    for line in _lines(emu, name, "dequant"):
        for k in ks:
            w = random_weights(rng, name, 3, k)
            got = emu.qdequant(AVX512, line["index"], w, k)
            want = dequantize_ref(w, name).astype(np.float32)
            np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32), err_msg=f"{name} k={k}")


def _special_activation_rows(rng, k):
    """Rows whose blocks hit every rule of the activation quantizer: NaN,
    +-inf, amax just below / at 2^-119, zeros and -0, exact ties (amax 127
    gives d = 1, so x.5 rounds half to even), subnormals, huge values."""
    rows = [_qinputs(rng, 1, k)[0], rng.uniform(-3.4e38, 3.4e38, k).astype(np.float32)]
    tie = np.resize(np.array([127, -0.5, 0.5, 1.5, -2.5, 3.5, 126.5, -126.5], np.float32), k)
    rows.append(tie)
    special = np.zeros(k, np.float32)
    for at, v in enumerate([np.nan, np.inf, -np.inf, 2.0**-119, np.nextafter(np.float32(2.0**-119), 0), -0.0, 1e-40]):
        if 32 * at < k:
            special[32 * at : 32 * at + 32] = rng.standard_normal(32) * (abs(v) if np.isfinite(v) else 1.0)
            special[32 * at + 5] = v
    rows.append(special)
    return np.array(rows, np.float32)


@pytest.mark.parametrize("fmt", ["q8_32", "q8_256"])
def test_qactquant_lines_bitwise(emu, fmt):
    """Activation quantizers: the scalar quantizer's bytes and the NumPy
    re-implementation of docs/quantization.md, on random and special rows."""
    from support.quant import parse_activations, quantize_activations_ref

    block, nbytes = ACT_BLOCK[fmt]
    fid = next(i for i, f in ACT_FORMATS.items() if f == fmt)
    lines = [ln for ln in emu.qactlines(AVX512) if ln["format"] == fid]
    if not lines:
        pytest.skip(f"qkernels_avx512.c has no activation quantizer for {fmt}: the avx2 or scalar one runs there")
    sline = next(ln for ln in emu.qactlines(SCALAR) if ln["format"] == fid)
    rng = np.random.default_rng(block)
    for k in [256, 512, 1024]:
        x = np.concatenate([_special_activation_rows(rng, k), _qinputs(rng, 5, k)])
        row = k // block * nbytes
        want = emu.qactquant(SCALAR, sline["index"], x, row)
        d, q = quantize_activations_ref(x, block)
        ref = parse_activations(want, fmt)
        np.testing.assert_array_equal(ref["d"].view(np.uint32), d.view(np.uint32))
        np.testing.assert_array_equal(ref["q"].reshape(x.shape), q)
        for line in lines:
            got = emu.qactquant(AVX512, line["index"], x, row)
            np.testing.assert_array_equal(got, want, err_msg=f"{fmt} k={k}")


def test_harness_runs_every_compiled_avx512_line(emu):
    """Every avx512 weight-type variant the package build lists is a line
    this harness runs (it compiles every feature folder, so it may run more)."""
    harness = {
        (QTYPES_BY_ID[ln["wtype"]], _label(ln), ln["gemm"], ln["dequant"], ln["mr"], ln["nr"])
        for ln in emu.qlines(AVX512)
    }
    built = {
        (name, v["label"], v["gemm"], v["dequantize"], v["mr"], v["nr"])
        for name, t in QTYPES.items()
        for v in t["variants"]
        if v["tier"] == "avx512"
    }
    assert built <= harness, f"compiled but not emulated: {sorted(built - harness)}"
    assert any("avx512_vnni" in label for _, label, *_ in harness), "no VNNI line reached the harness"
