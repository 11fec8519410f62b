"""Loading: zero-copy views, dtypes, the mapping protocol, close semantics,
sharded models."""

from __future__ import annotations

import gc
import json
import mmap

import numpy as np
import pytest

import edgecore
from edgecore.weights import SafetensorsError, load_safetensors, save_safetensors, save_sharded

MiB = 1 << 20


@pytest.fixture
def small(tmp_path):
    tensors = {
        "f64": np.linspace(-1, 1, 6).reshape(2, 3),
        "f32": np.arange(12, dtype=np.float32).reshape(3, 4),
        "f16": np.array([0.5, -2.0, 65504.0], np.float16),
        "i64": np.array([-(2**62), 7], np.int64),
        "i32": np.array([[1, -2]], np.int32),
        "i16": np.array([-300], np.int16),
        "i8": np.array([-128, 127], np.int8),
        "u8": np.array([0, 255], np.uint8),
        "u16": np.array([65535], np.uint16),
        "u32": np.array([4_000_000_000], np.uint32),
        "u64": np.array([2**64 - 1], np.uint64),
        "bool": np.array([True, False, True]),
        "scalar": np.array(3.25, np.float32),
        "empty": np.zeros((0, 7), np.float32),
        "bf16": np.array([0x3F80, 0xC000], np.uint16),  # 1.0, -2.0
    }
    path = save_safetensors(tmp_path / "small.safetensors", tensors, {"format": "np", "note": "ünïcode"},
                            dtypes={"bf16": "BF16"})
    return path, tensors


EXPECTED_DTYPES = {"f64": ("F64", np.float64), "f32": ("F32", np.float32), "f16": ("F16", np.float16),
                   "i64": ("I64", np.int64), "i32": ("I32", np.int32), "i16": ("I16", np.int16),
                   "i8": ("I8", np.int8), "u8": ("U8", np.uint8), "u16": ("U16", np.uint16),
                   "u32": ("U32", np.uint32), "u64": ("U64", np.uint64), "bool": ("BOOL", np.bool_),
                   "scalar": ("F32", np.float32), "empty": ("F32", np.float32), "bf16": ("BF16", np.uint16)}


def test_every_dtype_maps_to_its_numpy_view(small):
    path, tensors = small
    with load_safetensors(path) as f:
        assert sorted(f) == sorted(tensors) and len(f) == len(tensors)
        for name, array in tensors.items():
            view = f[name]
            st_dtype, np_dtype = EXPECTED_DTYPES[name]
            assert f.info(name).dtype == st_dtype
            assert view.dtype == np_dtype and view.shape == array.shape
            np.testing.assert_array_equal(view, array)
        assert f.metadata == {"format": "np", "note": "ünïcode"}


def test_top_level_exports():
    assert edgecore.load_safetensors is load_safetensors
    assert edgecore.SafetensorsError is SafetensorsError


def test_views_are_read_only_and_never_copies(small):
    path, _ = small
    with load_safetensors(path) as f:
        view = f["f32"]
        assert not view.flags.writeable and not view.flags.owndata
        with pytest.raises(ValueError):
            view[0, 0] = 1.0
        # the base chain reaches the mmap: array -> whole-file uint8 view -> memoryview -> mmap
        base = view
        while isinstance(base, np.ndarray):
            base = base.base
        assert isinstance(base, memoryview) and isinstance(base.obj, mmap.mmap)
        # and the view's bytes are the file's bytes at the recorded offsets
        whole = view.base
        info = f.info("f32")
        assert view.__array_interface__["data"][0] == whole.__array_interface__["data"][0] + info.begin
        assert bytes(whole[info.begin:info.end]) == path.read_bytes()[info.begin:info.end]
        # two lookups share memory; nothing was copied
        assert np.shares_memory(f["f32"], view)


def test_info_describes_the_tensor_from_the_header(small):
    path, _ = small
    raw = path.read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + header_len])
    with load_safetensors(path) as f:
        for name in f:
            info = f.info(name)
            begin, end = header[name]["data_offsets"]
            assert (info.begin, info.end) == (8 + header_len + begin, 8 + header_len + end)
            assert info.nbytes == end - begin and info.shape == tuple(header[name]["shape"])
            assert info.path == path and info.aligned
        assert f.nbytes == len(raw) - 8 - header_len


def test_listing_reads_only_the_header(small, proc):
    path, _ = small
    f = load_safetensors(path)
    names = list(f)
    shapes = {n: f.info(n).shape for n in names}
    assert shapes["f32"] == (3, 4)
    assert not proc.is_mapped(path), "listing tensors must not map the file"
    f["f32"]
    assert proc.is_mapped(path)
    f.close()


def test_mapping_protocol(small):
    path, tensors = small
    with load_safetensors(path) as f:
        assert "f32" in f and "nope" not in f and ["unhashable"] not in f
        assert f.get("nope") is None
        with pytest.raises(KeyError, match="no tensor named 'nope'"):
            f["nope"]
        assert set(f.keys()) == set(tensors)
        with load_safetensors(path) as other:
            assert f == f and f != other
        assert "small.safetensors" in repr(f) and "open" in repr(f)


def test_unread_tensor_costs_no_rss(tmp_path, proc):
    big = np.arange(48 * MiB // 4, dtype=np.float32)
    path = save_safetensors(tmp_path / "big.safetensors", {"big": big, "small": np.ones(3, np.float32)})
    del big
    gc.collect()
    with load_safetensors(path) as f:
        before = proc.vm_rss()
        view = f["big"]
        after_view = proc.vm_rss()
        assert after_view - before < 1 * MiB, f"an unread 48 MiB tensor grew RSS by {after_view - before}"
        assert f.resident_bytes("big") == 0
        assert float(view[12345]) == 12345.0  # one page read
        assert 0 < f.resident_bytes("big") <= 64 * 1024
        view.sum(dtype=np.float64)  # now read it all
        assert proc.vm_rss() - before > 40 * MiB
        del view


def test_close_with_no_views_unmaps_at_once(small, proc):
    path, _ = small
    f = load_safetensors(path)
    assert float(f["scalar"]) == 3.25
    gc.collect()
    assert proc.is_mapped(path)
    f.close()
    assert f.closed and not proc.is_mapped(path)
    f.close()  # idempotent


def test_views_alive_at_close_stay_valid_until_they_go(small, proc):
    path, tensors = small
    with load_safetensors(path) as f:
        keep = f["f32"]
    assert f.closed
    assert proc.is_mapped(path), "a live view keeps its mapping"
    np.testing.assert_array_equal(keep, tensors["f32"])  # still valid: no crash, right data
    with pytest.raises(ValueError, match="closed"):
        f["f32"]
    assert f.info("f32").shape == (3, 4) and "f32" in f  # the header stays readable
    del keep
    gc.collect()
    assert not proc.is_mapped(path), "the mapping goes with the last view"


def test_residency_calls_after_close_raise(small):
    path, _ = small
    f = load_safetensors(path)
    f.close()
    for call in (f.resident_bytes, f.cached_bytes, f.drop, f.prefetch, f.residency):
        with pytest.raises(ValueError, match="closed"):
            call()


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_safetensors(tmp_path / "absent.safetensors")
    with pytest.raises(FileNotFoundError, match="neither model.safetensors nor"):
        load_safetensors(tmp_path)


def test_directory_prefers_the_single_file(tmp_path):
    save_safetensors(tmp_path / "model.safetensors", {"single": np.zeros(2, np.float32)})
    save_sharded(tmp_path, {"sharded": np.zeros(2, np.float32)}, 1024)
    with load_safetensors(tmp_path) as f:
        assert list(f) == ["single"]


def make_sharded(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {f"layer{i}.weight": rng.standard_normal((16, 8)).astype(np.float32) for i in range(5)}
    tensors["embed"] = rng.integers(0, 2**16, (10, 4), dtype=np.uint16)
    index = save_sharded(tmp_path / "model", tensors, max_shard_bytes=1100, dtypes={"embed": "BF16"})
    return index, tensors


def test_sharded_model_is_one_object(tmp_path):
    index, tensors = make_sharded(tmp_path)
    shards = sorted(p.name for p in index.parent.glob("*.safetensors"))
    assert len(shards) >= 3
    document = json.loads(index.read_text())
    for source in (index, index.parent):
        with load_safetensors(source) as f:
            assert set(f) == set(tensors) and len(f.files) == len(shards)
            for name, array in tensors.items():
                np.testing.assert_array_equal(f[name], array)
                assert f.info(name).path.name == document["weight_map"][name]
            assert f.info("embed").dtype == "BF16"
            assert f.metadata == {"total_size": sum(a.nbytes for a in tensors.values())}
            assert f.nbytes == sum(a.nbytes for a in tensors.values())
            assert set(f.file_metadata) == set(f.files)


@pytest.mark.parametrize("document, fragment", [
    ("[1, 2]", "weight_map"),
    ("{not json", "not valid JSON"),
    ('{"weight_map": []}', "weight_map"),
    ('{"weight_map": {"w": 3}}', "must be a file name"),
    ('{"weight_map": {"w": "../outside.safetensors"}}', "not a path inside"),
    ('{"weight_map": {"w": "/etc/passwd"}}', "not a path inside"),
    ('{"weight_map": {}, "metadata": [1]}', '"metadata" must be a JSON object'),
])
def test_broken_index(tmp_path, document, fragment):
    path = tmp_path / "model.safetensors.index.json"
    path.write_text(document)
    with pytest.raises(SafetensorsError, match="index") as info:
        load_safetensors(path)
    assert fragment in str(info.value) and str(path) in str(info.value)


def test_index_naming_a_tensor_its_shard_lacks(tmp_path):
    index, _ = make_sharded(tmp_path)
    document = json.loads(index.read_text())
    shard = document["weight_map"]["embed"]
    document["weight_map"]["ghost"] = shard
    index.write_text(json.dumps(document))
    with pytest.raises(SafetensorsError, match="no such tensor") as info:
        load_safetensors(index)
    assert info.value.tensor == "ghost"


def test_index_with_a_missing_shard(tmp_path):
    index, _ = make_sharded(tmp_path)
    next(index.parent.glob("model-00002-*.safetensors")).unlink()
    with pytest.raises(FileNotFoundError):
        load_safetensors(index)


def test_index_with_a_corrupt_shard_names_the_shard(tmp_path):
    index, _ = make_sharded(tmp_path)
    shard = next(index.parent.glob("model-00002-*.safetensors"))
    shard.write_bytes(shard.read_bytes()[:-3])
    with pytest.raises(SafetensorsError) as info:
        load_safetensors(index)
    assert info.value.path == str(shard)
