"""The safetensors header: read it, validate every rule, describe each tensor.

File layout: an unsigned 64-bit little-endian length ``N``, then ``N`` bytes
of UTF-8 JSON, then the data section. The JSON maps each tensor name to
``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets relative to the
data section) plus an optional ``"__metadata__"`` map of strings.

Nothing here maps or reads tensor data: a header is checked completely before
any view into the file is made, so a view can never reach outside the file.
The rules follow the reference reader (the `safetensors` package) and are
stricter in two places, both documented in docs/weights-and-memory.md:
duplicate names and non-standard JSON constants (NaN, Infinity) are refused.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# The reference reader refuses larger headers too; a header this size would
# describe millions of tensors, so a bigger one is corruption or an attack.
MAX_HEADER_BYTES = 100 * 1024 * 1024
MAX_DIMS = 64  # NumPy's limit on ndim

# safetensors dtype -> NumPy dtype. The format is little-endian; BF16 has no
# NumPy dtype and is exposed as its raw 16-bit patterns (see to_float32).
NUMPY_DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
# Defined by the format, but with no NumPy view edgecore could hand out.
UNSUPPORTED_DTYPES = frozenset(
    {"F8_E5M2", "F8_E4M3", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "F4", "F6_E2M3", "F6_E3M2", "C64"})


class SafetensorsError(ValueError):
    """A safetensors file (or shard index) breaks a rule of the format.

    ``path``, ``tensor`` (None when the rule is about the whole file) and
    ``rule`` (a short identifier such as ``"overlap"``) are attributes, so
    callers can react to a rule without parsing the message.
    """

    def __init__(self, path: str | os.PathLike, rule: str, message: str, tensor: str | None = None):
        self.path = str(path)
        self.rule = rule
        self.tensor = tensor
        where = f"{self.path}: tensor {tensor!r}" if tensor is not None else self.path
        super().__init__(f"{where}: {message} [rule: {rule}]")


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives: ``begin``/``end`` are absolute byte offsets in
    ``path`` (header included), so ``end - begin == nbytes``."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    path: Path
    begin: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin

    @property
    def numpy_dtype(self) -> np.dtype:
        """The dtype of the view (``uint16`` for BF16)."""
        return NUMPY_DTYPES[self.dtype]

    @property
    def size(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)

    @property
    def aligned(self) -> bool:
        """Whether the view is aligned to its element size. Mappings start on
        a page, so this depends only on the offset in the file; a misaligned
        view works in NumPy but the C kernels need an aligned copy."""
        return self.begin % self.numpy_dtype.itemsize == 0


@dataclass(frozen=True)
class Header:
    """A validated header: tensors in file order, metadata, layout."""

    path: Path
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]
    data_start: int
    file_size: int


def read_header(fd: int, path: str | os.PathLike) -> Header:
    """Read and validate the header of the open file ``fd`` (only the
    8-byte length and the JSON are read)."""
    path = Path(path)
    file_size = os.fstat(fd).st_size
    if file_size < 8:
        raise SafetensorsError(path, "header-length",
                               f"file is {file_size} bytes, too small for the 8-byte header length")
    (length,) = struct.unpack("<Q", _pread_exact(fd, 8, 0))
    if length > MAX_HEADER_BYTES:
        raise SafetensorsError(path, "header-length",
                               f"header length {length} exceeds the {MAX_HEADER_BYTES}-byte limit "
                               f"(a corrupted length, or not a safetensors file)")
    if 8 + length > file_size:
        raise SafetensorsError(path, "header-length",
                               f"header length {length} runs past the end of the file "
                               f"({file_size} bytes): the file is truncated or not a safetensors file")
    raw = _pread_exact(fd, length, 8)
    return parse_header(raw, path, file_size)


def parse_header(raw: bytes, path: str | os.PathLike, file_size: int) -> Header:
    """Validate the JSON header ``raw`` of a file of ``file_size`` bytes whose
    data section starts right after it. Raises SafetensorsError."""
    path = Path(path)
    data_start = 8 + len(raw)
    data_size = file_size - data_start
    document = _decode_json(raw, path)
    if not isinstance(document, dict):
        raise SafetensorsError(path, "json", f"header must be a JSON object, got {_json_type(document)}")
    # The reference reader keeps the last of two same-named entries; two
    # descriptions of one tensor are corruption, not a choice to make for the user.
    _check_no_duplicates(document, path, "header")

    metadata: dict[str, str] = {}
    tensors: dict[str, TensorInfo] = {}
    for name, entry in document.items():
        if name == "__metadata__":
            metadata = _check_metadata(entry, path)
            continue
        dtype, shape, begin, end = _check_entry(name, entry, path, data_size)
        tensors[name] = TensorInfo(name, dtype, shape, path, data_start + begin, data_start + end)
    _check_coverage(tensors, path, data_start, data_size)
    ordered = dict(sorted(tensors.items(), key=lambda item: (item[1].begin, item[1].end)))
    return Header(path, ordered, metadata, data_start, file_size)


def _pread_exact(fd: int, count: int, offset: int) -> bytes:
    chunks = []
    while count > 0:
        chunk = os.pread(fd, min(count, 1 << 24), offset)
        if not chunk:
            raise OSError(f"unexpected end of file at byte {offset} while reading the header")
        chunks.append(chunk)
        count -= len(chunk)
        offset += len(chunk)
    return b"".join(chunks)


class _Object(dict):
    """A JSON object that remembers keys it saw twice (json keeps the last)."""

    duplicates: tuple[str, ...] = ()


def _object_with_duplicates(pairs: list[tuple[str, object]]) -> _Object:
    result = _Object(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        result.duplicates = tuple(key for key, _ in pairs if key in seen or seen.add(key))
    return result


def _check_no_duplicates(obj: object, path: Path, what: str, tensor: str | None = None) -> None:
    duplicates = getattr(obj, "duplicates", ())
    if duplicates:
        rule = "duplicate-name" if what == "header" else "duplicate-key"
        subject = "tensor name" if what == "header" else f"key in {what}"
        raise SafetensorsError(path, rule, f"{subject} {duplicates[0]!r} appears more than once",
                               tensor=tensor)


def _no_constants(name: str) -> None:
    raise ValueError(f"non-standard JSON constant {name}")


def _decode_json(raw: bytes, path: Path) -> object:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SafetensorsError(path, "json", f"header is not valid UTF-8 ({exc.reason} at byte {exc.start})"
                               ) from None
    try:
        return json.loads(text, object_pairs_hook=_object_with_duplicates, parse_constant=_no_constants)
    except RecursionError:
        raise SafetensorsError(path, "json", "header JSON is nested too deeply") from None
    except ValueError as exc:
        raise SafetensorsError(path, "json", f"header is not valid JSON: {exc}") from None


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array",
            dict: "an object", _Object: "an object"}.get(type(value), type(value).__name__)


def _is_count(value: object) -> bool:
    # JSON true/false arrive as bool, a subclass of int: not a count
    return type(value) is int and value >= 0


def _check_metadata(entry: object, path: Path) -> dict[str, str]:
    if entry is None:
        return {}
    if not isinstance(entry, dict):
        raise SafetensorsError(path, "metadata", f"__metadata__ must be an object of strings, "
                               f"got {_json_type(entry)}")
    _check_no_duplicates(entry, path, "__metadata__")
    for key, value in entry.items():
        if not isinstance(value, str):
            raise SafetensorsError(path, "metadata", f"__metadata__[{key!r}] must be a string, "
                                   f"got {_json_type(value)}")
    return dict(entry)


def _check_entry(name: str, entry: object, path: Path, data_size: int
                 ) -> tuple[str, tuple[int, ...], int, int]:
    def fail(rule: str, message: str) -> SafetensorsError:
        return SafetensorsError(path, rule, message, tensor=name)

    if not isinstance(entry, dict):
        raise fail("entry", f"entry must be an object with dtype, shape and data_offsets, "
                   f"got {_json_type(entry)}")
    _check_no_duplicates(entry, path, "its entry", tensor=name)
    missing = [key for key in ("dtype", "shape", "data_offsets") if key not in entry]
    if missing:
        raise fail("entry", f"entry lacks {', '.join(missing)}")

    dtype = entry["dtype"]
    if not isinstance(dtype, str) or dtype not in NUMPY_DTYPES:
        if isinstance(dtype, str) and dtype in UNSUPPORTED_DTYPES:
            raise fail("dtype", f"dtype {dtype} is valid safetensors but has no NumPy view; edgecore "
                       f"reads {', '.join(NUMPY_DTYPES)}")
        raise fail("dtype", f"unknown dtype {dtype!r}; expected one of {', '.join(NUMPY_DTYPES)}")

    shape = entry["shape"]
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        raise fail("shape", f"shape must be an array of non-negative integers, got {shape!r}")
    if len(shape) > MAX_DIMS:
        raise fail("shape", f"shape has {len(shape)} dimensions, more than NumPy's {MAX_DIMS}")

    offsets = entry["data_offsets"]
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_count(o) for o in offsets):
        raise fail("offsets", f"data_offsets must be [begin, end] with non-negative integers, "
                   f"got {offsets!r}")
    begin, end = offsets
    if begin > end:
        raise fail("offsets", f"data_offsets {offsets} end before they begin")
    if end > data_size:
        raise fail("offsets", f"data_offsets {offsets} reach past the data section "
                   f"({data_size} bytes): the file is truncated or the header is corrupt")

    itemsize = NUMPY_DTYPES[dtype].itemsize
    nbytes = math.prod(shape) * itemsize
    if nbytes != end - begin:
        raise fail("size", f"shape {shape} of {dtype} ({itemsize} bytes each) needs {nbytes} bytes, "
                   f"but data_offsets {offsets} span {end - begin}")
    # A zero-size tensor passes the size rule with any other dimension; NumPy
    # still refuses shapes whose non-zero extents overflow its index type.
    if math.prod(d for d in shape if d) * itemsize >= 2**63:
        raise fail("shape", f"shape {shape} is too large for a NumPy array")
    return dtype, tuple(shape), begin, end


def _check_coverage(tensors: dict[str, TensorInfo], path: Path, data_start: int, data_size: int) -> None:
    """Tensors must tile the data section exactly: no overlap (two names for
    the same bytes), no hole (bytes that belong to nothing, which is how a
    file hides a second payload) and nothing after the last tensor."""
    expected = data_start
    previous: TensorInfo | None = None
    for info in sorted(tensors.values(), key=lambda t: (t.begin, t.end)):
        rel = [info.begin - data_start, info.end - data_start]
        if info.begin < expected:
            assert previous is not None
            raise SafetensorsError(path, "overlap", f"data_offsets {rel} overlap tensor {previous.name!r} "
                                   f"(which ends at {previous.end - data_start})", tensor=info.name)
        if info.begin > expected:
            raise SafetensorsError(path, "hole", f"data_offsets {rel} leave bytes "
                                   f"[{expected - data_start}, {rel[0]}) of the data section unused; "
                                   f"the format forbids holes", tensor=info.name)
        expected = info.end
        previous = info
    if expected != data_start + data_size:
        raise SafetensorsError(path, "trailing-bytes",
                               f"the data section is {data_size} bytes but the tensors cover only "
                               f"{expected - data_start}: {data_start + data_size - expected} bytes at the "
                               f"end belong to no tensor")
