"""Every GGML tensor type a GGUF file can name: id, name, block geometry.

A GGML tensor is stored as blocks along its innermost dimension: a block of
``block_elems`` elements takes ``block_bytes`` bytes (1 and the item size for
the plain types F32, F16, BF16, F64 and I8..I64). The sizes are those of
ggml's block structs (ggml-common.h, whose static_asserts pin them); ``align``
is the C alignment of the struct (``ggml_half2`` is a ``uint32_t``, so the
types with a packed pair of half scales need 4 bytes). The `gguf` package's
``GGML_QUANT_SIZES`` agrees with every entry but Q8_1, for which it still
has the old float-scaled 40-byte layout; ggml's block is 36 bytes today
(Q8_1 is an activation type that files do not use in practice).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GGMLType:
    """One tensor type. ``numpy_dtype`` is the element type of a view of a
    plain tensor; block-quantized types (``quantized``) are viewed as raw
    ``uint8`` rows, and BF16 as its raw ``uint16`` bits."""

    id: int
    name: str
    block_elems: int
    block_bytes: int
    align: int
    numpy_dtype: np.dtype

    @property
    def quantized(self) -> bool:
        return self.block_elems > 1

    def row_bytes(self, elems: int) -> int:
        """Bytes of ``elems`` elements (a multiple of ``block_elems``)."""
        return elems // self.block_elems * self.block_bytes


_U8 = np.dtype("u1")
_TABLE = [
    # id, name, elements per block, bytes per block, alignment, view dtype
    (0, "F32", 1, 4, 4, np.dtype("<f4")),
    (1, "F16", 1, 2, 2, np.dtype("<f2")),
    (2, "Q4_0", 32, 18, 2, _U8),
    (3, "Q4_1", 32, 20, 4, _U8),
    (6, "Q5_0", 32, 22, 2, _U8),
    (7, "Q5_1", 32, 24, 4, _U8),
    (8, "Q8_0", 32, 34, 2, _U8),
    (9, "Q8_1", 32, 36, 4, _U8),
    (10, "Q2_K", 256, 84, 4, _U8),
    (11, "Q3_K", 256, 110, 2, _U8),
    (12, "Q4_K", 256, 144, 4, _U8),
    (13, "Q5_K", 256, 176, 4, _U8),
    (14, "Q6_K", 256, 210, 2, _U8),
    (15, "Q8_K", 256, 292, 4, _U8),
    (16, "IQ2_XXS", 256, 66, 2, _U8),
    (17, "IQ2_XS", 256, 74, 2, _U8),
    (18, "IQ3_XXS", 256, 98, 2, _U8),
    (19, "IQ1_S", 256, 50, 2, _U8),
    (20, "IQ4_NL", 32, 18, 2, _U8),
    (21, "IQ3_S", 256, 110, 2, _U8),
    (22, "IQ2_S", 256, 82, 2, _U8),
    (23, "IQ4_XS", 256, 136, 2, _U8),
    (24, "I8", 1, 1, 1, np.dtype("i1")),
    (25, "I16", 1, 2, 2, np.dtype("<i2")),
    (26, "I32", 1, 4, 4, np.dtype("<i4")),
    (27, "I64", 1, 8, 8, np.dtype("<i8")),
    (28, "F64", 1, 8, 8, np.dtype("<f8")),
    (29, "IQ1_M", 256, 56, 1, _U8),
    (30, "BF16", 1, 2, 2, np.dtype("<u2")),
    (34, "TQ1_0", 256, 54, 2, _U8),
    (35, "TQ2_0", 256, 66, 2, _U8),
    (39, "MXFP4", 32, 17, 1, _U8),
    (40, "NVFP4", 64, 36, 1, _U8),
    (41, "Q1_0", 128, 18, 2, _U8),
]

GGML_TYPES: dict[int, GGMLType] = {row[0]: GGMLType(*row) for row in _TABLE}
"""Type id -> GGMLType, for every type the GGUF format currently defines."""

GGML_TYPES_BY_NAME: dict[str, GGMLType] = {t.name: t for t in GGML_TYPES.values()}

REMOVED_GGML_TYPES: dict[int, str] = {
    4: "Q4_2", 5: "Q4_3",                                  # dropped from ggml in 2023
    31: "Q4_0_4_4", 32: "Q4_0_4_8", 33: "Q4_0_8_8",        # ARM repacks, now done at load time
    36: "IQ4_NL_4_4", 37: "IQ4_NL_4_8", 38: "IQ4_NL_8_8",
}
"""Ids ggml once assigned and has since removed: refused, but by name."""
