"""A read-only mapping of one file, and control of which of its pages are in RAM.

Two different questions have two different answers on Linux, so both are
measured (see docs/weights-and-memory.md, "Residency"):

- ``resident``: bytes of a range mapped into *this process* (present in its
  page tables). This is what the range adds to the process's RSS and what a
  memory budget must count. Read from ``/proc/self/pagemap`` (bit 63,
  "page present", readable by any process for its own pages).
- ``cached``: bytes of a range held in the kernel's *page cache*, mapped or
  not, shared with every process reading the file. ``mincore(2)`` on a file
  mapping reports this (verified: after ``MADV_DONTNEED`` mincore still says
  "resident" while the process's RSS has dropped). The kernel reclaims clean
  cache pages under pressure, so this is RAM in use but not owned by us.

``drop`` unmaps a range's pages from this process (``MADV_DONTNEED``); on a
shared read-only file mapping the pages are clean, so a later read simply
faults them back in from the page cache or the file: no data is lost, which
is why rounding a tensor's range out to whole pages (touching a neighbour's
first or last page) is safe. ``evict=True`` also asks the kernel to drop the
range from the page cache (``POSIX_FADV_DONTNEED``), which frees the RAM for
real when no other process maps those pages.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import mmap
import os
from pathlib import Path

import numpy as np

PAGE_SIZE = mmap.PAGESIZE
_MADV_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22)  # Linux >= 5.14
_PRESENT_BIT = np.uint64(1 << 63)


def page_span(begin: int, end: int, length: int) -> tuple[int, int]:
    """The whole pages covering bytes ``[begin, end)`` of a mapping of
    ``length`` bytes (the last page may extend past ``length``: the mapping
    still owns it)."""
    start = begin - begin % PAGE_SIZE
    if end <= begin:
        return start, start
    stop = min(-(-end // PAGE_SIZE) * PAGE_SIZE, -(-length // PAGE_SIZE) * PAGE_SIZE)
    return start, max(start, stop)


def _bytes_on_pages(flags: np.ndarray, start: int, begin: int, end: int) -> int:
    """Bytes of ``[begin, end)`` lying on pages whose flag is set; page i of
    ``flags`` covers ``[start + i*PAGE, start + (i+1)*PAGE)``."""
    if begin >= end or flags.size == 0:
        return 0
    total = int(np.count_nonzero(flags)) * PAGE_SIZE
    if flags[0]:
        total -= begin - start
    if flags[-1]:
        total -= start + flags.size * PAGE_SIZE - end
    return total


class _Libc:
    """mincore(2) through ctypes (the standard library has no binding)."""

    _lib: ctypes.CDLL | None = None

    @classmethod
    def mincore(cls, address: int, length: int, vec: np.ndarray) -> None:
        if cls._lib is None:
            lib = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
            lib.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
            lib.mincore.restype = ctypes.c_int
            cls._lib = lib
        if cls._lib.mincore(address, length, vec.ctypes.data) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"mincore failed: {os.strerror(code)}")


def present_pages(address: int, npages: int) -> np.ndarray:
    """For each page from ``address`` (page-aligned): 1 if it is present in
    this process's page tables, else 0. Reads /proc/self/pagemap."""
    if npages == 0:
        return np.zeros(0, np.uint8)
    try:
        fd = os.open("/proc/self/pagemap", os.O_RDONLY)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot measure resident pages: /proc/self/pagemap is not readable "
                      f"({exc.strerror}); resident bytes need Linux with /proc mounted") from None
    try:
        want = npages * 8
        raw = os.pread(fd, want, address // PAGE_SIZE * 8)
        if len(raw) != want:
            raise OSError(errno.EIO, f"short read from /proc/self/pagemap ({len(raw)} of {want} bytes)")
    finally:
        os.close(fd)
    entries = np.frombuffer(raw, np.uint64)
    return ((entries & _PRESENT_BIT) != 0).astype(np.uint8)


class FileMapping:
    """A whole file mapped read-only and shared (``PROT_READ``, ``MAP_SHARED``).

    ``bytes`` is a read-only ``uint8`` array over the mapping; tensor views are
    views of it, so their ``.base`` chain reaches the ``mmap``. The mapping
    starts on a page boundary, so byte offsets in the file are offsets in the
    mapping and page arithmetic is the same for both.
    """

    def __init__(self, fd: int, length: int, path: Path):
        self.path = path
        self.length = length
        self._fd = fd
        self._mmap: mmap.mmap | None = mmap.mmap(fd, length, access=mmap.ACCESS_READ)
        self.bytes: np.ndarray | None = np.frombuffer(self._mmap, np.uint8)
        self.address = self.bytes.__array_interface__["data"][0]

    def view(self, begin: int, end: int, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        """A read-only view of bytes ``[begin, end)`` as ``dtype`` / ``shape``."""
        _, data = self._alive()
        return data[begin:end].view(dtype).reshape(shape)

    def _alive(self) -> tuple[mmap.mmap, np.ndarray]:
        # Callers keep the returned array while they work: it holds a buffer
        # export, so a concurrent close() cannot unmap under them.
        mapping, data = self._mmap, self.bytes
        if mapping is None or data is None:
            raise ValueError(f"{self.path}: the mapping is closed")
        return mapping, data

    def resident(self, begin: int, end: int) -> int:
        """Bytes of ``[begin, end)`` mapped into this process (count in RSS)."""
        _, data = self._alive()
        start, stop = page_span(begin, end, self.length)
        flags = present_pages(self.address + start, (stop - start) // PAGE_SIZE)
        del data
        return _bytes_on_pages(flags, start, begin, end)

    def cached(self, begin: int, end: int) -> int:
        """Bytes of ``[begin, end)`` in the page cache (mincore)."""
        _, data = self._alive()
        start, stop = page_span(begin, end, self.length)
        vec = np.zeros((stop - start) // PAGE_SIZE, np.uint8)
        if vec.size:
            _Libc.mincore(self.address + start, stop - start, vec)
        del data
        return _bytes_on_pages(vec & 1, start, begin, end)

    def drop(self, begin: int, end: int, evict: bool = False) -> int:
        """Unmap the pages covering ``[begin, end)`` from this process; with
        ``evict``, also ask the kernel to drop them from the page cache.
        Returns the number of bytes advised (whole pages)."""
        mapping, _ = self._alive()
        start, stop = page_span(begin, end, self.length)
        if stop > start:
            mapping.madvise(mmap.MADV_DONTNEED, start, stop - start)
            if evict:
                os.posix_fadvise(self._fd, start, stop - start, os.POSIX_FADV_DONTNEED)
        return stop - start

    def prefetch(self, begin: int, end: int, wait: bool = False) -> int:
        """Start reading ``[begin, end)`` ahead (``MADV_WILLNEED``, returns at
        once); with ``wait``, fault every page in before returning so the
        range is resident in this process. Returns the bytes advised."""
        mapping, data = self._alive()
        start, stop = page_span(begin, end, self.length)
        if stop <= start:
            return 0
        mapping.madvise(mmap.MADV_WILLNEED, start, stop - start)
        if wait:
            try:
                mapping.madvise(_MADV_POPULATE_READ, start, stop - start)
            except OSError as exc:
                if exc.errno != errno.EINVAL:  # EINVAL: kernel older than 5.14
                    raise
                # read one byte of every page: same effect, one fault per page
                int(data[start:min(stop, self.length):PAGE_SIZE].sum())
        return stop - start

    def close(self) -> bool:
        """Unmap now if no view is alive and return True; otherwise leave the
        mapping to be unmapped by the last view's release and return False."""
        mapping, self._mmap, self.bytes = self._mmap, None, None
        try:
            mapping.close()
        except BufferError:  # views alive: they keep the mmap object, and so the mapping
            return False
        return True
