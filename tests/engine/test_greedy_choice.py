"""Greedy choice against a float64 reference: NaN never wins, the lowest id
wins ties, +inf wins, a row with no finite logit is an error."""

import numpy as np
import pytest

from edgecore.engine.sampling import choose


def reference(row: np.ndarray) -> int | None:
    z = row.astype(np.float64)
    if not np.isfinite(z).any():
        return None
    z[np.isnan(z)] = -np.inf
    best = z.max()
    return int(np.flatnonzero(z == best)[0])


@pytest.mark.parametrize("seed", range(4))
def test_greedy_matches_the_float64_reference(seed):
    rng = np.random.default_rng(seed)
    for t in range(2000):
        n = int(rng.integers(1, 200))
        row = rng.integers(-3, 4, n).astype(np.float32)  # small integers: many ties
        for special, every in ((np.nan, 3), (np.inf, 5), (-np.inf, 4)):
            if t % every == 0:
                row[rng.integers(0, n, size=int(rng.integers(1, 3)))] = special
        if t % 11 == 0:
            row[:] = rng.choice([np.nan, -np.inf], n)
        want = reference(row)
        if want is None:
            with pytest.raises(FloatingPointError):
                choose(row, 0.0, None, None, rng)
        else:
            assert choose(row, 0.0, None, None, rng) == want
            assert choose(row, 0.0, None, None, rng, repetition_penalty=1.0, previous=[0]) == want
