"""fused_linear on every available tier against a float64 NumPy reference,
bitwise exactness on integer-valued data, and the scalar tier."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.kernels import linear_ref

from edgecore import ops

ACTS = ["none", "relu", "gelu", "gelu_tanh", "silu"]
# around every vector width: 4 (NEON), 8 (AVX2), 16 (AVX-512), tiles of 3/4 rows
EDGE_SIZES = [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 129]


def make(rng, m, n, k, transposed, bias=True, one_d=False):
    x = rng.standard_normal((k,) if one_d else (m, k)).astype(np.float32)
    w = rng.standard_normal((k, n) if transposed else (n, k)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32) if bias else None
    return x, w, b


def assert_close(y, ref, scale, activation="none"):
    # float32 accumulation error is a small multiple of eps * sum|x w|; the
    # vector activations add ~1e-6 relative. A dropped or doubled product
    # (what a wrong kernel produces) is orders of magnitude larger.
    tol = 2e-6 * scale + 2e-6 * np.abs(ref) + 1e-6
    if activation in ("gelu", "gelu_tanh", "silu"):
        tol = tol + 1e-6 * scale
    err = np.abs(y.astype(np.float64) - ref)
    worst = np.unravel_index(np.argmax(err - tol), err.shape) if err.ndim else ()
    assert np.all(err <= tol), f"max excess at {worst}: got {y[worst]}, want {ref[worst]}, tol {tol[worst]}"


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("m", [1, 2, 3, 4, 5, 7, 16, 17])
def test_edge_sizes_match_reference(tier, transposed, m):
    rng = np.random.default_rng(m)
    for n in EDGE_SIZES:
        k = EDGE_SIZES[(n * 7 + m) % len(EDGE_SIZES)]
        x, w, b = make(rng, m, n, k, transposed)
        y = ops.fused_linear(x, w, b, transposed=transposed)
        ref, scale = linear_ref(x, w, b, transposed=transposed)
        assert y.shape == (m, n)
        assert_close(y, ref, scale)


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("k", EDGE_SIZES + [255, 256, 257, 513, 1000])
def test_k_tails_exact_on_integers(tier, transposed, k):
    """Small integers make every float32 partial sum exact, so any tier must
    equal the exact integer result bit for bit: a missed, doubled or
    misplaced product in a K tail, an M tail or an N tail cannot hide."""
    rng = np.random.default_rng(k)
    for m, n in [(1, 1), (1, 9), (2, 17), (3, 33), (4, 7), (5, 65), (9, 20), (33, 40)]:
        x = rng.integers(-3, 4, (m, k)).astype(np.float32)
        w = rng.integers(-3, 4, (k, n) if transposed else (n, k)).astype(np.float32)
        b = rng.integers(-5, 6, n).astype(np.float32)
        y = ops.fused_linear(x, w, b, transposed=transposed)
        exact = x.astype(np.int64) @ (w.astype(np.int64) if transposed else w.astype(np.int64).T) + b
        np.testing.assert_array_equal(y, exact.astype(np.float32))


@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("transposed", [False, True])
def test_activations(tier, activation, transposed):
    rng = np.random.default_rng(7)
    for m, n, k in [(1, 37, 19), (4, 33, 64), (6, 100, 257), (16, 31, 5)]:
        x, w, b = make(rng, m, n, k, transposed)
        x *= 0.5  # pre-activations mostly in [-8, 8], where the curves bend
        y = ops.fused_linear(x, w, b, activation=activation, transposed=transposed)
        ref, scale = linear_ref(x, w, b, activation, transposed)
        assert_close(y, ref, scale, activation)


@pytest.mark.parametrize("activation", ACTS)
def test_activation_extremes(tier, activation):
    """Large and tiny pre-activations (exp range clamps, erf tails)."""
    v = np.array([-100, -30, -10, -3, -1e-3, -0.0, 0.0, 1e-3, 3, 10, 30, 100], np.float32)
    x = np.ones((1, 1), np.float32)
    w = v.reshape(-1, 1).copy()  # y[n] = v[n]
    y = ops.fused_linear(x, w, activation=activation)[0]
    ref, _ = linear_ref(x, w, None, activation)
    np.testing.assert_allclose(y, ref[0], rtol=2e-6, atol=1e-6)


def test_nan_propagates(tier):
    rng = np.random.default_rng(0)
    x, w, b = make(rng, 3, 20, 40, False)
    x[1, 17] = np.nan
    for activation in ACTS:
        y = ops.fused_linear(x, w, b, activation=activation)
        assert np.all(np.isnan(y[1])), activation
        assert np.all(np.isfinite(y[[0, 2]])), activation


@pytest.mark.parametrize("transposed", [False, True])
def test_large_m_blocked_path(tier, transposed):
    """M > 4 with K > 256 takes the K-blocked path (partial sums in y)."""
    rng = np.random.default_rng(3)
    x, w, b = make(rng, 70, 90, 700, transposed)
    for activation in ("none", "relu", "silu"):
        y = ops.fused_linear(x, w, b, activation=activation, transposed=transposed)
        ref, scale = linear_ref(x, w, b, activation, transposed)
        assert_close(y, ref, scale, activation)


def test_one_d_input_and_no_bias(tier):
    rng = np.random.default_rng(1)
    for transposed in (False, True):
        x, w, _ = make(rng, 1, 45, 77, transposed, bias=False, one_d=True)
        y = ops.fused_linear(x, w, transposed=transposed)
        assert y.shape == (45,)
        ref, scale = linear_ref(x, w, None, transposed=transposed)
        assert_close(y, ref, scale)


def test_empty_k_gives_activation_of_bias(tier):
    b = np.array([-1.0, 0.5, 2.0], np.float32)
    for transposed in (False, True):
        w = np.zeros((0, 3) if transposed else (3, 0), np.float32)
        y = ops.fused_linear(np.zeros((2, 0), np.float32), w, b, activation="relu", transposed=transposed)
        np.testing.assert_array_equal(y, np.array([[0, 0.5, 2.0]] * 2, np.float32))


def test_empty_m():
    y = ops.fused_linear(np.zeros((0, 5), np.float32), np.ones((3, 5), np.float32))
    assert y.shape == (0, 3)


def test_out_is_written_and_returned(tier):
    rng = np.random.default_rng(2)
    x, w, b = make(rng, 5, 24, 33, False)
    out = np.full((5, 24), np.nan, np.float32)
    y = ops.fused_linear(x, w, b, activation="gelu", out=out)
    assert y is out
    ref, scale = linear_ref(x, w, b, "gelu")
    assert_close(out, ref, scale, "gelu")


@given(
    m=st.integers(1, 40),
    n=st.integers(1, 140),
    k=st.integers(1, 300),
    transposed=st.booleans(),
    bias=st.booleans(),
    activation=st.sampled_from(ACTS),
    seed=st.integers(0, 2**32 - 1),
)
@settings(max_examples=60, deadline=None)
def test_random_shapes_every_tier(m, n, k, transposed, bias, activation, seed):
    rng = np.random.default_rng(seed)
    x, w, b = make(rng, m, n, k, transposed, bias)
    ref, scale = linear_ref(x, w, b, activation, transposed)
    for tier in ops.capabilities()["available"]:
        with ops.forced_tier(tier):
            y = ops.fused_linear(x, w, b, activation=activation, transposed=transposed)
        assert_close(y, ref, scale, activation)


def test_simd_tiers_agree_with_scalar_reference():
    """Every SIMD tier against the scalar C reference on the same inputs."""
    rng = np.random.default_rng(11)
    tiers = ops.capabilities()["available"]
    for transposed in (False, True):
        for m, n, k in [(1, 300, 700), (3, 129, 65), (8, 64, 1024), (37, 50, 333)]:
            x, w, b = make(rng, m, n, k, transposed)
            with ops.forced_tier("scalar"):
                want = ops.fused_linear(x, w, b, activation="silu", transposed=transposed)
            ref, scale = linear_ref(x, w, b, "silu", transposed)
            for tier in tiers:
                with ops.forced_tier(tier):
                    got = ops.fused_linear(x, w, b, activation="silu", transposed=transposed)
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=4e-6 * scale.max())
