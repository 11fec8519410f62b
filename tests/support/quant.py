"""References and generators for the weight-type kernels, written from the
specs (GGML block layouts, docs/quantization.md), not from the C code.

Weights are dequantized by the gguf package (an independent decoder);
activations go through a NumPy re-implementation of the documented 8-bit
activation quantization. Kernel variants to test are read from the
registry (ops.weight_types / ops.kernel_dispatch), so a new (type, tier,
feature) micro-kernel is picked up without editing a test.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np
import pytest

from edgecore import ops

try:
    import gguf
    from gguf.quants import dequantize as gguf_dequantize
except ImportError:  # the aarch64 rootfs has no gguf; those tests say so
    gguf = None

NEEDS_GGUF = pytest.mark.skipif(
    gguf is None,
    reason="LOUD SKIP: the gguf package (the independent block decoder/quantizer) is not installed; "
    "pip install gguf to run the float64-reference and quantize tests",
)

TYPES = {t["name"]: t for t in ops.weight_types()}
NAMES = list(TYPES)
U = 2.0**-24  # float32 unit roundoff
TINY = 2.0**-119  # activation blocks with max |x| below this quantize to zero


def block_of(name: str) -> int:
    return TYPES[name]["block_elems"]


def act_block_of(name: str) -> int:
    """Elements per block of the 8-bit activation format the type consumes."""
    return 32 if TYPES[name]["activations"] == "q8_32" else 256


def row_bytes(name: str, k: int) -> int:
    t = TYPES[name]
    return k // t["block_elems"] * t["block_bytes"]


# ---- kernel configurations ----------------------------------------------------


def kernel_configs() -> list[tuple[str, tuple[str, ...]]]:
    """Every (tier, features) a test can force: each available tier plain,
    with each of its usable features alone, and with all of them."""
    configs = []
    for tier in ops.capabilities()["available"]:
        with ops.forced_tier(tier):
            usable = tuple(f["name"] for f in ops.capabilities()["features"] if f["active"])
        configs.append((tier, ()))
        configs += [(tier, (f,)) for f in usable]
        if len(usable) > 1:
            configs.append((tier, usable))
    return configs


def config_id(config) -> str:
    tier, features = config
    return "+".join((tier,) + tuple(features))


@contextmanager
def use(config, record: set[str] | None = None):
    tier, features = config
    with ops.forced_tier(tier, list(features)):
        if record is not None:
            record.add(tier)
        yield


def implementations(name: str, config) -> tuple:
    """What the dispatcher runs for `name` under `config`."""
    with use(config):
        d = ops.kernel_dispatch(name)
    return d["gemm"], d["dequantize"], d["activations"]


def distinct_configs(name: str, part=slice(None)) -> list:
    """One config per distinct implementation of `name` (the first, i.e. the
    simplest, config that selects it). `part` picks which of gemm,
    dequantize, activations count."""
    seen, chosen = set(), []
    for config in kernel_configs():
        key = implementations(name, config)[part]
        if key not in seen:
            seen.add(key)
            chosen.append(config)
    return chosen


def variant_params(names=None, part=slice(None)):
    """pytest params (name, config) over every type and each of its distinct
    implementations."""
    return [
        pytest.param(name, config, id=f"{name}-{config_id(config)}")
        for name in (names or NAMES)
        for config in distinct_configs(name, part)
    ]


# ---- weights --------------------------------------------------------------------


def _f16_bytes(v) -> np.ndarray:
    return np.asarray(v, np.float16).reshape(-1, 1).view(np.uint8)


# byte offsets of the f16 scale fields per block: (d, m/dmin or None)
_SCALE_FIELDS = {
    "q8_0": (0, None),
    "q4_0": (0, None),
    "q5_0": (0, None),
    "q4_1": (0, 2),
    "q5_1": (0, 2),
    "q4_k": (0, 2),
    "q5_k": (0, 2),
    "q6_k": (208, None),
}


def random_weights(rng: np.random.Generator, name: str, n: int, k: int) -> np.ndarray:
    """An [N, K] weight of type `name` in the layout ops.linear takes. Block
    types get random bytes (every code value and scale bit pattern occurs)
    with the f16 scale fields set to sane magnitudes."""
    if name == "f32":
        return rng.standard_normal((n, k)).astype(np.float32)
    if name == "f16":
        return (rng.standard_normal((n, k)) * 0.5).astype(np.float16)
    if name == "bf16":
        return (rng.standard_normal((n, k)).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    t = TYPES[name]
    blocks = n * k // t["block_elems"]
    raw = rng.integers(0, 256, (blocks, t["block_bytes"]), dtype=np.uint8)
    d_at, m_at = _SCALE_FIELDS[name]
    scale = {"q8_0": 0.01, "q6_k": 0.002}.get(name, 0.05)
    raw[:, d_at : d_at + 2] = _f16_bytes(rng.uniform(0.2, 1.0, blocks) * scale * rng.choice([-1, 1], blocks))
    if m_at is not None:
        m = rng.standard_normal(blocks) * 0.3 if name in ("q4_1", "q5_1") else rng.uniform(0, 0.02, blocks)
        raw[:, m_at : m_at + 2] = _f16_bytes(m)
    return raw.reshape(n, -1)


def weight_bytes(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w).view(np.uint8)


def dequantize_ref(w: np.ndarray, name: str) -> np.ndarray:
    """float32 [N, K] from gguf's decoder (f32 as it is)."""
    if name == "f32":
        return w.astype(np.float32)
    return gguf_dequantize(weight_bytes(w), gguf.GGMLQuantizationType[name.upper()]).reshape(w.shape[0], -1)


def offset_magnitude(w: np.ndarray, name: str, k: int) -> np.ndarray:
    """|offset| per element for the offset types (the min term the kernels
    add separately), 0 elsewhere: it bounds cancellation in the tolerance."""
    n = w.shape[0]
    if name in ("q4_1", "q5_1"):
        m = weight_bytes(w).reshape(n, k // 32, -1)[:, :, 2:4].copy().view(np.float16)[..., 0]
        return np.repeat(np.abs(m.astype(np.float64)), 32, axis=1)
    if name in ("q4_k", "q5_k"):
        blocks = weight_bytes(w).reshape(-1, TYPES[name]["block_bytes"])
        dmin = blocks[:, 2:4].copy().view(np.float16).astype(np.float64)
        _, mins = gguf.quants.Q4_K.get_scale_min(blocks[:, 4:16].copy())
        off = np.abs(dmin * mins.astype(np.float64))  # [blocks, 8]
        return np.repeat(off, 32, axis=1).reshape(n, k)
    return np.zeros((n, k))


# ---- activations ------------------------------------------------------------------


def quantize_activations_ref(x: np.ndarray, block: int):
    """docs/quantization.md in NumPy: (d float32 [M, K/block], q int8 [M, K])."""
    m, k = x.shape
    xb = x.astype(np.float32).reshape(m, k // block, block)
    finite = np.all(np.isfinite(xb), axis=-1)
    amax = np.max(np.abs(np.where(np.isfinite(xb), xb, 0)), axis=-1).astype(np.float32)
    zero = amax < np.float32(TINY)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        d = (amax / np.float32(127)).astype(np.float32)
        inv = (np.float32(1) / d).astype(np.float32)
        q = np.rint((xb * inv[..., None]).astype(np.float32))
    ok = finite & ~zero
    q = np.where(ok[..., None], q, 0).astype(np.int8)
    d = np.where(ok, d, np.float32(0)).astype(np.float32)
    d = np.where(finite, d, np.float32(np.nan)).astype(np.float32)
    return d, q.reshape(m, k)


ACT_DTYPES = {
    "q8_32": np.dtype([("d", "<f4"), ("sum", "<i4"), ("q", "i1", 32)]),
    "q8_256": np.dtype([("d", "<f4"), ("q", "i1", 256), ("bsums", "<i2", 16)]),
}


def parse_activations(raw: np.ndarray, fmt: str) -> np.ndarray:
    """The structured blocks of ops.quantize_activations output, [M, blocks]."""
    return raw.view(ACT_DTYPES[fmt])


def effective_activations(x: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(x as the kernel sees it in float64, per-element bound on |x - that|)."""
    fmt = TYPES[name]["activations"]
    if fmt == "f32":
        return x.astype(np.float64), np.zeros(x.shape)
    block = act_block_of(name)
    d, q = quantize_activations_ref(x, block)
    d_el = np.repeat(d.astype(np.float64), block, axis=1)
    xq = d_el * q.astype(np.float64)
    # |x - d q| <= d (1/2 + 127 * 3u); a zeroed tiny block errs by |x| < 2^-119
    bound = np.where(d_el > 0, d_el * (0.5 + 400 * U), TINY)
    return xq, bound


# ---- the float64 reference and its tolerance ------------------------------------------

_ERF = np.vectorize(math.erf, otypes=[np.float64])


def activation_ref(v: np.ndarray, act: str) -> np.ndarray:
    if act == "none":
        return v
    if act == "relu":
        return np.where(v < 0, 0.0, v)
    if act == "gelu":
        return 0.5 * v * (1.0 + _ERF(v / math.sqrt(2.0)))
    if act == "gelu_tanh":
        return 0.5 * v * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (v + 0.044715 * v**3)))
    if act == "silu":
        with np.errstate(over="ignore"):
            return v / (1.0 + np.exp(-v))
    raise ValueError(act)


def linear_reference(x, w, name, bias=None, act="none", quantized_x=True):
    """(ref, tol): float64 act(x_eff W^T + b) and a float32-rounding bound.

    x_eff is the 8-bit activation the kernel computes with (quantized_x) or
    x itself. The kernels' integer block dot products are exact; what is
    rounded is the float32 work per term (block scale products and the
    running sum: at most n_terms + 4 roundings on magnitudes bounded by
    S = sum_k |x_eff| (|w| + 2 |offset|)), so |error| <= (n + 4) u S, doubled
    for other summation orders; the activation adds its slope (<= 1.2) and
    a few ulps. With quantized_x=False the bound also covers the activation
    quantization: sum_k |w| |x - x_eff| with |x - x_eff| <= d/2 per element."""
    k = x.shape[1]
    w64 = dequantize_ref(w, name).astype(np.float64)
    xe, xerr = effective_activations(x, name)
    pre = (xe if quantized_x else x.astype(np.float64)) @ w64.T
    off = offset_magnitude(w, name, k) if TYPES[name]["activations"] != "f32" else 0.0
    scale = np.abs(xe) @ (np.abs(w64) + 2 * off).T
    if bias is not None:
        pre = pre + bias.astype(np.float64)
        scale = scale + np.abs(bias.astype(np.float64))
    terms = k if TYPES[name]["activations"] == "f32" else k // block_of(name)
    tol = 2 * (terms + 4) * U * scale
    if not quantized_x:
        tol = tol + xerr @ np.abs(w64).T
    ref = activation_ref(pre, act)
    tol = 1.2 * tol + 4e-6 * np.abs(ref) + 1e-30
    return ref, tol


def activation_residual(x: np.ndarray, name: str) -> np.ndarray:
    """What the 8-bit blocks of x leave out, r = x - d q, in float32 (d q
    rounded on its own, then subtracted), as docs/quantization.md defines
    the refined pass."""
    block = act_block_of(name)
    d, q = quantize_activations_ref(x, block)
    approx = (np.repeat(d, block, axis=1) * q.astype(np.float32)).astype(np.float32)
    return (x.astype(np.float32) - approx).astype(np.float32)


def refined_reference(x, w, name, bias=None, act="none", quantized_x=True):
    """(ref, tol) for refine=True: the 8-bit pass over x plus the 8-bit pass
    over its float32 residual r, each bounded as linear_reference does
    (float64 from gguf's decoder), their float32 sum adding one rounding.

    quantized_x=False: against x itself. x = x_eff + r + e1 with
    |e1| <= 2u (|x| + d) per element (r's float32 rounding), and the
    residual pass errs by at most d_r / 2 per element (d_r = max |r| / 127
    <= d / 254) instead of the single pass's d / 2."""
    r = activation_residual(x, name)
    ref_x, tol_x = linear_reference(x, w, name)
    ref_r, tol_r = linear_reference(r, w, name, quantized_x=quantized_x)
    if quantized_x:
        pre = ref_x + ref_r
    else:
        w64 = np.abs(dequantize_ref(w, name).astype(np.float64))
        block = act_block_of(name)
        d, _ = quantize_activations_ref(x, block)
        e1 = 2 * U * (np.abs(x.astype(np.float64)) + np.repeat(d.astype(np.float64), block, axis=1))
        pre = x.astype(np.float64) @ dequantize_ref(w, name).astype(np.float64).T
        tol_r = tol_r + e1 @ w64.T
    if bias is not None:
        pre = pre + bias.astype(np.float64)
    ref = activation_ref(pre, act)
    return ref, 1.2 * (tol_x + tol_r + U * np.abs(pre)) + 4e-6 * np.abs(ref) + 1e-30


def assert_within(y, ref, tol, what=""):
    err = np.abs(y.astype(np.float64) - ref)
    bad = ~(err <= tol)
    if bad.any():
        i = np.unravel_index(np.argmax(np.where(bad, err - tol, -np.inf)), err.shape)
        raise AssertionError(
            f"{what}: {bad.sum()} of {bad.size} outside tolerance; worst at {i}: got {y[i]!r}, "
            f"want {ref[i]!r}, tol {tol[i]:.3g}"
        )
