"""Percentiles by the nearest-rank method.

Nearest rank never interpolates: the p-th percentile of n sorted values is
the value at 1-based rank ceil(p * n / 100). Every reported percentile is
therefore a value that was actually observed, integers stay integers, and
the result does not depend on floating-point rounding (the rank is computed
in integer arithmetic), so reports are identical on every machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T", int, float)


def nearest_rank(sorted_values: Sequence[T], percent: int) -> T | None:
    """The ``percent``-th percentile (1..100) of already sorted values; None when empty."""
    if not 1 <= percent <= 100:
        raise ValueError(f"percent must be an integer in 1..100, got {percent!r}")
    n = len(sorted_values)
    if n == 0:
        return None
    rank = -(-percent * n // 100)  # ceil(percent * n / 100) without floats
    return sorted_values[rank - 1]


def summary(values: Sequence[T]) -> dict[str, T | None]:
    """``{"p50", "p95", "max"}`` of the values (nearest rank; None when empty)."""
    ordered = sorted(values)
    return {
        "p50": nearest_rank(ordered, 50),
        "p95": nearest_rank(ordered, 95),
        "max": ordered[-1] if ordered else None,
    }
