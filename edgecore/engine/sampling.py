"""Next-token choice from logits, as transformers' generate makes it.

The logits processors run in transformers' order: the repetition penalty
(greedy or not: it changes which token is the most likely), then, when
sampling, temperature, top-k, top-p and min-p, each with Hugging Face's
definition:

- repetition_penalty p: every token id already in the sequence (prompt and
  generated) has its logit divided by p if positive, multiplied if negative;
- top_k: logits below the k-th largest are removed (ties with it stay);
- top_p: sorted ascending, the tokens whose cumulative probability is at
  most 1 - top_p are removed (the most likely token always stays);
- min_p: tokens with probability below min_p x the top probability are
  removed (after temperature, as in transformers).

temperature 0 means greedy (argmax; the lowest id wins ties). Sampling
draws from the processed distribution with the caller's seeded generator.
NaN logits never win; a row with no finite logit is an error.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def check_sampling(temperature: float | None, top_k: int | None, top_p: float | None, min_p: float | None = None,
                   repetition_penalty: float | None = None) -> None:
    """Each argument's range (None = not given)."""
    if temperature is not None and not (_number(temperature) and math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
    if top_p is not None and not (_number(top_p) and 0 < top_p <= 1):
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p!r}")
    if min_p is not None and not (_number(min_p) and 0 <= min_p <= 1):
        raise ValueError(f"min_p must be in [0, 1] or None, got {min_p!r}")
    if repetition_penalty is not None and not (_number(repetition_penalty) and math.isfinite(repetition_penalty)
                                               and repetition_penalty > 0):
        raise ValueError(f"repetition_penalty must be a finite number > 0 (1 = none), got {repetition_penalty!r}")


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def process_logits(logits: np.ndarray, temperature: float, top_k: int | None = None, top_p: float | None = None,
                   min_p: float | None = None, repetition_penalty: float | None = None,
                   previous: Sequence[int] | np.ndarray = ()) -> np.ndarray:
    """The processed scores (float64, removed tokens at -inf) the choice is
    made from: the penalty always, the warpers only when sampling."""
    if not np.isfinite(logits).any():
        raise FloatingPointError("every logit is NaN or infinite: the model produced no usable scores")
    z = np.where(np.isnan(logits), -np.inf, logits.astype(np.float64))
    if repetition_penalty is not None and repetition_penalty != 1.0 and len(previous):
        seen = np.unique(np.asarray(previous, dtype=np.int64))
        s = z[seen]
        z[seen] = np.where(s < 0, s * repetition_penalty, s / repetition_penalty)
    if temperature == 0:
        return z
    if temperature != 1.0:
        z = z / temperature
    if top_k is not None and top_k < z.size:
        kth = np.partition(z, -top_k)[-top_k]
        z = np.where(z < kth, -np.inf, z)
    if top_p is not None and top_p < 1.0:
        order = np.argsort(z, kind="stable")  # ascending
        cum = np.cumsum(_softmax(z[order]))
        remove = cum <= 1 - top_p
        remove[-1] = False  # keep at least the most likely token
        z = z.copy()
        z[order[remove]] = -np.inf
    if min_p is not None:
        p = _softmax(z)
        remove = p < min_p * p.max()
        remove[int(np.argmax(p))] = False
        z = np.where(remove, -np.inf, z)
    return z


def choose(logits: np.ndarray, temperature: float, top_k: int | None, top_p: float | None,
           rng: np.random.Generator, *, min_p: float | None = None, repetition_penalty: float | None = None,
           previous: Sequence[int] | np.ndarray = ()) -> int:
    """One token id from a [vocab] row of logits (see the module doc).
    previous: the sequence so far, for the repetition penalty."""
    if temperature == 0 and (repetition_penalty is None or repetition_penalty == 1.0 or not len(previous)):
        # Greedy with nothing to process: argmax of the float32 row itself. NumPy's argmax stops at the
        # first NaN, so a finite maximum means there is no NaN and no +inf, and then it is the index
        # the float64 path below picks (the conversion is exact and keeps the order; first of ties).
        # This spares a decode step four passes over the vocabulary per sequence.
        i = int(np.argmax(logits))
        if math.isfinite(logits[i]):
            return i
    z = process_logits(logits, temperature, top_k, top_p, min_p, repetition_penalty, previous)
    if temperature == 0:
        return int(np.argmax(z))
    return int(rng.choice(z.size, p=_softmax(z)))


def _softmax(z: np.ndarray) -> np.ndarray:
    p = np.exp(z - z.max())
    return p / p.sum()
