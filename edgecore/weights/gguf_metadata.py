"""GGUF metadata values: read them from the header, bounded before allocating.

A value is one of 13 types (ids 0-12). Scalars become Python int, float,
bool or str; an array of numbers or booleans becomes a read-only NumPy view
of the mapping (a 262 144-entry float32 ``scores`` array is not turned into
a Python list); an array of strings a list of str; an array of arrays a
list of those values.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

import numpy as np

from edgecore.weights.mapping import FileMapping

if TYPE_CHECKING:
    from edgecore.weights.gguf_header import HeaderReader

MAX_ARRAY_DEPTH = 8  # arrays of arrays; real files use none
MAX_NESTED_ARRAYS = 1 << 16  # arrays inside arrays, in the whole header

# Token strings are the vocabulary's bytes, and byte-level or SentencePiece
# vocabularies occasionally hold pieces that are not valid UTF-8 on their
# own. They are decoded with surrogateescape: nothing is lost
# (``s.encode("utf-8", "surrogateescape")`` gives the file's bytes back).
# Every other string must be valid UTF-8.
TOKEN_STRING_KEYS = frozenset({"tokenizer.ggml.tokens", "tokenizer.ggml.merges"})

# value type id -> (name, struct format or None, NumPy dtype or None)
STRING, ARRAY, BOOL = 8, 9, 7
VALUE_TYPES: dict[int, tuple[str, str | None, np.dtype | None]] = {
    0: ("UINT8", "<B", np.dtype("u1")), 1: ("INT8", "<b", np.dtype("i1")),
    2: ("UINT16", "<H", np.dtype("<u2")), 3: ("INT16", "<h", np.dtype("<i2")),
    4: ("UINT32", "<I", np.dtype("<u4")), 5: ("INT32", "<i", np.dtype("<i4")),
    6: ("FLOAT32", "<f", np.dtype("<f4")), 7: ("BOOL", "<B", np.dtype("u1")),
    8: ("STRING", None, None), 9: ("ARRAY", None, None),
    10: ("UINT64", "<Q", np.dtype("<u8")), 11: ("INT64", "<q", np.dtype("<i8")),
    12: ("FLOAT64", "<d", np.dtype("<f8")),
}
_SCALARS = {vtype: (struct.Struct(fmt), dtype.itemsize) for vtype, (_, fmt, dtype) in VALUE_TYPES.items()
            if fmt is not None}
_U64 = struct.Struct("<Q")
# the fewest bytes one array item can take: a bound on counts before allocating
_MIN_STRING = 8  # the length alone
_MIN_ARRAY = 12  # item type + count


def read_metadata(reader: HeaderReader, count: int, mapping: FileMapping
                  ) -> tuple[dict[str, Any], dict[str, str]]:
    """``count`` key/value pairs from the reader's position: (values, GGUF type names)."""
    metadata: dict[str, Any] = {}
    types: dict[str, str] = {}
    for _ in range(count):
        at = reader.pos
        key = reader.string(f"metadata key at byte {at}")
        if key in metadata:
            raise reader.fail("duplicate-key", f"appears twice (again at byte {at})", key=key)
        vtype = reader.u32("value type", key=key)
        errors = "surrogateescape" if key in TOKEN_STRING_KEYS else "strict"
        metadata[key], types[key] = _read_value(reader, vtype, key, mapping, errors, depth=0)
    return metadata, types


def _value_type(reader: HeaderReader, vtype: int, key: str) -> str:
    entry = VALUE_TYPES.get(vtype)
    if entry is None:
        raise reader.fail("value-type", f"unknown value type {vtype} (at byte {reader.pos - 4}); GGUF defines "
                          f"0-{max(VALUE_TYPES)}", key=key)
    return entry[0]


def _read_value(reader: HeaderReader, vtype: int, key: str, mapping: FileMapping, errors: str, depth: int
                ) -> tuple[Any, str]:
    name = _value_type(reader, vtype, key)
    if vtype == STRING:
        return reader.string("string value", errors=errors, key=key), name
    if vtype == ARRAY:
        return _read_array(reader, key, mapping, errors, depth + 1)
    unpacker, size = _SCALARS[vtype]
    value = unpacker.unpack_from(reader.buffer, reader.take(size, f"{name} value", key=key))[0]
    if vtype == BOOL:
        if value > 1:
            raise reader.fail("bool", f"BOOL value is byte {value}; GGUF booleans are 0 or 1", key=key)
        value = bool(value)
    return value, name


def _read_array(reader: HeaderReader, key: str, mapping: FileMapping, errors: str, depth: int) -> tuple[Any, str]:
    """An array: numbers and booleans as read-only views of the mapping,
    strings as a list of str, arrays as a list of their values."""
    if depth > MAX_ARRAY_DEPTH:
        raise reader.fail("array-depth", f"arrays are nested more than {MAX_ARRAY_DEPTH} deep", key=key)
    itype = reader.u32("array item type", key=key)
    item_name = _value_type(reader, itype, key)
    count = reader.u64("array length", key=key)
    type_name = f"ARRAY[{item_name}]"
    if itype == STRING:
        reader.bound_count(count * _MIN_STRING, "array-length", f"{count} strings", key=key)
        return _read_strings(reader, count, key, errors), type_name
    if itype == ARRAY:
        reader.bound_count(count * _MIN_ARRAY, "array-length", f"{count} arrays", key=key)
        reader.nested_arrays += count
        if reader.nested_arrays > MAX_NESTED_ARRAYS:
            raise reader.fail("array-length", f"the header nests more than {MAX_NESTED_ARRAYS} arrays inside "
                              f"arrays", key=key)
        return [_read_array(reader, key, mapping, errors, depth + 1)[0] for _ in range(count)], type_name
    dtype = VALUE_TYPES[itype][2]
    assert dtype is not None
    reader.bound_count(count * dtype.itemsize, "array-length", f"{count} {item_name} items", key=key)
    start = reader.take(count * dtype.itemsize, f"{item_name} array", key=key)
    values = mapping.view(start, reader.pos, dtype, (count,))
    if itype == BOOL:
        if count and int(values.max()) > 1:
            raise reader.fail("bool", "BOOL array holds a byte other than 0 or 1", key=key)
        values = values.view(np.bool_)
    return values, type_name


def _read_strings(reader: HeaderReader, count: int, key: str, errors: str) -> list[str]:
    # the hot loop of a vocabulary (262 144 tokens for Gemma 3): kept flat
    buffer, unpack, end = reader.buffer, _U64.unpack_from, reader.end
    pos = reader.pos
    out: list[str] = [""] * count
    for i in range(count):
        if end - pos < 8:
            reader.pos = pos
            reader.take(8, f"length of string {i}", key=key)
        (n,) = unpack(buffer, pos)
        pos += 8
        if n > end - pos:
            reader.pos = pos
            reader.take(n, f"string {i} of {n} bytes", rule="string-length", key=key)
        try:
            out[i] = str(buffer[pos:pos + n], "utf-8", errors)
        except UnicodeDecodeError as exc:
            raise reader.fail("utf8", f"string {i} is not valid UTF-8 ({exc.reason} at byte {pos + exc.start})",
                              key=key) from None
        pos += n
    reader.pos = pos
    return out
