"""GGUF metadata as the mapping edgecore's tokenizer_from_gguf takes, read
with the `gguf` package's GGUFReader (an independent reader): strings as
str, string arrays as list[str], numeric arrays as NumPy arrays (or lists,
to check both are accepted)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def gguf_metadata(path, numeric_as_lists: bool = False) -> dict:
    from gguf import GGUFReader, GGUFValueType

    reader = GGUFReader(str(path))
    out = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        kind = field.types[0] if field.types else None
        if kind == GGUFValueType.ARRAY and field.types[-1] == GGUFValueType.STRING:
            # field.contents() is slow for 262k strings; the parts hold the bytes
            out[key] = [bytes(field.parts[i]).decode("utf-8", "surrogateescape") for i in field.data]
        elif kind == GGUFValueType.ARRAY:
            values = np.concatenate([np.asarray(field.parts[i]).reshape(-1) for i in field.data]) if field.data \
                else np.zeros(0)
            out[key] = values.tolist() if numeric_as_lists else values
        else:
            out[key] = field.contents()
    return out


def write_vocab_gguf(path: Path, metadata: dict, arch: str = "llama") -> Path:
    """A GGUF file holding only this tokenizer metadata (and one tiny tensor),
    written with the gguf package's writer, for transformers to read."""
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), arch)
    for key, value in metadata.items():
        if key == "general.architecture":
            continue
        if isinstance(value, bool):
            writer.add_bool(key, value)
        elif isinstance(value, int):
            writer.add_uint32(key, value)
        elif isinstance(value, str):
            writer.add_string(key, value)
        elif key == "tokenizer.ggml.scores":
            writer.add_array(key, [float(v) for v in value])
        elif key == "tokenizer.ggml.token_type":
            writer.add_array(key, [int(v) for v in value])
        else:
            writer.add_array(key, list(value))
    writer.add_tensor("dummy", np.zeros(4, np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
