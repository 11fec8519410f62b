"""F16 / BF16 -> float32 widening, checked against float64 references
computed independently of the kernels, on every kernel tier."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgecore.weights import load_safetensors, save_safetensors, to_float32

ALL_BITS = np.arange(1 << 16, dtype=np.uint16)


def bf16_reference(bits: np.ndarray) -> np.ndarray:
    """float64 value of each bfloat16 pattern, from its fields: 1 sign bit,
    8 exponent bits (bias 127), 7 mantissa bits."""
    b = bits.astype(np.int64)
    sign = np.where(b >> 15, -1.0, 1.0)
    exponent = (b >> 7) & 0xFF
    mantissa = (b & 0x7F).astype(np.float64)
    with np.errstate(over="ignore"):
        normal = sign * np.ldexp(1.0 + mantissa / 128, exponent - 127)
    subnormal = sign * np.ldexp(mantissa / 128, -126)
    special = np.where(mantissa == 0, sign * np.inf, np.nan)
    return np.where(exponent == 0, subnormal, np.where(exponent == 0xFF, special, normal))


def assert_exact(got: np.ndarray, reference: np.ndarray) -> None:
    assert got.dtype == np.float32
    nan = np.isnan(reference)
    np.testing.assert_array_equal(np.isnan(got), nan)
    np.testing.assert_array_equal(got[~nan].astype(np.float64), reference[~nan])
    # signed zeros keep their sign
    np.testing.assert_array_equal(np.signbit(got[~nan]), np.signbit(reference[~nan]))


def test_bf16_every_pattern(tier):
    assert_exact(to_float32(ALL_BITS, dtype="BF16"), bf16_reference(ALL_BITS))


def test_f16_every_pattern(tier):
    halves = ALL_BITS.view(np.float16)
    # NumPy's own half -> double conversion is the independent reference
    assert_exact(to_float32(halves), halves.astype(np.float64))


def test_from_a_mapped_file_with_out(tmp_path, tier):
    rng = np.random.default_rng(1)
    bits = rng.integers(0, 1 << 16, (33, 17), dtype=np.uint16)
    halves = rng.standard_normal(129).astype(np.float16)
    singles = rng.standard_normal((4, 5)).astype(np.float32)
    path = save_safetensors(tmp_path / "w.safetensors", {"bf": bits, "h": halves, "s": singles},
                            dtypes={"bf": "BF16"})
    with load_safetensors(path) as f:
        out = np.empty(33 * 17, np.float32)
        assert f.to_float32("bf", out=out) is out
        assert_exact(out.reshape(33, 17), bf16_reference(bits))
        assert_exact(f.to_float32("h"), halves.astype(np.float64))
        view = f.to_float32("s")
        assert np.shares_memory(view, f["s"]), "aligned F32 is returned without a copy"
        copy = np.empty((4, 5), np.float32)
        assert f.to_float32("s", out=copy) is copy
        np.testing.assert_array_equal(copy, singles)


def test_misaligned_tensors_are_copied_before_the_kernel(tmp_path, craft):
    # a 1-byte tensor first puts the next tensors on odd offsets
    bits = np.array([0x3F80, 0x4049, 0xFF80], np.uint16)  # 1.0, 3.140625, -inf
    singles = np.array([1.5, -2.25], np.float32)
    header = {"pad": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},
              "bf": {"dtype": "BF16", "shape": [3], "data_offsets": [1, 7]},
              "s": {"dtype": "F32", "shape": [2], "data_offsets": [7, 15]}}
    raw = json.dumps(header)
    raw += " " * (-(8 + len(raw)) % 8)  # data section on an 8-byte boundary: offsets 1 and 7 stay odd
    path = craft(raw, b"\0" + bits.tobytes() + singles.tobytes(), name="odd.safetensors")
    with load_safetensors(path) as f:
        assert not f.info("bf").aligned and not f["bf"].flags.aligned
        np.testing.assert_array_equal(f.to_float32("bf"), [1.0, 3.140625, -np.inf])
        converted = f.to_float32("s")
        assert converted.flags.aligned
        np.testing.assert_array_equal(converted, singles)


def test_dtype_must_be_known():
    with pytest.raises(TypeError, match="dtype='BF16'"):
        to_float32(np.zeros(3, np.uint16))
    with pytest.raises(TypeError, match="cannot tell"):
        to_float32(np.zeros(3, np.float64))
    with pytest.raises(TypeError, match="must be one of"):
        to_float32(np.zeros(3, np.int32), dtype="I32")
    with pytest.raises(TypeError, match="BF16 tensor must be a uint16 array"):
        to_float32(np.zeros(3, np.float32), dtype="BF16")
    with pytest.raises(ValueError, match="out has 2 elements"):
        to_float32(np.zeros(3, np.float16), out=np.empty(2, np.float32))
    with pytest.raises(TypeError, match="out must be a float32"):
        to_float32(np.zeros(3, np.float16), out=np.empty(3, np.float64))
    with pytest.raises(TypeError, match="NumPy array"):
        to_float32([1.0, 2.0])
