"""The GGUF header: read it from the mapped file, validate every rule.

Layout (GGUF v2 and v3, little-endian; v1 had 32-bit counts and is gone):

    magic "GGUF" | version u32 | tensor_count u64 | kv_count u64
    kv_count x   (key: string, value_type u32, value)
    tensor_count x (name: string, n_dims u32, ne u64[n_dims], ggml_type u32, offset u64)
    padding to the alignment, then the data section

A string is a u64 byte length and UTF-8 bytes; an array is an item type
u32, a u64 count and the items (values: gguf_metadata.py). Tensor offsets are relative to the data
section, which starts at the end of the tensor infos rounded up to
``general.alignment`` (a u32 power of two, 32 by default).

Every length and count is checked against the bytes left before anything
is allocated for it, and the header may not exceed ``MAX_HEADER_BYTES``, so
a hostile file costs at most a bounded parse. The rules and their ids are
listed in docs/weights-and-memory.md ("GGUF").
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecore.weights.ggml_types import GGML_TYPES, REMOVED_GGML_TYPES, GGMLType
from edgecore.weights.gguf_metadata import read_metadata
from edgecore.weights.header import TensorInfo
from edgecore.weights.mapping import FileMapping

MAGIC = b"GGUF"
VERSIONS = (2, 3)
PREFIX_BYTES = 24  # magic, version and the two counts
DEFAULT_ALIGNMENT = 32
# Limits far above real files that bound what a hostile header can make the
# parser build: Python objects cost several times their bytes in the file
# (measured worst case at these limits: about 0.6 GB, for a header that is
# nothing but 2-byte strings). For scale: Gemma 3's 262 144-token vocabulary
# makes a 6.5 MB header; real files have a few dozen keys and at most some
# ten thousand tensors (Arctic's per-expert tensors: 13 440).
MAX_HEADER_BYTES = 64 * 1024 * 1024
MAX_KEYS = 1 << 16
MAX_TENSORS = 1 << 18
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_ELEMENTS = 2**63 - 1  # ggml counts elements and bytes in int64

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
# the fewest bytes an entry can take: a bound on the counts before allocating
_MIN_KV = 8 + 4 + 1  # key length, value type, a one-byte value
_MIN_TENSOR_INFO = 8 + 4 + 8 + 4 + 8  # name length, n_dims, one dim, type, offset


class GGUFError(ValueError):
    """A GGUF file breaks a rule of the format.

    ``path``, ``rule`` (a short id such as ``"overlap"``), ``tensor`` and
    ``key`` (the tensor or metadata key the rule is about, else None) are
    attributes, so callers can react to a rule without parsing the message.
    """

    def __init__(self, path: str | os.PathLike, rule: str, message: str, tensor: str | None = None,
                 key: str | None = None):
        self.path = str(path)
        self.rule = rule
        self.tensor = tensor
        self.key = key
        where = self.path
        if tensor is not None:
            where += f": tensor {tensor!r}"
        elif key is not None:
            where += f": metadata key {key!r}"
        super().__init__(f"{where}: {message} [rule: {rule}]")


@dataclass(frozen=True)
class GGUFTensorInfo(TensorInfo):
    """A tensor of a GGUF file. ``dtype`` is the GGML type name ("F32",
    "Q4_K", ...), ``shape`` the logical shape in NumPy order (the file's
    ``ne`` reversed), ``begin``/``end`` absolute byte offsets in the file."""

    ggml_type: GGMLType

    @property
    def numpy_dtype(self) -> np.dtype:
        """The dtype of the view: ``uint8`` for block types, ``uint16`` for BF16."""
        return self.ggml_type.numpy_dtype

    @property
    def view_shape(self) -> tuple[int, ...]:
        """The shape of ``f[name]``: ``shape`` for plain types; for block
        types one row of raw bytes per innermost run of elements."""
        if not self.ggml_type.quantized:
            return self.shape
        return (*self.shape[:-1], self.ggml_type.row_bytes(self.shape[-1]))

    @property
    def aligned(self) -> bool:
        """Whether the data is aligned for its element type (for block
        types, ggml's block struct). Mappings start on a page, so this is
        a property of the file offset."""
        return self.begin % self.ggml_type.align == 0


@dataclass(frozen=True)
class GGUFHeader:
    """A validated header: tensors in the order the file lists them."""

    path: Path
    version: int
    alignment: int
    metadata: dict[str, Any]
    metadata_types: dict[str, str]
    tensors: dict[str, GGUFTensorInfo]
    data_start: int
    file_size: int


def check_prefix(prefix: bytes, path: Path) -> tuple[int, int, int]:
    """Magic, version and counts from the file's first bytes (fewer than 24
    if the file is that short): returns (version, tensor_count, kv_count)."""
    if prefix[:4] != MAGIC[:len(prefix)]:
        raise GGUFError(path, "magic", f"starts with {prefix[:4]!r}, not the GGUF magic {MAGIC!r}: "
                        f"not a GGUF file")
    if len(prefix) < PREFIX_BYTES:
        raise GGUFError(path, "truncated", f"file is {len(prefix)} bytes, shorter than the {PREFIX_BYTES}-byte "
                        f"GGUF prefix (magic, version, counts)")
    version, tensor_count, kv_count = struct.unpack_from("<IQQ", prefix, 4)
    swapped = int.from_bytes(prefix[4:8], "big")
    if version not in VERSIONS and swapped in VERSIONS:
        raise GGUFError(path, "byte-order", f"is a big-endian GGUF (version {swapped}); edgecore reads "
                        f"little-endian GGUF only")
    if version not in VERSIONS:
        hint = " (v1 used 32-bit counts; convert the model again)" if version == 1 else ""
        raise GGUFError(path, "version", f"GGUF version {version} is not supported; edgecore reads "
                        f"versions {' and '.join(map(str, VERSIONS))}{hint}")
    return version, tensor_count, kv_count


def parse_header(mapping: FileMapping, path: Path) -> GGUFHeader:
    """Validate the whole header of the mapped file and describe its
    tensors; only header bytes are read. Raises GGUFError."""
    size = mapping.length
    data = mapping.bytes
    assert data is not None
    version, tensor_count, kv_count = check_prefix(bytes(data[:PREFIX_BYTES]), path)
    buffer = memoryview(data)
    try:
        reader = HeaderReader(buffer, path, size)
        reader.pos = PREFIX_BYTES
        if tensor_count > MAX_TENSORS or kv_count > MAX_KEYS:
            raise GGUFError(path, "counts", f"{tensor_count} tensors and {kv_count} metadata keys exceed the "
                            f"limits of {MAX_TENSORS} tensors and {MAX_KEYS} keys")
        reader.bound_count(tensor_count * _MIN_TENSOR_INFO + kv_count * _MIN_KV, "counts",
                           f"{tensor_count} tensors and {kv_count} metadata keys")
        metadata, metadata_types = read_metadata(reader, kv_count, mapping)
        alignment = _alignment(metadata, metadata_types, path)
        infos = [_read_tensor_info(reader) for _ in range(tensor_count)]
        header_end = reader.pos
    finally:
        buffer.release()
    data_start = -(-header_end // alignment) * alignment
    if tensor_count and data_start > size:
        raise GGUFError(path, "data-start", f"the header ends at byte {header_end}, so the data section starts "
                        f"at {data_start} ({alignment}-byte alignment), past the end of the {size}-byte file")
    tensors = _check_tensors(infos, path, alignment, data_start, size)
    return GGUFHeader(path, version, alignment, metadata, metadata_types, tensors, data_start, size)


class HeaderReader:
    """A cursor over the header bytes that refuses to step past the end of
    the file or past MAX_HEADER_BYTES."""

    def __init__(self, buffer: memoryview, path: Path, file_size: int):
        self.buffer = buffer
        self.path = path
        self.file_size = file_size
        self.end = min(file_size, MAX_HEADER_BYTES)
        self.pos = 0
        self.nested_arrays = 0

    def fail(self, rule: str, message: str, **where: str | None) -> GGUFError:
        return GGUFError(self.path, rule, message, **where)

    def take(self, n: int, what: str, rule: str = "truncated", **where: str | None) -> int:
        """Advance over ``n`` bytes; return where they start."""
        start = self.pos
        if n > self.end - start:
            if start + n > self.file_size:
                raise self.fail(rule, f"{what} at byte {start} needs {n} bytes, but the {self.file_size}-byte "
                                f"file ends first: it is truncated or corrupt", **where)
            raise self.fail("header-size", f"{what} at byte {start} needs {n} bytes, which would make the "
                            f"header larger than the {MAX_HEADER_BYTES}-byte limit", **where)
        self.pos = start + n
        return start

    def bound_count(self, min_bytes: int, rule: str, what: str, **where: str | None) -> None:
        """Refuse a count whose items could not fit in the bytes left."""
        left = self.end - self.pos
        if min_bytes > left:
            limit = "file" if self.end == self.file_size else f"{MAX_HEADER_BYTES}-byte header limit"
            raise self.fail(rule, f"{what} need at least {min_bytes} bytes, but only {left} are left in "
                            f"the {limit} (at byte {self.pos})", **where)

    def u32(self, what: str, **where: str | None) -> int:
        return _U32.unpack_from(self.buffer, self.take(4, what, **where))[0]

    def u64(self, what: str, **where: str | None) -> int:
        return _U64.unpack_from(self.buffer, self.take(8, what, **where))[0]

    def raw_string(self, what: str, **where: str | None) -> memoryview:
        n = self.u64(f"{what} length", **where)
        start = self.take(n, f"{what} of {n} bytes", rule="string-length", **where)
        return self.buffer[start:start + n]

    def string(self, what: str, rule: str = "utf8", errors: str = "strict", **where: str | None) -> str:
        raw = self.raw_string(what, **where)
        try:
            return str(raw, "utf-8", errors)
        except UnicodeDecodeError as exc:
            raise self.fail(rule, f"{what} is not valid UTF-8 ({exc.reason} at byte "
                            f"{self.pos - len(raw) + exc.start})", **where) from None


def _alignment(metadata: dict[str, Any], types: dict[str, str], path: Path) -> int:
    if "general.alignment" not in metadata:
        return DEFAULT_ALIGNMENT
    value, vtype = metadata["general.alignment"], types["general.alignment"]
    if vtype != "UINT32":
        raise GGUFError(path, "alignment", f"must be a UINT32, got a {vtype}", key="general.alignment")
    if value <= 0 or value & (value - 1):
        raise GGUFError(path, "alignment", f"{value} is not a positive power of two", key="general.alignment")
    return value


# ---- tensors ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class _RawInfo:
    name: str
    at: int  # where its entry starts in the header
    ne: tuple[int, ...]
    type_id: int
    offset: int


def _read_tensor_info(reader: HeaderReader) -> _RawInfo:
    at = reader.pos
    name = reader.string(f"tensor name at byte {at}", rule="tensor-name")
    n_dims = reader.u32("n_dims", tensor=name)
    if not 1 <= n_dims <= MAX_DIMS:
        raise reader.fail("n-dims", f"has {n_dims} dimensions; GGUF tensors have 1 to {MAX_DIMS}", tensor=name)
    ne = struct.unpack_from(f"<{n_dims}Q", reader.buffer, reader.take(8 * n_dims, "dimensions", tensor=name))
    type_id = reader.u32("type", tensor=name)
    offset = reader.u64("offset", tensor=name)
    return _RawInfo(name, at, ne, type_id, offset)


def _check_tensors(infos: list[_RawInfo], path: Path, alignment: int, data_start: int, size: int
                   ) -> dict[str, GGUFTensorInfo]:
    tensors: dict[str, GGUFTensorInfo] = {}
    for raw in infos:
        if raw.name in tensors:
            raise GGUFError(path, "duplicate-tensor", f"is listed twice (again at byte {raw.at})", tensor=raw.name)
        tensors[raw.name] = _check_tensor(raw, path, alignment, data_start, size)
    previous: GGUFTensorInfo | None = None
    for info in sorted(tensors.values(), key=lambda t: (t.begin, t.end)):
        if previous is not None and info.begin < previous.end:
            raise GGUFError(path, "overlap", f"bytes [{info.begin}, {info.end}) overlap tensor {previous.name!r} "
                            f"[{previous.begin}, {previous.end})", tensor=info.name)
        previous = info
    return tensors


def _check_tensor(raw: _RawInfo, path: Path, alignment: int, data_start: int, size: int) -> GGUFTensorInfo:
    def fail(rule: str, message: str) -> GGUFError:
        return GGUFError(path, rule, message, tensor=raw.name)

    ne = list(raw.ne)
    if min(ne) < 1:
        raise fail("dims", f"dimensions ne={ne}: every dimension must be at least 1")
    # Python integers do not wrap: these are the exact counts, checked
    # against what int64 code (ggml, NumPy, our kernels) can hold.
    if math.prod(ne) > MAX_ELEMENTS:
        raise fail("dims", f"dimensions ne={ne} make {math.prod(ne)} elements, more than int64 can count")
    ggml_type = GGML_TYPES.get(raw.type_id)
    if ggml_type is None:
        removed = REMOVED_GGML_TYPES.get(raw.type_id)
        detail = (f"type {raw.type_id} ({removed}) was removed from ggml; convert the file again" if removed
                  else f"unknown GGML type {raw.type_id}; known: {', '.join(t.name for t in GGML_TYPES.values())}")
        raise fail("tensor-type", detail)
    if ne[0] % ggml_type.block_elems:
        raise fail("block", f"innermost dimension {ne[0]} is not a multiple of {ggml_type.name}'s block of "
                   f"{ggml_type.block_elems} elements")
    nbytes = ggml_type.row_bytes(ne[0]) * math.prod(ne[1:])
    if nbytes > MAX_ELEMENTS:
        raise fail("dims", f"dimensions ne={ne} of {ggml_type.name} make {nbytes} bytes, more than int64 can count")
    if raw.offset % alignment:
        raise fail("offset-alignment", f"offset {raw.offset} is not a multiple of the {alignment}-byte alignment")
    begin = data_start + raw.offset
    if begin + nbytes > size:
        raise fail("bounds", f"its {nbytes} bytes of {ggml_type.name} at offset {raw.offset} (bytes [{begin}, "
                   f"{begin + nbytes})) run past the end of the {size}-byte file: it is truncated or corrupt")
    return GGUFTensorInfo(raw.name, ggml_type.name, tuple(reversed(ne)), path, begin, begin + nbytes, ggml_type)
