"""RoPE (rotate-half and interleaved) on every available tier, against a
float64 NumPy reference on the same float32 tables and against Hugging Face
transformers' apply_rotary_pos_emb; per-row positions, rotary_dim <
head_dim, strided rows, thread-count invariance and bad arguments."""

from __future__ import annotations

import numpy as np
import pytest
from support.pertoken import U, rope_ref, rope_tables

from edgecore import ops

HEAD_DIMS = [2, 4, 6, 8, 10, 16, 18, 30, 32, 34, 64, 80, 96, 128, 256]


def check(x_after, x_before, positions, cos, sin, interleaved):
    ref, mag = rope_ref(x_before, positions, cos, sin, interleaved)
    rot = 2 * cos.shape[1]
    # two products and a sum: at most 3 roundings of |a c| + |b s| (scalar;
    # the fused SIMD form has 2)
    tol = 4 * U * mag[..., :rot] + 1e-38
    err = np.abs(x_after[..., :rot].astype(np.float64) - ref[..., :rot])
    assert np.all(err <= tol), f"max error {err.max():.3g}"
    np.testing.assert_array_equal(x_after[..., rot:], x_before[..., rot:])  # the rest of each head untouched


@pytest.mark.parametrize("interleaved", [False, True], ids=["half", "interleaved"])
@pytest.mark.parametrize("hd", HEAD_DIMS)
def test_full_rotary_dim(tier, interleaved, hd):
    rng = np.random.default_rng(hd)
    cos, sin = rope_tables(300, hd)
    for m, heads in ((1, 1), (3, 9), (17, 2)):
        x0 = rng.standard_normal((m, heads, hd)).astype(np.float32)
        positions = rng.integers(0, 300, m).astype(np.int32)
        x = x0.copy()
        assert ops.rope(x, positions, cos, sin, interleaved=interleaved) is x
        check(x, x0, positions, cos, sin, interleaved)


@pytest.mark.parametrize("interleaved", [False, True], ids=["half", "interleaved"])
@pytest.mark.parametrize(
    "hd, rot", [(64, 32), (64, 2), (80, 40), (96, 48), (128, 64), (256, 128), (34, 18), (33, 30), (9, 6), (64, 62)]
)
def test_partial_rotary_dim(tier, interleaved, hd, rot):
    """rotary_dim < head_dim (Phi, GPT-NeoX, GLM): the tail of every head is untouched."""
    rng = np.random.default_rng(hd + rot)
    cos, sin = rope_tables(64, rot)
    x0 = rng.standard_normal((6, 5, hd)).astype(np.float32)
    positions = np.array([0, 63, 5, 5, 31, 1], np.int64)
    x = x0.copy()
    ops.rope(x, positions, cos, sin, interleaved=interleaved, rotary_dim=rot)
    check(x, x0, positions, cos, sin, interleaved)


def test_matches_transformers_rotate_half(tier):
    """Hugging Face Llama's apply_rotary_pos_emb in float64 on the same tables."""
    torch = pytest.importorskip("torch")
    llama = pytest.importorskip("transformers.models.llama.modeling_llama")
    rng = np.random.default_rng(0)
    hd, heads, m = 64, 9, 11
    cos, sin = rope_tables(128, hd)
    x0 = rng.standard_normal((m, heads, hd)).astype(np.float32)
    positions = rng.integers(0, 128, m).astype(np.int64)
    x = x0.copy()
    ops.rope(x, positions, cos, sin)
    c = torch.from_numpy(np.concatenate([cos, cos], axis=1)[positions].astype(np.float64))[None]  # [1, m, hd]
    s = torch.from_numpy(np.concatenate([sin, sin], axis=1)[positions].astype(np.float64))[None]
    q = torch.from_numpy(x0.astype(np.float64)).permute(1, 0, 2)[None]  # [1, heads, m, hd]
    want, _ = llama.apply_rotary_pos_emb(q, q, c, s)
    want = want[0].permute(1, 0, 2).numpy()
    np.testing.assert_allclose(x, want, rtol=0, atol=4 * U * np.abs(x0).max() * 2)


def test_interleaved_is_rotate_half_on_permuted_heads(tier):
    """GGUF's llama layout: interleaved RoPE on x equals rotate-half RoPE on
    x with each head's even elements first, then its odd ones."""
    rng = np.random.default_rng(1)
    hd = 64
    cos, sin = rope_tables(50, hd)
    x = rng.standard_normal((7, 3, hd)).astype(np.float32)
    positions = rng.integers(0, 50, 7).astype(np.int32)
    perm = np.concatenate([np.arange(0, hd, 2), np.arange(1, hd, 2)])
    a, b = x.copy(), np.ascontiguousarray(x[..., perm])
    ops.rope(a, positions, cos, sin, interleaved=True)
    ops.rope(b, positions, cos, sin)
    np.testing.assert_array_equal(a[..., perm], b)


def test_strided_rows_of_a_fused_qkv(tier):
    """q and k rotated in place inside one [M, H + 2 KVH, D] activation;
    v (and everything else) untouched."""
    rng = np.random.default_rng(2)
    hd, h, kvh, m = 32, 4, 2, 5
    cos, sin = rope_tables(20, hd)
    qkv0 = rng.standard_normal((m, h + 2 * kvh, hd)).astype(np.float32)
    positions = np.arange(3, 3 + m, dtype=np.int32)
    qkv = qkv0.copy()
    ops.rope(qkv[:, :h], positions, cos, sin)
    ops.rope(qkv[:, h : h + kvh], positions, cos, sin)
    check(qkv[:, : h + kvh], qkv0[:, : h + kvh], positions, cos, sin, False)
    np.testing.assert_array_equal(qkv[:, h + kvh :], qkv0[:, h + kvh :])


def test_rows_independent_of_batch(tier):
    rng = np.random.default_rng(3)
    cos, sin = rope_tables(100, 64)
    x = rng.standard_normal((9, 3, 64)).astype(np.float32)
    positions = rng.integers(0, 100, 9).astype(np.int32)
    whole = x.copy()
    ops.rope(whole, positions, cos, sin)
    for r in range(9):
        one = x[r : r + 1].copy()
        ops.rope(one, positions[r : r + 1], cos, sin)
        np.testing.assert_array_equal(one, whole[r : r + 1])


@pytest.fixture
def threads():
    before = ops.get_num_threads()
    yield
    ops.set_num_threads(before)


@pytest.mark.parametrize("interleaved", [False, True], ids=["half", "interleaved"])
def test_thread_count_invariance(tier, threads, interleaved):
    rng = np.random.default_rng(4)
    cos, sin = rope_tables(2048, 128)
    x0 = rng.standard_normal((2048, 8, 128)).astype(np.float32)
    positions = rng.permutation(2048).astype(np.int32)
    results = []
    for n in (1, 2, 3):
        ops.set_num_threads(n)
        x = x0.copy()
        ops.rope(x, positions, cos, sin, interleaved=interleaved)
        results.append(x)
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


def test_nan_stays_in_its_pair(tier):
    cos, sin = rope_tables(10, 8)
    x = np.ones((1, 2, 8), np.float32)
    x[0, 1, 2] = np.nan
    ops.rope(x, np.array([3], np.int32), cos, sin)
    assert np.isnan(x[0, 1, 2]) and np.isnan(x[0, 1, 6])  # the pair (2, 6)
    assert np.sum(np.isnan(x)) == 2


# ---- bad arguments ----------------------------------------------------------------


@pytest.mark.parametrize(
    "change, error, match",
    [
        (
            lambda a: a.update(positions=np.array([0, 10], np.int32)),
            ValueError,
            r"positions\[1\] = 10 is outside the tables' \[0, 10\)",
        ),
        (lambda a: a.update(positions=np.array([-1, 0], np.int64)), ValueError, r"positions\[0\] = -1 is outside"),
        (lambda a: a.update(positions=np.array([0, 1], np.float32)), TypeError, "positions must be int32 or int64"),
        (lambda a: a.update(positions=np.array([0, 1, 2], np.int32)), ValueError, r"positions must have shape \(2,\)"),
        (lambda a: a.update(x=a["x"].astype(np.float64)), TypeError, "x must be a native-byte-order float32"),
        (lambda a: a.update(x=a["x"].reshape(2, 24)), ValueError, r"x must be 3-D"),
        (lambda a: a.update(x=a["x"][:, :, ::2]), ValueError, "each row of x must be contiguous"),
        (lambda a: a.update(sin=a["sin"][:, :2].copy()), ValueError, "sin shape"),
        (lambda a: a.update(cos=a["cos"].astype(np.float64)), TypeError, "cos must be a native"),
        (lambda a: a.update(rotary_dim=4), ValueError, "rotary_dim=4 does not match the tables"),
        (
            lambda a: a.update(cos=np.ones((10, 5), np.float32), sin=np.ones((10, 5), np.float32)),
            ValueError,
            "rotary_dim 10 .* exceeds head_dim 8",
        ),
    ],
)
def test_bad_arguments_leave_x_unchanged(change, error, match):
    cos, sin = rope_tables(10, 8)
    x = np.random.default_rng(0).standard_normal((2, 3, 8)).astype(np.float32)
    args = dict(x=x, positions=np.array([1, 2], np.int32), cos=cos, sin=sin)
    change(args)
    x0 = x.copy()
    with pytest.raises(error, match=match):
        ops.rope(**args)
    np.testing.assert_array_equal(x, x0)


def test_read_only_x():
    cos, sin = rope_tables(4, 8)
    x = np.ones((1, 1, 8), np.float32)
    x.setflags(write=False)
    with pytest.raises(ValueError, match="x is read-only"):
        ops.rope(x, np.zeros(1, np.int32), cos, sin)
