"""Float64 NumPy references for the per-token kernels (norms, RoPE, paged KV
cache, attention), written from the math, and builders for paged caches
that put every value in place with NumPy (not with the kernel under test)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

U = 2.0**-24  # float32 unit roundoff


def rms_norm_ref(s, w, eps, unit_offset=False):
    s64 = s.astype(np.float64)
    w64 = w.astype(np.float64) + (1.0 if unit_offset else 0.0)
    inv = 1.0 / np.sqrt(np.mean(s64 * s64, axis=-1, keepdims=True) + eps)
    return s64 * inv * w64


def layer_norm_ref(s, w, b, eps, unit_offset=False):
    s64 = s.astype(np.float64)
    w64 = w.astype(np.float64) + (1.0 if unit_offset else 0.0)
    mean = s64.mean(axis=-1, keepdims=True)
    var = ((s64 - mean) ** 2).mean(axis=-1, keepdims=True)
    y = (s64 - mean) / np.sqrt(var + eps) * w64
    return y if b is None else y + b.astype(np.float64)


def norm_tolerance(s, w, b, d, eps, layer, unit_offset=False):
    """Error bound of a float32 norm (docs/kernel-tiers.md): the blocked
    float32 sums of the SIMD tiers err by at most (d/16 + 8) U relative
    (NEON, the narrowest tier; the others are tighter), which moves the
    scale by half that; the element products add a few U. For LayerNorm the
    mean's error and the float32 subtraction s - mean count against the
    row's standard deviation."""
    s64 = s.astype(np.float64)
    w64 = np.abs(w.astype(np.float64) + (1.0 if unit_offset else 0.0))
    k = d / 16 + 8
    if layer:
        mean = s64.mean(axis=-1, keepdims=True)
        std = np.sqrt(((s64 - mean) ** 2).mean(axis=-1, keepdims=True) + eps)
        mean_abs = np.abs(s64).mean(axis=-1, keepdims=True)
        xhat = np.abs(s64 - mean) / std
        tol = U * ((k + 2) * (mean_abs / std + xhat) + 2 * np.abs(s64) / std) * w64
        if b is not None:
            tol = tol + 2 * U * np.abs(b.astype(np.float64))
    else:
        rms = np.sqrt((s64 * s64).mean(axis=-1, keepdims=True) + eps)
        tol = U * (k + 4) * np.abs(s64) / rms * w64
    return 2 * tol + 1e-37


def rope_ref(x, positions, cos, sin, interleaved):
    """Rotated copy of x [M, H, D] in float64 from float32 tables."""
    y = x.astype(np.float64)
    half = cos.shape[1]
    c = cos[positions].astype(np.float64)[:, None, :]
    s = sin[positions].astype(np.float64)[:, None, :]
    ia = 2 * np.arange(half) if interleaved else np.arange(half)
    ib = ia + 1 if interleaved else ia + half
    a, b = y[..., ia].copy(), y[..., ib].copy()
    y[..., ia] = a * c - b * s
    y[..., ib] = b * c + a * s
    mag = np.zeros_like(y)
    mag[..., ia] = np.abs(a * c) + np.abs(b * s)
    mag[..., ib] = np.abs(b * c) + np.abs(a * s)
    return y, mag


def rope_tables(max_pos, rot, base=10000.0):
    inv_freq = 1.0 / base ** (np.arange(0, rot, 2, dtype=np.float64) / rot)
    ang = np.outer(np.arange(max_pos, dtype=np.float64), inv_freq)
    return np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)


Q8_0 = "q8_0"  # the Q8_0 KV cache "dtype": uint8 rows of head_dim / 32 blocks of 34 bytes
Q8_0_UNSET = np.frombuffer(np.array([np.nan], np.float16).tobytes() + bytes(32), np.uint8)  # a NaN-scale block


def cache_array(shape, dtype):
    """An empty cache [n_pages, kv_heads, page_tokens, head_dim] of a KV
    dtype, every element NaN (Q8_0: every block's scale NaN), so a read of
    anything not written shows."""
    if dtype == Q8_0:
        *lead, hd = shape
        return np.tile(Q8_0_UNSET, (*lead, hd // 32))
    return np.full(shape, np.nan, dtype)


def q8_0_quantize(x):
    """Rows of x [..., D] as Q8_0 bytes [..., D / 32 * 34], by the gguf
    package's reference quantizer (not the kernel under test)."""
    from gguf import GGMLQuantizationType
    from gguf.quants import quantize

    return quantize(np.ascontiguousarray(x, np.float32), GGMLQuantizationType.Q8_0)


def stored(x, dtype):
    """float64 values of x [..., D] as a cache of `dtype` holds them: f16
    rounding, or Q8_0 through the gguf package's quantizer and dequantizer."""
    if dtype == Q8_0:
        from gguf import GGMLQuantizationType
        from gguf.quants import dequantize

        return dequantize(q8_0_quantize(x), GGMLQuantizationType.Q8_0).astype(np.float64).reshape(x.shape)
    return x.astype(dtype).astype(np.float64)


@dataclass
class Paged:
    """A paged cache filled by NumPy, with its batch description. keys[s] /
    values[s]: the float32 [ctx_s, kv_heads, D] of sequence s; unused slots
    and pages hold NaN, so a read of anything not attended shows."""

    k_cache: np.ndarray
    v_cache: np.ndarray
    page_table: np.ndarray
    keys: list
    values: list
    page_tokens: int


def build_paged(
    rng, contexts, kv_heads, hd, page_tokens, dtype=np.float32, spare_pages=3, max_pages=None, scale_k=1.0, scale_v=1.0
):
    """Pages for sequences with `contexts[s]` cached positions each, ids
    shuffled over the pool (so page order never matches position order)."""
    need = [max(1, math.ceil(c / page_tokens)) for c in contexts]
    n_pages = sum(need) + spare_pages
    width = max_pages or max(need) + 1
    ids = rng.permutation(n_pages).astype(np.int32)
    shape = (n_pages, kv_heads, page_tokens, hd)
    k_cache = cache_array(shape, dtype)
    v_cache = cache_array(shape, dtype)
    table = np.full((len(contexts), width), -1, np.int32)
    keys, values = [], []
    at = 0
    for s, ctx in enumerate(contexts):
        table[s, : need[s]] = ids[at : at + need[s]]
        at += need[s]
        k = (rng.standard_normal((ctx, kv_heads, hd)) * scale_k).astype(np.float32)
        v = (rng.standard_normal((ctx, kv_heads, hd)) * scale_v).astype(np.float32)
        place(k_cache, v_cache, table[s], page_tokens, 0, k, v)
        keys.append(k)
        values.append(v)
    return Paged(k_cache, v_cache, table, keys, values, page_tokens)


def place(k_cache, v_cache, table_row, page_tokens, pos0, k, v):
    """Put k, v [T, kv_heads, D] at positions pos0 .. pos0 + T - 1 (NumPy;
    a uint8 cache gets the gguf package's Q8_0 blocks)."""
    q8 = k_cache.dtype == np.uint8
    if q8:
        k, v = q8_0_quantize(k), q8_0_quantize(v)
    for i in range(k.shape[0]):
        p = pos0 + i
        page, slot = table_row[p // page_tokens], p % page_tokens
        k_cache[page, :, slot] = k[i] if q8 else k[i].astype(k_cache.dtype)
        v_cache[page, :, slot] = v[i] if q8 else v[i].astype(v_cache.dtype)


def batch_rows(lengths, pos0):
    """starts [S + 1] for sequences with lengths[s] new rows."""
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32), np.asarray(pos0, np.int32)


def attention_ref(q, keys, values, starts, pos0, scale, window=0, softcap=0.0, kv_dtype=np.float32):
    """(out, mag, n_keys): float64 [M, H * D] from the logical K/V per
    sequence (as stored: rounded to the cache dtype, see `stored`); per row and head the
    error scale (1 + |scale| max_j sum_d |q_d k_d|) * max |V| over the
    attended keys; per row the number of attended keys."""
    m, n_heads, hd = q.shape
    out = np.zeros((m, n_heads * hd))
    mag = np.zeros((m, n_heads))
    n_keys = np.zeros(m)
    for s in range(len(pos0)):
        kv_heads = keys[s].shape[1]
        group = n_heads // kv_heads
        k64, v64 = stored(keys[s], kv_dtype), stored(values[s], kv_dtype)
        for i in range(starts[s + 1] - starts[s]):
            r, p = starts[s] + i, pos0[s] + i
            lo = max(0, p - window + 1) if window else 0
            n_keys[r] = p + 1 - lo
            for h in range(n_heads):
                qv = q[r, h].astype(np.float64)
                kk, vv = k64[lo : p + 1, h // group], v64[lo : p + 1, h // group]
                sc = scale * (kk @ qv)
                if softcap:
                    sc = softcap * np.tanh(sc / softcap)
                with np.errstate(invalid="ignore", over="ignore"):
                    e = np.exp(sc - sc.max())
                    w = e / e.sum()
                    out[r, h * hd : (h + 1) * hd] = w @ vv
                smag = abs(scale) * (np.abs(kk) @ np.abs(qv)).max()
                mag[r, h] = (1.0 + smag) * np.abs(vv).max()
    return out, mag, n_keys


def assert_attention_close(got, ref, mag, n_keys, hd, softcap=0.0):
    """|error| <= (3e-7 + U sqrt(D) + 2 U sqrt(n_keys)) * mag per row/head.

    A score's float32 error is ~U sqrt(D) * scale * sum|q k| (random signs);
    the softmax weights move by about that, relative; exp's polynomial adds
    ~1e-7, the P.V sum over n keys ~U sqrt(n), the normalisation a few U.
    A dropped, doubled or misplaced key costs its weight (about 1/n of the
    row) times |V|: far above this bound for the contexts tested."""
    m, width = got.shape
    if m == 0:
        return
    heads = width // hd
    tol = (3e-7 + U * math.sqrt(hd) + 2 * U * np.sqrt(n_keys))[:, None] * mag
    if softcap:
        tol = tol + 4e-7 * softcap * mag  # the vector tanh's absolute error, times |V|
    err = np.abs(got.astype(np.float64) - ref).reshape(m, heads, hd).max(axis=2)
    worst = np.unravel_index(np.argmax(err - tol), err.shape)
    assert np.all(err <= tol), f"row {worst[0]} head {worst[1]}: error {err[worst]:.3g} > tol {tol[worst]:.3g}"
