"""Next-token choice from logits: greedy, or sampling with temperature,
top-k and top-p (nucleus), from a seeded generator."""

from __future__ import annotations

import math

import numpy as np


def check_sampling(temperature: float, top_k: int | None, top_p: float | None) -> None:
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
    if top_p is not None and not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p!r}")


def choose(logits: np.ndarray, temperature: float, top_k: int | None, top_p: float | None,
           rng: np.random.Generator) -> int:
    """One token id from a [vocab] row of logits. temperature 0 is greedy
    (the lowest id wins ties). NaN logits never win."""
    if not np.isfinite(logits).any():
        raise FloatingPointError("every logit is NaN or infinite: the model produced no usable scores")
    if temperature == 0:
        return int(np.argmax(np.where(np.isnan(logits), -np.inf, logits)))
    z = np.where(np.isnan(logits), -np.inf, logits.astype(np.float64) / temperature)
    if top_k is not None and top_k < z.size:
        kth = np.partition(z, -top_k)[-top_k]
        z = np.where(z < kth, -np.inf, z)
    p = np.exp(z - z.max())
    p /= p.sum()
    if top_p is not None and top_p < 1:
        order = np.argsort(-p, kind="stable")
        cum = np.cumsum(p[order])
        keep = order[: int(np.searchsorted(cum, top_p) + 1)]  # smallest set reaching top_p
        mask = np.zeros_like(p)
        mask[keep] = p[keep]
        p = mask / mask.sum()
    return int(rng.choice(p.size, p=p))
