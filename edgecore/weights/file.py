"""`load_safetensors`: one mapping-like object over a file or a sharded model.

Opening reads only headers (every rule checked); a file is mapped the first
time one of its tensors (or its residency) is asked for. A tensor is a
read-only NumPy view into the mapping: no copy, and no RAM until read.
"""

from __future__ import annotations

import json
import os
import threading
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgecore.weights.convert import to_float32
from edgecore.weights.header import Header, SafetensorsError, TensorInfo, read_header
from edgecore.weights.mapping import PAGE_SIZE, FileMapping, page_span

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"


@dataclass(frozen=True)
class FileResidency:
    """How much of one mapped file is in RAM (bytes): ``resident`` is mapped
    into this process (counted in its RSS), ``cached`` is in the kernel's
    page cache (shared, reclaimable; see docs/weights-and-memory.md)."""

    path: Path
    size: int
    resident: int
    cached: int


class _Shard:
    """One safetensors file: its validated header and, once needed, its mapping.

    The descriptor opened to read the header is the one mapped later, so the
    data always belongs to the header that was validated even if the path is
    replaced in between.
    """

    def __init__(self, path: Path):
        self.path = path
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        self._close_fd = weakref.finalize(self, os.close, fd)
        self.fd = fd
        try:
            self.header: Header = read_header(fd, path)
        except BaseException:
            self._close_fd()
            raise
        self.mapping: FileMapping | None = None

    def mapped(self) -> FileMapping:
        if self.mapping is None:
            size = os.fstat(self.fd).st_size
            if size != self.header.file_size:
                raise SafetensorsError(self.path, "file-changed",
                                       f"file is now {size} bytes but was {self.header.file_size} when its "
                                       f"header was read; it was modified while loaded")
            self.mapping = FileMapping(self.fd, size, self.path)
        return self.mapping

    def cached(self, begin: int, end: int) -> int:
        if self.mapping is not None:
            return self.mapping.cached(begin, end)
        # mincore needs a mapping; a temporary one keeps "unused files stay unmapped" true
        probe = FileMapping(self.fd, self.header.file_size, self.path)
        try:
            return probe.cached(begin, end)
        finally:
            probe.close()

    def drop(self, begin: int, end: int, evict: bool) -> int:
        if self.mapping is not None:
            return self.mapping.drop(begin, end, evict)
        if not evict:
            return 0  # nothing of an unmapped file is mapped into this process
        start, stop = page_span(begin, end, self.header.file_size)
        if stop > start:
            os.posix_fadvise(self.fd, start, stop - start, os.POSIX_FADV_DONTNEED)
        return stop - start

    def close(self) -> None:
        if self.mapping is not None:
            self.mapping.close()
            self.mapping = None
        self._close_fd()


class SafetensorsFile(Mapping):
    """Tensors of a safetensors file, or of every shard of a sharded model,
    by name: ``f[name]`` is a read-only NumPy view into the mapped file.

    Views are never copies: ``f[name].base`` leads (through a ``uint8`` view
    of the whole file and a ``memoryview``) to the ``mmap``. BF16 tensors are
    ``uint16`` views of the raw bits; use :meth:`to_float32` to widen them.

    Closing (or leaving the ``with`` block) releases the files: no new views
    can be made, and each mapping is unmapped at once, or, while views made
    from it are still alive, when the last of them is garbage collected.
    Surviving views therefore stay valid and never crash the process; they
    keep their file's pages mapped (and counted in RSS) until they go.
    Names, shapes and dtypes stay readable after close.
    """

    def __init__(self, path: Path, shards: list[_Shard], tensors: dict[str, tuple[_Shard, TensorInfo]],
                 metadata: dict[str, Any]):
        self.path = path
        self._shards = shards
        self._tensors = tensors
        self._lock = threading.Lock()
        self._closed = False
        self.metadata = metadata
        """``__metadata__`` of a single file; for a sharded model, the
        index's ``"metadata"`` object (for example ``{"total_size": ...}``)."""

    # ---- mapping protocol -------------------------------------------------

    def __getitem__(self, name: str) -> np.ndarray:
        shard, info = self._lookup(name)
        with self._lock:
            self._check_open()
            mapping = shard.mapped()
        return mapping.view(info.begin, info.end, info.numpy_dtype, info.shape)

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._tensors
        except TypeError:  # unhashable: certainly not a tensor name
            return False

    # Mapping's __eq__ would compare every tensor; two loaded files are equal
    # only if they are the same object.
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    # ---- description (header only) ----------------------------------------

    def info(self, name: str) -> TensorInfo:
        """Dtype, shape, file and absolute byte range of a tensor."""
        return self._lookup(name)[1]

    @property
    def files(self) -> tuple[Path, ...]:
        """The safetensors files behind this object (one unless sharded)."""
        return tuple(shard.path for shard in self._shards)

    @property
    def file_metadata(self) -> dict[Path, dict[str, str]]:
        """``__metadata__`` of each file."""
        return {shard.path: dict(shard.header.metadata) for shard in self._shards}

    @property
    def nbytes(self) -> int:
        """Bytes of tensor data (headers excluded)."""
        return sum(info.nbytes for _, info in self._tensors.values())

    def to_float32(self, name: str, out: np.ndarray | None = None) -> np.ndarray:
        """Tensor ``name`` (F32, F16 or BF16) as float32: the view itself for
        aligned F32 without ``out``, otherwise a widened copy (into ``out``
        when given)."""
        return to_float32(self[name], dtype=self.info(name).dtype, out=out)

    # ---- residency ----------------------------------------------------------

    def resident_bytes(self, name: str | None = None) -> int:
        """Bytes of tensor ``name`` mapped into this process right now: what
        it adds to the RSS. With no name, the whole pages of every file's
        mapping (header and partial last page included)."""
        total = 0
        for shard, begin, end in self._ranges(name):
            mapping = shard.mapping
            if mapping is not None:  # an unmapped file holds nothing in this process
                total += mapping.resident(begin, end)
        return total

    def cached_bytes(self, name: str | None = None) -> int:
        """Bytes of tensor ``name`` (of every file when None) in the kernel's
        page cache, mapped by this process or not (``mincore``)."""
        with self._lock:
            return sum(shard.cached(begin, end) for shard, begin, end in self._ranges(name))

    def residency(self) -> list[FileResidency]:
        """Per file: its size, bytes mapped into this process, bytes in the
        page cache."""
        result = []
        with self._lock:
            for shard, begin, end in self._ranges(None):
                resident = 0 if shard.mapping is None else shard.mapping.resident(begin, end)
                result.append(FileResidency(shard.path, shard.header.file_size, resident,
                                            shard.cached(begin, end)))
        return result

    def drop(self, name: str | None = None, *, evict: bool = False) -> int:
        """Give back the pages of tensor ``name`` (every file when None):
        ``MADV_DONTNEED`` unmaps them from this process (a later read faults
        them in again; the range is rounded out to whole pages, which is safe
        for clean file pages). ``evict=True`` also drops them from the page
        cache. Returns the bytes advised."""
        with self._lock:
            return sum(shard.drop(begin, end, evict) for shard, begin, end in self._ranges(name))

    def prefetch(self, name: str | None = None, *, wait: bool = False) -> int:
        """Start reading tensor ``name`` (every file when None) ahead
        (``MADV_WILLNEED``). With ``wait=True``, return only once every page
        is mapped into this process. Returns the bytes advised."""
        return sum(self._mapped(shard).prefetch(begin, end, wait) for shard, begin, end in self._ranges(name))

    # ---- lifetime -----------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Release the files (see the class docstring for surviving views)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for shard in self._shards:
                shard.close()

    def __enter__(self) -> SafetensorsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (f"<SafetensorsFile {str(self.path)!r}: {len(self)} tensors in {len(self._shards)} "
                f"file(s), {state}>")

    # ---- internals ----------------------------------------------------------

    def _lookup(self, name: str) -> tuple[_Shard, TensorInfo]:
        try:
            return self._tensors[name]
        except (KeyError, TypeError):
            raise KeyError(f"{self.path}: no tensor named {name!r}") from None

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"{self.path}: the safetensors file is closed")

    def _mapped(self, shard: _Shard) -> FileMapping:
        with self._lock:
            self._check_open()
            return shard.mapped()

    def _ranges(self, name: str | None) -> list[tuple[_Shard, int, int]]:
        self._check_open()
        if name is None:
            # whole pages: the RAM a file's mapping holds, its partial last page included
            return [(shard, 0, -(-shard.header.file_size // PAGE_SIZE) * PAGE_SIZE) for shard in self._shards]
        shard, info = self._lookup(name)
        return [(shard, info.begin, info.end)]


def load_safetensors(path: str | os.PathLike) -> SafetensorsFile:
    """Open a safetensors model for zero-copy reading.

    ``path`` is a ``.safetensors`` file, a Hugging Face shard index
    (``model.safetensors.index.json``), or a directory holding
    ``model.safetensors`` (preferred, as in ``transformers``) or the index.
    Every header is read and validated now (SafetensorsError on any broken
    rule); no tensor data is read or mapped until used. A missing file
    raises FileNotFoundError.
    """
    path = Path(path)
    if path.is_dir():
        if (path / SINGLE_FILE).is_file():
            path = path / SINGLE_FILE
        elif (path / INDEX_FILE).is_file():
            path = path / INDEX_FILE
        else:
            raise FileNotFoundError(f"{path}: directory has neither {SINGLE_FILE} nor {INDEX_FILE}")
    if path.name.endswith(".json"):
        return _load_index(path)
    shard = _Shard(path)
    tensors = {name: (shard, info) for name, info in shard.header.tensors.items()}
    return SafetensorsFile(path, [shard], tensors, dict(shard.header.metadata))


def _load_index(path: Path) -> SafetensorsFile:
    def fail(message: str, tensor: str | None = None) -> SafetensorsError:
        return SafetensorsError(path, "index", message, tensor=tensor)

    try:
        document = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise fail(f"index is not valid UTF-8 ({exc.reason})") from None
    except (ValueError, RecursionError) as exc:
        raise fail(f"index is not valid JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("weight_map"), dict):
        raise fail('index must be a JSON object with a "weight_map" object (tensor name -> shard file)')
    metadata = document.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise fail('"metadata" must be a JSON object')
    weight_map: dict[str, object] = document["weight_map"]

    shards: dict[str, _Shard] = {}
    try:
        for name, filename in weight_map.items():
            if not isinstance(filename, str) or not filename:
                raise fail(f"weight_map value must be a file name, got {filename!r}", tensor=name)
            relative = Path(filename)
            # shards live beside the index: an index must not open arbitrary files
            if relative.is_absolute() or ".." in relative.parts:
                raise fail(f"shard {filename!r} is not a path inside {path.parent}", tensor=name)
            if filename not in shards:
                shards[filename] = _Shard(path.parent / relative)
        tensors: dict[str, tuple[_Shard, TensorInfo]] = {}
        for name, filename in weight_map.items():
            shard = shards[filename]
            info = shard.header.tensors.get(name)
            if info is None:
                raise fail(f"weight_map places it in {filename}, which has no such tensor", tensor=name)
            tensors[name] = (shard, info)
    except BaseException:
        for shard in shards.values():
            shard.close()
        raise
    order = {shard.path: i for i, shard in enumerate(shards.values())}
    # file order, then offset order: the order a loader reads them sequentially
    tensors = dict(sorted(tensors.items(), key=lambda item: (order[item[1][0].path], item[1][1].begin)))
    return SafetensorsFile(path, list(shards.values()), tensors, metadata)
