"""The activation quantizer (docs/quantization.md): bit-identical to the
NumPy re-implementation and across every variant, on random data, exact
ties, zero, tiny, subnormal, huge and non-finite blocks."""

import numpy as np
import pytest
from support.quant import TINY, parse_activations, quantize_activations_ref, use, variant_params

from edgecore import ops

FORMATS = {"q8_32": 32, "q8_256": 256}
# one type per activation format, so the variants are the quantizer's
PARAMS = [p for p in variant_params(["q8_0", "q4_k"], part=slice(2, 3))]


def cases(rng, block):
    k = 4 * block
    x = (rng.standard_normal((12, k)) * np.exp(rng.uniform(-6, 6, (12, 1)))).astype(np.float32)
    # ties: max 127/16 makes d = 1/16 and id = 16 exactly, so x * id = q + 0.5
    x[0] = ((rng.integers(-126, 126, k) + 0.5) / 16).astype(np.float32)
    x[0, ::block] = 127 / 16
    x[1] = 0.0
    x[1, 5] = -0.0
    x[2] = rng.uniform(-1, 1, k).astype(np.float32) * np.float32(2.0**-120)  # below the tiny limit
    x[3] = rng.standard_normal(k).astype(np.float32) * np.float32(1e-36)  # just above it
    x[3, ::block] = np.float32(TINY)
    x[4] = rng.integers(-5, 6, k).astype(np.float32) * np.float32(1e-45)  # float32 subnormals
    x[5] = rng.standard_normal(k).astype(np.float32) * np.float32(1e37)  # huge
    x[6, 7], x[7, block + 1], x[8, 2 * block + 2] = np.nan, np.inf, -np.inf
    x[9] = 3.0  # constant block
    return x


def check_blocks(raw, x, fmt):
    block = FORMATS[fmt]
    got = parse_activations(raw, fmt)
    d, q = quantize_activations_ref(x, block)
    np.testing.assert_array_equal(got["d"].view(np.uint32), d.view(np.uint32))  # NaN bits included
    np.testing.assert_array_equal(got["q"].reshape(q.shape), q)
    if fmt == "q8_32":
        np.testing.assert_array_equal(got["sum"], q.reshape(len(x), -1, 32).sum(-1, dtype=np.int32))
    else:
        np.testing.assert_array_equal(got["bsums"], q.reshape(len(x), -1, 16, 16).sum(-1).astype(np.int16))


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name, config", PARAMS)
def test_matches_numpy_reimplementation(name, config, fmt, tested_tiers):
    rng = np.random.default_rng(FORMATS[fmt])
    x = cases(rng, FORMATS[fmt])
    with use(config, tested_tiers):
        raw = ops.quantize_activations(x, fmt)
    assert raw.shape == (len(x), x.shape[1] // FORMATS[fmt] * {"q8_32": 40, "q8_256": 292}[fmt])
    check_blocks(raw, x, fmt)


@pytest.mark.parametrize("fmt", FORMATS)
def test_rules_hold(fmt):
    """The contract's consequences, checked directly: ties go to even, a
    non-finite block has d = NaN (0x7fc00000) and q = 0, a block below
    2^-119 has d = 0, |q| <= 127 always."""
    block = FORMATS[fmt]
    x = cases(np.random.default_rng(2), block)
    got = parse_activations(ops.quantize_activations(x, fmt), fmt)
    q0 = got["q"][0].reshape(-1).astype(np.int64)
    assert np.all(q0[1:block] % 2 == 0)  # every (n + 0.5) rounded to the even neighbour
    assert np.all(got["d"][0] == np.float32(1 / 16))
    for row, blk in ((6, 0), (7, 1), (8, 2)):
        assert got["d"][row, blk].view(np.uint32) == 0x7FC00000 and not got["q"][row, blk].any()
    assert np.all(got["d"][2] == 0) and not got["q"][2].any()
    assert np.all(got["d"][3] > 0)
    assert np.all(np.abs(got["q"].astype(np.int64)) <= 127)


@pytest.mark.parametrize("fmt", FORMATS)
def test_identical_across_every_config(fmt):
    from support.quant import kernel_configs

    x = cases(np.random.default_rng(3), FORMATS[fmt])
    results = {}
    for config in kernel_configs():
        with use(config):
            results[config] = ops.quantize_activations(x, fmt)
    first = next(iter(results.values()))
    for config, raw in results.items():
        np.testing.assert_array_equal(raw, first, err_msg=str(config))
