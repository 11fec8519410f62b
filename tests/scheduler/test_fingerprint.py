"""The trace fingerprint: FNV-1a 64 vectors, the documented byte format
(re-implemented here from docs/scheduler.md, reading the JSON report), and
the fingerprints of the shipped examples recorded as literals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgecore.scheduler import fnv1a_64, load_workload, replay
from edgecore.scheduler.fingerprint import uvarint

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

# Recorded once; a change here means the scheduler's decisions changed.
EXAMPLE_FINGERPRINTS = {
    "workload_small.json": "8d18db78ef3c9e7a",
    "workload_pressure.json": "ffead6b25062b983",
    "workload_preemption.json": "223acc15c15816c9",
}


@pytest.mark.parametrize(("data", "expected"), [
    # published FNV-1a 64 test vectors
    (b"", 0xCBF29CE484222325),
    (b"a", 0xAF63DC4C8601EC8C),
    (b"foobar", 0x85944171F73967E8),
])
def test_fnv1a_64_vectors(data, expected):
    assert fnv1a_64(data) == expected


def test_fnv1a_64_continues_an_earlier_hash():
    assert fnv1a_64(b"bar", fnv1a_64(b"foo")) == fnv1a_64(b"foobar")


@pytest.mark.parametrize(("value", "encoded"), [
    (0, b"\x00"), (1, b"\x01"), (127, b"\x7f"), (128, b"\x80\x01"), (300, b"\xac\x02"),
    (16384, b"\x80\x80\x01"),
])
def test_uvarint_is_unsigned_leb128(value, encoded):
    assert uvarint(value) == encoded


def reference_fingerprint(trace_json: list[dict]) -> str:
    """docs/scheduler.md's definition, written independently of the package."""

    def var(n: int) -> bytes:
        out = b""
        while n >= 0x80:
            out += bytes([(n & 0x7F) | 0x80])
            n >>= 7
        return out + bytes([n])

    fields = ("admitted", "decoded", "completed", "preempted", "rejected")
    ids = set()
    for rec in trace_json:
        for f in fields:
            ids.update(rec[f])
        ids.update(rid for rid, _ in rec["prefill"])
    table = sorted(i.encode("utf-8") for i in ids)
    pos = {raw.decode("utf-8"): i for i, raw in enumerate(table)}
    data = b"edgecore-trace-v1\n" + var(len(table))
    for raw in table:
        data += var(len(raw)) + raw
    data += var(len(trace_json))
    for rec in trace_json:
        data += var(rec["tick"])
        data += var(len(rec["admitted"])) + b"".join(var(pos[i]) for i in rec["admitted"])
        data += var(len(rec["prefill"])) + b"".join(var(pos[i]) + var(n) for i, n in rec["prefill"])
        for f in ("decoded", "completed", "preempted", "rejected"):
            data += var(len(rec[f])) + b"".join(var(pos[i]) for i in rec[f])
        data += var(rec["queued"]) + var(rec["active"]) + var(rec["used_pages"])
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) % 2**64
    return f"{h:016x}"


@pytest.mark.parametrize("name", sorted(EXAMPLE_FINGERPRINTS))
def test_examples_replay_to_their_recorded_fingerprints(name):
    result = replay(load_workload(EXAMPLES / name))
    report = result.report()
    assert report["fingerprint"] == EXAMPLE_FINGERPRINTS[name]
    # the report's own trace reproduces it by the documented definition
    assert reference_fingerprint(json.loads(json.dumps(report["trace"]))) == EXAMPLE_FINGERPRINTS[name]


def test_fingerprint_changes_with_any_decision():
    workload = load_workload(EXAMPLES / "workload_small.json")
    trace = replay(workload).trace
    baseline = reference_fingerprint([r.to_json() for r in trace])
    changed = [r.to_json() for r in trace]
    changed[5]["decoded"] = list(reversed(changed[5]["decoded"]))
    assert changed[5]["decoded"] != trace[5].decoded
    assert reference_fingerprint(changed) != baseline


def test_fingerprint_does_not_depend_on_the_hash_seed():
    code = ("import sys; from edgecore.scheduler import load_workload, replay; "
            "print(replay(load_workload(sys.argv[1])).fingerprint)")
    seen = set()
    for seed in ("0", "1", "4242"):
        env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=str(ROOT))
        out = subprocess.run([sys.executable, "-c", code, str(EXAMPLES / "workload_pressure.json")],
                             capture_output=True, text=True, env=env, check=True)
        seen.add(out.stdout.strip())
    assert seen == {EXAMPLE_FINGERPRINTS["workload_pressure.json"]}


def test_non_ascii_ids_are_ordered_by_their_utf8_bytes():
    from edgecore.scheduler import Request, SchedulerConfig, Workload

    cfg = SchedulerConfig(kv_pages=8, page_tokens=4, max_active=4, prefill_budget=32, decode_width=4)
    reqs = (Request("é", 2, 2), Request("z", 2, 2), Request("日本", 2, 2), Request("A", 2, 2))
    result = replay(Workload(cfg, reqs))
    assert reference_fingerprint([r.to_json() for r in result.trace]) == result.fingerprint


def other_interpreters() -> list[str]:
    """Working CPython 3.10+ interpreters on this machine other than the running one."""
    import glob
    import shutil

    candidates = {shutil.which(f"python3.{minor}") for minor in range(10, 15)}
    pyenv = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates.update(glob.glob(os.path.join(pyenv, "versions", "3.1[0-9]*", "bin", "python3")))
    found = {}
    for exe in sorted(c for c in candidates if c):
        probe = subprocess.run([exe, "-c", "import sys; print(*sys.version_info[:2])"],
                               capture_output=True, text=True)
        if probe.returncode != 0:
            continue  # e.g. a pyenv shim without that version installed
        version = tuple(int(x) for x in probe.stdout.split())
        if version >= (3, 10) and version != sys.version_info[:2]:
            found.setdefault(version, exe)
    return sorted(found.values())


def test_fingerprints_are_the_same_on_other_python_versions():
    interpreters = other_interpreters()
    if not interpreters:
        pytest.skip("no other CPython 3.10+ interpreter on this machine")
    code = ("import sys; from edgecore.scheduler import load_workload, replay; "
            "print(' '.join(replay(load_workload(f)).fingerprint for f in sys.argv[1:]))")
    names = sorted(EXAMPLE_FINGERPRINTS)
    for exe in interpreters:
        out = subprocess.run([exe, "-c", code, *(str(EXAMPLES / n) for n in names)], capture_output=True,
                             text=True, env={"PYTHONPATH": str(ROOT)}, check=True)
        assert out.stdout.split() == [EXAMPLE_FINGERPRINTS[n] for n in names], exe
