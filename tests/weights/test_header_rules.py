"""Every header rule, each broken by a crafted file; the error must name the
file, the tensor (when the rule is about one) and the rule."""

from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest

from edgecore.weights import SafetensorsError, load_safetensors, save_safetensors
from edgecore.weights.header import MAX_HEADER_BYTES


def entry(dtype="F32", shape=(2,), offsets=(0, 8)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


def expect(path, rule, tensor=None, *fragments):
    with pytest.raises(SafetensorsError) as info:
        load_safetensors(path)
    err = info.value
    assert err.rule == rule, str(err)
    assert err.tensor == tensor, str(err)
    assert err.path == str(path)
    message = str(err)
    assert str(path) in message and f"[rule: {rule}]" in message
    if tensor is not None:
        assert repr(tensor) in message
    for fragment in fragments:
        assert fragment in message, message
    assert isinstance(err, ValueError)
    return message


# ---- header length -------------------------------------------------------------

def test_file_shorter_than_the_length_field(tmp_path):
    path = tmp_path / "tiny.safetensors"
    path.write_bytes(b"\x02\x00\x00")
    expect(path, "header-length", None, "3 bytes")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.safetensors"
    path.write_bytes(b"")
    expect(path, "header-length", None, "0 bytes")


def test_header_length_over_the_limit(craft):
    expect(craft({}, length=MAX_HEADER_BYTES + 1), "header-length", None, "exceeds")


def test_header_length_past_end_of_file(craft):
    path = craft({"w": entry()}, b"\0" * 8, length=10_000)
    expect(path, "header-length", None, "runs past the end", "truncated")


def test_header_length_of_2_pow_64_minus_1(craft):
    expect(craft({}, length=2**64 - 1), "header-length", None)


# ---- JSON ------------------------------------------------------------------------

@pytest.mark.parametrize("raw, fragment", [
    (b"\xff\xfe{}", "UTF-8"),
    (b'{"w": ', "not valid JSON"),
    (b"[]", "must be a JSON object"),
    (b'"text"', "must be a JSON object"),
    (b"null", "must be a JSON object"),
    (b'{"w": {"dtype": "F32", "shape": [NaN], "data_offsets": [0, 0]}}', "NaN"),
    (b'{"a": Infinity}', "Infinity"),
    (b"{}\x00\x00", "not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b"", "not valid JSON"),
], ids=["bad-utf8", "truncated-json", "array", "string", "null", "nan", "infinity", "trailing-nul",
        "deep-nesting", "empty"])
def test_header_must_be_a_json_object(craft, raw, fragment):
    expect(craft(raw), "json", None, fragment)


def test_utf16_json_is_not_accepted(craft):
    # json.loads(bytes) would sniff UTF-16; the format says UTF-8
    expect(craft('{"__metadata__": {}}'.encode("utf-16")), "json", None, "UTF-8")


def test_padding_spaces_around_the_json_are_accepted(craft):
    raw = b'  {"w": {"dtype": "U8", "shape": [3], "data_offsets": [0, 3]}}    '
    with load_safetensors(craft(raw, b"abc")) as f:
        assert bytes(f["w"]) == b"abc"


# ---- duplicates --------------------------------------------------------------------

def test_duplicate_tensor_names(craft):
    first, second = json.dumps(entry("U8", (1,), (0, 1))), json.dumps(entry("U8", (1,), (1, 2)))
    raw = f'{{"w": {first}, "w": {second}}}'
    expect(craft(raw, b"ab"), "duplicate-name", None, "'w' appears more than once")


def test_duplicate_key_inside_an_entry(craft):
    raw = '{"w": {"dtype": "U8", "dtype": "F32", "shape": [1], "data_offsets": [0, 1]}}'
    expect(craft(raw, b"a"), "duplicate-key", "w", "'dtype'")


def test_duplicate_key_in_metadata(craft):
    raw = '{"__metadata__": {"k": "a", "k": "b"}}'
    expect(craft(raw), "duplicate-key", None, "__metadata__")


# ---- metadata ----------------------------------------------------------------------

@pytest.mark.parametrize("metadata, fragment", [
    ({"format": 1}, "'format'] must be a string, got a number"),
    ({"nested": {"a": "b"}}, "got an object"),
    ({"flag": True}, "got a boolean"),
    ({"none": None}, "got null"),
    (["a"], "must be an object of strings, got an array"),
    ("text", "got a string"),
])
def test_metadata_holds_strings_only(craft, metadata, fragment):
    expect(craft({"__metadata__": metadata}), "metadata", None, fragment)


def test_metadata_null_is_no_metadata(craft):
    with load_safetensors(craft({"__metadata__": None})) as f:
        assert f.metadata == {} and len(f) == 0


# ---- entries -----------------------------------------------------------------------

@pytest.mark.parametrize("value", [[1, 2], "F32", 3, None])
def test_entry_must_be_an_object(craft, value):
    expect(craft({"w": value}), "entry", "w", "must be an object")


@pytest.mark.parametrize("missing", ["dtype", "shape", "data_offsets"])
def test_entry_needs_all_fields(craft, missing):
    e = entry()
    del e[missing]
    expect(craft({"w": e}, b"\0" * 8), "entry", "w", f"lacks {missing}")


def test_unknown_entry_fields_are_ignored_like_the_reference(craft):
    e = entry("U8", (2,), (0, 2)) | {"comment": "extra"}
    with load_safetensors(craft({"w": e}, b"hi")) as f:
        assert bytes(f["w"]) == b"hi"


# ---- dtype ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["F128", "f32", "float32", "", 4, None, ["F32"]])
def test_unknown_dtype(craft, dtype):
    expect(craft({"w": entry(dtype=dtype)}, b"\0" * 8), "dtype", "w", "unknown dtype", "F32")


@pytest.mark.parametrize("dtype", ["F8_E4M3", "F8_E5M2", "C64", "F4"])
def test_safetensors_dtypes_without_a_numpy_view(craft, dtype):
    expect(craft({"w": entry(dtype=dtype, shape=(8,))}, b"\0" * 8), "dtype", "w", "no NumPy view")


# ---- shape ---------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [[-2], [2.0], [True], "2", [[2]], [None], {"0": 2}])
def test_shape_must_be_non_negative_integers(craft, shape):
    e = {"dtype": "F32", "shape": shape, "data_offsets": [0, 8]}
    expect(craft({"w": e}, b"\0" * 8), "shape", "w", "non-negative integers")


def test_shape_with_more_dims_than_numpy(craft):
    expect(craft({"w": entry("U8", (1,) * 65, (0, 1))}, b"\0"), "shape", "w", "65 dimensions")


def test_zero_size_shape_too_large_for_numpy(craft):
    expect(craft({"w": entry("F32", (0, 2**62), (0, 0))}), "shape", "w", "too large")


# ---- offsets -------------------------------------------------------------------------

@pytest.mark.parametrize("offsets", [[0], [0, 8, 8], "0-8", [0, -8], [-1, 7], [0.0, 8], [False, 8], None])
def test_offsets_must_be_a_pair_of_counts(craft, offsets):
    e = {"dtype": "F32", "shape": [2], "data_offsets": offsets}
    expect(craft({"w": e}, b"\0" * 8), "offsets", "w", "[begin, end]")


def test_offsets_ending_before_they_begin(craft):
    expect(craft({"w": entry("U8", (0,), (4, 2))}, b"\0" * 4), "offsets", "w", "end before they begin")


def test_offsets_past_the_data_section(craft):
    expect(craft({"w": entry("F32", (2,), (0, 8))}, b"\0" * 7), "offsets", "w", "past the data section",
           "7 bytes")


def test_huge_offsets(craft):
    path = craft({"w": entry("U8", (1,), (2**64, 2**64 + 1))}, b"\0")
    expect(path, "offsets", "w", "past the data section")


# ---- shape x itemsize == bytes ---------------------------------------------------------

@pytest.mark.parametrize("dtype, shape, offsets", [
    ("F32", (2, 3), (0, 20)),   # needs 24
    ("F16", (5,), (0, 11)),     # needs 10
    ("BF16", (4,), (0, 4)),     # needs 8
    ("I64", (), (0, 4)),        # a scalar needs 8
    ("U8", (0,), (0, 1)),       # an empty tensor needs 0
])
def test_size_must_match_the_offsets(craft, dtype, shape, offsets):
    expect(craft({"w": entry(dtype, shape, offsets)}, b"\0" * offsets[1]), "size", "w",
           f"span {offsets[1] - offsets[0]}")


# ---- tiling of the data section --------------------------------------------------------

def test_overlapping_tensors(craft):
    header = {"a": entry("U8", (4,), (0, 4)), "b": entry("U8", (4,), (2, 6))}
    expect(craft(header, b"\0" * 6), "overlap", "b", "overlap tensor 'a'")


def test_identical_ranges_overlap(craft):
    header = {"a": entry("U8", (4,), (0, 4)), "b": entry("U8", (4,), (0, 4))}
    message = expect(craft(header, b"\0" * 4), "overlap", "b")
    assert "'a'" in message


def test_empty_tensor_inside_another_overlaps(craft):
    header = {"a": entry("U8", (4,), (0, 4)), "e": entry("U8", (0,), (2, 2))}
    expect(craft(header, b"\0" * 4), "overlap", "e")


def test_empty_tensor_at_a_boundary_is_fine(craft):
    header = {"a": entry("U8", (2,), (0, 2)), "e": entry("F32", (0, 3), (2, 2)),
              "b": entry("U8", (1,), (2, 3))}
    with load_safetensors(craft(header, b"xyz")) as f:
        assert f["e"].shape == (0, 3) and bytes(f["b"]) == b"z"


def test_hole_between_tensors(craft):
    header = {"a": entry("U8", (2,), (0, 2)), "b": entry("U8", (2,), (3, 5))}
    expect(craft(header, b"\0" * 5), "hole", "b", "[2, 3)", "forbids holes")


def test_hole_at_the_start(craft):
    expect(craft({"a": entry("U8", (2,), (1, 3))}, b"\0" * 3), "hole", "a", "[0, 1)")


def test_bytes_after_the_last_tensor(craft):
    expect(craft({"a": entry("U8", (2,), (0, 2))}, b"\0" * 5), "trailing-bytes", None, "3 bytes at the end")


def test_data_without_tensors(craft):
    expect(craft({}, b"\0"), "trailing-bytes", None)


# ---- the file changing under us -----------------------------------------------------------

def test_file_truncated_after_open_is_detected_before_mapping(tmp_path):
    path = save_safetensors(tmp_path / "m.safetensors", {"w": np.arange(1000, dtype=np.float32)})
    with load_safetensors(path) as f:
        os.truncate(path, 100)
        with pytest.raises(SafetensorsError) as info:
            f["w"]
        assert info.value.rule == "file-changed" and "modified while loaded" in str(info.value)


@pytest.mark.parametrize("keep", [0, 1, 7, 8, 9, 50, -1, -4])
def test_every_truncation_of_a_valid_file_is_refused(tmp_path, keep):
    good = save_safetensors(tmp_path / "good.safetensors",
                            {"a": np.arange(6, dtype=np.float32), "b": np.ones((2, 2), np.float16)})
    raw = good.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(raw[:keep] if keep >= 0 else raw[:keep])
    with pytest.raises(SafetensorsError):
        load_safetensors(cut)


def test_header_length_is_little_endian(tmp_path, craft_raw):
    raw = craft_raw({"w": entry("U8", (1,), (0, 1))}, b"x")
    path = tmp_path / "be.safetensors"
    (length,) = struct.unpack("<Q", raw[:8])
    path.write_bytes(struct.pack(">Q", length) + raw[8:])
    expect(path, "header-length", None)
