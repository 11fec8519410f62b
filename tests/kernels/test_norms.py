"""RMSNorm and LayerNorm (plain and fused with the residual add) on every
available tier, against float64 NumPy references, within the error bound
stated in docs/kernel-tiers.md (tests/support/pertoken.py: norm_tolerance);
NaN/inf, in-place use, thread-count invariance and bad arguments."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.kernels import EDGE_SIZES
from support.pertoken import layer_norm_ref, norm_tolerance, rms_norm_ref

from edgecore import ops

DIMS = EDGE_SIZES + [255, 256, 257, 576, 640, 1023, 1024, 2048, 4099]


def check(y, s, w, b, eps, layer, unit_offset=False):
    ref = layer_norm_ref(s, w, b, eps, unit_offset) if layer else rms_norm_ref(s, w, eps, unit_offset)
    tol = norm_tolerance(s, w, b, s.shape[-1], eps, layer, unit_offset)
    err = np.abs(y.astype(np.float64) - ref)
    worst = np.unravel_index(np.argmax(err - tol), err.shape)
    assert np.all(err <= tol), f"at {worst}: got {y[worst]}, want {ref[worst]}, tol {tol[worst]:.3g}"


def data(rng, m, d, offset=0.0, spread=1.0):
    x = (rng.standard_normal((m, d)) * spread + offset).astype(np.float32)
    w = rng.uniform(-2, 2, d).astype(np.float32)
    b = rng.standard_normal(d).astype(np.float32)
    return x, w, b


@pytest.mark.parametrize("d", DIMS)
def test_rms_norm(tier, d):
    rng = np.random.default_rng(d)
    for m in (1, 3, 7):
        x, w, _ = data(rng, m, d)
        check(ops.rms_norm(x, w, 1e-6), x, w, None, 1e-6, False)


@pytest.mark.parametrize("d", DIMS)
def test_layer_norm(tier, d):
    rng = np.random.default_rng(d + 1)
    for m, offset in ((1, 0.0), (3, 30.0), (5, -2.0)):
        x, w, b = data(rng, m, d, offset)
        check(ops.layer_norm(x, w, b, 1e-5), x, w, b, 1e-5, True)
        check(ops.layer_norm(x, w, None, 1e-5), x, w, None, 1e-5, True)


@pytest.mark.parametrize("layer", [False, True])
@pytest.mark.parametrize("d", [1, 7, 16, 33, 64, 129, 576, 1000])
def test_fused_residual_add(tier, layer, d):
    """x += residual in place (bitwise the float32 sum), then the norm of it."""
    rng = np.random.default_rng(d)
    x, w, b = data(rng, 6, d)
    delta = rng.standard_normal((6, d)).astype(np.float32)
    want_sum = x + delta
    if layer:
        y = ops.layer_norm(x, w, b, 1e-5, residual=delta)
    else:
        y = ops.rms_norm(x, w, 1e-5, residual=delta)
    np.testing.assert_array_equal(x, want_sum)
    check(y, want_sum, w, b if layer else None, 1e-5, layer)


@pytest.mark.parametrize("layer", [False, True])
def test_unit_offset_weight(tier, layer):
    """Gemma stores w - 1: unit_offset=True scales by 1 + w."""
    rng = np.random.default_rng(0)
    x, w, b = data(rng, 4, 640)
    w *= 0.1
    if layer:
        y = ops.layer_norm(x, w, b, 1e-6, unit_offset=True)
    else:
        y = ops.rms_norm(x, w, 1e-6, unit_offset=True)
    check(y, x, w, b if layer else None, 1e-6, layer, unit_offset=True)


@pytest.mark.parametrize("layer", [False, True])
def test_eps_dominates_tiny_rows(tier, layer):
    x = np.full((2, 40), 1e-4, np.float32)
    x[1] = 0.0
    w = np.ones(40, np.float32)
    y = ops.layer_norm(x, w, None, 0.5) if layer else ops.rms_norm(x, w, 0.5)
    check(y, x, w, None, 0.5, layer)
    assert np.all(y[1] == 0.0)


@pytest.mark.parametrize("layer", [False, True])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_stays_in_its_row(tier, layer, bad):
    """A NaN or inf poisons its own row as in the float64 reference and
    leaves the other rows exact."""
    rng = np.random.default_rng(1)
    x, w, b = data(rng, 3, 100)
    x[1, 37] = bad
    y = ops.layer_norm(x, w, b, 1e-5) if layer else ops.rms_norm(x, w, 1e-5)
    with np.errstate(invalid="ignore"):
        ref = layer_norm_ref(x, w, b, 1e-5) if layer else rms_norm_ref(x, w, 1e-5)
    np.testing.assert_array_equal(np.isnan(y[1]), np.isnan(ref[1]))
    assert np.isnan(y[1, 37])
    finite = np.isfinite(ref[1])
    np.testing.assert_allclose(y[1][finite], ref[1][finite], atol=1e-6)
    check(y[[0, 2]], x[[0, 2]], w, b if layer else None, 1e-5, layer)


def test_in_place_and_one_d(tier):
    rng = np.random.default_rng(2)
    x, w, b = data(rng, 3, 70)
    want = ops.rms_norm(x, w, 1e-6)
    assert ops.rms_norm(x, w, 1e-6, out=x) is x
    np.testing.assert_array_equal(x, want)
    v = rng.standard_normal(70).astype(np.float32)
    y = ops.layer_norm(v, w, b, 1e-5)
    assert y.shape == (70,)
    check(y[None], v[None], w, b, 1e-5, True)
    out = np.empty((3, 70), np.float32)
    assert ops.layer_norm(x, w, b, 1e-5, out=out) is out


def test_empty_rows(tier):
    w = np.ones(8, np.float32)
    assert ops.rms_norm(np.zeros((0, 8), np.float32), w, 1e-6).shape == (0, 8)


@pytest.fixture
def threads():
    before = ops.get_num_threads()
    yield
    ops.set_num_threads(before)


@pytest.mark.parametrize("layer", [False, True])
def test_thread_count_invariance(tier, threads, layer):
    rng = np.random.default_rng(3)
    x, w, b = data(rng, 700, 576)
    delta = rng.standard_normal((700, 576)).astype(np.float32)
    results = []
    for n in (1, 2, 3):
        ops.set_num_threads(n)
        xs = x.copy()
        y = ops.layer_norm(xs, w, b, 1e-5, residual=delta) if layer else ops.rms_norm(xs, w, 1e-5, residual=delta)
        results.append((xs, y))
    for xs, y in results[1:]:
        np.testing.assert_array_equal(xs, results[0][0])
        np.testing.assert_array_equal(y, results[0][1])


def test_rows_independent_of_batch(tier):
    """A row's result is bitwise the same alone and among others."""
    rng = np.random.default_rng(4)
    x, w, b = data(rng, 9, 333)
    whole = ops.rms_norm(x, w, 1e-6)
    for r in range(9):
        np.testing.assert_array_equal(ops.rms_norm(x[r : r + 1], w, 1e-6), whole[r : r + 1])


@given(
    m=st.integers(1, 12),
    d=st.integers(1, 700),
    layer=st.booleans(),
    residual=st.booleans(),
    offset=st.floats(-50, 50),
    seed=st.integers(0, 2**32 - 1),
)
@settings(max_examples=60, deadline=None)
def test_random_shapes_every_tier(m, d, layer, residual, offset, seed):
    rng = np.random.default_rng(seed)
    x0, w, b = data(rng, m, d, offset)
    delta = rng.standard_normal((m, d)).astype(np.float32) if residual else None
    s = x0 + delta if residual else x0
    for tier in ops.capabilities()["available"]:
        x = x0.copy()
        with ops.forced_tier(tier):
            if layer:
                y = ops.layer_norm(x, w, b, 1e-5, residual=delta)
            else:
                y = ops.rms_norm(x, w, 1e-5, residual=delta)
        check(y, s, w, b if layer else None, 1e-5, layer)


# ---- bad arguments ----------------------------------------------------------------


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda x, w, b: ops.rms_norm(x.astype(np.float64), w, 1e-6), TypeError, "rms_norm: x must be a native"),
        (lambda x, w, b: ops.rms_norm(x, w[:-1], 1e-6), ValueError, r"weight must have shape \(16,\)"),
        (lambda x, w, b: ops.rms_norm(x[:, ::2], w[:8], 1e-6), ValueError, "x must be C-contiguous"),
        (lambda x, w, b: ops.rms_norm(x[None], w, 1e-6), ValueError, r"x must be \[M, d\] or \[d\]"),
        (lambda x, w, b: ops.rms_norm(np.zeros((2, 0), np.float32), w[:0], 1e-6), ValueError, "rows are empty"),
        (lambda x, w, b: ops.rms_norm(x, w, -1.0), ValueError, "eps must be finite and >= 0"),
        (lambda x, w, b: ops.rms_norm(x, w, float("nan")), ValueError, "eps must be finite"),
        (lambda x, w, b: ops.rms_norm(x, w, 1e-6, residual=x[:2]), ValueError, "residual must have x's shape"),
        (lambda x, w, b: ops.rms_norm(x, w, 1e-6, residual=x), ValueError, "residual must not overlap x"),
        (
            lambda x, w, b: ops.rms_norm(x, w, 1e-6, out=np.zeros((3, 17), np.float32)),
            ValueError,
            "out must have x's shape",
        ),
        (lambda x, w, b: ops.rms_norm(x, w, 1e-6, out=x[::-1]), ValueError, "out must be C-contiguous"),
        (lambda x, w, b: ops.rms_norm(x[1:], w, 1e-6, out=x[:2]), ValueError, "out may be x itself"),
        (lambda x, w, b: ops.rms_norm(x, w, 1e-6, residual=x.copy(), out=x), ValueError, "out may be x itself"),
        (lambda x, w, b: ops.layer_norm(x, w, b[:3], 1e-6), ValueError, r"bias must have shape \(16,\)"),
        (lambda x, w, b: ops.layer_norm(x, w, b.astype(np.float16), 1e-6), TypeError, "bias must be a native"),
    ],
)
def test_bad_arguments(call, error, match):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 16)).astype(np.float32)
    w = np.ones(16, np.float32)
    b = np.zeros(16, np.float32)
    with pytest.raises(error, match=match):
        call(x, w, b)


def test_read_only_x_with_residual():
    x = np.ones((2, 8), np.float32)
    x.setflags(write=False)
    with pytest.raises(ValueError, match="x is read-only"):
        ops.rms_norm(x, np.ones(8, np.float32), 1e-6, residual=np.ones((2, 8), np.float32))
    ops.rms_norm(x, np.ones(8, np.float32), 1e-6)  # without residual x is only read


def test_out_overlapping_weight():
    buf = np.ones(32, np.float32)
    with pytest.raises(ValueError, match="out must not overlap weight"):
        ops.rms_norm(np.ones((1, 16), np.float32), buf[:16], 1e-6, out=buf[8:24].reshape(1, 16))
