"""Byte sizes as people write them ("512M", "1.5GiB") and as we print them."""

from __future__ import annotations

import math
import re
from decimal import Decimal

_UNITS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}
_SIZE = re.compile(r"^\s*(?P<number>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>[kmgt]?)(?P<i>i?)(?P<b>b?)\s*$",
                   re.IGNORECASE)
ACCEPTED_FORMS = ("a positive whole number of bytes (1048576), or a number with a binary unit: "
                  "K, M, G, T, also written KiB/MiB/GiB/TiB, Ki/Mi/Gi/Ti or KB/MB/GB/TB, all powers of 1024, "
                  "case-insensitive, decimals allowed (512M, 1.5G, 2GiB, 64kb)")


def parse_size(text: str | int) -> int:
    """Bytes in a size such as ``"512M"``, ``"1.5G"``, ``"2GiB"`` or ``"4096"``.

    Units are binary whatever the spelling (``K``, ``KiB`` and ``KB`` all mean
    1024): memory is counted in pages and powers of two, and a budget that
    silently came out 7% smaller than asked would be a worse surprise. A
    fraction of a byte is rounded down. Zero, negative and unreadable sizes
    raise ValueError listing the accepted forms.
    """
    if isinstance(text, bool) or not isinstance(text, (str, int)):
        raise TypeError(f"size must be a string or an integer, got {type(text).__name__}")
    if isinstance(text, int):
        if text <= 0:
            raise ValueError(f"size must be positive, got {text}; expected {ACCEPTED_FORMS}")
        return text
    match = _SIZE.match(text)
    if match is None or (match["i"] and not match["unit"]):
        raise ValueError(f"invalid size {text!r}: expected {ACCEPTED_FORMS}")
    number = match["number"]
    unit = match["unit"].lower()
    if not unit and "." in number:
        raise ValueError(f"invalid size {text!r}: a size without a unit is a whole number of bytes; "
                         f"expected {ACCEPTED_FORMS}")
    value = int(Decimal(number) * (1024 ** _UNITS[unit]))
    if value <= 0:
        raise ValueError(f"size must be positive, got {text!r} ({value} bytes); expected {ACCEPTED_FORMS}")
    return value


def format_size(nbytes: int | float, *, round_up: bool = False) -> str:
    """``1536`` -> ``"1.5 KiB"``; bytes below 1 KiB are printed exactly.
    Negative values (differences) keep their sign.

    round_up: for a size shown as a minimum (a budget that is needed), the
    shown digits are rounded up instead of to nearest, so that typing the
    printed value back (``--memory-budget 6.7M``) is always enough."""
    sign = "-" if nbytes < 0 else ""
    value = abs(nbytes)
    if value < 1024:
        return f"{sign}{math.ceil(value) if round_up else value:.0f} B"
    units = ("KiB", "MiB", "GiB", "TiB")
    power = 1
    while power < len(units) and value >= 1024 ** (power + 1):
        power += 1
    value /= 1024 ** power
    if round_up:
        value = math.ceil(value * 10) / 10 if value < 100 else float(math.ceil(value))
    return f"{sign}{value:.1f} {units[power - 1]}" if value < 100 else f"{sign}{value:.0f} {units[power - 1]}"
