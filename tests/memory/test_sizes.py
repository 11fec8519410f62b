"""parse_size / format_size against hand-computed values."""

from __future__ import annotations

import pytest

import edgecore
from edgecore.memory import format_size, parse_size

K, M, G, T = 1024, 1024**2, 1024**3, 1024**4


@pytest.mark.parametrize("text, expected", [
    ("1", 1), ("4096", 4096), ("4096B", 4096), ("4096 b", 4096), (4096, 4096),
    ("1K", K), ("1k", K), ("1KB", K), ("1kb", K), ("1KiB", K), ("1kib", K), ("2 KiB", 2 * K),
    ("512M", 512 * M), ("512m", 512 * M), ("512MB", 512 * M), ("512MiB", 512 * M),
    ("2G", 2 * G), ("2GiB", 2 * G), ("1T", T), ("1TiB", T), ("1tb", T), ("1Gi", G),
    ("1.5G", 3 * G // 2), ("0.5M", M // 2), (".5K", 512), ("1.K", K), ("  64M  ", 64 * M),
    ("0.3G", 322122547),  # 0.3 * 2**30 = 322122547.2, rounded down
    ("1.0000000001K", 1024),
])
def test_accepted_forms(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", [
    "", "   ", "M", "G1", "1.5", "12x", "1 GG", "1e3", "1_000", "one", "-1G", "-5", "+5", "1,5G", "1.2.3M",
    "1iB", "1 K B", "0x10", "inf", "nan", "1Q", "∞",
])
def test_garbage_lists_the_accepted_forms(text):
    with pytest.raises(ValueError) as info:
        parse_size(text)
    message = str(info.value)
    assert repr(text) in message or "whole number" in message
    assert "K, M, G, T" in message and "512M" in message


@pytest.mark.parametrize("value", ["0", "0K", "0.0G", "0.0000001K", 0, -4096])
def test_zero_and_negative_are_refused(value):
    with pytest.raises(ValueError, match="positive"):
        parse_size(value)


@pytest.mark.parametrize("value", [1.5, None, True, b"1K"])
def test_wrong_types(value):
    with pytest.raises(TypeError):
        parse_size(value)


@pytest.mark.parametrize("nbytes, expected", [
    (0, "0 B"), (1, "1 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"),
    (10 * M, "10.0 MiB"), (150 * M, "150 MiB"), (3 * G // 2, "1.5 GiB"), (5 * T, "5.0 TiB"),
    (2048 * T, "2048 TiB"), (-2 * M, "-2.0 MiB"),
])
def test_format_size(nbytes, expected):
    assert format_size(nbytes) == expected


def test_top_level_export():
    assert edgecore.parse_size is parse_size


# ---- minimums are shown rounded up (issue 15) -------------------------------------

from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def test_a_minimum_is_rounded_up():
    n = int(6.62 * M)  # inspect used to show 6.6 MiB, which --memory-budget 6.6M then refused
    assert format_size(n) == "6.6 MiB"
    assert format_size(n, round_up=True) == "6.7 MiB"
    assert format_size(7 * M, round_up=True) == "7.0 MiB"
    assert format_size(int(150.2 * M), round_up=True) == "151 MiB"
    assert format_size(1000, round_up=True) == "1000 B"


@given(st.integers(1, 1 << 44))
def test_a_minimum_typed_back_is_enough(n):
    shown = format_size(n, round_up=True)
    back = parse_size(shown)
    assert back >= n
    # and it is the smallest value at that precision: one displayed step less is not enough
    number, unit = shown.split()
    step = {"B": 1, "KiB": K, "MiB": M, "GiB": G, "TiB": T}[unit] * (0.1 if "." in number else 1)
    assert back - step < n
