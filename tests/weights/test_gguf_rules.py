"""Every GGUF header rule, each broken by a crafted file: a valid file from
the reference writer with bytes patched at offsets the reference reader
locates. The error must be a GGUFError (a ValueError) naming the file, the
rule, and the tensor or metadata key it is about."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
from support.gguf_files import Layout, Q, V, gguf, patch, u32, u64, write_gguf

from edgecore.weights import GGUFError, gguf_header, gguf_metadata, load_gguf
from edgecore.weights import gguf as gguf_module

DEPTH_BOMB_LEVELS = 10_000  # arrays of arrays, far past Python's recursion limit


def _tensors():
    rng = np.random.default_rng(1)
    weight = rng.standard_normal((2, 64)).astype(np.float32)
    return {"t.a": (rng.standard_normal((4, 8)).astype(np.float32), None),
            "t.b": (gguf.quants.quantize(weight, Q.Q8_0), Q.Q8_0),
            "t.c": (rng.standard_normal(3).astype(np.float32), None)}


def _metadata():
    # "test.blob" carries nested-array headers as plain bytes: patching its
    # item type to ARRAY turns it into arrays nested DEPTH_BOMB_LEVELS deep
    bomb = (u32(9) + u64(1)) * DEPTH_BOMB_LEVELS + u32(0) + u64(0)
    return {"test.count": (7, V.UINT32, None), "test.flag": (True, V.BOOL, None),
            "test.name": ("base", V.STRING, None),
            "test.scores": ([0.5, 1.5, 2.5], V.ARRAY, V.FLOAT32),
            "test.words": (["one", "two"], V.ARRAY, V.STRING),
            "test.flags": ([True, False], V.ARRAY, V.BOOL),
            "test.nested": ([[1, 2], [3]], V.ARRAY, V.ARRAY),
            "test.blob": (list(bomb), V.ARRAY, V.UINT8),
            "tokenizer.ggml.tokens": (["a", "b"], V.ARRAY, V.STRING)}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    path = tmp_path_factory.mktemp("gguf-rules") / "base.gguf"
    tensors = {name: (array, raw, None) for name, (array, raw) in _tensors().items()}
    write_gguf(path, tensors, _metadata(), alignment=32)
    with load_gguf(path):
        pass  # the base file itself is valid
    return path, Layout(path)


@pytest.fixture
def crafted(base, tmp_path):
    path, _ = base
    counter = iter(range(1000))

    def make(edits: dict[int, bytes], truncate: int | None = None):
        return patch(path, tmp_path / f"crafted{next(counter)}.gguf", edits, truncate)

    return make


def expect(path, rule, *fragments, tensor=None, key=None):
    with pytest.raises(GGUFError) as info:
        load_gguf(path)
    err = info.value
    assert (err.rule, err.tensor, err.key) == (rule, tensor, key), str(err)
    assert err.path == str(path) and isinstance(err, ValueError)
    message = str(err)
    assert message.startswith(str(path)) and message.endswith(f"[rule: {rule}]")
    if tensor is not None:
        assert f"tensor {tensor!r}" in message
    if key is not None:
        assert f"metadata key {key!r}" in message
    for fragment in fragments:
        assert fragment in message, message
    return message


# ---- prefix -------------------------------------------------------------------------------------

def test_magic(crafted, tmp_path):
    expect(crafted({0: b"GGUX"}), "magic", "not a GGUF file")
    other = tmp_path / "model.safetensors"
    other.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}" + b" " * 14)
    expect(other, "magic", "not the GGUF magic")
    short = tmp_path / "xy.gguf"
    short.write_bytes(b"XY")
    expect(short, "magic")


@pytest.mark.parametrize("content", [b"", b"GG", b"GGUF\x03\x00\x00\x00\x00"], ids=["empty", "half-magic", "cut"])
def test_shorter_than_the_prefix(tmp_path, content):
    path = tmp_path / "short.gguf"
    path.write_bytes(content)
    expect(path, "truncated", f"file is {len(content)} bytes")


@pytest.mark.parametrize("version", [0, 1, 4, 0xFFFFFFFF])
def test_version(crafted, version):
    message = expect(crafted({4: u32(version)}), "version", f"version {version} is not supported")
    assert ("v1 used 32-bit counts" in message) == (version == 1)


def test_big_endian_file_is_refused_by_name(tmp_path):
    path = write_gguf(tmp_path / "be.gguf", {"w": (np.ones(4, np.float32), None, None)},
                      {"test.count": (1, V.UINT32, None)}, big_endian=True)
    expect(path, "byte-order", "big-endian")


@pytest.mark.parametrize("field, value, fragment", [
    (8, 200_000, "need at least"), (16, 60_000, "need at least"),    # under the limits, over the file
    (8, 2**64 - 1, "exceed the limits"), (16, 2**40, "exceed the limits"),
], ids=["tensors", "keys", "tensors-2^64-1", "keys-2^40"])
def test_counts_bounded_by_the_file(crafted, field, value, fragment):
    expect(crafted({field: u64(value)}), "counts", fragment)


@pytest.mark.parametrize("limit", ["MAX_TENSORS", "MAX_KEYS"])
def test_counts_above_the_limits(base, monkeypatch, limit):
    monkeypatch.setattr(gguf_header, limit, 2)
    expect(base[0], "counts", "exceed the limits of")


# ---- lengths and truncation -----------------------------------------------------------------

def test_file_cut_inside_a_value(crafted, base):
    _, layout = base
    expect(crafted({}, truncate=layout.array_count("tokenizer.ggml.tokens") + 3), "truncated", "array length",
           "truncated or corrupt", key="tokenizer.ggml.tokens")


def test_file_cut_inside_a_tensor_info(crafted, base):
    _, layout = base
    expect(crafted({}, truncate=layout.tensor("t.c")["type"] + 2), "truncated", "type", tensor="t.c")


def test_key_length_past_the_end(crafted, base):
    _, layout = base
    expect(crafted({layout.key("test.name"): u64(2**63)}), "string-length", "metadata key at byte")


def test_string_value_length_past_the_end(crafted, base):
    _, layout = base
    expect(crafted({layout.string_length("test.name"): u64(10**12)}), "string-length", key="test.name")


def test_tensor_name_length_past_the_end(crafted, base):
    _, layout = base
    expect(crafted({layout.tensor("t.b")["name"]: u64(2**64 - 1)}), "string-length", "tensor name")


@pytest.mark.parametrize("key", ["test.scores", "test.words", "test.nested", "test.flags"])
def test_array_length_bounded_before_allocating(crafted, base, key):
    _, layout = base
    expect(crafted({layout.array_count(key): u64(2**61)}), "array-length", key=key)


def test_string_in_an_array_past_the_end(crafted, base):
    _, layout = base
    expect(crafted({layout.value("test.words", 1) - 8: u64(10**9)}), "string-length", "string 1", key="test.words")


def test_header_larger_than_the_limit(base, monkeypatch):
    path, layout = base
    limit = layout.header_end() - 4  # the last tensor's offset field crosses it
    monkeypatch.setattr(gguf_header, "MAX_HEADER_BYTES", limit)
    expect(path, "header-size", f"{limit}-byte limit", tensor="t.c")


# ---- metadata values --------------------------------------------------------------------------

def test_unknown_value_type(crafted, base):
    _, layout = base
    expect(crafted({layout.value_type("test.count"): u32(13)}), "value-type", "unknown value type 13",
           key="test.count")


def test_unknown_array_item_type(crafted, base):
    _, layout = base
    expect(crafted({layout.array_item_type("test.scores"): u32(99)}), "value-type", "99", key="test.scores")


def test_nested_arrays_bounded_in_depth(crafted, base):
    # without the bound this would be a RecursionError (or a crash)
    _, layout = base
    edits = {layout.array_item_type("test.blob"): u32(9), layout.array_count("test.blob"): u64(1)}
    expect(crafted(edits), "array-depth", f"more than {gguf_metadata.MAX_ARRAY_DEPTH} deep", key="test.blob")


def test_arrays_inside_arrays_bounded_in_number(base, monkeypatch):
    monkeypatch.setattr(gguf_metadata, "MAX_NESTED_ARRAYS", 1)  # test.nested holds two
    expect(base[0], "array-length", "more than 1 arrays inside arrays", key="test.nested")


def test_nesting_up_to_the_bound_loads(tmp_path):
    def nested(levels):
        value = [1, 2]
        for _ in range(levels - 1):
            value = [value]
        return value

    depth = gguf_metadata.MAX_ARRAY_DEPTH
    ok = write_gguf(tmp_path / "ok.gguf", {}, {"n": (nested(depth), V.ARRAY, V.ARRAY)})
    with load_gguf(ok) as f:
        value = f.metadata["n"]
        for _ in range(depth - 1):
            (value,) = value
        assert value.tolist() == [1, 2]
    deep = write_gguf(tmp_path / "deep.gguf", {}, {"n": (nested(depth + 1), V.ARRAY, V.ARRAY)})
    expect(deep, "array-depth", key="n")


def test_bool_value_other_than_0_or_1(crafted, base):
    _, layout = base
    expect(crafted({layout.value("test.flag"): b"\x02"}), "bool", "byte 2", key="test.flag")


def test_bool_array_value_other_than_0_or_1(crafted, base):
    _, layout = base
    expect(crafted({layout.value("test.flags", 1): b"\xff"}), "bool", key="test.flags")


def test_key_not_utf8(crafted, base):
    _, layout = base
    expect(crafted({layout.key("test.name") + 8: b"\xff"}), "utf8", "metadata key at byte", "not valid UTF-8")


def test_string_value_not_utf8(crafted, base):
    _, layout = base
    expect(crafted({layout.value("test.name"): b"\xc3\x28"}), "utf8", key="test.name")


def test_string_array_value_not_utf8(crafted, base):
    _, layout = base
    expect(crafted({layout.value("test.words", 1): b"\xfe"}), "utf8", "string 1", key="test.words")


def test_token_strings_may_be_invalid_utf8(crafted, base):
    # the documented exception: vocabularies keep their bytes (surrogateescape)
    _, layout = base
    with load_gguf(crafted({layout.value("tokenizer.ggml.tokens", 1): b"\xfe"})) as f:
        assert f.metadata["tokenizer.ggml.tokens"][1].encode("utf-8", "surrogateescape") == b"\xfe"


def test_duplicate_key(crafted, base):
    _, layout = base
    assert len("test.flag") == len("test.name")
    expect(crafted({layout.key("test.name") + 8: b"test.flag"}), "duplicate-key", "appears twice", key="test.flag")


@pytest.mark.parametrize("value", [0, 3, 48, 2**32 - 1])
def test_alignment_not_a_power_of_two(crafted, base, value):
    _, layout = base
    expect(crafted({layout.value("general.alignment"): u32(value)}), "alignment",
           f"{value} is not a positive power of two", key="general.alignment")


@pytest.mark.parametrize("value, vtype", [(32, V.UINT64), (32, V.INT32), ("32", V.STRING)])
def test_alignment_of_the_wrong_type(tmp_path, value, vtype):
    path = write_gguf(tmp_path / "a.gguf", {}, {"general.alignment": (value, vtype, None)})
    expect(path, "alignment", f"must be a UINT32, got a {vtype.name}", key="general.alignment")


def test_alignment_beyond_the_file(crafted, base):
    _, layout = base
    expect(crafted({layout.value("general.alignment"): u32(2**31)}), "data-start", "past the end")


# ---- tensors ------------------------------------------------------------------------------------

def test_tensor_name_not_utf8(crafted, base):
    _, layout = base
    expect(crafted({layout.tensor("t.b")["name_bytes"]: b"\xff"}), "tensor-name", "not valid UTF-8")


def test_duplicate_tensor_name(crafted, base):
    _, layout = base
    expect(crafted({layout.tensor("t.b")["name_bytes"]: b"t.a"}), "duplicate-tensor", "listed twice", tensor="t.a")


@pytest.mark.parametrize("n_dims", [0, 5, 2**32 - 1])
def test_n_dims(crafted, base, n_dims):
    _, layout = base
    expect(crafted({layout.tensor("t.a")["n_dims"]: u32(n_dims)}), "n-dims", f"has {n_dims} dimensions",
           tensor="t.a")


def test_zero_dimension(crafted, base):
    _, layout = base
    expect(crafted({layout.tensor("t.a")["dims"] + 8: u64(0)}), "dims", "at least 1", tensor="t.a")


@pytest.mark.parametrize("dims, fragment", [((2**32, 2**32), "elements"), ((2**31, 2**31), "bytes")],
                         ids=["elements-overflow", "bytes-overflow"])
def test_sizes_beyond_int64(crafted, base, dims, fragment):
    _, layout = base
    at = layout.tensor("t.a")["dims"]
    expect(crafted({at: u64(dims[0]), at + 8: u64(dims[1])}), "dims", "more than int64", fragment, tensor="t.a")


@pytest.mark.parametrize("type_id, fragment", [(99, "unknown GGML type 99"), (31, "31 (Q4_0_4_4) was removed"),
                                               (2**32 - 1, "unknown GGML type 4294967295")])
def test_tensor_type(crafted, base, type_id, fragment):
    _, layout = base
    expect(crafted({layout.tensor("t.b")["type"]: u32(type_id)}), "tensor-type", fragment, tensor="t.b")


def test_innermost_dimension_not_a_multiple_of_the_block(crafted, base):
    _, layout = base
    expect(crafted({layout.tensor("t.b")["dims"]: u64(48)}), "block", "48", "block of 32", tensor="t.b")


def test_offset_not_aligned(crafted, base):
    _, layout = base
    at = layout.tensor("t.b")["offset"]
    offset = int.from_bytes(base[0].read_bytes()[at:at + 8], "little")
    expect(crafted({at: u64(offset + 16)}), "offset-alignment", "32-byte alignment", tensor="t.b")


def test_tensor_past_the_end(crafted, base):
    _, layout = base
    expect(crafted({layout.tensor("t.c")["offset"]: u64(2**40)}), "bounds", "run past the end", tensor="t.c")


def test_data_section_truncated(crafted, base):
    path, layout = base
    expect(crafted({}, truncate=path.stat().st_size - 40), "bounds", "truncated", tensor="t.c")


def test_header_cut_before_the_data_section(crafted, base):
    _, layout = base
    end = layout.header_end()
    assert end % 32, "the test needs padding between the header and the data section"
    expect(crafted({}, truncate=end + 1), "data-start", f"header ends at byte {end}")


def test_overlapping_tensors(crafted, base):
    _, layout = base
    raw = base[0].read_bytes()
    offset_a = raw[layout.tensor("t.a")["offset"]:][:8]
    expect(crafted({layout.tensor("t.b")["offset"]: offset_a}), "overlap", "overlap tensor 't.a'", tensor="t.b")


def test_overlap_inside_a_tensor(crafted, base):
    _, layout = base
    raw = base[0].read_bytes()
    offset_b = int.from_bytes(raw[layout.tensor("t.b")["offset"]:][:8], "little")
    expect(crafted({layout.tensor("t.c")["offset"]: u64(offset_b + 32)}), "overlap", "'t.b'", tensor="t.c")


# ---- the file itself ----------------------------------------------------------------------------

def test_file_that_changes_while_loading(base, tmp_path, monkeypatch):
    path = patch(base[0], tmp_path / "growing.gguf", {})
    original = gguf_module.parse_header

    def parse_then_append(mapping, p):
        header = original(mapping, p)
        with open(p, "ab") as f:
            f.write(b"\0" * 100)
        return header

    monkeypatch.setattr(gguf_module, "parse_header", parse_then_append)
    expect(path, "file-changed", "modified while loading")


@pytest.mark.parametrize("target", ["directory", "/dev/null"])
def test_not_a_regular_file(tmp_path, target):
    expect(tmp_path if target == "directory" else target, "not-a-file", "not a regular file")


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "pipe.gguf"
    os.mkfifo(fifo)
    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("load_gguf blocked opening a FIFO"))
    signal.alarm(10)
    try:
        expect(fifo, "not-a-file", "not a regular file")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
