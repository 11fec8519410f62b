"""NumPy float64 references for the C kernels, written from the spec, not
from the C code."""

from __future__ import annotations

import math

import numpy as np

_ERF = np.vectorize(math.erf, otypes=[np.float64])


def activation_ref(v: np.ndarray, name: str) -> np.ndarray:
    v = v.astype(np.float64)
    if name == "none":
        return v
    if name == "relu":
        return np.where(v < 0, 0.0, v)  # NaN stays NaN
    if name == "gelu":
        return 0.5 * v * (1.0 + _ERF(v / math.sqrt(2.0)))
    if name == "gelu_tanh":
        return 0.5 * v * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (v + 0.044715 * v**3)))
    if name == "silu":
        return v / (1.0 + np.exp(-v))
    raise ValueError(name)


def linear_ref(x, w, b=None, activation="none", transposed=False):
    """(y, scale): float64 result and sum_k |x_k w_k| + |b| per output, the
    magnitude that bounds float32 rounding error."""
    x64 = np.atleast_2d(x).astype(np.float64)
    w64 = w.astype(np.float64)
    wt = w64 if transposed else w64.T  # [K, N]
    pre = x64 @ wt
    scale = np.abs(x64) @ np.abs(wt)
    if b is not None:
        pre = pre + b.astype(np.float64)
        scale = scale + np.abs(b.astype(np.float64))
    y = activation_ref(pre, activation)
    if np.ndim(x) == 1:
        return y[0], scale[0]
    return y, scale


def topk_ref(logits, k, bonus=None):
    """Per-row top-k by (logit + bonus), NaN as -inf, ties to the lower id;
    weights = softmax of the chosen original logits (float64). Returns
    (ids, weights, bad_rows) where bad rows have a non-finite chosen logit."""
    logits = np.atleast_2d(np.asarray(logits, np.float32))
    t, e = logits.shape
    ids = np.zeros((t, k), np.int64)
    weights = np.zeros((t, k), np.float64)
    bad = []
    for r in range(t):
        adj = logits[r].astype(np.float32)
        if bonus is not None:
            adj = (adj + bonus).astype(np.float32)  # the kernel adds in float32
        key = np.where(np.isnan(adj), -np.inf, adj.astype(np.float64))
        order = sorted(range(e), key=lambda j: (-key[j], j))[:k]
        chosen = logits[r, order].astype(np.float64)
        if not np.all(np.isfinite(chosen)) or np.any(key[order] == -np.inf):
            bad.append(r)
            continue
        ex = np.exp(chosen - chosen.max())
        ids[r] = order
        weights[r] = ex / ex.sum()
    return ids, weights, bad


def ema_ref(scores, activated, decay, boost, max_score, counts=None):
    s = scores.astype(np.float64) * decay
    hit = np.zeros(len(scores), bool)
    hit[np.unique(np.asarray(activated).reshape(-1))] = True
    s = s + np.where(hit, boost, 0.0)
    s = np.where(np.isnan(s), 0.0, s)
    s = np.clip(s, 0.0, max_score)
    new_counts = None
    if counts is not None:
        new_counts = counts.astype(np.uint64) + hit.astype(np.uint64)
    return s, new_counts
