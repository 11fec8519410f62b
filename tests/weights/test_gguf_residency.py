"""Residency control on a GGUF file behaves as on safetensors: drop /
prefetch / measure the pages of mapped tensors.

References: the process's RSS (/proc/self/status) and the kernel's
per-mapping Rss (/proc/self/smaps), both independent of the pagemap and
mincore reads under test. (Unlike a safetensors file, a GGUF file is mapped
when opened: its header is parsed from the mapping.)"""

from __future__ import annotations

import time

import numpy as np
import pytest
from support.gguf_files import V, write_gguf

from edgecore.weights import PAGE_SIZE, load_gguf

MiB = 1 << 20


@pytest.fixture
def model(tmp_path, proc):
    """A 32 MiB F32 tensor between two small ones, written back to disk so
    its pages are clean (evictable)."""
    big = np.arange(32 * MiB // 4, dtype=np.float32)
    tensors = {"head": (np.ones(1000, np.float32), None, None), "big": (big, None, None),
               "tail": (np.full(3000, 7, np.int8), None, None)}
    path = write_gguf(tmp_path / "model.gguf", tensors, {"test.scores": ([1.0] * 5000, V.ARRAY, V.FLOAT32)})
    proc.sync_file(path)
    return path, big


def test_opening_maps_no_tensor_pages(model, proc):
    path, _ = model
    with load_gguf(path) as f:
        assert f.resident_bytes("big") == f.resident_bytes("head") == 0
        # only header pages (which the parse read) are in this process
        assert 0 < f.resident_bytes() == proc.smaps_rss(path) <= f.data_start + PAGE_SIZE


def test_resident_bytes_match_the_kernels_per_mapping_count(model, proc):
    path, _ = model
    with load_gguf(path) as f:
        view = f["big"]
        view[: view.size // 2].sum()
        assert f.resident_bytes() == proc.smaps_rss(path)
        # the kernel may map a little more than was read (fault-around, large folios)
        assert 16 * MiB <= f.resident_bytes("big") < 32 * MiB
        view.sum()
        assert f.resident_bytes("big") == f.info("big").nbytes == 32 * MiB
        assert f.resident_bytes() == proc.smaps_rss(path)


def test_drop_lowers_resident_bytes_and_rss(model, proc):
    path, big = model
    with load_gguf(path) as f:
        view = f["big"]
        view.sum()
        rss_loaded = proc.vm_rss()
        advised = f.drop("big")
        assert advised >= 32 * MiB and advised % PAGE_SIZE == 0
        assert f.resident_bytes("big") == 0
        assert rss_loaded - proc.vm_rss() >= 31 * MiB, "dropping 32 MiB of pages must lower RSS"
        np.testing.assert_array_equal(view, big)  # faulted back in from the file: nothing lost
        assert f.resident_bytes("big") == 32 * MiB
        f.drop()
        assert f.resident_bytes() == proc.smaps_rss(path) == 0


def test_page_cache_residency_is_reported_separately(model):
    path, _ = model
    with load_gguf(path) as f:
        f["big"].sum()
        assert f.cached_bytes("big") >= f.resident_bytes("big") == 32 * MiB
        f.drop("big")
        assert f.cached_bytes("big") >= f.resident_bytes("big") == 0
        f.drop("big", evict=True)
        assert f.cached_bytes("big") < 4 * MiB, "clean pages of an unmapped range leave the page cache"


def test_prefetch(model, proc):
    path, _ = model
    with load_gguf(path) as f:
        f.drop(evict=True)
        assert f.resident_bytes("big") == 0
        assert f.prefetch("big") >= 32 * MiB  # read-ahead only: nothing is mapped yet
        assert f.resident_bytes("big") == 0
        deadline = time.monotonic() + 5
        while f.cached_bytes("big") == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert f.cached_bytes("big") > 0, "MADV_WILLNEED started no read-ahead within 5 s"
        rss = proc.vm_rss()
        f.prefetch("big", wait=True)
        assert f.resident_bytes("big") == 32 * MiB
        assert proc.vm_rss() - rss >= 31 * MiB
        assert f.resident_bytes() == proc.smaps_rss(path)


def test_drop_rounds_out_to_whole_pages_without_losing_data(tmp_path):
    # 32-byte alignment packs small tensors onto shared pages
    rng = np.random.default_rng(7)
    arrays = {"a": rng.integers(-128, 127, 5000, dtype=np.int8),
              "b": rng.integers(-128, 127, 3 * PAGE_SIZE + 17, dtype=np.int8),
              "c": rng.integers(-128, 127, 9000, dtype=np.int8)}
    path = write_gguf(tmp_path / "edges.gguf", {k: (v, None, None) for k, v in arrays.items()})
    with load_gguf(path) as f:
        views = {name: f[name] for name in arrays}
        for view in views.values():
            view.sum()
        a, b = f.info("a"), f.info("b")
        assert b.begin % PAGE_SIZE and b.begin // PAGE_SIZE == (a.end - 1) // PAGE_SIZE, \
            "the test needs 'a' and 'b' to share a page"
        assert f.resident_bytes("b") == b.nbytes
        f.drop("b")
        assert f.resident_bytes("b") == 0
        assert f.resident_bytes("a") < a.nbytes  # its last page went with b's first
        for name, view in views.items():
            np.testing.assert_array_equal(view, arrays[name])
        total = sum(f.resident_bytes(name) for name in arrays)
        slack = f.data_start + (-path.stat().st_size % PAGE_SIZE) + 2 * 32  # header, tail, padding
        assert total <= f.resident_bytes() <= total + slack


def test_residency_per_file(model, proc):
    path, _ = model
    with load_gguf(path) as f:
        f["big"][:1024].sum()
        (entry,) = f.residency()
        assert entry.path == path and entry.size == path.stat().st_size
        assert entry.resident == f.resident_bytes() == proc.smaps_rss(path)
        assert entry.cached >= entry.resident


def test_close_gives_the_pages_back(model, proc):
    path, _ = model
    f = load_gguf(path)
    f["big"].sum()
    scores = f.metadata["test.scores"]  # keeps the mapping alive past close()
    f.close()
    assert proc.is_mapped(path) and proc.smaps_rss(path) == 0
    assert scores.sum() == 5000.0
