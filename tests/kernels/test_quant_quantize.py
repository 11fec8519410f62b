"""ops.quantize against gguf.quants.quantize, bit for bit (random, tied,
all-zero, huge, subnormal, NaN/inf blocks), and ops.dequantize_rows /
ops.dequantize against gguf.quants.dequantize on every dequantizer variant."""

import platform

import numpy as np
import pytest
from support.quant import NAMES, NEEDS_GGUF, TYPES, gguf, random_weights, use, variant_params

from edgecore import ops

pytestmark = NEEDS_GGUF

QUANTIZABLE = [t["name"] for t in ops.weight_types() if t["quantize"]]
X86_64 = platform.machine().lower() in ("x86_64", "amd64")


def gguf_bytes(x, name):
    ref = gguf.quants.quantize(x, gguf.GGMLQuantizationType[name.upper()])
    return np.ascontiguousarray(ref).view(np.uint8).reshape(x.shape[0], -1)


def ours(x, name):
    return np.ascontiguousarray(ops.quantize(x, name)).view(np.uint8).reshape(x.shape[0], -1)


def blocks_of(rng, kind, rows=4, k=256):
    """Inputs that stress one rule of the reference quantizer."""
    if kind == "random":
        return (rng.standard_normal((rows, k)) * np.exp(rng.uniform(-4, 4, (rows, 1)))).astype(np.float32)
    if kind == "ties":  # x * id lands on .5 exactly: max |x| = 127/16 or 8 or 16 in every block
        q = rng.integers(-127, 128, (rows, k)).astype(np.float32)
        x = (q + rng.choice([-0.5, 0.0, 0.5], (rows, k))) / 16
        x[:, ::32] = 127 / 16
        x[1::2, 1::32] = -8.0
        return x.astype(np.float32)
    if kind == "equal_extremes":  # +m and -m in one block: the first one wins
        x = rng.uniform(-1, 1, (rows, k)).astype(np.float32)
        x[:, 3::32], x[:, 9::32] = -2.0, 2.0
        x[1, 3::32], x[1, 9::32] = 2.0, -2.0
        return x
    if kind == "zeros":
        x = np.zeros((rows, k), np.float32)
        x[1] = -0.0
        x[2, ::2] = -0.0
        return x
    if kind == "constant":
        return np.full((rows, k), 0.3, np.float32)
    if kind == "huge":  # scales that overflow f16 and products near float32's limit
        return (rng.standard_normal((rows, k)) * 3e37).astype(np.float32)
    if kind == "subnormal":  # block maxima from 1e-45 to 1e-30: the scale underflows in f16
        x = rng.standard_normal((rows, k)) * np.float32(1e-38)
        x[0] = rng.integers(-3, 4, k) * np.float32(1e-45)
        x[1] = rng.standard_normal(k) * 1e-30
        return x.astype(np.float32)
    if kind == "nonfinite":
        x = rng.standard_normal((rows, k)).astype(np.float32)
        x[0, 5], x[1, 40], x[2, 70] = np.nan, np.inf, -np.inf
        x[3, 100:103] = [np.inf, -np.inf, np.nan]
        return x
    raise ValueError(kind)


KINDS = ["random", "ties", "equal_extremes", "zeros", "constant", "huge", "subnormal", "nonfinite"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", QUANTIZABLE)
def test_quantize_is_bit_identical_to_gguf(name, kind):
    if kind == "subnormal" and name not in ("f16", "bf16") and not X86_64:
        pytest.skip(
            "gguf's NumPy code casts inf to uint8/int8 here, which NumPy defines per CPU; "
            "edgecore follows x86-64 (docs/quantization.md)"
        )
    rng = np.random.default_rng([KINDS.index(kind), QUANTIZABLE.index(name)])
    x = blocks_of(rng, kind)
    with np.errstate(all="ignore"):
        want = gguf_bytes(x, name)
    got = ours(x, name)
    if kind == "zeros" and name in ("q4_1", "q5_1"):
        # A block of +0 and -0 mixed: NumPy's max/min return the sign of
        # whichever zero its SIMD reduction order ends on; ours takes the
        # first. Only the sign bits of the d and m halves can differ.
        for half in (1, 3):
            got[:, half :: TYPES[name]["block_bytes"]] &= 0x7F
            want[:, half :: TYPES[name]["block_bytes"]] &= 0x7F
    bad = np.argwhere(got != want)
    assert not len(bad), (
        f"{name} {kind}: {len(bad)} bytes differ, first at {bad[0]}: {got[tuple(bad[0])]} vs {want[tuple(bad[0])]}"
    )


@pytest.mark.parametrize("name", ["f16", "bf16"])
def test_half_conversions_over_the_float32_range(name):
    """Every 2^11-th float32 bit pattern (both signs, all exponents: NaN
    payloads, infinities, subnormals, round-to-even ties) plus every value
    around the f16 overflow and subnormal edges."""
    bits = np.arange(0, 2**32, 2048 - 1, dtype=np.uint64).astype(np.uint32)
    edges = np.array(
        [
            0x477FE000,
            0x477FEFFF,
            0x477FF000,
            0x477FF001,
            0x38800000,
            0x387FFFFF,
            0x33000000,
            0x33000001,
            0x32FFFFFF,
            0x7F800001,
            0x7FC00001,
            0xFF800000,
            0x80000001,
        ],
        np.uint32,
    )
    bits = np.concatenate([bits, edges, edges ^ np.uint32(0x80000000)])
    x = bits.view(np.float32).reshape(1, -1)
    with np.errstate(all="ignore"):
        got, want = ours(x, name), gguf_bytes(x, name)
    if name != "f16":
        np.testing.assert_array_equal(got, want)
        return
    # NumPy's astype(float16) follows the CPU for NaN payloads: on x86 it
    # keeps a signalling NaN's top payload bits (as edgecore does), on aarch64
    # the hardware conversion sets the quiet bit. So every non-NaN input is
    # compared bit for bit, and a NaN input must give an f16 NaN of its sign.
    nan = np.isnan(x[0])
    halves, ref = got[0].view(np.uint16), want[0].view(np.uint16)
    np.testing.assert_array_equal(halves[~nan], ref[~nan])
    h = halves[nan]
    assert np.all((h & 0x7C00) == 0x7C00) and np.all(h & 0x03FF), "a NaN input must give an f16 NaN"
    np.testing.assert_array_equal(h >> 15, (x[0][nan].view(np.uint32) >> 31).astype(np.uint16))


def test_quantized_then_dequantized_is_close():
    """A sanity check of the pair: |x - deq(q(x))| <= d/2 (symmetric) or d (offset)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 512)).astype(np.float32)
    for name in QUANTIZABLE:
        y = ops.dequantize(ops.quantize(x, name), wtype=name)
        amax = np.abs(x.reshape(8, -1, 32)).max(-1, keepdims=True)
        step = {
            "q8_0": amax / 127,
            "q4_0": amax / 8,
            "q5_0": amax / 16,
            "q4_1": 2 * amax / 15,
            "q5_1": 2 * amax / 31,
        }.get(name, np.abs(x.reshape(8, -1, 32)) * 2.0**-7)
        assert np.all(np.abs((y - x).reshape(8, -1, 32)) <= step * 1.01 + 1e-7), name


DEQUANT_PARAMS = variant_params(part=slice(1, 2))


@pytest.mark.parametrize("name, config", DEQUANT_PARAMS)
def test_dequantize_rows_is_bit_identical_to_gguf(name, config, tested_tiers):
    rng = np.random.default_rng(NAMES.index(name))
    k = 512
    w = random_weights(rng, name, 37, k)
    want = (
        gguf.quants.dequantize(np.ascontiguousarray(w).view(np.uint8), gguf.GGMLQuantizationType[name.upper()])
        if name != "f32"
        else w
    )
    want = np.asarray(want, np.float32).reshape(37, k)
    rows = np.array([5, 0, 36, 5, 17], np.int64)
    with use(config, tested_tiers):
        np.testing.assert_array_equal(ops.dequantize(w, wtype=name), want)
        np.testing.assert_array_equal(ops.dequantize_rows(w, rows, wtype=name), want[rows])
        grid = ops.dequantize_rows(w, rows.astype(np.int32).reshape(1, 5), wtype=name)
        assert grid.shape == (1, 5, k)
        np.testing.assert_array_equal(grid[0], want[rows])
        out = np.empty((5, k), np.float32)
        assert ops.dequantize_rows(w, rows, wtype=name, out=out) is out


@pytest.mark.parametrize("name", [n for n in NAMES if TYPES[n]["block_elems"] > 1])
def test_dequantize_nonfinite_scales_like_gguf(name):
    """Scale fields holding inf / NaN halves decode as gguf decodes them."""
    rng = np.random.default_rng(3)
    w = random_weights(rng, name, 4, 256).copy()
    d_at = 208 if name == "q6_k" else 0
    blocks = w.reshape(-1, TYPES[name]["block_bytes"])
    blocks[0, d_at : d_at + 2] = np.array([np.inf], np.float16).view(np.uint8)
    blocks[1, d_at : d_at + 2] = np.array([np.nan], np.float16).view(np.uint8)
    with np.errstate(all="ignore"):
        want = gguf.quants.dequantize(w, gguf.GGMLQuantizationType[name.upper()]).reshape(4, 256)
    np.testing.assert_array_equal(ops.dequantize(w, wtype=name), want)


@pytest.mark.slow  # gguf's reader parses the whole vocabulary first (~15 s)
def test_real_model_tensors_decode_like_gguf():
    """Rows of the real GGUF files on disk (SmolLM2 Q4_1/Q8_0, Gemma 3 Q4_K/
    Q5_0/Q6_K/Q8_0): one tensor of each type, the first 64 rows."""
    from support.real_models import REAL_MODEL_NAMES, find_real_model

    paths = [p for p in map(find_real_model, REAL_MODEL_NAMES) if p is not None]
    if not paths:
        pytest.skip("LOUD SKIP: no real GGUF model on disk (set EDGECORE_TEST_MODELS, or `edgecore pull smollm2`)")
    seen = set()
    for path in paths:
        for t in gguf.GGUFReader(path).tensors:
            name = t.tensor_type.name.lower()
            if name not in TYPES or name in seen or name == "f32" or len(t.shape) != 2:
                continue
            seen.add(name)
            data = np.asarray(t.data)
            w = np.ascontiguousarray(data[:64]).view(np.uint8).reshape(min(64, data.shape[0]), -1)
            want = gguf.quants.dequantize(w, t.tensor_type).reshape(w.shape[0], -1)
            np.testing.assert_array_equal(ops.dequantize(w, wtype=name), want, err_msg=f"{path.name} {t.name}")
    assert seen, "no tensor of a registered type found"
