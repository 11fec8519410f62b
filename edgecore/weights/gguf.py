"""`load_gguf`: a GGUF file as a mapping of zero-copy tensor views.

Opening maps the file and validates its whole header (gguf_header.py,
gguf_metadata.py); tensor data is not touched until a view of it is read.
``GGUFFile`` has the interface of ``SafetensorsFile`` (names, ``info``, views, residency
control), so the engine's weight runtime can hold either.
"""

from __future__ import annotations

import os
import stat
import threading
import weakref
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgecore.weights.convert import FLOAT_DTYPES, to_float32
from edgecore.weights.file import FileResidency
from edgecore.weights.gguf_header import PREFIX_BYTES, GGUFError, GGUFHeader, GGUFTensorInfo, check_prefix, parse_header
from edgecore.weights.mapping import PAGE_SIZE, FileMapping


class GGUFFile(Mapping):
    """Tensors of one GGUF file by name: ``f[name]`` is a read-only NumPy
    view into the mapped file, never a copy (its ``.base`` chain leads to
    the ``mmap``).

    Views: F32/F16/F64/I8..I64 as their NumPy dtypes and ``info.shape``;
    BF16 as ``uint16`` raw bits; block-quantized types as ``uint8`` of shape
    ``(*shape[:-1], row_bytes)``, one row of blocks per innermost run.

    ``metadata`` maps each key to a Python int/float/bool/str, a list of str
    (string arrays), a read-only NumPy view of the mapping (numeric and
    boolean arrays) or a list of those (arrays of arrays);
    ``metadata_types`` gives each key's GGUF type ("UINT32",
    "ARRAY[FLOAT32]", ...).

    Closing releases the file as ``SafetensorsFile.close`` does: no new
    views; the mapping goes at once, or when the last view is garbage
    collected. The metadata arrays are views too, so the mapping (and the
    descriptor ``mmap`` holds) usually lives until this object's metadata
    is gone; close() therefore also drops every page of the file from this
    process. Surviving views stay valid (a read faults its pages back in).
    Names, infos and metadata stay readable.
    """

    def __init__(self, path: Path, fd: int, mapping: FileMapping, header: GGUFHeader):
        self.path = path
        self._close_fd = weakref.finalize(self, os.close, fd)
        self._fd = fd
        self._mapping = mapping
        self._header = header
        self._tensors = header.tensors
        self._lock = threading.Lock()
        self._closed = False
        self.metadata: dict[str, Any] = header.metadata
        self.metadata_types: dict[str, str] = header.metadata_types

    # ---- mapping protocol -------------------------------------------------

    def __getitem__(self, name: str) -> np.ndarray:
        info = self._lookup(name)
        with self._lock:
            self._check_open()
            return self._mapping.view(info.begin, info.end, info.numpy_dtype, info.view_shape)

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

    def info(self, name: str) -> GGUFTensorInfo:
        """GGML type, logical shape and absolute byte range of a tensor."""
        return self._lookup(name)

    @property
    def version(self) -> int:
        """The GGUF version (2 or 3)."""
        return self._header.version

    @property
    def alignment(self) -> int:
        """The data alignment (``general.alignment``, 32 by default)."""
        return self._header.alignment

    @property
    def data_start(self) -> int:
        """Byte offset of the data section (the aligned end of the header)."""
        return self._header.data_start

    @property
    def files(self) -> tuple[Path, ...]:
        return (self.path,)

    @property
    def nbytes(self) -> int:
        """Bytes of tensor data (header and padding excluded)."""
        return sum(info.nbytes for info in self._tensors.values())

    def to_float32(self, name: str, out: np.ndarray | None = None) -> np.ndarray:
        """Tensor ``name`` (F32, F16 or BF16) as float32, as
        ``SafetensorsFile.to_float32``. Block types are not widened here:
        the kernels read them as they are."""
        info = self._lookup(name)
        if info.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{self.path}: tensor {name!r} is {info.dtype}; to_float32 widens "
                            f"{', '.join(FLOAT_DTYPES)} only (block types run in their stored form)")
        return to_float32(self[name], dtype=info.dtype, out=out)

    # ---- residency ----------------------------------------------------------

    def resident_bytes(self, name: str | None = None) -> int:
        """Bytes of tensor ``name`` mapped into this process right now (what
        it adds to the RSS); with no name, the whole pages of the mapping
        (header included)."""
        with self._lock:
            begin, end = self._range(name)
            return self._mapping.resident(begin, end)

    def cached_bytes(self, name: str | None = None) -> int:
        """Bytes of tensor ``name`` (of the file when None) in the kernel's
        page cache, mapped by this process or not (``mincore``)."""
        with self._lock:
            begin, end = self._range(name)
            return self._mapping.cached(begin, end)

    def residency(self) -> list[FileResidency]:
        """The file's size, bytes mapped into this process, bytes in the page cache."""
        with self._lock:
            begin, end = self._range(None)
            return [FileResidency(self.path, self._header.file_size, self._mapping.resident(begin, end),
                                  self._mapping.cached(begin, end))]

    def drop(self, name: str | None = None, *, evict: bool = False) -> int:
        """Give back the pages of tensor ``name`` (of the file when None):
        see ``SafetensorsFile.drop``. Returns the bytes advised."""
        with self._lock:
            begin, end = self._range(name)
            return self._mapping.drop(begin, end, evict)

    def prefetch(self, name: str | None = None, *, wait: bool = False) -> int:
        """Read tensor ``name`` (the file when None) ahead; with ``wait``,
        return once every page is mapped. Returns the bytes advised."""
        with self._lock:
            begin, end = self._range(name)
            mapping = self._mapping
        return mapping.prefetch(begin, end, wait)

    # ---- lifetime -----------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Release the file (see the class docstring for surviving views)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            # The metadata arrays are views of the mapping too, so it usually
            # outlives close(); give its pages back now (clean file pages: a
            # surviving view that is read again faults them back in).
            self._mapping.drop(*self._whole_file())
            self._mapping.close()
            self._close_fd()

    def __enter__(self) -> GGUFFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        arch = self.metadata.get("general.architecture")
        kind = f" {arch}" if isinstance(arch, str) else ""
        return (f"<GGUFFile {str(self.path)!r}: GGUF v{self.version}{kind}, {len(self)} tensors, "
                f"{len(self.metadata)} metadata keys, {state}>")

    # ---- internals ----------------------------------------------------------

    def _lookup(self, name: str) -> GGUFTensorInfo:
        try:
            return self._tensors[name]
        except (KeyError, TypeError):
            raise KeyError(f"{self.path}: no tensor named {name!r}") from None

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"{self.path}: the GGUF file is closed")

    def _range(self, name: str | None) -> tuple[int, int]:
        self._check_open()
        if name is None:
            return self._whole_file()
        info = self._lookup(name)
        return info.begin, info.end

    def _whole_file(self) -> tuple[int, int]:
        # whole pages: the RAM the mapping holds, its partial last page included
        return 0, -(-self._header.file_size // PAGE_SIZE) * PAGE_SIZE


def load_gguf(path: str | os.PathLike) -> GGUFFile:
    """Open a GGUF file (v2 or v3, little-endian) for zero-copy reading.

    The file is mapped and its whole header read and validated now
    (GGUFError, a ValueError, names the broken rule); tensor data is not
    read until used. A missing file raises FileNotFoundError.
    """
    path = Path(path)
    # O_NONBLOCK: opening a FIFO would otherwise wait for a writer (a hang)
    # before fstat could refuse it; it changes nothing for a regular file
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        return _open(path, fd)
    except BaseException:
        os.close(fd)
        raise


def _open(path: Path, fd: int) -> GGUFFile:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise GGUFError(path, "not-a-file", "is not a regular file (a directory, device or pipe)")
    # magic and version first, from a plain read: a file that is not GGUF is
    # refused before anything is mapped
    check_prefix(os.pread(fd, PREFIX_BYTES, 0), path)
    # The descriptor validated is the one mapped, and the header is parsed
    # from that very mapping: the data always belongs to the header checked.
    mapping = FileMapping(fd, st.st_size, path)
    try:
        header = parse_header(mapping, path)
        size = os.fstat(fd).st_size
        if size != st.st_size:
            raise GGUFError(path, "file-changed", f"file is now {size} bytes but was {st.st_size} when its "
                            f"header was read; it was modified while loading")
        # Parsing faulted in the header's pages; the kernel's fault-around may
        # have mapped cached data pages next to them too. A tensor should be
        # resident only once read, so let those go (clean pages: nothing lost).
        mapping.drop(header.data_start, st.st_size)
    except BaseException:
        mapping.close()
        raise
    return GGUFFile(path, fd, mapping, header)
