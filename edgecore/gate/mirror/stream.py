"""Timing from streamed token events: time to first token and per-token gaps.

Each event is (time, new tokens). The first event that carries tokens gives
the TTFT (measured from the request's start). Every later event carrying k
tokens, g seconds after the previous token-carrying event, contributes k
gaps of g / k (tokens that arrive together share the wait evenly). Events
without tokens (a final "finished" chunk) do not reset the clock.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..._jsoninput import InputError


def stream_timing(start: float, events: Sequence[tuple[float, int, str]]) -> tuple[float | None, list[float]]:
    """(ttft_ms, decode_gaps_ms) from ``(time_s, new_tokens, json_path)`` events.

    Times are seconds on the same clock as ``start`` and must not go
    backwards (the error names the event's path).
    """
    ttft_ms = None
    gaps: list[float] = []
    previous = start
    last_token_time = None
    for time_s, count, path in events:
        if time_s < previous:
            raise InputError(path, f"a time at or after the previous event ({previous!r} s)", time_s)
        previous = time_s
        if count == 0:
            continue
        if last_token_time is None:
            ttft_ms = (time_s - start) * 1000.0
        else:
            gap = (time_s - last_token_time) * 1000.0 / count
            gaps.extend([gap] * count)
        last_token_time = time_s
    return ttft_ms, gaps
