"""Small, forgiving readers for /proc and /sys files.

A file that is missing, unreadable or malformed yields None: the monitor
reports such a value as unknown, never as 0.
"""

from __future__ import annotations

from pathlib import Path


def read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def read_int(path: Path, base: int = 10) -> int | None:
    text = read_text(path)
    if text is None:
        return None
    try:
        return int(text, base)
    except ValueError:
        return None


def parse_cpu_list(text: str | None) -> set[int] | None:
    """``"0-3,6"`` -> ``{0, 1, 2, 3, 6}`` (the kernel's cpulist format)."""
    if text is None or not text.strip():
        return None
    cpus: set[int] = set()
    try:
        for part in text.strip().split(","):
            low, _, high = part.partition("-")
            cpus.update(range(int(low), int(high or low) + 1))
    except ValueError:
        return None
    return cpus


def key_values(text: str | None, separator: str | None = None) -> dict[str, str]:
    """Lines ``key<separator>value`` -> {key: value}, both stripped;
    ``separator=None`` splits at the first run of whitespace."""
    result: dict[str, str] = {}
    for line in (text or "").splitlines():
        if separator is None:
            parts = line.split(None, 1)
            if not parts:
                continue
            key, value = parts[0], parts[1] if len(parts) > 1 else ""
        else:
            key, found, value = line.partition(separator)
            if not found:
                continue
        result[key.strip()] = value.strip()
    return result
