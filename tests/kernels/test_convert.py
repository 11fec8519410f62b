"""bf16 / f16 widening on every tier: exhaustive over all 65536 bit patterns."""

import numpy as np
import pytest

from edgecore import ops

ALL_BITS = np.arange(65536, dtype=np.uint32).astype(np.uint16)


def test_bf16_exhaustive(tier):
    got = ops.bf16_to_f32(ALL_BITS)
    want = (ALL_BITS.astype(np.uint32) << 16).view(np.float32)
    # compare bit patterns: NaN payloads and -0.0 must survive exactly
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


def test_f16_exhaustive(tier):
    halves = ALL_BITS.view(np.float16)
    want = halves.astype(np.float32)
    got = ops.f16_to_f32(halves)
    nan = np.isnan(want)
    np.testing.assert_array_equal(got[~nan].view(np.uint32), want[~nan].view(np.uint32))
    assert np.all(np.isnan(got[nan]))
    # the uint16 bit view is accepted too
    np.testing.assert_array_equal(ops.f16_to_f32(ALL_BITS)[~nan], want[~nan])


@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 33, 1000])
def test_lengths_and_out(tier, n):
    src = ALL_BITS[12345 : 12345 + n].copy()
    out = np.full(n, -7.0, np.float32)
    assert ops.bf16_to_f32(src, out=out) is out
    np.testing.assert_array_equal(out.view(np.uint32), src.astype(np.uint32) << 16)


def test_shape_is_kept():
    src = np.zeros((3, 5), np.uint16)
    assert ops.bf16_to_f32(src).shape == (3, 5)
    assert ops.f16_to_f32(src.view(np.float16)).shape == (3, 5)


def test_bad_inputs():
    with pytest.raises(TypeError, match="src must be a native-byte-order uint16"):
        ops.bf16_to_f32(np.zeros(4, np.float16))
    with pytest.raises(TypeError, match="float16"):
        ops.f16_to_f32(np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="out has 3 elements, src has 4"):
        ops.bf16_to_f32(np.zeros(4, np.uint16), out=np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        ops.bf16_to_f32(np.zeros(8, np.uint16)[::2])
