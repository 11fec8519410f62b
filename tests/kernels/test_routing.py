"""route_topk and ema_update on every tier against NumPy references."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.kernels import ema_ref, topk_ref

from edgecore import ops

EXPERT_COUNTS = [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 129]


def check_topk(logits, k, bonus=None):
    ids, weights = ops.route_topk(logits, k, bonus=bonus)
    want_ids, want_w, bad = topk_ref(logits, k, bonus)
    assert not bad, "test inputs must be valid here"
    np.testing.assert_array_equal(np.atleast_2d(ids), want_ids)
    np.testing.assert_allclose(np.atleast_2d(weights), want_w, rtol=2e-6, atol=1e-7)
    assert ids.dtype == np.int32 and weights.dtype == np.float32


@pytest.mark.parametrize("e", EXPERT_COUNTS)
def test_topk_matches_reference(tier, e):
    rng = np.random.default_rng(e)
    for k in sorted({1, min(2, e), min(3, e), min(8, e), e}):
        logits = rng.standard_normal((9, e)).astype(np.float32)
        check_topk(logits, k)
        bonus = rng.uniform(0, 1.5, e).astype(np.float32)
        check_topk(logits, k, bonus)


def test_topk_ties_go_to_lower_id(tier):
    # integer logits: many exact ties, including -0.0 == +0.0
    rng = np.random.default_rng(5)
    for e in (8, 17, 64):
        logits = rng.integers(-2, 3, (50, e)).astype(np.float32)
        logits[logits == 0] = rng.choice([-0.0, 0.0], size=int((logits == 0).sum()))
        for k in (1, 2, 4):
            check_topk(logits, k)
            check_topk(logits, k, bonus=rng.integers(0, 2, e).astype(np.float32))
    ids, _ = ops.route_topk(np.zeros((1, 16), np.float32), 3)
    np.testing.assert_array_equal(ids, [[0, 1, 2]])


def test_topk_nan_never_wins_over_finite(tier):
    for e in (4, 8, 9, 16, 33):
        logits = np.full((1, e), np.nan, np.float32)
        logits[0, [1, e - 1]] = [0.5, -3.0]
        ids, w = ops.route_topk(logits, 2)
        np.testing.assert_array_equal(ids, [[1, e - 1]])
        np.testing.assert_allclose(w, [[1 / (1 + np.exp(-3.5)), 1 / (1 + np.exp(3.5))]], rtol=1e-6)


def test_topk_minus_inf_logit_is_a_valid_loser(tier):
    logits = np.array([[-np.inf, 1.0, 2.0, -np.inf]], np.float32)
    ids, _ = ops.route_topk(logits, 2)
    np.testing.assert_array_equal(ids, [[2, 1]])


def test_topk_weights_use_original_logits_not_bonus(tier):
    logits = np.array([[3.0, 1.0, 0.0, 2.0]], np.float32)
    bonus = np.array([0.0, 5.0, 0.0, 0.0], np.float32)
    ids, w = ops.route_topk(logits, 2, bonus=bonus)
    np.testing.assert_array_equal(ids, [[1, 0]])  # 6.0 then 3.0
    want = np.exp([1.0, 3.0]) / np.exp([1.0, 3.0]).sum()
    np.testing.assert_allclose(w[0], want, rtol=1e-6)


@pytest.mark.parametrize("bad_row", [0, 3, 6])
def test_topk_undefined_weights_raise_naming_the_row(tier, bad_row):
    logits = np.random.default_rng(0).standard_normal((7, 8)).astype(np.float32)
    logits[bad_row] = np.nan
    logits[bad_row, 2] = 1.0
    with pytest.raises(ValueError, match=rf"row {bad_row} has 1 finite logits, fewer than k=2"):
        ops.route_topk(logits, 2)
    logits[bad_row] = 0.0
    logits[bad_row, 5] = np.inf
    with pytest.raises(ValueError, match=rf"row {bad_row} selects a \+inf logit"):
        ops.route_topk(logits, 2)


def test_topk_one_d_and_empty():
    ids, w = ops.route_topk(np.array([0.0, 2.0, 1.0], np.float32), 2)
    assert ids.shape == (2,) and w.shape == (2,)
    np.testing.assert_array_equal(ids, [1, 2])
    ids, w = ops.route_topk(np.zeros((0, 8), np.float32), 2)
    assert ids.shape == (0, 2) and w.shape == (0, 2)


def test_topk_many_rows_threaded_matches_reference():
    rng = np.random.default_rng(9)
    logits = rng.standard_normal((4096, 64)).astype(np.float32)
    check_topk(logits, 8)


@given(
    t=st.integers(1, 30),
    e=st.integers(1, 150),
    data=st.data(),
    with_bonus=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
@settings(max_examples=80, deadline=None)
def test_topk_random_every_tier(t, e, data, with_bonus, seed):
    k = data.draw(st.integers(1, e))
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((t, e)).astype(np.float32)
    # sprinkle NaNs and ties, keeping at least k finite logits per row
    if e > k:
        mask = rng.random((t, e)) < 0.15
        mask[:, :k] = False
        logits[mask] = np.nan
    logits[rng.random((t, e)) < 0.2] = 0.5
    bonus = rng.uniform(0, 2, e).astype(np.float32) if with_bonus else None
    for tier in ops.capabilities()["available"]:
        with ops.forced_tier(tier):
            check_topk(logits, k, bonus)


# ---- ema_update ----------------------------------------------------------------


def check_ema(scores, ids, decay, boost, max_score, counts=None):
    want, want_counts = ema_ref(scores, ids, decay, boost, max_score, counts)
    s = scores.copy()
    c = None if counts is None else counts.copy()
    ops.ema_update(s, ids, decay=decay, boost=boost, max_score=max_score, counts=c)
    np.testing.assert_allclose(s, want, rtol=1e-6, atol=1e-7)
    if c is not None:
        np.testing.assert_array_equal(c, want_counts)


@pytest.mark.parametrize("e", EXPERT_COUNTS + [1024, 65536, 70001])
def test_ema_matches_reference(tier, e):
    rng = np.random.default_rng(e)
    scores = rng.uniform(-0.2, 1.3, e).astype(np.float32)
    ids = rng.integers(0, e, min(3 * e, 40)).astype(np.int32)  # duplicates included
    counts = rng.integers(0, 1000, e).astype(np.uint64)
    check_ema(scores, ids, 0.9, 0.25, 1.0, counts)
    check_ema(scores, ids, 1.0, 0.0, 0.5)
    check_ema(scores, ids[:0], 0.5, 1.0, 2.0)


def test_ema_duplicate_ids_count_once(tier):
    s = np.zeros(8, np.float32)
    c = np.zeros(8, np.uint64)
    ops.ema_update(s, np.array([3, 3, 3, 5], np.int32), decay=1.0, boost=0.25, max_score=1.0, counts=c)
    np.testing.assert_array_equal(s, [0, 0, 0, 0.25, 0, 0.25, 0, 0])
    np.testing.assert_array_equal(c, [0, 0, 0, 1, 0, 1, 0, 0])


def test_ema_nan_scores_become_zero_and_clamp(tier):
    s = np.array([np.nan, 5.0, -1.0, 0.5, np.inf, -np.inf, 0.2, 0.9, np.nan], np.float32)
    ops.ema_update(s, np.array([0, 8], np.int64), decay=0.5, boost=0.1, max_score=1.0)
    np.testing.assert_allclose(s, [0.0, 1.0, 0.0, 0.25, 1.0, 0.0, 0.1, 0.45, 0.0], rtol=1e-6)


@pytest.mark.parametrize("bad", [-1, 16, 2**31 - 1])
def test_ema_out_of_range_id_raises_and_changes_nothing(tier, bad):
    s = np.linspace(0, 1, 16).astype(np.float32)
    c = np.zeros(16, np.uint64)
    before = s.copy()
    ids = np.array([1, 2, bad, 4], np.int32)
    with pytest.raises(ValueError, match=rf"activated\[2\] = {bad} is not an expert id in \[0, 16\)"):
        ops.ema_update(s, ids, decay=0.9, boost=1.0, counts=c)
    np.testing.assert_array_equal(s, before)
    assert not c.any()
    with pytest.raises(ValueError, match=r"activated\[2\]"):
        ops.ema_update(s, ids.astype(np.int64), decay=0.9, boost=1.0)
    with pytest.raises(ValueError, match="not an expert id"):
        ops.ema_update(s, np.array([2**40], np.int64), decay=0.9, boost=1.0)


@given(
    e=st.integers(1, 300),
    n_ids=st.integers(0, 64),
    decay=st.floats(0, 1),
    boost=st.floats(0, 2),
    max_score=st.floats(0.01, 4),
    seed=st.integers(0, 2**32 - 1),
)
@settings(max_examples=80, deadline=None)
def test_ema_random_every_tier(e, n_ids, decay, boost, max_score, seed):
    rng = np.random.default_rng(seed)
    scores = rng.uniform(-1, 5, e).astype(np.float32)
    ids = rng.integers(0, e, n_ids).astype(np.int32)
    counts = rng.integers(0, 50, e).astype(np.uint64)
    for tier in ops.capabilities()["available"]:
        with ops.forced_tier(tier):
            check_ema(scores, ids, decay, boost, max_score, counts)


# ---- int64 ids and the type of k (issue 15) --------------------------------------


def test_ema_int64_ids_are_read_in_place(tier):
    """NumPy's default integer is int64: its ids must not be narrowed into a
    copy first (the slow path was ~6x an int32 call). tracemalloc sees every
    NumPy data allocation, so a narrowed copy of 200k ids (800 KB) shows."""
    import tracemalloc

    ids = (np.arange(200_000, dtype=np.int64) * 7) % 16
    s64 = np.linspace(0, 1, 16).astype(np.float32)
    s32 = s64.copy()
    c64 = np.zeros(16, np.uint64)
    tracemalloc.start()
    try:
        ops.ema_update(s64, ids, decay=0.9, boost=0.25, counts=c64)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < ids.nbytes // 16, f"{peak} bytes allocated for {ids.nbytes} bytes of ids"
    c32 = np.zeros(16, np.uint64)
    ops.ema_update(s32, ids.astype(np.int32), decay=0.9, boost=0.25, counts=c32)
    np.testing.assert_array_equal(s64, s32)
    np.testing.assert_array_equal(c64, c32)
    want, _ = ema_ref(np.linspace(0, 1, 16).astype(np.float32), ids, 0.9, 0.25, 1.0, None)
    np.testing.assert_allclose(s64, want, rtol=1e-6, atol=1e-7)


def test_ema_int64_ids_checked_like_int32(tier):
    s = np.zeros(8, np.float32)
    with pytest.raises(ValueError, match="C-contiguous"):
        ops.ema_update(s, np.arange(8, dtype=np.int64)[::2], decay=0.5, boost=0.1)
    with pytest.raises(ValueError, match=r"activated\[1\] = -3 is not an expert id"):
        ops.ema_update(s, np.array([1, -3], np.int64), decay=0.5, boost=0.1)
    assert not s.any()
    with pytest.raises(TypeError, match="int32 or int64"):
        ops.ema_update(s, np.array([1], np.int16), decay=0.5, boost=0.1)


@pytest.mark.parametrize("k", [True, False, 2.0, "2", None])
def test_route_topk_rejects_a_k_that_is_not_an_integer(k):
    with pytest.raises(TypeError, match="k must be an integer number of experts"):
        ops.route_topk(np.zeros((1, 4), np.float32), k)


def test_route_topk_accepts_numpy_integers():
    ids, _ = ops.route_topk(np.array([0.0, 3.0, 1.0, 2.0], np.float32), np.int64(2))
    np.testing.assert_array_equal(ids, [1, 3])
