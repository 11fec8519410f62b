"""Hypothesis fuzz of the JSON/TOML input parsers (gate inputs, mirrored
request logs, policies, replay workloads): random bytes through
read_document, and random JSON values (any nesting of objects, lists,
strings, huge and non-finite numbers) through each parser. Only InputError
(one line naming the JSON path) ever comes out. EDGECORE_FUZZ_SECONDS=N
keeps each test drawing fresh examples for N seconds (tests/support/fuzz.py)."""

from __future__ import annotations

import json
import os
import tempfile

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from support.fuzz import long_run

from edgecore._jsoninput import InputError, read_document
from edgecore.gate import parse_gate_input
from edgecore.gate.mirror import parse_mirror_input
from edgecore.gate.policy import parse_policy
from edgecore.scheduler.workload import parse_workload

FUZZ = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
_DIR = tempfile.mkdtemp(prefix="edgecore-json-fuzz-")
PARSERS = [parse_gate_input, parse_mirror_input, parse_workload, parse_policy]

scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True)
           | st.text(max_size=12) | st.sampled_from(["", "ok", "dense", "avx2", "r1", "baseline"]))
keys = st.sampled_from(["policy", "baseline", "candidate", "requests", "request_id", "ok", "latency_ms",
                        "output_tokens", "model", "checks", "max_new_tokens", "prompt_tokens", "arrival",
                        "outputs", "timestamps", "name", "x"]) | st.text(max_size=6)
documents = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
                         max_leaves=30)


def only_input_errors(parse, doc) -> None:
    try:
        parse(doc)
    except InputError as exc:
        assert "\n" not in str(exc)


@long_run
@FUZZ
@given(documents)
@example({"\n": None})  # a key with a newline once made a two-line error (now quoted: policy["\n"])
def test_random_documents(doc):
    for parse in PARSERS:
        only_input_errors(parse, doc)


@long_run
@FUZZ
@given(st.binary(max_size=300), st.sampled_from([".json", ".toml"]))
def test_random_files(raw, suffix):
    path = os.path.join(_DIR, "doc" + suffix)
    with open(path, "wb") as f:
        f.write(raw)
    try:
        doc = read_document(path)
    except InputError:
        return
    for parse in PARSERS:
        only_input_errors(parse, doc)


@long_run
@FUZZ
@given(documents, st.integers(1, 200))
def test_nested_documents_are_refused_or_parsed(doc, depth):
    path = os.path.join(_DIR, "nested.json")
    with open(path, "w") as f:
        f.write("[" * depth + json.dumps(doc) + "]" * depth)
    try:
        read_document(path)
    except InputError as exc:
        assert "nested more than" in str(exc)
