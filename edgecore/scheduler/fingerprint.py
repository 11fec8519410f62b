"""Trace fingerprint: 64-bit FNV-1a over a canonical byte serialisation.

The serialisation (format ``edgecore-trace-v1``; docs/scheduler.md has the
same definition) depends only on the trace's integers and id strings: no
dict order, no hash seed, no float formatting, so a trace gives the same
fingerprint on every run, Python version and machine.

    magic        the 18 ASCII bytes "edgecore-trace-v1\\n"
    id table     uvarint(N), then for each of the N distinct request ids in
                 the trace, in ascending order of their UTF-8 bytes:
                 uvarint(byte length) + the UTF-8 bytes
    ticks        uvarint(T), then for each tick record in order:
                   uvarint(tick)
                   ids(admitted)
                   uvarint(len(prefill)), then per chunk uvarint(h) uvarint(tokens)
                   ids(decoded) ids(completed) ids(preempted) ids(rejected)
                   uvarint(queued) uvarint(active) uvarint(used_pages)
    ids(list)    uvarint(len(list)), then uvarint(h) per id in list order,
                 where h is the id's 0-based position in the id table

``uvarint`` is unsigned LEB128: 7 bits per byte, least significant group
first, high bit set on every byte but the last. Ids are written as table
positions so that a long trace stays short (FNV-1a runs a byte at a time in
Python). The fingerprint is the FNV-1a 64 hash of these bytes (offset basis
0xcbf29ce484222325, prime 0x100000001b3, ``h = (h ^ byte) * prime mod
2**64``), written as 16 lowercase hex digits.
"""

from __future__ import annotations

from collections.abc import Sequence

from .trace import TickRecord

MAGIC = b"edgecore-trace-v1\n"
FNV64_OFFSET = 0xCBF29CE484222325
FNV64_PRIME = 0x100000001B3
_MASK64 = (1 << 64) - 1


def fnv1a_64(data: bytes, h: int = FNV64_OFFSET) -> int:
    """64-bit FNV-1a of ``data``; pass ``h`` to continue an earlier hash."""
    prime = FNV64_PRIME
    mask = _MASK64
    for byte in data:
        h = ((h ^ byte) * prime) & mask
    return h


def uvarint(value: int) -> bytes:
    """Unsigned LEB128 encoding of a non-negative integer."""
    if value < 0:
        raise ValueError(f"uvarint needs a non-negative integer, got {value}")
    out = bytearray()
    while True:
        group = value & 0x7F
        value >>= 7
        if value:
            out.append(group | 0x80)
        else:
            out.append(group)
            return bytes(out)


def canonical_bytes(trace: Sequence[TickRecord]) -> bytes:
    """The ``edgecore-trace-v1`` serialisation of a trace."""
    ids: set[str] = set()
    for rec in trace:
        ids.update(rec.admitted)
        ids.update(rid for rid, _ in rec.prefill)
        ids.update(rec.decoded)
        ids.update(rec.completed)
        ids.update(rec.preempted)
        ids.update(rec.rejected)
    table = sorted(rid.encode("utf-8") for rid in ids)
    handle = {raw.decode("utf-8"): uvarint(i) for i, raw in enumerate(table)}
    small = [uvarint(i) for i in range(128)]

    def num(value: int) -> bytes:
        return small[value] if value < 128 else uvarint(value)

    out = bytearray(MAGIC)
    out += num(len(table))
    for raw in table:
        out += num(len(raw))
        out += raw
    out += num(len(trace))
    for rec in trace:
        out += num(rec.tick)
        out += num(len(rec.admitted))
        for rid in rec.admitted:
            out += handle[rid]
        out += num(len(rec.prefill))
        for rid, tokens in rec.prefill:
            out += handle[rid]
            out += num(tokens)
        for group in (rec.decoded, rec.completed, rec.preempted, rec.rejected):
            out += num(len(group))
            for rid in group:
                out += handle[rid]
        out += num(rec.queued)
        out += num(rec.active)
        out += num(rec.used_pages)
    return bytes(out)


def fingerprint(trace: Sequence[TickRecord]) -> str:
    """The trace fingerprint as 16 lowercase hex digits."""
    return f"{fnv1a_64(canonical_bytes(trace)):016x}"
