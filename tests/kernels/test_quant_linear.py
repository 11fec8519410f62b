"""ops.linear for every weight type x every distinct kernel variant (from the
registry): against a float64 reference built from gguf's dequantizer and a
NumPy re-implementation of the activation quantization; against the
unquantized activations with the 8-bit bound; against the scalar C kernel;
NaN/inf rows; bias and every activation; and the invariances the server
relies on (a value does not depend on M, on the row's batch-mates, on which
tile or column block computed it, or on the thread count)."""

import numpy as np
import pytest
from support.quant import (
    NAMES,
    NEEDS_GGUF,
    TYPES,
    assert_within,
    block_of,
    linear_reference,
    random_weights,
    refined_reference,
    use,
    variant_params,
)

from edgecore import ops

ACTS = ["none", "relu", "gelu", "gelu_tanh", "silu"]
K_SMALL = [32, 64, 96, 256, 288, 512, 576, 1024]
K_BIG = [256, 512, 768, 1024]  # K-quants: multiples of 256
N_TAILS = [1, 2, 3, 7, 15, 16, 17, 33, 65]
M_SIZES = [1, 2, 3, 4, 5, 8, 17, 64]
PACKED_TYPES = ["q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q4_k", "q5_k", "q6_k"]  # avx512 packers


def k_sizes(name):
    return [k for k in (K_BIG if block_of(name) == 256 else K_SMALL) if k % block_of(name) == 0]


def inputs(rng, m, k, scale=1.0):
    # per-block magnitudes vary, as hidden states do, so block scales differ
    x = rng.standard_normal((m, k)) * np.exp(rng.uniform(-2, 1, (m, k // 32, 1))).repeat(32, 1).reshape(m, k)
    return (x * scale).astype(np.float32)


@NEEDS_GGUF
@pytest.mark.parametrize("m", M_SIZES)
@pytest.mark.parametrize("name, config", variant_params())
def test_matches_float64_reference(name, config, m, tested_tiers):
    """Every N tail, K cycling through the block/vector widths."""
    rng = np.random.default_rng([m, NAMES.index(name)])
    ks = k_sizes(name)
    with use(config, tested_tiers):
        for i, n in enumerate(N_TAILS):
            k = ks[(i + m) % len(ks)]
            x, w = inputs(rng, m, k), random_weights(rng, name, n, k)
            y = ops.linear(x, w, wtype=name)
            assert y.shape == (m, n) and y.dtype == np.float32
            ref, tol = linear_reference(x, w, name)
            assert_within(y, ref, tol, f"{name} m={m} n={n} k={k}")


@NEEDS_GGUF
@pytest.mark.parametrize("name, config", variant_params())
def test_close_to_unquantized_activations(name, config):
    """Against x itself: the bound adds sum_k |w_k| d_k / 2, the worst case
    of the 8-bit activation rounding (d = block max / 127)."""
    rng = np.random.default_rng(NAMES.index(name))
    with use(config):
        for m, n, k in [(1, 37, k_sizes(name)[-1]), (5, 16, k_sizes(name)[0]), (17, 9, k_sizes(name)[1])]:
            x, w = inputs(rng, m, k), random_weights(rng, name, n, k)
            ref, tol = linear_reference(x, w, name, quantized_x=False)
            assert_within(ops.linear(x, w, wtype=name), ref, tol, f"{name} vs unquantized x")


QUANTIZED_PARAMS = [p for p in variant_params() if TYPES[p.values[0]]["activations"] != "f32"]


@NEEDS_GGUF
@pytest.mark.parametrize("m", [1, 3, 17])
@pytest.mark.parametrize("name, config", QUANTIZED_PARAMS)
def test_refined_matches_float64_reference(name, config, m):
    """refine=True: x's 8-bit pass plus its residual's (NumPy re-implementation
    of both quantizations, gguf's decoder for W), with bias and SiLU."""
    rng = np.random.default_rng([m, NAMES.index(name), 1])
    with use(config):
        for i, n in enumerate((1, 7, 17, 33)):
            k = k_sizes(name)[(i + m) % len(k_sizes(name))]
            x, w = inputs(rng, m, k), random_weights(rng, name, n, k)
            b = rng.standard_normal(n).astype(np.float32)
            y = ops.linear(x, w, b, wtype=name, activation="silu", refine=True)
            ref, tol = refined_reference(x, w, name, b, "silu")
            assert_within(y, ref, tol, f"{name} refined m={m} n={n} k={k}")


@NEEDS_GGUF
@pytest.mark.parametrize("name, config", QUANTIZED_PARAMS)
def test_refined_close_to_unquantized_activations(name, config):
    """Against x itself, refine=True meets the bound of a residual pass (its
    step is at most 1/254 of x's), and is far closer than one 8-bit pass."""
    rng = np.random.default_rng(NAMES.index(name) + 50)
    k = k_sizes(name)[-1]
    with use(config):
        x, w = inputs(rng, 9, k), random_weights(rng, name, 40, k)
        ref, tol = refined_reference(x, w, name, quantized_x=False)
        refined = ops.linear(x, w, wtype=name, refine=True)
        assert_within(refined, ref, tol, f"{name} refined vs unquantized x")
        single = np.abs(ops.linear(x, w, wtype=name) - ref).mean()
        assert np.abs(refined - ref).mean() * 30 < single, "the residual pass must cut the error by 30x or more"


@pytest.mark.parametrize("name", ["f32", "f16", "bf16"])
def test_refine_is_a_no_op_for_float_activations(name):
    rng = np.random.default_rng(11)
    x, w = inputs(rng, 3, 64), random_weights(rng, name, 9, 64)
    np.testing.assert_array_equal(ops.linear(x, w, wtype=name, refine=True), ops.linear(x, w, wtype=name))
    assert ops.linear_scratch_bytes(name, 3, 64, refine=True) == 0


@NEEDS_GGUF
@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("name, config", variant_params())
def test_bias_and_activations(name, config, activation):
    rng = np.random.default_rng([ACTS.index(activation), NAMES.index(name)])
    k = k_sizes(name)[1]
    with use(config):
        for m, n in [(1, 33), (4, 17), (9, 64)]:
            x, w = inputs(rng, m, k, 0.5), random_weights(rng, name, n, k)
            b = rng.standard_normal(n).astype(np.float32)
            y = ops.linear(x, w, b, wtype=name, activation=activation)
            ref, tol = linear_reference(x, w, name, b, activation)
            assert_within(y, ref, tol, f"{name} {activation}")


@pytest.mark.parametrize("name, config", variant_params())
def test_nonfinite_activations_poison_only_their_row(name, config):
    """NaN, +inf or -inf anywhere in a row makes every output of that row
    non-finite (never a silent zero); the other rows are untouched."""
    rng = np.random.default_rng(NAMES.index(name))
    k = k_sizes(name)[-1]
    w = random_weights(rng, name, 21, k)
    clean_x = inputs(rng, 6, k)
    x = clean_x.copy()
    x[1, 3] = np.nan
    x[3, k - 1] = np.inf
    x[4, k // 2] = -np.inf
    float_x = TYPES[name]["activations"] == "f32"
    with use(config):
        for activation in ("none", "relu", "silu"):
            y = ops.linear(x, w, wtype=name, activation=activation)
            if not float_x:  # the block scale is NaN: every output of the row is NaN
                assert np.isnan(y[[1, 3, 4]]).all(), activation
            elif activation == "none":  # +-inf times the weights: inf or NaN
                assert not np.isfinite(y[[1, 3, 4]]).any()
            else:  # relu(-inf) = 0 is right; NaN goes through every activation
                assert np.isnan(y[1]).all(), activation
            # same M, same rows elsewhere: the other rows are bit for bit unchanged
            want = ops.linear(clean_x, w, wtype=name, activation=activation)
            np.testing.assert_array_equal(y[[0, 2, 5]], want[[0, 2, 5]])


@pytest.mark.parametrize("refine", [False, True], ids=["q8", "refined"])
@pytest.mark.parametrize("name, config", variant_params())
def test_row_independent_of_batch(name, config, refine):
    """Row i of an M-row call equals the same row computed alone, and in a
    batch of other rows at another position, bit for bit, for every M the
    driver tiles differently (1..8, 17, 64); refined too (its rows come in
    pairs, so the tiles hold half as many)."""
    rng = np.random.default_rng(NAMES.index(name))
    k = k_sizes(name)[-1]
    w = random_weights(rng, name, 50, k)
    xs = inputs(rng, 64, k)
    with use(config):
        alone = np.concatenate([ops.linear(xs[i : i + 1], w, wtype=name, refine=refine) for i in range(64)])
        for m in M_SIZES:
            start = (m * 7) % (64 - m + 1)
            y = ops.linear(np.ascontiguousarray(xs[start : start + m]), w, wtype=name, refine=refine)
            np.testing.assert_array_equal(y, alone[start : start + m], err_msg=f"m={m}")


@pytest.mark.parametrize("refine", [False, True], ids=["q8", "refined"])
@pytest.mark.parametrize("name, config", variant_params(PACKED_TYPES))
def test_rows_independent_of_batch_past_the_packed_strip_limit(name, config, refine):
    """K = 6656 (208 blocks, 26 super-blocks): a packed strip of 16 rows
    (640 bytes per block, 5120 or 5184 per super-block on avx512) would exceed the
    driver's 128 KiB stack buffer, so a many-tile call reads the weights
    unpacked; its rows still equal the rows computed alone, and a packed
    call at K = 2560 agrees too."""
    rng = np.random.default_rng(NAMES.index(name) + 300)
    for k in (2560, 6656):
        w = random_weights(rng, name, 20, k)
        xs = inputs(rng, 17, k)
        with use(config):
            alone = np.concatenate([ops.linear(xs[i : i + 1], w, wtype=name, refine=refine) for i in range(17)])
            y = ops.linear(xs, w, wtype=name, refine=refine)
        np.testing.assert_array_equal(y, alone, err_msg=f"k={k}")


@pytest.mark.parametrize("transposed", [False, True], ids=["nk", "kn"])
@pytest.mark.parametrize("name, config", variant_params(["f32"]))
def test_f32_rows_independent_of_batch_over_k_blocks(name, config, transposed):
    """f32 in both layouts, with K spanning several of the tuned kernels' K
    blocks and a ragged tail, and M on both sides of every path switch (row
    streaming, dot/packed tiles): each row equals the row computed alone."""
    rng = np.random.default_rng(7)
    k, n = 1000, 70
    w = rng.standard_normal((n, k)).astype(np.float32)
    weight = np.ascontiguousarray(w.T) if transposed else w
    xs = inputs(rng, 40, 1024)[:, :k].copy()
    with use(config):
        alone = np.concatenate([ops.linear(xs[i : i + 1], weight, wtype=name, transposed=transposed)
                                for i in range(40)])
        for m in (2, 3, 4, 5, 6, 7, 8, 9, 13, 40):
            y = ops.linear(np.ascontiguousarray(xs[:m]), weight, wtype=name, transposed=transposed)
            np.testing.assert_array_equal(y, alone[:m], err_msg=f"m={m}")
    # and it is the product (float32 sums of 1000 terms: a loose bound is enough here)
    np.testing.assert_allclose(alone, xs.astype(np.float64) @ w.T.astype(np.float64), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("name, config", variant_params())
def test_column_independent_of_tile(name, config):
    """Output column j is the same whether computed among N=65 columns (in
    whatever tile and column block) or from weight row j alone."""
    rng = np.random.default_rng(NAMES.index(name) + 100)
    k = k_sizes(name)[0]
    w = random_weights(rng, name, 65, k)
    x = inputs(rng, 5, k)
    with use(config):
        full = ops.linear(x, w, wtype=name)
        for j in (0, 1, 15, 16, 17, 31, 32, 64):
            one = ops.linear(x, np.ascontiguousarray(w[j : j + 1]), wtype=name)
            np.testing.assert_array_equal(one[:, 0], full[:, j], err_msg=f"column {j}")


@pytest.fixture
def threads():
    before = ops.get_num_threads()
    yield
    ops.set_num_threads(before)


@pytest.mark.parametrize("refine", [False, True], ids=["q8", "refined"])
@pytest.mark.parametrize("name, config", variant_params())
def test_thread_count_invariance(name, config, threads, refine):
    """1, 2 and 3 threads, bitwise (big enough to be split: see
    thread_calibration; the work units come from an atomic counter)."""
    rng = np.random.default_rng(NAMES.index(name) + 200)
    k = k_sizes(name)[-1]
    w = random_weights(rng, name, 777, k)
    b = rng.standard_normal(777).astype(np.float32)
    with use(config):
        for m in (1, 9):
            x = inputs(rng, m, k)
            results = []
            for n in (1, 2, 3):
                ops.set_num_threads(n)
                results.append(ops.linear(x, w, b, wtype=name, activation="gelu", refine=refine))
            for r in results[1:]:
                np.testing.assert_array_equal(r, results[0])


SIMD_PARAMS = [p for p in variant_params() if p.values[1][0] != "scalar"]


@pytest.mark.parametrize("name, config", SIMD_PARAMS)
def test_simd_variants_agree_with_scalar_kernel(name, config):
    """The same bytes and x through the scalar C kernel and the variant:
    equal within the float32 summation-order bound."""
    rng = np.random.default_rng(NAMES.index(name) + 300)
    for m, n, k in [
        (1, 300, k_sizes(name)[-1]),
        (3, 129, k_sizes(name)[0]),
        (8, 64, k_sizes(name)[-1]),
        (37, 50, k_sizes(name)[1]),
    ]:
        x, w = inputs(rng, m, k), random_weights(rng, name, n, k)
        b = rng.standard_normal(n).astype(np.float32)
        with use(("scalar", ())):
            want = ops.linear(x, w, b, wtype=name, activation="silu")
            dense = ops.dequantize(w, wtype=name).astype(np.float64)
            xq = x.astype(np.float64)
        with use(config):
            got = ops.linear(x, w, b, wtype=name, activation="silu")
        terms = k if TYPES[name]["activations"] == "f32" else k // block_of(name)
        # both are within (terms + 4) u sum|x w| of the exact value; 4x covers offset-type cancellation
        tol = 8 * (terms + 4) * 2.0**-24 * (np.abs(xq) * 1.01) @ np.abs(dense).T + 1e-6 * np.abs(want) + 1e-30
        assert_within(got, want.astype(np.float64), tol, f"{name} {config}")


@pytest.mark.parametrize("name", NAMES)
def test_one_d_input_out_and_empty(name):
    rng = np.random.default_rng(5)
    k = k_sizes(name)[0]
    w = random_weights(rng, name, 24, k)
    x = inputs(rng, 1, k)
    y1 = ops.linear(x[0], w, wtype=name)
    assert y1.shape == (24,)
    np.testing.assert_array_equal(y1, ops.linear(x, w, wtype=name)[0])
    out = np.full((3, 24), np.nan, np.float32)
    x3 = inputs(rng, 3, k)
    assert ops.linear(x3, w, wtype=name, out=out) is out
    np.testing.assert_array_equal(out, ops.linear(x3, w, wtype=name))
    assert ops.linear(np.zeros((0, k), np.float32), w, wtype=name).shape == (0, 24)


@pytest.mark.parametrize("name", NAMES)
def test_caller_scratch_is_used_and_reusable(name):
    rng = np.random.default_rng(6)
    k = k_sizes(name)[-1]
    w = random_weights(rng, name, 40, k)
    x = inputs(rng, 7, k)
    need = ops.linear_scratch_bytes(name, 7, k)
    fmt = TYPES[name]["activations"]
    block_bytes = {"f32": 0, "q8_32": 40 / 32, "q8_256": 292 / 256}[fmt]
    assert need >= 7 * k * block_bytes and (need == 0) == (fmt == "f32")
    scratch = np.full(max(need, 1), 0xAB, np.uint8)
    want = ops.linear(x, w, wtype=name)
    for _ in range(2):
        np.testing.assert_array_equal(ops.linear(x, w, wtype=name, scratch=scratch), want)
    refined = ops.linear_scratch_bytes(name, 7, k, refine=True)
    assert refined >= 2 * 7 * k * block_bytes and (refined == 0) == (fmt == "f32")
    if refined:  # a scratch sized for one pass is refused for two
        want2 = ops.linear(x, w, wtype=name, refine=True)
        np.testing.assert_array_equal(ops.linear(x, w, wtype=name, refine=True, scratch=np.empty(refined, np.uint8)),
                                      want2)
        with pytest.raises(ValueError, match=rf"this call needs {refined}"):
            ops.linear(x, w, wtype=name, refine=True, scratch=np.empty(refined - 1, np.uint8))
    if need:
        assert (scratch != 0xAB).any()  # the quantized x went there
        with pytest.raises(ValueError, match=rf"scratch has {need - 1} bytes, this call needs {need}"):
            ops.linear(x, w, wtype=name, scratch=scratch[: need - 1])


def test_f32_transposed_matches_fused_linear():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((5, 70)).astype(np.float32)
    w = rng.standard_normal((70, 33)).astype(np.float32)
    b = rng.standard_normal(33).astype(np.float32)
    for tier in ops.capabilities()["available"]:
        with ops.forced_tier(tier):
            np.testing.assert_array_equal(
                ops.linear(x, w, b, wtype="f32", transposed=True, activation="relu"),
                ops.fused_linear(x, w, b, transposed=True, activation="relu"),
            )
