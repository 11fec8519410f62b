"""Paged attention and the KV cache store on every available tier, against
float64 NumPy references written from the math (tests/support/pertoken.py):
page sizes 1 and 16 with contexts crossing pages, GQA groups, windows,
soft-capping, f16 KV (vs the reference on K/V rounded to f16), Q8_0 KV
(vs the reference on K/V through the gguf package's quantizer and
dequantizer; stores bit for bit its quantizer), NaN/inf,
prefill == decode row by row, batch and thread-count invariance (bitwise),
no per-call allocation at 4096 keys, and bad arguments."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.pertoken import (
    Q8_0,
    assert_attention_close,
    attention_ref,
    batch_rows,
    build_paged,
    cache_array,
    place,
    q8_0_quantize,
    stored,
)

from edgecore import ops

KV_DTYPES = [np.float32, np.float16, Q8_0]
KV_IDS = ["f32", "f16", "q8_0"]
FLOAT_KV = KV_DTYPES[:2]  # element types any head dim takes


def dtype_hd(hds):
    """(dtype, hd) cases: every dtype with every head dim it takes (Q8_0:
    multiples of 32; a bad one is refused, test_q8_0_head_dim_must_be_blocks)."""
    return [
        pytest.param(dt, hd, id=f"{name}-{hd}")
        for dt, name in zip(KV_DTYPES, KV_IDS, strict=True)
        for hd in hds
        if dt is not Q8_0 or hd % 32 == 0
    ]


@pytest.fixture
def threads():
    before = ops.get_num_threads()
    yield
    ops.set_num_threads(before)


def run_case(rng, *, lens, pos0, kv_heads, group, hd, page_tokens, dtype, window=0, softcap=0.0, scale=None):
    contexts = [p + n for p, n in zip(pos0, lens, strict=True)]
    pg = build_paged(rng, contexts, kv_heads, hd, page_tokens, dtype)
    starts, p0 = batch_rows(lens, pos0)
    q = rng.standard_normal((int(starts[-1]), kv_heads * group, hd)).astype(np.float32)
    scale = hd**-0.5 if scale is None else scale
    out = ops.attention(
        q, pg.k_cache, pg.v_cache, pg.page_table, starts, p0, scale=scale, window=window, softcap=softcap
    )
    ref, mag, n_keys = attention_ref(q, pg.keys, pg.values, starts, p0, scale, window, softcap, dtype)
    assert out.shape == (starts[-1], kv_heads * group * hd)
    assert_attention_close(out, ref, mag, n_keys, hd, softcap)
    return pg, q, starts, p0, out


@pytest.mark.parametrize(("dtype", "hd"), dtype_hd([32, 64, 80, 96, 128, 256]))
@pytest.mark.parametrize("group", [1, 3, 4])
@pytest.mark.parametrize("page_tokens", [1, 16])
def test_matches_reference(tier, dtype, hd, group, page_tokens):
    """Decode rows and prefill chunks of several sequences in one call;
    contexts cross page boundaries (1 and 16 tokens a page)."""
    rng = np.random.default_rng(hd * 7 + group * 3 + page_tokens)
    run_case(
        rng,
        lens=[1, 5, 1, 37, 2],
        pos0=[0, 14, 16, 90, 129],
        kv_heads=2,
        group=group,
        hd=hd,
        page_tokens=page_tokens,
        dtype=dtype,
    )


@pytest.mark.parametrize("dtype", FLOAT_KV, ids=KV_IDS[:2])
@pytest.mark.parametrize("hd", [1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 33, 63, 65, 127, 129])
def test_odd_head_dims(tier, dtype, hd):
    """Head dims around every vector width (4, 8, 16 lanes) and tails."""
    rng = np.random.default_rng(hd)
    run_case(rng, lens=[3, 1, 9], pos0=[0, 66, 60], kv_heads=1, group=3, hd=hd, page_tokens=16, dtype=dtype)


@pytest.mark.parametrize("group", [1, 2, 5, 8, 16, 17, 24, 40])
def test_group_sizes(tier, group):
    """GQA groups up to and past the 16 query vectors of one unit (split
    into chunks), with prefill rows sharing the unit."""
    rng = np.random.default_rng(group)
    run_case(rng, lens=[1, 20], pos0=[50, 3], kv_heads=2, group=group, hd=64, page_tokens=16, dtype=np.float32)


@pytest.mark.parametrize("dtype", KV_DTYPES, ids=KV_IDS)
@pytest.mark.parametrize("window", [1, 2, 15, 16, 17, 64, 65, 100, 1000])
@pytest.mark.parametrize("page_tokens", [1, 16])
def test_windows(tier, dtype, window, page_tokens):
    rng = np.random.default_rng(window + page_tokens)
    run_case(
        rng,
        lens=[1, 40, 1, 3],
        pos0=[0, 70, 130, window - 1],
        kv_heads=3,
        group=3,
        hd=64,
        page_tokens=page_tokens,
        dtype=dtype,
        window=window,
    )


def test_window_bound_is_exact(tier):
    """The key at p - window (one past the window) carries a huge score and
    value; the key at p - window + 1 (the first inside) a huge value only.
    Off by one either way changes the output by orders of magnitude."""
    hd, window, ctx = 8, 10, 40
    pg = build_paged(np.random.default_rng(0), [ctx], 1, hd, 16)
    k = np.zeros((ctx, 1, hd), np.float32)
    v = np.zeros((ctx, 1, hd), np.float32)
    p = ctx - 1
    k[p - window, 0, :] = 10.0  # outside: would dominate the softmax
    v[p - window, 0, :] = 1000.0
    v[p - window + 1, 0, :] = 50.0  # inside, weight 1/window
    place(pg.k_cache, pg.v_cache, pg.page_table[0], 16, 0, k, v)
    q = np.ones((1, 1, hd), np.float32)
    starts, p0 = batch_rows([1], [p])
    out = ops.attention(q, pg.k_cache, pg.v_cache, pg.page_table, starts, p0, scale=1.0, window=window)
    np.testing.assert_allclose(out[0], np.full(hd, 50.0 / window), rtol=1e-6)
    full = ops.attention(q, pg.k_cache, pg.v_cache, pg.page_table, starts, p0, scale=1.0, window=0)
    assert np.all(full[0] > 900.0)  # without the window the outside key wins


@pytest.mark.parametrize("softcap", [5.0, 30.0, 50.0])
def test_softcap(tier, softcap):
    rng = np.random.default_rng(int(softcap))
    run_case(
        rng,
        lens=[1, 7],
        pos0=[33, 0],
        kv_heads=2,
        group=2,
        hd=64,
        page_tokens=16,
        dtype=np.float32,
        softcap=softcap,
        scale=2.0,
    )  # large scores, so the cap bends them


@pytest.mark.parametrize("dtype", KV_DTYPES, ids=KV_IDS)
def test_long_context(tier, dtype):
    rng = np.random.default_rng(9)
    run_case(rng, lens=[1, 1, 3], pos0=[4095, 2047, 1000], kv_heads=3, group=3, hd=64, page_tokens=16, dtype=dtype)


@pytest.mark.parametrize("dtype", KV_DTYPES, ids=KV_IDS)
@pytest.mark.parametrize("page_tokens", [1, 16])
@pytest.mark.parametrize("window", [0, 9])
def test_prefill_equals_decode_row_by_row(tier, dtype, page_tokens, window):
    """A prefill chunk's rows are bitwise the rows decoded one at a time
    (the cache holding every key; each decode call sees its own prefix)."""
    rng = np.random.default_rng(3)
    n, p0 = 45, 20
    pg = build_paged(rng, [p0 + n], 2, 64, page_tokens, dtype)
    q = rng.standard_normal((n, 6, 64)).astype(np.float32)
    starts, pos = batch_rows([n], [p0])
    chunk = ops.attention(q, pg.k_cache, pg.v_cache, pg.page_table, starts, pos, scale=0.125, window=window)
    for i in range(n):
        s1, q1 = batch_rows([1], [p0 + i])
        row = ops.attention(q[i : i + 1], pg.k_cache, pg.v_cache, pg.page_table, s1, q1, scale=0.125, window=window)
        np.testing.assert_array_equal(row[0], chunk[i], err_msg=f"row {i}")


@pytest.mark.parametrize("dtype", KV_DTYPES, ids=KV_IDS)
def test_batch_invariance(tier, dtype):
    """A sequence's output is bitwise the same alone and in a batch of 7 of
    different lengths (decode and prefill rows mixed), wherever it sits."""
    rng = np.random.default_rng(5)
    lens = [1, 6, 1, 19, 1, 2, 11]
    pos0 = [300, 0, 17, 64, 1, 128, 40]
    pg = build_paged(rng, [p + n for p, n in zip(pos0, lens, strict=True)], 3, 64, 16, dtype)
    starts, p0 = batch_rows(lens, pos0)
    q = rng.standard_normal((int(starts[-1]), 9, 64)).astype(np.float32)
    for window in (0, 12):
        batch = ops.attention(q, pg.k_cache, pg.v_cache, pg.page_table, starts, p0, scale=0.125, window=window)
        for s in range(len(lens)):
            rows = slice(starts[s], starts[s + 1])
            s1, q1 = batch_rows([lens[s]], [pos0[s]])
            alone = ops.attention(
                q[rows], pg.k_cache, pg.v_cache, pg.page_table[s : s + 1], s1, q1, scale=0.125, window=window
            )
            np.testing.assert_array_equal(alone, batch[rows], err_msg=f"sequence {s}")


@pytest.mark.parametrize("dtype", KV_DTYPES, ids=KV_IDS)
def test_page_layout_invariance(tier, dtype):
    """The same keys and values in pages of 1, 3 or 16 tokens, in any page
    order, or in one contiguous run (the table 0, 1, 2, ...): bitwise the
    same output."""
    rng = np.random.default_rng(12)
    ctx, kv_heads, hd = 150, 2, 64 if dtype is Q8_0 else 48
    k = rng.standard_normal((ctx, kv_heads, hd)).astype(np.float32)
    v = rng.standard_normal((ctx, kv_heads, hd)).astype(np.float32)
    starts, p0 = batch_rows([7], [ctx - 7])
    q = rng.standard_normal((7, 6, hd)).astype(np.float32)
    outs = []
    for tokens, shuffle in ((1, True), (3, True), (16, True), (16, False), (ctx, False)):
        n = -(-ctx // tokens)
        k_cache = cache_array((n + 2, kv_heads, tokens, hd), dtype)
        v_cache = cache_array((n + 2, kv_heads, tokens, hd), dtype)
        ids = (rng.permutation(n + 2)[:n] if shuffle else np.arange(n)).astype(np.int32)
        place(k_cache, v_cache, ids, tokens, 0, k, v)
        outs.append(ops.attention(q, k_cache, v_cache, ids[None], starts, p0, scale=0.3, window=100))
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])


@pytest.mark.parametrize("dtype", KV_DTYPES, ids=KV_IDS)
def test_thread_count_invariance(tier, threads, dtype):
    rng = np.random.default_rng(8)
    lens = [1] * 12 + [64]
    pos0 = list(range(100, 1300, 100)) + [500]
    pg = build_paged(rng, [p + n for p, n in zip(pos0, lens, strict=True)], 3, 64, 16, dtype)
    starts, p0 = batch_rows(lens, pos0)
    q = rng.standard_normal((int(starts[-1]), 9, 64)).astype(np.float32)
    results = []
    for n in (1, 2, 3):
        ops.set_num_threads(n)
        results.append(ops.attention(q, pg.k_cache, pg.v_cache, pg.page_table, starts, p0, scale=0.125))
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


@pytest.mark.parametrize("dtype", KV_DTYPES, ids=KV_IDS)
@pytest.mark.parametrize("window", [0, 300, 700])
def test_long_decode_rows_split_over_threads(tier, threads, dtype, window):
    """One or two decode rows thousands of keys long are too few units for
    the threads: the driver splits their keys in 256-position segments
    across threads and folds them after. Against the float64 reference,
    and bitwise the same for 1, 2 and 3 threads and for the row inside a
    batch with enough units not to split."""
    rng = np.random.default_rng(21)
    pos0 = [1500, 1029]
    pg = build_paged(rng, [p + 1 for p in pos0] + [40] * 8, 3, 64, 16, dtype)
    starts, p0 = batch_rows([1, 1], pos0)
    q = rng.standard_normal((2, 9, 64)).astype(np.float32)
    ref, mag, n_keys = attention_ref(q, pg.keys[:2], pg.values[:2], starts, p0, 0.125, window, 0.0, dtype)
    results = []
    for n in (1, 2, 3):
        ops.set_num_threads(n)
        out = ops.attention(q, pg.k_cache, pg.v_cache, pg.page_table[:2], starts, p0, scale=0.125, window=window)
        assert_attention_close(out, ref, mag, n_keys, 64, 0.0)
        results.append(out)
    # the same two rows among eight more sequences' (24 units more: unsplit)
    big_starts, big_p0 = batch_rows([1, 1] + [1] * 8, pos0 + [39] * 8)
    q_big = np.concatenate([q, rng.standard_normal((8, 9, 64)).astype(np.float32)])
    big = ops.attention(q_big, pg.k_cache, pg.v_cache, pg.page_table, big_starts, big_p0, scale=0.125, window=window)
    results.append(big[:2])
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


@pytest.mark.parametrize("which", ["k", "v"])
def test_nan_in_one_segment_poisons_the_split_row(tier, threads, which):
    """A NaN value in the third 256-key segment of a 1500-key decode row
    poisons that row's heads of its KV head however the keys are split;
    the other KV heads stay finite."""
    rng = np.random.default_rng(22)
    pg = build_paged(rng, [1501], 3, 64, 16)
    (pg.k_cache if which == "k" else pg.v_cache)[pg.page_table[0, 600 // 16], 1, 600 % 16, 5] = np.nan
    starts, p0 = batch_rows([1], [1500])
    q = rng.standard_normal((1, 9, 64)).astype(np.float32)
    for n in (1, 2):
        ops.set_num_threads(n)
        out = ops.attention(q, pg.k_cache, pg.v_cache, pg.page_table, starts, p0, scale=0.125).reshape(9, 64)
        poisoned = out[3:6] if which == "k" else out[3:6, 5]
        assert np.all(np.isnan(poisoned)), n
        assert np.all(np.isfinite(out[:3])) and np.all(np.isfinite(out[6:])), n
        if which == "v":
            assert np.all(np.isfinite(np.delete(out[3:6], 5, axis=-1))), n


@given(
    seqs=st.lists(st.tuples(st.integers(0, 12), st.integers(0, 150)), min_size=1, max_size=5),
    kv_heads=st.integers(1, 3),
    group=st.integers(1, 6),
    hd=st.integers(1, 140),
    page_tokens=st.sampled_from([1, 2, 5, 16, 64]),
    window=st.sampled_from([0, 0, 1, 3, 17, 64, 200]),
    fmt=st.sampled_from(KV_IDS),
    seed=st.integers(0, 2**32 - 1),
)
@settings(max_examples=40, deadline=None)
def test_random_batches_every_tier(seqs, kv_heads, group, hd, page_tokens, window, fmt, seed):
    rng = np.random.default_rng(seed)
    lens, pos0 = [n for n, _ in seqs], [p for _, p in seqs]
    dtype = KV_DTYPES[KV_IDS.index(fmt)]
    if dtype is Q8_0:
        hd = -(-hd // 32) * 32
    pg = build_paged(rng, [p + n for n, p in seqs], kv_heads, hd, page_tokens, dtype)
    starts, p0 = batch_rows(lens, pos0)
    q = rng.standard_normal((int(starts[-1]), kv_heads * group, hd)).astype(np.float32)
    ref, mag, n_keys = attention_ref(q, pg.keys, pg.values, starts, p0, hd**-0.5, window, 0.0, dtype)
    for tier in ops.capabilities()["available"]:
        with ops.forced_tier(tier):
            out = ops.attention(q, pg.k_cache, pg.v_cache, pg.page_table, starts, p0, scale=hd**-0.5, window=window)
        assert_attention_close(out, ref, mag, n_keys, hd)


def test_empty_sequences_and_rows(tier):
    """Sequences without rows are skipped; a call without rows returns (0, H*D)."""
    rng = np.random.default_rng(1)
    run_case(
        rng, lens=[0, 3, 0, 1, 0], pos0=[5, 2, 0, 9, 0], kv_heads=1, group=2, hd=16, page_tokens=4, dtype=np.float32
    )
    pg = build_paged(rng, [4], 1, 16, 4)
    out = ops.attention(
        np.zeros((0, 2, 16), np.float32),
        pg.k_cache,
        pg.v_cache,
        pg.page_table,
        np.zeros(2, np.int32),
        np.zeros(1, np.int32),
        scale=1.0,
    )
    assert out.shape == (0, 32)


def test_strided_q_and_out(tier):
    """q as a view of a fused QKV activation; out written in place."""
    rng = np.random.default_rng(2)
    pg = build_paged(rng, [30, 12], 2, 32, 16)
    starts, p0 = batch_rows([5, 2], [25, 10])
    qkv = rng.standard_normal((7, 4 + 2 * 2, 32)).astype(np.float32)
    q = qkv[:, :4]
    out = np.full((7, 128), np.nan, np.float32)
    got = ops.attention(q, pg.k_cache, pg.v_cache, pg.page_table, starts, p0, scale=0.2, out=out)
    assert got is out
    want = ops.attention(np.ascontiguousarray(q), pg.k_cache, pg.v_cache, pg.page_table, starts, p0, scale=0.2)
    np.testing.assert_array_equal(out, want)


# ---- non-finite values ----------------------------------------------------------


def nan_case(rng, dtype):
    pg = build_paged(rng, [50], 2, 32, 16, dtype)
    starts, p0 = batch_rows([10], [40])
    q = rng.standard_normal((10, 4, 32)).astype(np.float32)
    return pg, starts, p0, q


@pytest.mark.parametrize("dtype", KV_DTYPES, ids=KV_IDS)
def test_nan_in_q_poisons_only_its_row_and_head(tier, dtype):
    pg, starts, p0, q = nan_case(np.random.default_rng(0), dtype)
    q[3, 1, 7] = np.nan
    out = ops.attention(q, pg.k_cache, pg.v_cache, pg.page_table, starts, p0, scale=0.2).reshape(10, 4, 32)
    assert np.all(np.isnan(out[3, 1]))
    out[3, 1] = 0
    assert np.all(np.isfinite(out))


@pytest.mark.parametrize("which", ["k", "v"])
@pytest.mark.parametrize("dtype", FLOAT_KV, ids=KV_IDS[:2])  # Q8_0: test_q8_0_nan_row_poisons_the_rows_that_attend_it
def test_nan_in_cache_reaches_exactly_the_rows_that_attend_it(tier, which, dtype):
    """A NaN key or value at position 45 poisons the rows at positions >= 45
    of the KV head's group, and nothing at positions 40..44 (which the
    prefill chunk computes alongside)."""
    pg, starts, p0, q = nan_case(np.random.default_rng(1), dtype)
    cache = pg.k_cache if which == "k" else pg.v_cache
    cache[pg.page_table[0, 45 // 16], 1, 45 % 16, 3] = np.nan
    out = ops.attention(q, pg.k_cache, pg.v_cache, pg.page_table, starts, p0, scale=0.2).reshape(10, 4, 32)
    attends = out[5:, 2:]  # positions 45..49, query heads of KV head 1
    if which == "k":
        assert np.all(np.isnan(attends))
    else:
        assert np.all(np.isnan(attends[..., 3])) and np.all(np.isfinite(np.delete(attends, 3, axis=-1)))
    assert np.all(np.isfinite(out[:5])) and np.all(np.isfinite(out[:, :2]))
    # a window that ends before position 45 for the earlier rows keeps them clean too
    out = ops.attention(q, pg.k_cache, pg.v_cache, pg.page_table, starts, p0, scale=0.2, window=3)
    assert np.all(np.isfinite(out.reshape(10, 4, 32)[:5]))


def test_inf_score_gives_nan(tier):
    pg, starts, p0, q = nan_case(np.random.default_rng(2), np.float32)
    q[:] = np.abs(q)
    pg.k_cache[pg.page_table[0, 42 // 16], 0, 42 % 16, :] = np.inf  # +inf score for rows at positions >= 42
    out = ops.attention(q, pg.k_cache, pg.v_cache, pg.page_table, starts, p0, scale=0.2).reshape(10, 4, 32)
    assert np.all(np.isnan(out[2:, :2])) and np.all(np.isfinite(out[:2])) and np.all(np.isfinite(out[:, 2:]))


def test_minus_inf_scores_are_ignored_and_all_minus_inf_is_nan(tier):
    """-inf scores get zero weight (as in the reference); a row whose every
    score is -inf has no softmax and gets NaN."""
    pg = build_paged(np.random.default_rng(3), [20], 1, 4, 16)
    starts, p0 = batch_rows([2], [18])
    q = np.ones((2, 1, 4), np.float32)
    k = np.full((20, 1, 4), -np.inf, np.float32)
    k[19] = 1.0  # only the last row sees a finite score
    v = np.arange(20 * 4, dtype=np.float32).reshape(20, 1, 4)
    place(pg.k_cache, pg.v_cache, pg.page_table[0], 16, 0, k, v)
    out = ops.attention(q, pg.k_cache, pg.v_cache, pg.page_table, starts, p0, scale=1.0)
    assert np.all(np.isnan(out[0]))
    np.testing.assert_array_equal(out[1], v[19, 0])


# ---- kv_store -------------------------------------------------------------------


@pytest.mark.parametrize("page_tokens", [1, 3, 16])
@pytest.mark.parametrize(("dtype", "hd"), dtype_hd([1, 7, 8, 9, 16, 17, 64, 80]))
def test_kv_store_places_rows(tier, dtype, page_tokens, hd):
    """Every row lands in its page and slot, converted as astype(float16)
    for an f16 cache, as the gguf package's quantizer for Q8_0; nothing else
    in the pool changes."""
    rng = np.random.default_rng(hd * page_tokens)
    lens, pos0 = [1, 7, 0, 20], [5, 14, 3, 0]
    pg = build_paged(rng, [p + n for p, n in zip(pos0, lens, strict=True)], 3, hd, page_tokens, dtype)
    k_want, v_want = pg.k_cache.copy(), pg.v_cache.copy()
    starts, p0 = batch_rows(lens, pos0)
    k = rng.standard_normal((int(starts[-1]), 3, hd)).astype(np.float32)
    v = rng.standard_normal((int(starts[-1]), 3, hd)).astype(np.float32)
    for s in range(len(lens)):
        rows = slice(starts[s], starts[s + 1])
        place(k_want, v_want, pg.page_table[s], page_tokens, pos0[s], k[rows], v[rows])
    ops.kv_store(k, v, pg.k_cache, pg.v_cache, pg.page_table, starts, p0)
    np.testing.assert_array_equal(pg.k_cache, k_want)  # NaN == NaN for assert_array_equal
    np.testing.assert_array_equal(pg.v_cache, v_want)


def test_kv_store_f16_rounding_is_numpy_bitwise(tier):
    """Round to nearest even, ties, subnormals, overflow, signed zero: the
    stored bits equal astype(np.float16) (NaN stays NaN)."""
    rng = np.random.default_rng(0)
    special = np.array(
        [
            0.0,
            -0.0,
            65504,
            65519.99,
            65520,
            -65520,
            1e10,
            np.inf,
            -np.inf,
            6e-8,
            3e-8,
            2.98e-8,
            5.96e-8,
            1e-5,
            -1e-5,
            1e-45,
            1 + 2**-11,
            1 + 3 * 2**-11,
            2049,
            2051,
            0.1,
            np.nan,
        ],
        np.float32,
    )
    bits = rng.integers(0, 2**32, 30 * 64 - len(special), dtype=np.uint64).astype(np.uint32).view(np.float32)
    values = np.concatenate([special, bits, (rng.standard_normal(30 * 64) * 1000).astype(np.float32)])
    k = values.reshape(-1, 1, 64)
    n = k.shape[0]
    k_cache = np.zeros((n, 1, 1, 64), np.float16)
    v_cache = np.zeros((n, 1, 1, 64), np.float16)
    table = np.arange(n, dtype=np.int32).reshape(1, n)
    ops.kv_store(k, -k, k_cache, v_cache, table, np.array([0, n], np.int32), np.zeros(1, np.int32))
    with np.errstate(over="ignore", invalid="ignore"):  # overflow to inf and NaN are being checked
        want, want_neg = values.astype(np.float16), (-values).astype(np.float16)
    got = k_cache.reshape(-1)
    nan = np.isnan(want)
    np.testing.assert_array_equal(got[~nan].view(np.uint16), want[~nan].view(np.uint16))
    assert np.all(np.isnan(got[nan]))
    np.testing.assert_array_equal(v_cache.reshape(-1)[~nan].view(np.uint16), want_neg[~nan].view(np.uint16))


def test_kv_store_q8_0_is_the_gguf_quantizer_bitwise(tier):
    """Each stored row is gguf.quants.quantize(row, Q8_0) byte for byte:
    ties at half steps, a zero block, tiny and huge magnitudes, signed zeros,
    and NaN / inf rows (whose blocks get what the reference gives them)."""
    rng = np.random.default_rng(7)
    hd, rows = 64, 12
    k = rng.standard_normal((rows, 2, hd)).astype(np.float32)
    k[0, 0, :32] = 0.0
    k[1, 0] = np.float32(127.0) * np.arange(-32, 32, dtype=np.float32) / 63.5  # q = x / d lands on .5 ties
    k[2, 0] *= np.float32(1e-30)
    k[3, 0] *= np.float32(1e30)
    k[4, 0, :32] = -0.0
    k[5, 1, 9] = np.nan
    k[6, 1, 40] = np.inf
    v = -k[::-1].copy()
    pg = build_paged(rng, [rows], 2, hd, 16, Q8_0)
    starts, p0 = batch_rows([rows], [0])
    with np.errstate(invalid="ignore", over="ignore"):
        want_k, want_v = q8_0_quantize(k), q8_0_quantize(v)
    ops.kv_store(k, v, pg.k_cache, pg.v_cache, pg.page_table, starts, p0)
    for i in range(rows):
        page, slot = pg.page_table[0, i // 16], i % 16
        np.testing.assert_array_equal(pg.k_cache[page, :, slot], want_k[i], err_msg=f"k row {i}")
        np.testing.assert_array_equal(pg.v_cache[page, :, slot], want_v[i], err_msg=f"v row {i}")


def test_q8_0_nan_row_poisons_the_rows_that_attend_it(tier):
    """A value row with a NaN stores a NaN block scale: the query heads of
    that KV head at positions that attend it get NaN in that block's 32
    output elements only; the other head and the earlier rows stay finite."""
    pg, starts, p0, q = nan_case(np.random.default_rng(4), Q8_0)
    v = np.random.default_rng(5).standard_normal((1, 2, 32)).astype(np.float32)
    v[0, 1, 3] = np.nan
    ops.kv_store(v, v, pg.k_cache, pg.v_cache, pg.page_table, np.array([0, 1], np.int32), np.array([45], np.int32))
    out = ops.attention(q, pg.k_cache, pg.v_cache, pg.page_table, starts, p0, scale=0.2).reshape(10, 4, 32)
    assert np.all(np.isnan(out[5:, 2:]))
    assert np.all(np.isfinite(out[:5])) and np.all(np.isfinite(out[:, :2]))


def test_q8_0_head_dim_must_be_blocks():
    """A uint8 cache whose rows are not whole 34-byte blocks is refused
    before anything runs."""
    bad = np.zeros((4, 1, 16, 40), np.uint8)
    table, starts, p0 = np.zeros((1, 2), np.int32), np.array([0, 1], np.int32), np.zeros(1, np.int32)
    k = np.zeros((1, 1, 32), np.float32)
    with pytest.raises(ValueError, match="multiple of 34"):
        ops.kv_store(k, k, bad, bad.copy(), table, starts, p0)
    with pytest.raises(ValueError, match="multiple of 34"):
        ops.attention(np.zeros((1, 1, 32), np.float32), bad, bad.copy(), table, starts, p0, scale=1.0)


def test_q8_0_error_is_the_quantization_step():
    """Q8_0 K/V against exact (float32) K/V: the output moves by about what
    the per-block rounding (|x| max / 254 per element) moves it, far from
    f16's error and far below a dropped key's. The bound the engine states
    (docs) rests on this."""
    rng = np.random.default_rng(3)
    pg = build_paged(rng, [300], 2, 64, 16, Q8_0)
    starts, p0 = batch_rows([1], [299])
    q = rng.standard_normal((1, 6, 64)).astype(np.float32)
    out = ops.attention(q, pg.k_cache, pg.v_cache, pg.page_table, starts, p0, scale=0.125)
    exact, _, _ = attention_ref(q, pg.keys, pg.values, starts, p0, 0.125)
    err = np.abs(out - exact).max()
    step = np.abs(stored(pg.values[0], Q8_0) - pg.values[0]).max()
    assert 0 < err < 2 * step, (err, step)


def test_kv_store_strided_rows(tier):
    """k and v as views of a fused QKV activation (the same row stride)."""
    rng = np.random.default_rng(4)
    pg = build_paged(rng, [10], 2, 16, 4)
    qkv = rng.standard_normal((10, 4 + 2 + 2, 16)).astype(np.float32)
    k, v = qkv[:, 4:6], qkv[:, 6:8]
    ops.kv_store(k, v, pg.k_cache, pg.v_cache, pg.page_table, np.array([0, 10], np.int32), np.zeros(1, np.int32))
    k_want, v_want = np.full_like(pg.k_cache, np.nan), np.full_like(pg.v_cache, np.nan)
    place(k_want, v_want, pg.page_table[0], 4, 0, k, v)
    used = np.unique(pg.page_table[0][pg.page_table[0] >= 0])
    np.testing.assert_array_equal(pg.k_cache[used], k_want[used])
    np.testing.assert_array_equal(pg.v_cache[used], v_want[used])


@pytest.mark.parametrize("dtype", KV_DTYPES, ids=KV_IDS)
def test_store_then_attend_like_the_engine(tier, dtype):
    """Prefill a prompt, then decode tokens: kv_store + attention per step
    against the reference over everything stored so far."""
    rng = np.random.default_rng(6)
    kv_heads, group, hd, tokens = 2, 3, 32, 16
    n_pages, width = 12, 8
    k_cache = cache_array((n_pages, kv_heads, tokens, hd), dtype)
    v_cache = cache_array((n_pages, kv_heads, tokens, hd), dtype)
    table = np.full((1, width), -1, np.int32)
    table[0, :6] = rng.permutation(n_pages)[:6]
    keys = np.zeros((0, kv_heads, hd), np.float32)
    values = np.zeros((0, kv_heads, hd), np.float32)
    pos = 0
    for step_rows in [23, 1, 1, 1, 40, 1]:
        q = rng.standard_normal((step_rows, kv_heads * group, hd)).astype(np.float32)
        k = rng.standard_normal((step_rows, kv_heads, hd)).astype(np.float32)
        v = rng.standard_normal((step_rows, kv_heads, hd)).astype(np.float32)
        starts, p0 = batch_rows([step_rows], [pos])
        ops.kv_store(k, v, k_cache, v_cache, table, starts, p0)
        keys, values = np.concatenate([keys, k]), np.concatenate([values, v])
        out = ops.attention(q, k_cache, v_cache, table, starts, p0, scale=hd**-0.5)
        ref, mag, n_keys = attention_ref(q, [keys], [values], starts, p0, hd**-0.5, kv_dtype=dtype)
        assert_attention_close(out, ref, mag, n_keys, hd)
        pos += step_rows


# ---- scratch: nothing per call ---------------------------------------------------

MALLOC_COUNTER = r"""
#include <stddef.h>
extern void *__libc_malloc(size_t), *__libc_calloc(size_t, size_t), *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
static volatile int counting;
static volatile size_t big;
#define COUNT(n) do { if (counting && (n) >= 4096) __atomic_add_fetch(&big, 1, __ATOMIC_RELAXED); } while (0)
void *malloc(size_t n) { COUNT(n); return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { COUNT(a * b); return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { COUNT(n); return __libc_realloc(p, n); }
void *memalign(size_t a, size_t n) { COUNT(n); return __libc_memalign(a, n); }
void *aligned_alloc(size_t a, size_t n) { COUNT(n); return __libc_memalign(a, n); }
int posix_memalign(void **p, size_t a, size_t n) { COUNT(n); *p = __libc_memalign(a, n); return *p ? 0 : 12; }
void count_start(void) { big = 0; counting = 1; }
size_t count_stop(void) { counting = 0; return big; }
"""

NO_ALLOC_SCRIPT = r"""
import ctypes, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from support.pertoken import batch_rows, build_paged
from edgecore import ops
counter = ctypes.CDLL(None)
counter.count_stop.restype = ctypes.c_size_t
ops.set_num_threads(int(sys.argv[2]))
rng = np.random.default_rng(0)
for dtype in (np.float32, np.float16):
    pg = build_paged(rng, [4096, 4096, 100], 3, 64, 16, dtype)
    starts, p0 = batch_rows([1, 1, 1], [4095, 4095, 99])
    q = rng.standard_normal((3, 9, 64)).astype(np.float32)
    k = rng.standard_normal((3, 3, 64)).astype(np.float32)
    out = np.empty((3, 9 * 64), np.float32)
    for _ in range(3):  # warm up: thread pool, calibration
        ops.kv_store(k, k, pg.k_cache, pg.v_cache, pg.page_table, starts, p0)
        ops.attention(q, pg.k_cache, pg.v_cache, pg.page_table, starts, p0, scale=0.125, out=out)
    counter.count_start()
    for _ in range(20):
        ops.kv_store(k, k, pg.k_cache, pg.v_cache, pg.page_table, starts, p0)
        ops.attention(q, pg.k_cache, pg.v_cache, pg.page_table, starts, p0, scale=0.125, out=out)
    print(np.dtype(dtype).name, counter.count_stop())
"""


@pytest.mark.parametrize("n_threads", [1, 2])
def test_long_context_does_not_allocate_per_call(tier, tmp_path, n_threads):
    """4096 keys per sequence: with out= given, neither the kernels nor the
    Cython layer allocate anything of 4 KiB or more per call (malloc,
    calloc, realloc and the aligned allocators counted by an LD_PRELOAD
    shim in a child process), and NumPy allocates nothing at all."""
    if shutil.which("gcc") is None or not sys.platform.startswith("linux"):
        pytest.skip("needs gcc and glibc (the allocation counter is an LD_PRELOAD shim)")
    src = tmp_path / "count.c"
    src.write_text(MALLOC_COUNTER)
    lib = tmp_path / "libcount.so"
    build = subprocess.run(["gcc", "-O2", "-shared", "-fPIC", str(src), "-o", str(lib)], capture_output=True, text=True)
    if build.returncode != 0:
        pytest.skip(f"cannot build the allocation counter: {build.stderr.strip()[:200]}")
    env = dict(os.environ, LD_PRELOAD=str(lib), EDGECORE_ISA=tier)
    script = tmp_path / "no_alloc.py"
    script.write_text(textwrap.dedent(NO_ALLOC_SCRIPT))
    run = subprocess.run(
        [sys.executable, str(script), str(Path(__file__).resolve().parents[1]), str(n_threads)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    counts = dict(line.split() for line in run.stdout.split("\n") if line.strip())
    assert counts == {"float32": "0", "float16": "0"}, counts

    # and in this process: no NumPy (traced) allocation during the calls
    rng = np.random.default_rng(1)
    pg = build_paged(rng, [4096], 3, 64, 16)
    starts, p0 = batch_rows([1], [4095])
    q = rng.standard_normal((1, 9, 64)).astype(np.float32)
    out = np.empty((1, 9 * 64), np.float32)
    ops.attention(q, pg.k_cache, pg.v_cache, pg.page_table, starts, p0, scale=0.125, out=out)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for _ in range(10):
        ops.attention(q, pg.k_cache, pg.v_cache, pg.page_table, starts, p0, scale=0.125, out=out)
    grown = tracemalloc.take_snapshot().compare_to(before, "filename")
    tracemalloc.stop()
    assert sum(stat.size_diff for stat in grown if stat.size_diff > 0) < 4096


# ---- bad arguments ----------------------------------------------------------------


def good_args():
    rng = np.random.default_rng(0)
    pg = build_paged(rng, [20, 5], 2, 16, 4)
    starts, p0 = batch_rows([3, 1], [17, 4])
    q = rng.standard_normal((4, 4, 16)).astype(np.float32)
    return pg, q, starts, p0


def test_bad_page_ids_raise_and_write_nothing():
    pg, q, starts, p0 = good_args()
    kv = np.ones((4, 2, 16), np.float32)
    for bad in (-1, pg.k_cache.shape[0]):
        table = pg.page_table.copy()
        table[0, 2] = bad  # positions 8..11, attended by every row of sequence 0
        before = pg.k_cache.copy()
        with pytest.raises(ValueError, match=rf"attention: page_table\[0, 2\] = {bad} is not a page"):
            ops.attention(q, pg.k_cache, pg.v_cache, table, starts, p0, scale=1.0)
        table[0, 2] = pg.page_table[0, 2]
        table[1, 1] = bad  # position 4 of sequence 1: written by kv_store
        with pytest.raises(ValueError, match=rf"kv_store: page_table\[1, 1\] = {bad} is not a page"):
            ops.kv_store(kv, kv, pg.k_cache, pg.v_cache, table, starts, p0)
        np.testing.assert_array_equal(pg.k_cache, before)


def test_pages_outside_the_window_are_not_checked():
    """A sliding-window engine may free the pages behind the window."""
    pg, q, starts, p0 = good_args()
    table = pg.page_table.copy()
    table[0, :2] = -1  # positions 0..7: outside a window of 5 for rows at 17..19
    want = ops.attention(q, pg.k_cache, pg.v_cache, pg.page_table, starts, p0, scale=1.0, window=5)
    got = ops.attention(q, pg.k_cache, pg.v_cache, table, starts, p0, scale=1.0, window=5)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "change, error, match",
    [
        (lambda a: a.update(q=a["q"].astype(np.float64)), TypeError, "q must be a native-byte-order float32"),
        (lambda a: a.update(q=a["q"][:, :3]), ValueError, "3 heads, not a positive multiple"),
        (lambda a: a.update(q=a["q"][:, :, :8].copy()), ValueError, "head_dim 8 does not match"),
        (lambda a: a.update(q=a["q"][:3]), ValueError, "q has 3 rows but starts"),
        (lambda a: a.update(q=a["q"].reshape(4, 64)), ValueError, "q must be 3-D"),
        (lambda a: a.update(q=a["q"][:, :, ::2]), ValueError, "each row of q must be contiguous"),
        (lambda a: a.update(k_cache=a["k_cache"].astype(np.float16)), TypeError, "v_cache must have k_cache's dtype"),
        (
            lambda a: a.update(k_cache=a["k_cache"].astype(np.float64), v_cache=a["v_cache"].astype(np.float64)),
            TypeError,
            "k_cache must be float32, float16 or uint8",
        ),
        (lambda a: a.update(v_cache=a["v_cache"][:-1]), ValueError, "v_cache shape"),
        (lambda a: a.update(k_cache=a["k_cache"][0], v_cache=a["v_cache"][0]), ValueError, "k_cache must be 4-D"),
        (lambda a: a.update(page_table=a["page_table"].astype(np.int64)), TypeError, "page_table must be a native"),
        (lambda a: a.update(starts=np.array([0, 3, 2], np.int32)), ValueError, "starts must be non-decreasing"),
        (lambda a: a.update(starts=np.array([1, 3, 4], np.int32)), ValueError, r"starts\[0\] must be 0"),
        (lambda a: a.update(starts=np.array([0, 3], np.int32)), ValueError, r"starts must have shape \(3,\)"),
        (lambda a: a.update(starts=np.array([0, 3, 4], np.int64)), TypeError, "starts must be a native"),
        (lambda a: a.update(pos0=np.array([17, -1], np.int32)), ValueError, r"pos0\[1\] = -1 is negative"),
        (lambda a: a.update(pos0=np.array([30, 4], np.int32)), ValueError, "sequence 0 reaches position 32, past"),
        (lambda a: a.update(window=-1), ValueError, "window must be an int >= 0"),
        (lambda a: a.update(window=2.5), ValueError, "window must be an int >= 0"),
        (lambda a: a.update(scale=float("nan")), ValueError, "scale must be finite"),
        (lambda a: a.update(softcap=-1.0), ValueError, "softcap must be finite and >= 0"),
        (lambda a: a.update(out=np.zeros((4, 63), np.float32)), ValueError, r"out must have shape \(4, 64\)"),
        (lambda a: a.update(out=np.zeros((4, 64), np.float64)), TypeError, "out must be a native"),
        (lambda a: a.update(out=a["k_cache"].reshape(-1)[:256].reshape(4, 64)), ValueError, "out must not overlap"),
    ],
)
def test_attention_bad_arguments(change, error, match):
    pg, q, starts, p0 = good_args()
    args = dict(
        q=q, k_cache=pg.k_cache, v_cache=pg.v_cache, page_table=pg.page_table, starts=starts, pos0=p0, scale=1.0
    )
    change(args)
    with pytest.raises(error, match=match):
        ops.attention(**args)


def test_attention_head_dim_limit():
    rng = np.random.default_rng(0)
    pg = build_paged(rng, [3], 1, 257, 4)
    with pytest.raises(ValueError, match="head_dim 257 is above the supported 256"):
        ops.attention(
            np.zeros((1, 1, 257), np.float32),
            pg.k_cache,
            pg.v_cache,
            pg.page_table,
            np.array([0, 1], np.int32),
            np.array([2], np.int32),
            scale=1.0,
        )


@pytest.mark.parametrize(
    "change, error, match",
    [
        (lambda a: a.update(k=a["k"][:, :1].copy()), ValueError, r"k must have shape \(4, 2, 16\)"),
        (lambda a: a.update(v=a["v"][:3]), ValueError, r"v must have shape \(4, 2, 16\)"),
        (lambda a: a.update(k=a["k"].astype(np.float16)), TypeError, "k must be a native-byte-order float32"),
        (
            lambda a: a.update(k_cache=a["k_cache"][..., ::2], v_cache=a["v_cache"][..., ::2]),
            ValueError,
            "k_cache must be C-contiguous",
        ),
        (lambda a: a.update(v_cache=a["k_cache"]), ValueError, "k_cache and v_cache must not overlap"),
        (
            lambda a: a.update(k=a["k_cache"].reshape(-1)[:128].reshape(4, 2, 16)),
            ValueError,
            "k must not overlap k_cache or v_cache",
        ),
    ],
)
def test_kv_store_bad_arguments(change, error, match):
    pg, _, starts, p0 = good_args()
    rng = np.random.default_rng(1)
    k, v = rng.standard_normal((2, 4, 2, 16)).astype(np.float32)
    args = dict(k=k, v=v, k_cache=pg.k_cache, v_cache=pg.v_cache, page_table=pg.page_table, starts=starts, pos0=p0)
    change(args)
    with pytest.raises(error, match=match):
        ops.kv_store(**args)


def test_kv_store_read_only_cache():
    pg, _, starts, p0 = good_args()
    pg.k_cache.setflags(write=False)
    kv = np.ones((4, 2, 16), np.float32)
    with pytest.raises(ValueError, match="k_cache is read-only"):
        ops.kv_store(kv, kv, pg.k_cache, pg.v_cache, pg.page_table, starts, p0)
