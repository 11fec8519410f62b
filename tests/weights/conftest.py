"""Helpers for the weights tests: craft safetensors files byte by byte, and
read the kernel's own view of this process's memory."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest


def craft_bytes(header: dict | bytes | str, data: bytes = b"", length: int | None = None) -> bytes:
    """A file: 8-byte length (the header's true length unless ``length``),
    the header (a dict is JSON-encoded), then ``data``."""
    if isinstance(header, dict):
        header = json.dumps(header)
    if isinstance(header, str):
        header = header.encode()
    return struct.pack("<Q", len(header) if length is None else length) + header + data


@pytest.fixture
def craft(tmp_path):
    counter = iter(range(1_000_000))

    def make(header: dict | bytes | str, data: bytes = b"", length: int | None = None,
             name: str | None = None) -> Path:
        path = tmp_path / (name or f"crafted{next(counter)}.safetensors")
        path.write_bytes(craft_bytes(header, data, length))
        return path

    return make


def vm_rss() -> int:
    """This process's RSS in bytes, from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def smaps_rss(path: Path) -> int:
    """Rss of every mapping of ``path`` (bytes), from /proc/self/smaps: the
    kernel's per-mapping count, independent of pagemap."""
    total = 0
    inside = False
    target = str(Path(path).resolve())
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if fields and "-" in fields[0] and len(fields) >= 5 and ":" in fields[3]:
            inside = len(fields) >= 6 and fields[5] == target
        elif inside and line.startswith("Rss:"):
            total += int(fields[1]) * 1024
    return total


def is_mapped(path: Path) -> bool:
    target = str(Path(path).resolve())
    return any(line.endswith(" " + target) for line in Path("/proc/self/maps").read_text().splitlines())


def sync_file(path: Path) -> None:
    """Write back dirty pages so the page cache can drop them."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@pytest.fixture
def proc():
    """The kernel's view of this process: vm_rss(), smaps_rss(path),
    is_mapped(path), sync_file(path)."""
    from types import SimpleNamespace

    return SimpleNamespace(vm_rss=vm_rss, smaps_rss=smaps_rss, is_mapped=is_mapped, sync_file=sync_file)


@pytest.fixture
def craft_raw():
    """craft_bytes, for tests that build file contents without a path."""
    return craft_bytes
