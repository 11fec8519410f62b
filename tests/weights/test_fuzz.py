"""Hypothesis fuzz: random and mutated headers only ever raise
SafetensorsError (or load, and then every tensor reads without a crash);
on structured headers the accept/reject decision matches the reference
reader (the `safetensors` package). EDGECORE_FUZZ_SECONDS=N runs each for
N seconds (tests/support/fuzz.py)."""

from __future__ import annotations

import json
import os
import struct
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from support.fuzz import long_run

from edgecore.weights import SafetensorsError, load_safetensors, save_safetensors

safetensors = pytest.importorskip("safetensors")

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_DIR = tempfile.mkdtemp(prefix="edgecore-fuzz-")
PATH = os.path.join(_DIR, "fuzz.safetensors")


def load_and_read(raw: bytes) -> bool:
    """Load ``raw`` as a file; True if it loaded (every tensor is then read
    completely), False if SafetensorsError. Anything else fails the test."""
    with open(PATH, "wb") as f:
        f.write(raw)
    try:
        f = load_safetensors(PATH)
    except SafetensorsError:
        return False
    with f:
        for name in f:
            view = f[name]
            view.tobytes()  # touch every byte: a bad bound would fault here
            assert view.nbytes == f.info(name).nbytes
    return True


@long_run
@FUZZ
@given(st.binary(max_size=300), st.binary(max_size=64))
def test_random_header_bytes(header, data):
    load_and_read(struct.pack("<Q", len(header)) + header + data)


@long_run
@FUZZ
@given(st.binary(max_size=400))
def test_random_files(raw):
    load_and_read(raw)


def _valid_file() -> bytes:
    path = os.path.join(_DIR, "valid.safetensors")
    save_safetensors(path, {"weight": np.arange(12, dtype=np.float32).reshape(3, 4),
                            "bias": np.arange(3, dtype=np.float16), "ids": np.arange(5, dtype=np.int64),
                            "mask": np.array([True, False])}, {"format": "np"})
    with open(path, "rb") as f:
        return f.read()


VALID = _valid_file()


@long_run
@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), min_size=1, max_size=8))
def test_mutated_valid_file(mutations):
    raw = bytearray(VALID)
    for position, value in mutations:
        raw[position] = value
    load_and_read(bytes(raw))


# ---- structured headers, judged against the reference reader --------------------------

# element sizes from the safetensors specification
ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
            "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1}
OUR_DTYPES = list(ITEMSIZE)
counts = st.one_of(st.integers(0, 40), st.integers(-3, -1), st.just(2**64), st.just(2**63))
odd_values = st.one_of(st.none(), st.booleans(), st.floats(0, 10, allow_nan=False), st.text(max_size=3))

entries = st.fixed_dictionaries(
    {"dtype": st.one_of(st.sampled_from(OUR_DTYPES), st.sampled_from(["f32", "Q4", ""]), odd_values),
     "shape": st.one_of(st.lists(counts, max_size=3), odd_values),
     "data_offsets": st.one_of(st.lists(counts, min_size=2, max_size=2), st.lists(counts, max_size=3),
                               odd_values)})


@st.composite
def tiled_headers(draw):
    """Mostly well-formed headers (tensors tiling the data section) with
    occasional perturbations, so that both outcomes are common."""
    names = draw(st.lists(st.text(min_size=1, max_size=4), min_size=0, max_size=4, unique=True))
    header: dict = {}
    offset = 0
    for name in names:
        if name == "__metadata__":
            continue
        dtype = draw(st.sampled_from(OUR_DTYPES))
        shape = draw(st.lists(st.integers(0, 3), max_size=3))
        nbytes = int(np.prod(shape)) * ITEMSIZE[dtype]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    if header and draw(st.booleans()):
        victim = draw(st.sampled_from(sorted(header)))
        header[victim] = draw(entries)
    if draw(st.booleans()):
        header["__metadata__"] = draw(st.one_of(
            st.dictionaries(st.text(max_size=3), st.text(max_size=3), max_size=2),
            st.dictionaries(st.text(max_size=3), odd_values, min_size=1, max_size=2), odd_values))
    extra = draw(st.sampled_from([0, 0, 0, 1, -1]))
    return header, max(0, offset + extra)


@long_run
@FUZZ
@given(tiled_headers())
def test_structured_headers_agree_with_the_reference(case):
    header, data_size = case
    raw = json.dumps(header).encode()
    ours = load_and_read(struct.pack("<Q", len(raw)) + raw + b"\x01" * data_size)
    try:
        with safetensors.safe_open(PATH, framework="np") as f:
            list(f.keys())
        reference = True
    except Exception:  # the reference raises SafetensorsError or its own deserialisation errors
        reference = False
    event("loaded" if ours else "refused")
    assert ours == reference, f"edgecore {'accepted' if ours else 'refused'} what the reference " \
                              f"{'accepted' if reference else 'refused'}: {header} + {data_size} bytes"
