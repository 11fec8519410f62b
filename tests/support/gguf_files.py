"""GGUF files for the tests, written by the `gguf` package's GGUFWriter (the
independent writer), and byte offsets of their fields located with its
GGUFReader, so crafted files can be made by patching valid ones."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
Q = gguf.GGMLQuantizationType
V = gguf.GGUFValueType

# Block types the reference quantizer implements; the K-quants get random
# bytes of the right size (their layout is not under test here).
QUANTIZED_BY_REFERENCE = ("Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1")
RANDOM_BLOCKS = ("Q4_K", "Q6_K")


@dataclass
class Sample:
    """What a tensor should read back as: logical shape (NumPy order), GGML
    type name, the bytes the writer stored."""

    shape: tuple[int, ...]
    dtype: str
    raw: bytes


def sample_tensors(seed: int = 0) -> dict[str, tuple[np.ndarray, object, Sample]]:
    """name -> (array for GGUFWriter.add_tensor, raw_dtype or None, expected)."""
    rng = np.random.default_rng(seed)
    out: dict[str, tuple[np.ndarray, object, Sample]] = {}

    def plain(name: str, array: np.ndarray, dtype: str) -> None:
        out[name] = (array, None, Sample(array.shape, dtype, array.tobytes()))

    def blocks(name: str, qtype, data: np.ndarray, shape: tuple[int, ...]) -> None:
        out[name] = (data, qtype, Sample(shape, qtype.name, data.tobytes()))

    plain("f32.matrix", rng.standard_normal((3, 5)).astype(np.float32), "F32")
    plain("f32.norm", rng.standard_normal(7).astype(np.float32), "F32")
    plain("f32.4d", rng.standard_normal((2, 3, 4, 5)).astype(np.float32), "F32")
    plain("f16.matrix", rng.standard_normal((4, 6)).astype(np.float16), "F16")
    plain("f64.vector", rng.standard_normal(3), "F64")
    for bits in (8, 16, 32, 64):
        dtype = np.dtype(f"int{bits}")
        plain(f"i{bits}.vector", rng.integers(-100, 100, 5).astype(dtype), f"I{bits}")
    weights = rng.standard_normal((3, 64)).astype(np.float32)
    blocks("bf16.matrix", Q.BF16, gguf.quants.quantize(weights, Q.BF16), (3, 64))
    for name in QUANTIZED_BY_REFERENCE:
        qtype = getattr(Q, name)
        blocks(f"{name.lower()}.weight", qtype, gguf.quants.quantize(weights, qtype), (3, 64))
    for name in RANDOM_BLOCKS:
        qtype = getattr(Q, name)
        block_elems, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
        data = rng.integers(0, 256, (2, 512 // block_elems * block_bytes), dtype=np.uint8)
        blocks(f"{name.lower()}.weight", qtype, data, (2, 512))
    # a stacked MoE expert tensor [E, N, K]
    experts = rng.standard_normal((4, 3, 32)).astype(np.float32)
    blocks("q8_0.experts", Q.Q8_0, gguf.quants.quantize(experts, Q.Q8_0), (4, 3, 32))
    return out


# key -> (value, GGUF type, item type for arrays)
SAMPLE_METADATA: dict[str, tuple[object, object, object]] = {
    "test.uint8": (200, V.UINT8, None),
    "test.int8": (-100, V.INT8, None),
    "test.uint16": (60000, V.UINT16, None),
    "test.int16": (-30000, V.INT16, None),
    "test.uint32": (4_000_000_000, V.UINT32, None),
    "test.int32": (-2_000_000_000, V.INT32, None),
    "test.float32": (0.1, V.FLOAT32, None),
    "test.bool.true": (True, V.BOOL, None),
    "test.bool.false": (False, V.BOOL, None),
    "test.string": ("héllo, wörld ✓", V.STRING, None),
    "test.uint64": (2**64 - 1, V.UINT64, None),
    "test.int64": (-(2**63), V.INT64, None),
    "test.float64": (1e300, V.FLOAT64, None),
    "test.array.uint8": (list(range(0, 250, 7)), V.ARRAY, V.UINT8),
    "test.array.int8": ([-128, 0, 127], V.ARRAY, V.INT8),
    "test.array.uint16": ([0, 65535], V.ARRAY, V.UINT16),
    "test.array.int16": ([-32768, 32767], V.ARRAY, V.INT16),
    "test.array.uint32": ([1, 2, 3], V.ARRAY, V.UINT32),
    "test.array.int32": ([-1, 0, 1], V.ARRAY, V.INT32),
    "test.array.float32": ([0.5, -1.25, 3e38], V.ARRAY, V.FLOAT32),
    "test.array.bool": ([True, False, True], V.ARRAY, V.BOOL),
    "test.array.string": (["a", "", "ünïcode", "x" * 300], V.ARRAY, V.STRING),
    "test.array.uint64": ([2**64 - 1, 0], V.ARRAY, V.UINT64),
    "test.array.int64": ([-(2**63), 2**63 - 1], V.ARRAY, V.INT64),
    "test.array.float64": ([1e-300, -2.5], V.ARRAY, V.FLOAT64),
    "test.array.nested": ([[1, 2, 3], [4]], V.ARRAY, V.ARRAY),
    "tokenizer.ggml.tokens": (["<s>", "▁hello", "\u00e9"], V.ARRAY, V.STRING),
}


def write_gguf(path: Path, tensors: dict | None = None, metadata: dict | None = None, *,
               alignment: int | None = None, alignment_type=V.UINT32, big_endian: bool = False) -> Path:
    """A GGUF v3 file by GGUFWriter. ``tensors`` as from sample_tensors,
    ``metadata`` as SAMPLE_METADATA; ``alignment`` sets general.alignment
    (and the writer's padding)."""
    endian = gguf.GGUFEndian.BIG if big_endian else gguf.GGUFEndian.LITTLE
    writer = gguf.GGUFWriter(path, "test", endianess=endian)
    if alignment is not None:
        writer.data_alignment = alignment
        writer.add_key_value("general.alignment", alignment, alignment_type)
    for key, (value, vtype, sub_type) in (metadata or {}).items():
        writer.add_key_value(key, value, vtype, sub_type=sub_type)
    for name, (array, raw_dtype, _) in (tensors or {}).items():
        writer.add_tensor(name, array, raw_dtype=raw_dtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(path)


class Layout:
    """Byte offsets of a valid file's fields, from the reference reader."""

    def __init__(self, path: Path):
        self.reader = gguf.GGUFReader(path)
        self._base = self.reader.data.ctypes.data
        self.data_offset = int(self.reader.data_offset)

    def at(self, part: np.ndarray) -> int:
        return part.ctypes.data - self._base

    def key(self, key: str) -> int:
        """Offset of the key's length field (the start of its entry)."""
        return int(self.reader.fields[key].offset)

    def value_type(self, key: str) -> int:
        return self.at(self.reader.fields[key].parts[2])

    def value(self, key: str, index: int = 0) -> int:
        """Offset of a scalar value, or of an array's item ``index``."""
        field = self.reader.fields[key]
        return self.at(field.parts[field.data[index]])

    def string_length(self, key: str) -> int:
        """Offset of a string value's length field."""
        return self.at(self.reader.fields[key].parts[3])

    def array_item_type(self, key: str) -> int:
        return self.at(self.reader.fields[key].parts[3])

    def array_count(self, key: str) -> int:
        return self.at(self.reader.fields[key].parts[4])

    def tensor(self, name: str) -> dict[str, int]:
        """Offsets of a tensor info's fields: name (its length), n_dims, dims, type, offset."""
        (t,) = [t for t in self.reader.tensors if t.name == name]
        name_len, _, n_dims, dims, raw_type, offset = t.field.parts
        return {"name": self.at(name_len), "name_bytes": self.at(name_len) + 8, "n_dims": self.at(n_dims),
                "dims": self.at(dims), "type": self.at(raw_type), "offset": self.at(offset)}

    def header_end(self) -> int:
        """Where the tensor infos end (before the padding)."""
        last = self.reader.tensors[-1].field.parts[-1]
        return self.at(last) + 8


def patch(path: Path, out: Path, edits: dict[int, bytes], truncate: int | None = None) -> Path:
    """Copy ``path`` to ``out`` with ``edits`` (offset -> bytes) applied and
    optionally cut to ``truncate`` bytes."""
    raw = bytearray(path.read_bytes())
    for offset, value in edits.items():
        raw[offset:offset + len(value)] = value
    if truncate is not None:
        del raw[truncate:]
    out.write_bytes(bytes(raw))
    return out


def u32(value: int) -> bytes:
    return struct.pack("<I", value)


def u64(value: int) -> bytes:
    return struct.pack("<Q", value)
