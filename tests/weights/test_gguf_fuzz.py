"""Hypothesis fuzz of the GGUF reader: random files, and valid files (from the
reference writer) with bytes flipped, cut, inserted or deleted. Only
GGUFError ever comes out; a file that loads has every tensor and metadata
array read completely (a bad bound would fault there).

The default example counts are small: this runs on every push. For a long
run, set EDGECORE_FUZZ_SECONDS (for example in CI's scheduled job, or by
hand): each test then keeps drawing fresh examples for that many seconds.

    EDGECORE_FUZZ_SECONDS=600 pytest tests/weights/test_gguf_fuzz.py
"""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st
from support.gguf_files import V, sample_tensors, write_gguf

from edgecore.weights import GGUFError, load_gguf
from edgecore.weights.gguf_header import MAGIC, PREFIX_BYTES

LONG_SECONDS = float(os.environ.get("EDGECORE_FUZZ_SECONDS", "0") or 0)
FUZZ = settings(max_examples=100, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
_DIR = tempfile.mkdtemp(prefix="edgecore-gguf-fuzz-")
PATH = os.path.join(_DIR, "fuzz.gguf")


def _valid_file() -> bytes:
    tensors = {k: v for k, v in sample_tensors(seed=3).items()
               if k in ("f32.norm", "f16.matrix", "q8_0.weight", "q4_k.weight", "q8_0.experts")}
    metadata = {"test.count": (7, V.UINT32, None), "test.flag": (True, V.BOOL, None),
                "test.name": ("valid", V.STRING, None), "test.scores": ([0.5, 1.5], V.ARRAY, V.FLOAT32),
                "test.flags": ([True, False], V.ARRAY, V.BOOL), "test.nested": ([[1], [2, 3]], V.ARRAY, V.ARRAY),
                "tokenizer.ggml.tokens": (["<s>", "a", "é"], V.ARRAY, V.STRING)}
    path = write_gguf(os.path.join(_DIR, "valid.gguf"), tensors, metadata, alignment=32)
    return path.read_bytes()


VALID = _valid_file()


def _touch(value) -> None:
    if isinstance(value, np.ndarray):
        value.tobytes()
    elif isinstance(value, list):
        for item in value:
            _touch(item)


def _event(name: str) -> None:
    if currently_in_test_context():  # statistics: which rules the fuzz reaches
        event(name)


def load_and_read(raw: bytes) -> bool:
    """Load ``raw`` as a file; True if it loaded (then every tensor and
    metadata value is read), False on GGUFError. Anything else fails."""
    with open(PATH, "wb") as f:
        f.write(raw)
    try:
        f = load_gguf(PATH)
    except GGUFError as exc:
        _event(f"refused: {exc.rule}")
        return False
    _event("loaded")
    with f:
        for name in f:
            view = f[name]
            assert view.tobytes() is not None and view.nbytes == f.info(name).nbytes
        for value in f.metadata.values():
            _touch(value)
    return True


def long_run(test):
    """Run a Hypothesis test once (default) or, with EDGECORE_FUZZ_SECONDS,
    again and again with fresh seeds until the time is up."""
    def run():
        deadline = time.monotonic() + LONG_SECONDS
        test()
        while time.monotonic() < deadline:
            test()

    run.__name__ = test.__name__
    run.__doc__ = test.__doc__
    return run


@long_run
@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes(raw):
    load_and_read(raw)


@long_run
@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes_after_a_valid_prefix(tail):
    load_and_read(VALID[:PREFIX_BYTES] + tail)


mutation = st.one_of(
    st.tuples(st.just("set"), st.integers(0, len(VALID) - 1), st.integers(0, 255)),
    st.tuples(st.just("insert"), st.integers(0, len(VALID)), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), st.integers(0, len(VALID) - 1), st.integers(1, 16)),
    # lengths and counts are u64: a large value dropped on one is the classic attack
    st.tuples(st.just("u64"), st.integers(0, len(VALID) - 8),
              st.sampled_from([0, 1, 2**31, 2**32 - 1, 2**32, 2**62, 2**63, 2**64 - 1])),
)


@long_run
@FUZZ
@given(st.lists(mutation, min_size=1, max_size=6), st.one_of(st.none(), st.integers(0, len(VALID))))
def test_mutated_valid_file(mutations, cut):
    raw = bytearray(VALID)
    for kind, position, value in mutations:
        position = min(position, len(raw))
        if kind == "set" and position < len(raw):
            raw[position] = value
        elif kind == "insert":
            raw[position:position] = value
        elif kind == "delete":
            del raw[position:position + value]
        elif kind == "u64":
            raw[position:position + 8] = value.to_bytes(8, "little")
    if cut is not None:
        del raw[cut:]
    load_and_read(bytes(raw))


def test_the_valid_file_loads():
    # the mutations start from a file that loads, so both outcomes are reachable
    assert load_and_read(VALID)
    assert VALID[:4] == MAGIC


@pytest.mark.parametrize("raw", [b"", MAGIC, VALID[:PREFIX_BYTES], VALID[:len(VALID) // 2]])
def test_edges(raw):
    assert load_and_read(raw) is False
