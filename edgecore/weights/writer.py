"""Write safetensors files (single or sharded) from NumPy arrays.

The layout matches the reference writer: tensors ordered by element size
(largest first) then name, header padded with spaces so the data section
starts on an 8-byte boundary; with that order every tensor is aligned to its
element size, which the kernels need to use it without a copy. Files are
written to a temporary name and renamed, so a crash never leaves a truncated
model behind.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from edgecore.weights.file import INDEX_FILE
from edgecore.weights.header import NUMPY_DTYPES

# NumPy dtype (native order) -> default safetensors dtype. uint16 means U16
# unless the caller says BF16 through ``dtypes``.
_DEFAULT_DTYPE = {NUMPY_DTYPES[name].newbyteorder("="): name for name in NUMPY_DTYPES if name != "BF16"}


def save_safetensors(path: str | os.PathLike, tensors: Mapping[str, np.ndarray],
                     metadata: Mapping[str, str] | None = None, *,
                     dtypes: Mapping[str, str] | None = None) -> Path:
    """Write ``tensors`` (name -> NumPy array) to ``path``.

    ``metadata`` becomes ``__metadata__`` (strings only). ``dtypes`` overrides
    the stored dtype of some tensors; its one use is BF16, given as the raw
    bits in a ``uint16`` array: ``dtypes={"w": "BF16"}``. Arrays in any byte
    order or layout are accepted and stored little-endian, row-major.
    Returns the path written.
    """
    path = Path(path)
    entries = _plan(tensors, dtypes or {})
    meta = _check_metadata(metadata)
    header: dict[str, object] = {"__metadata__": meta} if meta else {}
    offset = 0
    for name, dtype, array in entries:
        header[name] = {"dtype": dtype, "shape": list(array.shape),
                        "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
    try:
        raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"save_safetensors: a tensor name or metadata string is not valid Unicode: {exc}"
                         ) from None
    raw += b" " * (-(8 + len(raw)) % 8)

    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as f:
            f.write(len(raw).to_bytes(8, "little"))
            f.write(raw)
            for _, _, array in entries:
                f.write(array.reshape(-1).view(np.uint8).data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def save_sharded(directory: str | os.PathLike, tensors: Mapping[str, np.ndarray], max_shard_bytes: int,
                 metadata: Mapping[str, str] | None = None, *,
                 dtypes: Mapping[str, str] | None = None) -> Path:
    """Write ``tensors`` as Hugging Face shards (``model-00001-of-0000N.safetensors``)
    of at most ``max_shard_bytes`` of tensor data each (a larger tensor gets
    a shard of its own), plus ``model.safetensors.index.json``. Tensors are
    packed in the order given. Returns the index path."""
    if max_shard_bytes <= 0:
        raise ValueError(f"save_sharded: max_shard_bytes must be positive, got {max_shard_bytes}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    groups: list[dict[str, np.ndarray]] = [{}]
    used = 0
    for name, array in tensors.items():
        size = np.asarray(array).nbytes
        if groups[-1] and used + size > max_shard_bytes:
            groups.append({})
            used = 0
        groups[-1][name] = array
        used += size
    dtypes = dtypes or {}
    weight_map: dict[str, str] = {}
    for i, group in enumerate(groups, start=1):
        filename = f"model-{i:05d}-of-{len(groups):05d}.safetensors"
        save_safetensors(directory / filename, group, metadata,
                         dtypes={k: v for k, v in dtypes.items() if k in group})
        weight_map.update(dict.fromkeys(group, filename))
    total = sum(np.asarray(a).nbytes for a in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    index_path = directory / INDEX_FILE
    index_path.write_text(json.dumps(index, indent=2) + "\n")
    return index_path


def _plan(tensors: Mapping[str, np.ndarray], dtypes: Mapping[str, str]) -> list[tuple[str, str, np.ndarray]]:
    unknown = [name for name in dtypes if name not in tensors]
    if unknown:
        raise ValueError(f"save_safetensors: dtypes names tensors that are not given: {unknown}")
    entries = []
    for name, array in tensors.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise ValueError(f"save_safetensors: tensor names must be strings other than '__metadata__', "
                             f"got {name!r}")
        if not isinstance(array, np.ndarray):
            raise TypeError(f"save_safetensors: tensor {name!r} must be a NumPy array, "
                            f"got {type(array).__name__}")
        native = array.dtype.newbyteorder("=") if array.dtype.byteorder in "<>" else array.dtype
        dtype = dtypes.get(name) or _DEFAULT_DTYPE.get(native)
        if dtype is None:
            raise TypeError(f"save_safetensors: tensor {name!r} has dtype {array.dtype}, which safetensors "
                            f"cannot store; supported: {', '.join(sorted({str(d) for d in _DEFAULT_DTYPE}))}")
        stored = NUMPY_DTYPES.get(dtype)
        if stored is None:
            raise ValueError(f"save_safetensors: dtypes[{name!r}] = {dtype!r} is not one of "
                             f"{', '.join(NUMPY_DTYPES)}")
        if native != stored.newbyteorder("="):
            raise TypeError(f"save_safetensors: tensor {name!r} is stored as {dtype}, which needs a "
                            f"{stored.newbyteorder('=')} array, got {array.dtype}")
        # np.ascontiguousarray would turn a 0-d array into shape (1,)
        entries.append((name, dtype, np.array(array, dtype=stored, order="C", copy=None)))
    entries.sort(key=lambda e: (-e[2].itemsize, e[0]))
    return entries


def _check_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise TypeError("save_safetensors: metadata must map strings to strings")
    return dict(metadata)
