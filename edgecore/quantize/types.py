"""The weight types `edgecore quantize` writes, and how one float32 matrix
becomes the bytes of one of them.

Quantized blocks come from edgecore's own quantizer (`ops.quantize`, C
kernels), which produces exactly what `gguf.quants.quantize` produces.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgecore import ops


@dataclass(frozen=True)
class OutType:
    name: str  # as on the command line and in ops.weight_types()
    ggml: str  # GGMLQuantizationType member name
    file_type: str  # LlamaFileType member name for general.file_type
    block: int  # elements per block along a row
    block_bytes: int

    def row_bytes(self, k: int) -> int:
        return k // self.block * self.block_bytes

    def fits(self, k: int) -> bool:
        return k % self.block == 0

    def encode(self, x: np.ndarray) -> np.ndarray:
        """``x`` (float32, [rows, K], C-contiguous) as the array GGUFWriter
        writes: uint8 blocks [rows, row bytes], float16 or bf16 bits."""
        if self.name == "f32":
            return x
        return ops.quantize(x, self.name)


OUT_TYPES: dict[str, OutType] = {t.name: t for t in (
    OutType("f32", "F32", "ALL_F32", 1, 4),
    OutType("f16", "F16", "MOSTLY_F16", 1, 2),
    OutType("bf16", "BF16", "MOSTLY_BF16", 1, 2),
    OutType("q8_0", "Q8_0", "MOSTLY_Q8_0", 32, 34),
    OutType("q4_0", "Q4_0", "MOSTLY_Q4_0", 32, 18),
    OutType("q4_1", "Q4_1", "MOSTLY_Q4_1", 32, 20),
    OutType("q5_0", "Q5_0", "MOSTLY_Q5_0", 32, 22),
    OutType("q5_1", "Q5_1", "MOSTLY_Q5_1", 32, 24),
)}

# A weight whose rows do not divide into blocks is written in this type
# (llama.cpp's quantizer also falls back for such tensors); the summary names each one.
FALLBACK = "f16"
