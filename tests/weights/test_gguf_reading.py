"""GGUF files written by the `gguf` package's GGUFWriter read back as its own
GGUFReader reads them: names, shapes, types, metadata of every value type,
tensor bytes; views are zero-copy; v2 and v3; the two real model files."""

from __future__ import annotations

import gc
import mmap
import os
from pathlib import Path

import numpy as np
import pytest
from support.gguf_files import SAMPLE_METADATA, Q, V, gguf, patch, sample_tensors, u32, write_gguf
from support.real_models import REAL_MODEL_NAMES, find_real_model

from edgecore.weights import GGML_TYPES, GGUFError, TensorInfo, load_gguf
from edgecore.weights.ggml_types import GGML_TYPES_BY_NAME, REMOVED_GGML_TYPES


@pytest.fixture
def sample(tmp_path):
    tensors = sample_tensors()
    return write_gguf(tmp_path / "sample.gguf", tensors, SAMPLE_METADATA), tensors


# ---- the type table ---------------------------------------------------------------------------

def test_type_table_matches_the_reference():
    reference = {t.value: (t.name, gguf.GGML_QUANT_SIZES[t]) for t in Q}
    ours = {i: (t.name, (t.block_elems, t.block_bytes)) for i, t in GGML_TYPES.items()}
    # ggml's block_q8_1 is 2 halves + 32 bytes = 36 (ggml-common.h); the gguf
    # package still lists the old float-scaled layout's 40
    assert reference.pop(Q.Q8_1.value) == ("Q8_1", (32, 40))
    assert ours.pop(Q.Q8_1.value) == ("Q8_1", (32, 36))
    assert ours == reference
    assert not set(REMOVED_GGML_TYPES) & set(GGML_TYPES)
    assert all(GGML_TYPES_BY_NAME[t.name] is t for t in GGML_TYPES.values())
    for t in GGML_TYPES.values():
        assert t.block_bytes % t.align == 0, t  # consecutive blocks stay aligned
        if not t.quantized:
            assert t.numpy_dtype.itemsize == t.block_bytes == t.align


# ---- files by the reference writer ------------------------------------------------------------

def _base_is_mmap(view: np.ndarray) -> bool:
    base = view
    while isinstance(base, np.ndarray):
        base = base.base
    return isinstance(base, memoryview) and isinstance(base.obj, mmap.mmap)


def assert_agrees_with_reference(f, path: Path, *, check_bytes: bool = True) -> None:
    """Every tensor and metadata key of ``f`` against GGUFReader on ``path``."""
    reader = gguf.GGUFReader(path)
    assert list(f) == [t.name for t in reader.tensors]
    for t in reader.tensors:
        info = f.info(t.name)
        assert isinstance(info, TensorInfo)
        assert info.dtype == t.tensor_type.name
        assert info.shape == tuple(reversed(t.shape.tolist()))
        assert info.begin == t.data_offset and info.path == path
        assert info.nbytes == t.n_bytes == t.data.nbytes
        view = f[t.name]
        assert not view.flags.writeable and _base_is_mmap(view)
        if check_bytes:
            assert np.array_equal(np.frombuffer(view, np.uint8), t.data.reshape(-1).view(np.uint8))
    fields = {k: v for k, v in reader.fields.items() if not k.startswith("GGUF.")}
    assert list(f.metadata) == list(fields)
    for key, field in fields.items():
        types = [t.name for t in field.types]
        if types[0] == "ARRAY" and types[1] == "ARRAY":
            continue  # the reference reader flattens nested arrays; checked against the writer's input
        assert f.metadata_types[key] == (f"ARRAY[{types[1]}]" if types[0] == "ARRAY" else types[0]), key
        ours, theirs = f.metadata[key], field.contents()
        if types[0] == "ARRAY" and types[1] != "STRING":
            assert isinstance(ours, np.ndarray) and not ours.flags.writeable, key
            if len(field.data):
                assert ours.dtype == field.parts[field.data[0]].dtype, key
            assert np.array_equal(ours, np.array(theirs, dtype=ours.dtype)), key
        else:
            assert type(ours) is type(theirs) and ours == theirs, key


def test_sample_file_agrees_with_the_reference_reader(sample):
    path, _ = sample
    with load_gguf(path) as f:
        assert f.version == 3 and f.alignment == 32
        assert_agrees_with_reference(f, path)


def test_tensors_read_back_as_written(sample):
    path, tensors = sample
    with load_gguf(path) as f:
        assert len(f) == len(tensors) and f.nbytes == sum(len(s.raw) for _, _, s in tensors.values())
        for name, (_, _, expected) in tensors.items():
            info, view = f.info(name), f[name]
            assert (info.dtype, info.shape) == (expected.dtype, expected.shape), name
            assert view.tobytes() == expected.raw, name
            assert info.aligned and info.begin % 32 == 0, name
            ggml_type = GGML_TYPES_BY_NAME[info.dtype]
            if ggml_type.quantized:
                *outer, k = expected.shape
                assert view.dtype == np.uint8 and view.shape == (*outer, k // ggml_type.block_elems
                                                                  * ggml_type.block_bytes), name
            else:
                assert view.shape == expected.shape and view.dtype == ggml_type.numpy_dtype, name


@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q6_K", "BF16"])
def test_block_views_dequantize_to_the_logical_shape(sample, qtype):
    # the reference dequantizer reads our view's rows as whole rows of blocks
    path, tensors = sample
    name = "bf16.matrix" if qtype == "BF16" else f"{qtype.lower()}.weight"
    with load_gguf(path) as f:
        view = f[name]
        raw = view.view(np.uint8)
        values = gguf.quants.dequantize(raw, getattr(Q, qtype))
        assert values.shape == f.info(name).shape
        if qtype in ("Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "BF16"):
            reference = gguf.quants.dequantize(tensors[name][0], getattr(Q, qtype))
            np.testing.assert_array_equal(values, reference)


def test_expert_stack_view_has_one_row_per_expert_output(sample):
    path, tensors = sample
    with load_gguf(path) as f:
        view = f["q8_0.experts"]
        assert f.info("q8_0.experts").shape == (4, 3, 32) and view.shape == (4, 3, 34)
        expert = gguf.quants.dequantize(view[2], Q.Q8_0)
        full = gguf.quants.dequantize(tensors["q8_0.experts"][0], Q.Q8_0)
        np.testing.assert_array_equal(expert, full[2])


def test_to_float32_widens_the_float_types(sample):
    path, tensors = sample
    with load_gguf(path) as f:
        np.testing.assert_array_equal(f.to_float32("f16.matrix"), tensors["f16.matrix"][0].astype(np.float32))
        np.testing.assert_array_equal(f.to_float32("bf16.matrix"),
                                      gguf.quants.dequantize(tensors["bf16.matrix"][0], Q.BF16))
        assert np.shares_memory(f.to_float32("f32.matrix"), f["f32.matrix"])  # the view itself, no copy
        with pytest.raises(TypeError, match="Q4_K"):
            f.to_float32("q4_k.weight")


def test_metadata_values_and_types(sample):
    path, _ = sample
    with load_gguf(path) as f:
        meta, types = f.metadata, f.metadata_types
        for key, (value, vtype, sub_type) in SAMPLE_METADATA.items():
            got = meta[key]
            if vtype == V.ARRAY:
                assert types[key] == f"ARRAY[{sub_type.name}]", key
                if sub_type == V.STRING:
                    assert got == value, key
                elif sub_type == V.ARRAY:
                    assert [a.tolist() for a in got] == value and all(a.dtype == np.int32 for a in got)
                else:
                    assert isinstance(got, np.ndarray) and _base_is_mmap(got), key
                    expected_dtype = np.bool_ if sub_type == V.BOOL else gguf.GGUFReader.gguf_scalar_to_np[sub_type]
                    assert got.dtype == expected_dtype, key
                    assert got.tolist() == (np.array(value, np.float32).tolist() if sub_type == V.FLOAT32
                                            else value), key
            else:
                assert types[key] == vtype.name, key
                expected = float(np.float32(value)) if vtype == V.FLOAT32 else value
                assert type(got) is type(expected) and got == expected, key


def test_version_2_reads_like_version_3(sample, tmp_path):
    path, tensors = sample
    v2 = patch(path, tmp_path / "v2.gguf", {4: u32(2)})
    with load_gguf(v2) as f, load_gguf(path) as g:
        assert f.version == 2
        assert list(f) == list(g) and f.metadata_types == g.metadata_types
        assert all(f[name].tobytes() == g[name].tobytes() for name in f)
        assert_agrees_with_reference(f, v2)  # the reference reads v2 too


def test_custom_alignment(tmp_path):
    tensors = {k: v for k, v in sample_tensors().items() if k in ("f32.norm", "q8_0.weight", "f16.matrix")}
    path = write_gguf(tmp_path / "a64.gguf", tensors, alignment=64)
    with load_gguf(path) as f:
        assert f.alignment == 64 and f.data_start % 64 == 0
        assert all(f.info(name).begin % 64 == 0 for name in f)
        assert_agrees_with_reference(f, path)


def test_a_file_without_tensors(tmp_path):
    path = write_gguf(tmp_path / "vocab-only.gguf", {}, {"tokenizer.ggml.tokens": (["a", "b"], V.ARRAY, V.STRING)})
    with load_gguf(path) as f:
        assert len(f) == 0 and f.nbytes == 0
        assert f.metadata["tokenizer.ggml.tokens"] == ["a", "b"]
        assert f.metadata["general.architecture"] == "test"


def test_file_interface(sample):
    path, _ = sample
    f = load_gguf(path)
    assert "f32.matrix" in f and "missing" not in f and ["unhashable"] not in f
    assert f.files == (path,)
    assert repr(f) == f"<GGUFFile {str(path)!r}: GGUF v3 test, {len(f)} tensors, {len(f.metadata)} metadata keys, open>"
    with pytest.raises(KeyError, match="no tensor named 'missing'"):
        f["missing"]
    view = f["f32.matrix"]
    expected = view.copy()
    with f:
        pass
    assert f.closed and "closed" in repr(f)
    with pytest.raises(ValueError, match="closed"):
        f["f32.matrix"]
    with pytest.raises(ValueError, match="closed"):
        f.resident_bytes()
    assert f.info("f32.matrix").shape == (3, 5)  # the header stays readable
    np.testing.assert_array_equal(view, expected)  # a surviving view stays valid
    f.close()  # twice is fine


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_gguf(tmp_path / "nope.gguf")
    with pytest.raises(GGUFError) as info:
        load_gguf(tmp_path)
    assert info.value.rule == "not-a-file"


def test_token_strings_keep_invalid_utf8_bytes(tmp_path):
    # A token that is half of a UTF-8 sequence (byte-level vocabularies have
    # them) loads; its bytes come back with surrogateescape.
    tokens = ["ok", "\u00e9", "é"]
    path = write_gguf(tmp_path / "tok.gguf", {}, {"tokenizer.ggml.tokens": (tokens, V.ARRAY, V.STRING)})
    raw = path.read_bytes()
    at = raw.index("é".encode()) + 2 + 8  # past the second token: the third one's bytes
    assert raw[at:at + 2] == "é".encode()
    broken = patch(path, tmp_path / "broken.gguf", {at: b"\xc3\x28"})
    with load_gguf(broken) as f:
        third = f.metadata["tokenizer.ggml.tokens"][2]
        assert third.encode("utf-8", "surrogateescape") == b"\xc3\x28"


# ---- the real model files ---------------------------------------------------------------------

@pytest.fixture(scope="module", params=REAL_MODEL_NAMES)
def real_model(request):
    path = find_real_model(request.param)
    if path is None:
        pytest.skip(f"REAL MODEL MISSING: {request.param} is not on this machine "
                    f"(set EDGECORE_TEST_MODELS, or `edgecore pull {request.param}`)")
    return request.param, path


@pytest.mark.slow
def test_real_model_agrees_with_the_reference_reader(real_model):
    name, path = real_model
    with load_gguf(path) as f:
        assert_agrees_with_reference(f, path)
        types = {f.info(t).dtype for t in f}
        assert types == ({"Q4_1", "Q8_0", "F32"} if name == "smollm2" else {"Q5_0", "Q4_K", "Q6_K", "Q8_0", "F32"})
        assert f.metadata["general.architecture"] == ("llama" if name == "smollm2" else "gemma3")
        embedding = f.info("token_embd.weight")
        assert embedding.shape[0] == len(f.metadata["tokenizer.ggml.tokens"])
        # a vocabulary's numeric arrays are views of the mapping, not Python lists
        token_type = f.metadata["tokenizer.ggml.token_type"]
        assert isinstance(token_type, np.ndarray) and token_type.dtype == np.int32 and _base_is_mmap(token_type)


def test_real_model_close_releases_pages_then_the_descriptor(real_model, proc):
    _, path = real_model
    before = len(os.listdir("/proc/self/fd"))
    f = load_gguf(path)
    f.prefetch("token_embd.weight", wait=True)
    assert proc.smaps_rss(path) >= f.info("token_embd.weight").nbytes
    tokens = f.metadata["tokenizer.ggml.token_type"]  # a view of the mapping outliving close()
    expected = tokens.copy()
    f.close()
    assert proc.smaps_rss(path) == 0 and proc.is_mapped(path)
    np.testing.assert_array_equal(tokens, expected)  # faulted back in
    del f, tokens
    gc.collect()
    assert not proc.is_mapped(path)
    assert len(os.listdir("/proc/self/fd")) == before
