"""Hypothesis fuzz of the GGUF reader: random files, and valid files (from the
reference writer) with bytes flipped, cut, inserted or deleted. Only
GGUFError ever comes out; a file that loads has every tensor and metadata
array read completely (a bad bound would fault there). Structured headers
(written field by field, mostly valid) are also judged against the `gguf`
package's GGUFReader: what loads here loads there with the same tensors
and keys, and what is refused here only while it loads there breaks a rule
that reader does not check.

The default example counts are small: this runs on every push. For a long
run, set EDGECORE_FUZZ_SECONDS (for example in CI's scheduled job, or by
hand): each test then keeps drawing fresh examples for that many seconds.

    EDGECORE_FUZZ_SECONDS=600 pytest tests/weights/test_gguf_fuzz.py
"""

from __future__ import annotations

import math
import os
import struct
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st
from support.fuzz import long_run
from support.gguf_files import Q, V, gguf, sample_tensors, u32, u64, write_gguf

from edgecore.weights import GGUFError, load_gguf
from edgecore.weights.gguf_header import MAGIC, PREFIX_BYTES

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


@long_run
@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes(raw):
    load_and_read(raw)


# magic, a version and small counts, so that random bytes reach the key/value
# and tensor-info parsers instead of stopping at the counts
prefixes = st.builds(lambda version, n_tensors, n_keys: MAGIC + u32(version) + u64(n_tensors) + u64(n_keys),
                     st.sampled_from([2, 3, 3, 1]), st.integers(0, 3), st.integers(0, 3))


@long_run
@FUZZ
@given(prefixes, st.binary(max_size=400))
def test_random_bytes_after_a_valid_prefix(prefix, tail):
    load_and_read(prefix + tail)


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


# ---- structured headers, judged against the reference reader --------------------------------

# A header written field by field from the GGUF specification, with lengths
# and counts that match what follows (so the reference reader, which has no
# bounds of its own, cannot be sent into a long loop): mostly valid fields,
# each now and then broken, so that both outcomes and most rules are reached.
# Q8_1 is left out: the gguf package's size for it is stale (see
# ggml_types.py), so the two readers disagree on its bytes.
SCALAR_TYPES = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 10: "<Q", 11: "<q", 12: "<d"}
STRING, ARRAY, BOOL = 8, 9, 7
FUZZ_TENSOR_TYPES = [t.value for t in Q if t != Q.Q8_1]


@st.composite
def mostly(draw, common: st.SearchStrategy, rare: st.SearchStrategy, odds: int = 10):
    """``common``, except about once in ``odds`` draws ``rare``."""
    return draw(rare if draw(st.integers(1, odds)) == odds else common)


def gguf_string(raw: bytes) -> bytes:
    return u64(len(raw)) + raw


strings = mostly(st.text(max_size=6).map(str.encode), st.binary(min_size=1, max_size=6))
bools = mostly(st.sampled_from([b"\x00", b"\x01"]), st.binary(min_size=1, max_size=1))


def values(vtype: int, depth: int = 0) -> st.SearchStrategy[bytes]:
    """The encoded value of one GGUF type (without the type id)."""
    if vtype == STRING:
        return strings.map(gguf_string)
    if vtype == BOOL:
        return bools
    if vtype == ARRAY:
        item_types = st.sampled_from([*SCALAR_TYPES, STRING, BOOL, *([ARRAY] if depth < 3 else [])])
        return item_types.flatmap(lambda itype: st.lists(values(itype, depth + 1), max_size=4).map(
            lambda items: u32(itype) + u64(len(items)) + b"".join(items)))
    size = struct.calcsize(SCALAR_TYPES[vtype])
    return st.binary(min_size=size, max_size=size)


# (value type, encoded value); type 13 does not exist
key_values = mostly(st.sampled_from([*SCALAR_TYPES, STRING, BOOL, ARRAY]).flatmap(
    lambda vtype: st.tuples(st.just(vtype), values(vtype))), st.just((13, b"")), odds=20)
alignments = st.tuples(st.just(4), mostly(st.sampled_from([1, 8, 32, 64]), st.sampled_from([0, 3, 48])).map(u32))
keys = mostly(st.text("abc.", min_size=1, max_size=4), st.just("tokenizer.ggml.tokens"))


@st.composite
def metadata(draw) -> list[tuple[str, tuple[int, bytes]]]:
    kvs = draw(st.lists(st.tuples(keys, key_values), max_size=4, unique_by=lambda kv: kv[0]))
    if draw(st.sampled_from([False, False, False, True])):
        kvs.insert(draw(st.integers(0, len(kvs))), ("general.alignment", draw(alignments)))
    if kvs and draw(st.sampled_from([False] * 15 + [True])):
        kvs.append((draw(st.sampled_from(kvs))[0], draw(key_values)))  # a duplicate key
    return kvs


@st.composite
def tensor_entries(draw) -> tuple[bytes, list[int], int]:
    """(name, ne, type id): mostly valid dimensions and a known type."""
    type_id = draw(mostly(st.sampled_from(FUZZ_TENSOR_TYPES), st.sampled_from([99, 31, 2**32 - 1]), odds=20))
    block_elems = gguf.GGML_QUANT_SIZES[Q(type_id)][0] if type_id in FUZZ_TENSOR_TYPES else 32
    n_dims = draw(mostly(st.integers(1, 4), st.sampled_from([0, 5]), odds=20))
    ne = [draw(mostly(st.integers(1, 3).map(lambda b: b * block_elems), st.integers(0, 70), odds=6))]
    ne += [draw(mostly(st.integers(1, 3), st.just(0), odds=20)) for _ in range(n_dims - 1)]
    name = draw(mostly(st.text("xyz.", min_size=1, max_size=4).map(str.encode), st.binary(min_size=1, max_size=3),
                       odds=20))
    return name, ne, type_id


def reference_nbytes(ne: list[int], type_id: int) -> int:
    if type_id not in FUZZ_TENSOR_TYPES or not ne:
        return 32
    block_elems, block_bytes = gguf.GGML_QUANT_SIZES[Q(type_id)]
    return math.prod(ne) * block_bytes // block_elems


@st.composite
def structured_files(draw) -> bytes:
    kvs = draw(metadata())
    alignment = 32
    for key, (vtype, payload) in kvs:
        if key == "general.alignment" and vtype == 4:
            alignment = int.from_bytes(payload, "little") or 32
    tensors = draw(st.lists(tensor_entries(), max_size=4, unique_by=lambda t: t[0]))
    if tensors and draw(st.sampled_from([False] * 15 + [True])):
        tensors.append((tensors[0][0], *draw(tensor_entries())[1:]))  # a duplicate name
    # offsets: tensors packed one after another in a drawn order, now and then one moved
    order = draw(st.permutations(range(len(tensors))))
    offsets, end = [0] * len(tensors), 0
    for i in order:
        offsets[i] = end
        end += -(-reference_nbytes(tensors[i][1], tensors[i][2]) // alignment) * alignment
    for i in range(len(tensors)):
        if draw(st.sampled_from([False] * 15 + [True])):
            offsets[i] = draw(st.sampled_from([0, alignment, 16, 7, 2**40]))
    header = MAGIC + u32(draw(st.sampled_from([3, 2]))) + u64(len(tensors)) + u64(len(kvs))
    header += b"".join(gguf_string(key.encode()) + u32(vtype) + payload for key, (vtype, payload) in kvs)
    for (name, ne, type_id), offset in zip(tensors, offsets, strict=True):
        header += gguf_string(name) + u32(len(ne)) + b"".join(map(u64, ne)) + u32(type_id) + u64(offset)
    header += bytes(-len(header) % alignment)
    # the data section: its exact size, or a little more, or less; now and then the file is cut anywhere
    raw = header + bytes(max(0, end + draw(mostly(st.just(0), st.sampled_from([5, -1, -40]), odds=6))))
    return raw[:draw(mostly(st.just(len(raw)), st.integers(0, len(raw)), odds=20))]


def reference_tensors(path: str) -> tuple[list, list[str]]:
    reader = gguf.GGUFReader(path)
    try:
        tensors = [(t.name, t.tensor_type.name, tuple(reversed(t.shape.tolist())), int(t.data_offset),
                    int(t.n_bytes)) for t in reader.tensors]
        return tensors, [k for k in reader.fields if not k.startswith("GGUF.")]
    finally:
        del reader


# What the reference reader does not check, so that a file breaking only
# these rules loads there and is refused here (anything else refused here
# must be refused by the reference too).
NOT_CHECKED_BY_THE_REFERENCE = {"overlap", "offset-alignment", "dims", "n-dims", "bool", "utf8"}


@long_run
@settings(FUZZ, max_examples=200)
@given(structured_files())
def test_structured_files_agree_with_the_reference(raw):
    ours = load_and_read(raw)
    try:
        reference = reference_tensors(PATH)
    except Exception:  # the reference raises what NumPy or its own checks raise
        reference = None
    if ours:
        with load_gguf(PATH) as f:
            assert reference is not None, "edgecore loaded a file the reference refused"
            tensors = [(n, i.dtype, i.shape, i.begin, i.nbytes) for n, i in ((n, f.info(n)) for n in f)]
            assert (tensors, list(f.metadata)) == reference
    elif reference is not None:
        with pytest.raises(GGUFError) as info:
            load_gguf(PATH)
        assert info.value.rule in NOT_CHECKED_BY_THE_REFERENCE, str(info.value)


def test_the_valid_file_loads():
    # the mutations start from a file that loads, so both outcomes are reachable
    assert load_and_read(VALID)
    assert VALID[:4] == MAGIC


@pytest.mark.parametrize("raw", [b"", MAGIC, VALID[:PREFIX_BYTES], VALID[:len(VALID) // 2]])
def test_edges(raw):
    assert load_and_read(raw) is False
