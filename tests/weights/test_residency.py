"""Residency control: drop / prefetch / measure the pages of mapped tensors.

References: the process's RSS (/proc/self/status) and the kernel's per-mapping
Rss (/proc/self/smaps), both independent of the pagemap and mincore reads
under test."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from edgecore.weights import PAGE_SIZE, load_safetensors, save_safetensors
from edgecore.weights.mapping import _bytes_on_pages, page_span

MiB = 1 << 20
# Under AddressSanitizer (tools/check-sanitizers.sh preloads libasan) every
# malloc of the interpreter goes through ASan's allocator, whose quarantine
# keeps freed blocks resident, so the process RSS grows between two readings
# by more than the drop can be told apart from; the per-mapping count
# (smaps) still checks that the file's pages left.
_UNDER_ASAN = "libasan" in os.environ.get("LD_PRELOAD", "")


@pytest.fixture
def model(tmp_path, proc):
    """A file with a 32 MiB tensor between two small ones, written back to
    disk so its pages are clean (evictable)."""
    big = np.arange(32 * MiB // 4, dtype=np.float32)
    tensors = {"big": big, "head": np.ones(1000, np.float32), "tail": np.full(3000, 7, np.uint8)}
    path = save_safetensors(tmp_path / "model.safetensors", tensors)
    proc.sync_file(path)
    return path, big


def test_resident_bytes_match_the_kernels_per_mapping_count(model, proc):
    path, big = model
    with load_safetensors(path) as f:
        view = f["big"]
        assert f.resident_bytes() == proc.smaps_rss(path) == 0
        view[: view.size // 2].sum()
        assert f.resident_bytes() == proc.smaps_rss(path)
        # the kernel may map a little more than was read (fault-around, large folios)
        assert 16 * MiB <= f.resident_bytes("big") < 32 * MiB
        view.sum()
        assert f.resident_bytes("big") == f.info("big").nbytes
        assert f.resident_bytes() == proc.smaps_rss(path)


def test_drop_lowers_resident_bytes_and_rss(model, proc):
    path, big = model
    with load_safetensors(path) as f:
        view = f["big"]
        view.sum()  # fault every page in
        rss_loaded = proc.vm_rss()
        assert f.resident_bytes("big") == 32 * MiB
        advised = f.drop("big")
        assert advised >= 32 * MiB and advised % PAGE_SIZE == 0
        assert f.resident_bytes("big") == 0
        assert proc.smaps_rss(path) <= 2 * PAGE_SIZE  # at most the pages the small tensors keep
        if not _UNDER_ASAN:
            assert rss_loaded - proc.vm_rss() >= 31 * MiB, "dropping 32 MiB of pages must lower RSS"
        # the pages come back from the file on the next read: nothing was lost
        np.testing.assert_array_equal(view, big)
        assert f.resident_bytes("big") == 32 * MiB


def test_page_cache_residency_is_reported_separately(model):
    path, _ = model
    with load_safetensors(path) as f:
        f["big"].sum()
        assert f.cached_bytes("big") >= f.resident_bytes("big") == 32 * MiB
        f.drop("big")
        # Unmapping leaves the pages in the page cache; how mincore reports
        # them after that depends on the kernel (this one: still cached).
        assert f.cached_bytes("big") >= f.resident_bytes("big") == 0
        f.drop("big", evict=True)
        assert f.cached_bytes("big") < 4 * MiB, "clean pages of an unmapped range leave the page cache"


def test_prefetch(model, proc):
    path, _ = model
    with load_safetensors(path) as f:
        f.drop(evict=True)
        assert f.resident_bytes("big") == 0
        advised = f.prefetch("big")  # read-ahead only: nothing is mapped yet
        assert advised >= 32 * MiB
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
    # Tensors of awkward sizes share pages; dropping one unmaps its edge
    # pages, neighbours' bytes included, and those bytes read back intact.
    rng = np.random.default_rng(7)
    tensors = {"a": rng.integers(0, 255, 5000, dtype=np.uint8), "b": rng.integers(0, 255, 3 * PAGE_SIZE + 17,
                                                                                   dtype=np.uint8),
               "c": rng.integers(0, 255, 9000, dtype=np.uint8)}
    path = save_safetensors(tmp_path / "edges.safetensors", tensors)
    with load_safetensors(path) as f:
        views = {name: f[name] for name in tensors}
        for view in views.values():
            view.sum()
        a, b = f.info("a"), f.info("b")
        assert b.begin % PAGE_SIZE and a.end == b.begin, "the test needs 'a' and 'b' to share a page"
        assert f.resident_bytes("b") == b.nbytes
        f.drop("b")
        assert f.resident_bytes("b") == 0
        shared = a.end - (b.begin - b.begin % PAGE_SIZE)  # bytes of 'a' on b's first page
        assert 0 < shared and f.resident_bytes("a") <= a.nbytes - shared
        for name, view in views.items():
            np.testing.assert_array_equal(view, tensors[name])
        # per-tensor counts split pages without double counting
        total = sum(f.resident_bytes(name) for name in tensors)
        # (the whole-file count also has the header and the last page's tail past the end)
        slack = f.info("a").begin + (-path.stat().st_size % PAGE_SIZE)
        assert total <= f.resident_bytes() <= total + slack


@pytest.mark.parametrize("flags, start, begin, end, expected", [
    ([1], 0, 0, 10, 10),                                  # inside one page
    ([1], 0, 100, 100, 0),                                # empty range
    ([1, 1], 0, 100, PAGE_SIZE + 50, PAGE_SIZE - 50),     # straddles two pages
    ([1, 0], 0, 100, PAGE_SIZE + 50, PAGE_SIZE - 100),    # only the first present
    ([0, 1], 0, 100, PAGE_SIZE + 50, 50),                 # only the second present
    ([1, 0, 1], PAGE_SIZE, PAGE_SIZE + 1, 4 * PAGE_SIZE - 1, 2 * PAGE_SIZE - 2),
    ([0, 0, 0], 0, 1, 3 * PAGE_SIZE, 0),
])
def test_bytes_on_pages_hand_computed(flags, start, begin, end, expected):
    assert _bytes_on_pages(np.array(flags, np.uint8), start, begin, end) == expected


@pytest.mark.parametrize("begin, end, length, expected", [
    (0, 1, 10, (0, PAGE_SIZE)),
    (PAGE_SIZE - 1, PAGE_SIZE + 1, 3 * PAGE_SIZE, (0, 2 * PAGE_SIZE)),
    (PAGE_SIZE, 2 * PAGE_SIZE, 3 * PAGE_SIZE, (PAGE_SIZE, 2 * PAGE_SIZE)),
    (5, 5, 100, (0, 0)),
    (10, 100, 100, (0, PAGE_SIZE)),  # a file's last partial page still belongs to the mapping
])
def test_page_span(begin, end, length, expected):
    assert page_span(begin, end, length) == expected


def test_drop_of_an_unmapped_file_maps_nothing(model, proc):
    path, _ = model
    with load_safetensors(path) as f:
        assert f.drop() == 0
        assert not proc.is_mapped(path)
        assert f.drop("big", evict=True) >= 32 * MiB  # page-cache eviction needs no mapping
        assert not proc.is_mapped(path)
        assert f.resident_bytes() == 0


def test_residency_per_file(model, proc):
    path, _ = model
    with load_safetensors(path) as f:
        f["big"][:1024].sum()
        (entry,) = f.residency()
        assert entry.path == path and entry.size == path.stat().st_size
        assert entry.resident == f.resident_bytes() == proc.smaps_rss(path)
        assert entry.cached >= entry.resident


def test_measuring_an_unused_file_leaves_it_unmapped(model, proc):
    path, _ = model
    with load_safetensors(path) as f:
        f.prefetch("big", wait=True)  # map and fault in, then forget the views
    with load_safetensors(path) as f:
        assert f.cached_bytes("big") >= 32 * MiB  # still in the page cache from before
        (entry,) = f.residency()
        assert entry.resident == 0 and entry.cached >= 32 * MiB
        assert not proc.is_mapped(path)
