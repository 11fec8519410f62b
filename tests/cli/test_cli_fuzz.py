"""CLI robustness: Hypothesis-generated argument lists for every subcommand.

Every flag of every subcommand (read from the parser itself, so a new flag
is fuzzed without editing this file) gets hostile values: zero, negative,
NaN, infinities, huge and over-long numbers, empty and very long strings,
'none', paths to hostile JSON/TOML documents (deep nesting, huge numbers,
wrong types, invalid UTF-8, empty, a directory, missing). Unknown flags and
flags missing their value are mixed in. Whatever comes out, the command
either succeeds or fails with exactly ONE line on stderr (`edgecore CMD:
error: ...` or argparse's `edgecore ...: error: ...`) and a usage/refusal
status, and no exception escapes `main` (an escaping exception is a
traceback for the user; Hypothesis reports it with the argument list).

Runs in-process (about 300 examples in all); a few fixed cases go through a
real `python -m edgecore` process, for what only a process shows (EDGECORE_*
variables read at import, the interpreter's own traceback printing).
EDGECORE_FUZZ_SECONDS=N keeps drawing fresh examples for N seconds per test.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.fuzz import long_run

from edgecore._child import python_command
from edgecore.cli import build_parser, main

FUZZ = settings(max_examples=30, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
# subcommands whose every example may load the demo model and generate: fewer examples
HEAVY = {"run": 40, "chat": 25, "bench": 12, "inspect": 25}


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


# `serve` is left out: a valid argument list starts a server that runs until
# it is signalled. Its flag and load errors are tested in tests/serve/test_cli_shutdown.py.
SUBCOMMANDS = {name: p for name, p in _subparsers().items() if name != "serve"}


@pytest.fixture(scope="module")
def hostile_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    files = {
        "deep.json": "[" * 50_000 + "]" * 50_000,
        "deep-ok.json": '{"baseline": [], "candidate": [], "policy": ' + "[" * 300 + "]" * 300 + "}",
        "huge-number.json": '{"baseline": [' + "9" * 5000 + '], "candidate": [1e999999]}',
        "wrong-types.json": '{"baseline": "x", "candidate": 3, "policy": [true], "requests": {"a": null}}',
        "null.json": "null",
        "empty.json": "",
        "deep.toml": "a = " + "[" * 50_000 + "]" * 50_000 + "\n",
        "huge.toml": "context = " + "9" * 5000 + "\n",
        "types.toml": "threads = 'many'\ncontext = -3\nmemory_budget = true\n",
        "bad.toml": "= = =\n",
        "values.toml": "context = 0\nstep_tokens = 99999999999\ntemperature = nan\nmemory_budget = 'none'\n",
        "prompt.txt": "The list",
    }
    paths = []
    for name, text in files.items():
        (d / name).write_text(text, encoding="utf-8")
        paths.append(str(d / name))
    for name in ("utf8.json", "utf8.toml"):
        (d / name).write_bytes(b'{"a": "\xff\xfe\xc3"}')
        paths.append(str(d / name))
    (d / "dir.json").mkdir()
    paths += [str(d / "dir.json"), str(d / "missing.json"), str(d / "out" / "nested" / "x.json")]
    return paths


HOSTILE_TEXT = ["", " ", "0", "-1", "-0", "1", "2", "3", "nan", "-nan", "inf", "-inf", "1e309", "1e-400",
                "99999999999999999999", "9" * 5000, "0x10", "1,2", ",", "1,x", "none", "None", "auto",
                "demo", "demo-moe", "greedy", "sequential", "speculative,greedy", "lru", "64K", "1.5M", "1G",
                "0M", "-5M", "10%", "-10%", "abc%", "raspberry-pi-4", "2gb", "performance", "x" * 3000,
                "é⁂\u202e", "--", "-", "/", "/nonexistent", "/dev/null", "/proc/self", "a\nb"]
# no value (hub ids like owner/name) may reach the network, and none names a registry model
assert not any("/" in v and not v.startswith("/") for v in HOSTILE_TEXT)


def values(files):
    return st.sampled_from(HOSTILE_TEXT + files) | st.integers(-(2**70), 2**70).map(str) | \
        st.floats(allow_nan=True, allow_infinity=True).map(repr)


def argument_lists(parser: argparse.ArgumentParser, files):
    """Flags of `parser` with hostile values, unknown flags, missing values, stray positionals."""
    options = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    positionals = [a for a in parser._actions if not a.option_strings]

    def flag_and_value(action):
        flag = st.sampled_from(action.option_strings)
        if action.nargs == 0:
            return flag.map(lambda f: [f])
        return st.tuples(flag, values(files)).map(list)

    item = st.one_of(
        *[flag_and_value(a) for a in options],
        st.sampled_from(["--no-such-flag", "--contex", "-x", "--json=1", "--memory-budget="]).map(lambda f: [f]),
        values(files).map(lambda v: [v]),  # a stray positional (or the positional a command takes)
    )
    required = st.tuples(*[flag_and_value(a) for a in options if a.required]).map(lambda t: sum(t, []))
    pos = st.tuples(*[values(files) for _ in positionals]).map(list)

    def assemble(req, ps, items, dangling):
        argv = req + ps + sum(items, [])
        if dangling is not None:  # a flag at the end with its value missing
            argv.append(dangling)
        return argv

    takes_value = [s for a in options if a.nargs != 0 for s in a.option_strings]
    dangling = st.none() | (st.sampled_from(takes_value) if takes_value else st.none())
    return st.builds(assemble, required | st.just([]), pos | st.just([]), st.lists(item, max_size=5), dangling)


def run_in_process(argv, stdin="hello\n/exit\n"):
    out, err = io.StringIO(), io.StringIO()
    old_stdin = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = main(argv)
            except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
                status = exc.code if isinstance(exc.code, int) else 2
    finally:
        sys.stdin = old_stdin
    return status, out.getvalue(), err.getvalue()


def check_outcome(argv, status, err):
    assert "Traceback" not in err, (argv, err)
    if status == 0:
        return
    assert status in (1, 2, 3, 10, 20), (argv, status, err)  # 3: status --check; 10/20: gate --exit-code
    if status in (3, 10, 20):
        return  # a verdict, not an error
    lines = err.strip().splitlines()
    assert len(lines) == 1, (argv, err)
    assert lines[0].startswith("edgecore") and ": error: " in lines[0], (argv, err)


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    """Nothing here may download: a private model cache, the hub offline."""
    monkeypatch.setenv("EDGECORE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # relative --output paths land here


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_hostile_argument_lists(command, hostile_files):
    parser = SUBCOMMANDS[command]

    @long_run
    @settings(FUZZ, max_examples=HEAVY.get(command, FUZZ.max_examples))
    @given(argument_lists(parser, hostile_files))
    def fuzz(argv):
        status, _, err = run_in_process([command, *argv])
        check_outcome([command, *argv], status, err)

    fuzz()


@pytest.mark.parametrize("command", ["gate", "mirror-gate", "replay"])
def test_hostile_documents(command, hostile_files):
    """Every hostile document as the --input (and policy) of the JSON commands."""
    for path in hostile_files:
        argv = [command, "--input", path]
        status, _, err = run_in_process(argv)
        assert status == 2, (argv, status, err)
        check_outcome(argv, status, err)
        if command != "replay":
            argv = [command, "--input", hostile_files[1], "--policy", path]
            status, _, err = run_in_process(argv)
            check_outcome(argv, status, err)


@pytest.mark.parametrize("path_index", range(8))
def test_hostile_presets(path_index, hostile_files):
    path = hostile_files[path_index]
    for command in ("run", "chat"):
        argv = [command, "--config", path, "--prompt", "x"] if command == "run" else [command, "--config", path]
        status, _, err = run_in_process(argv)
        check_outcome(argv, status, err)


@pytest.mark.parametrize("env, argv", [
    ({"EDGECORE_ISA": "bogus"}, ["run", "--prompt", "x"]),
    ({"EDGECORE_NUM_THREADS": "0"}, ["bench"]),
    ({"EDGECORE_NUM_THREADS": "9" * 40}, ["inspect"]),
    ({}, ["run", "--context", "nan"]),
    ({}, ["run", "--memory-budget", "-5M", "--prompt", "x"]),
    ({}, ["gate", "--input", "/dev/null"]),
    ({}, ["nonsense"]),
    ({}, []),
])
def test_a_real_process_prints_one_line(env, argv):
    full = {k: v for k, v in os.environ.items() if not k.startswith("EDGECORE_")}
    full.update(env, HF_HUB_OFFLINE="1")
    done = subprocess.run(python_command("import sys; from edgecore.cli import main; sys.exit(main())", *argv),
                          capture_output=True, text=True, timeout=120, env=full, stdin=subprocess.DEVNULL)
    assert done.returncode in (1, 2), (argv, done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
