"""Zero-copy safetensors and GGUF: validated headers, mapped tensors, residency control.

``load_safetensors(path)`` opens a file, a sharded model's index or a model
directory, ``load_gguf(path)`` a GGUF file; tensors are read-only NumPy
views into the mapped files. See docs/weights-and-memory.md.
"""

from edgecore.weights.convert import to_float32
from edgecore.weights.file import FileResidency, SafetensorsFile, load_safetensors
from edgecore.weights.ggml_types import GGML_TYPES, GGMLType
from edgecore.weights.gguf import GGUFFile, load_gguf
from edgecore.weights.gguf_header import GGUFError, GGUFTensorInfo
from edgecore.weights.header import NUMPY_DTYPES, SafetensorsError, TensorInfo
from edgecore.weights.mapping import PAGE_SIZE
from edgecore.weights.writer import save_safetensors, save_sharded

__all__ = [
    "FileResidency",
    "GGMLType",
    "GGML_TYPES",
    "GGUFError",
    "GGUFFile",
    "GGUFTensorInfo",
    "NUMPY_DTYPES",
    "PAGE_SIZE",
    "SafetensorsError",
    "SafetensorsFile",
    "TensorInfo",
    "load_gguf",
    "load_safetensors",
    "save_safetensors",
    "save_sharded",
    "to_float32",
]
