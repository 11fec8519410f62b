"""`edgecore status`: table, JSON, thresholds, --check, user errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgecore.cli import main

DATA = Path(__file__).parent / "data"


def run(capsys, *args):
    code = main(["status", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_table_on_the_hot_pi(capsys):
    code, out, _ = run(capsys, "--root", str(DATA / "rpi4-hot"))
    assert code == 0
    lines = dict(line.split(None, 1) if not line.startswith(("Temp ", "Clock ", "Not ")) else
                 (line[:line.index("  ")], line[line.index("  "):].strip()) for line in out.splitlines())
    assert lines["CPUs"].startswith("4 usable (4 online, 4 in affinity, cgroup quota none)")
    assert lines["Load"] == "4.52 3.90 2.75 (1, 5, 15 min)"
    assert lines["Clock cpu0"] == "1000 MHz (range 600-1800, cap 1800)"
    assert lines["Temp thermal_zone0"] == "83.2 °C cpu-thermal (trips °C: critical 110)"
    assert lines["Process"] == "RSS 183 MiB, peak 197 MiB"
    assert lines["Throttling"].startswith("yes: Raspberry Pi firmware: ARM frequency capped now")
    assert lines["Constrained"].startswith("YES: hot:")


def test_json_on_the_container(capsys):
    code, out, _ = run(capsys, "--root", str(DATA / "container-cgroup2"), "--json")
    assert code == 0
    document = json.loads(out)
    assert document["cpu"] == {"online": 8, "affinity": 8, "quota": 1.5, "usable": 2}
    assert document["memory"]["cgroup_limit"] == 2**31
    assert document["throttling"]["events_since_boot"] == 15
    assert document["verdict"]["constrained"] is True
    assert document["verdict"]["reasons"][0].startswith("loaded:")


def test_unknown_values_print_as_unknown(capsys):
    _, out, _ = run(capsys, "--root", str(DATA / "vm-no-thermal"), "--max-load", "100")
    assert "Temperature  unknown (no thermal sensors)" in out
    assert "Throttling   unknown (not exposed)" in out
    assert "Constrained  no" in out and "(from /proc/cpuinfo)" in out
    _, out, _ = run(capsys, "--root", str(DATA / "vm-no-thermal"), "--json")
    document = json.loads(out)
    assert document["thermal"] == [] and document["throttling"]["active"] is None


@pytest.mark.parametrize("sample, args, expected", [
    ("rpi4-hot", [], 3),
    ("rpi4-idle", [], 0),
    ("container-cgroup2", ["--max-load", "2"], 0),
    ("container-cgroup2", ["--max-load", "2", "--min-available", "1.5G"], 3),
    ("rpi4-idle", ["--min-available", "90%"], 3),
])
def test_check_exit_status(capsys, sample, args, expected):
    code, _, _ = run(capsys, "--root", str(DATA / sample), "--check", *args)
    assert code == expected


@pytest.mark.parametrize("args, fragment", [
    (["--min-available", "lots"], "--min-available: invalid size 'lots'"),
    (["--min-available", "x%"], "invalid percentage"),
    (["--min-available", "100%"], "min_available_fraction"),
    (["--trip-margin", "-3"], "trip_margin_c"),
    (["--root", "/no/such/dir"], "not a directory"),
])
def test_user_errors_are_one_line(capsys, args, fragment):
    code, out, err = run(capsys, *args)
    assert code == 2 and out == ""
    assert err.startswith("edgecore status: error:") and fragment in err and err.count("\n") == 1


def test_live_machine_via_the_command():
    result = subprocess.run([sys.executable, "-m", "edgecore", "status", "--json"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["root"] == "/" and document["process"]["rss"] > 0
