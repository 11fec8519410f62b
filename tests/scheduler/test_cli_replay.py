"""`edgecore replay`: report file, summary, and one-line errors for bad workloads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgecore.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def test_replay_writes_report_and_prints_summary(tmp_path, capsys):
    out = tmp_path / "report.json"
    assert main(["replay", "--input", str(EXAMPLES / "workload_preemption.json"), "--output", str(out)]) == 0
    report = json.loads(out.read_text())
    assert list(report)[0] == "fingerprint" and report["fingerprint"] == "223acc15c15816c9"
    assert report["summary"]["preemptions"] > 0
    assert len(report["trace"]) == report["summary"]["total_ticks"]
    printed = capsys.readouterr().out
    assert "fingerprint        223acc15c15816c9" in printed and "preemptions" in printed


def test_replay_summary_only(tmp_path, capsys):
    assert main(["replay", "--input", str(EXAMPLES / "workload_small.json"), "--output", "-",
                 "--summary-only"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert "trace" not in report and report["fingerprint"] == "8d18db78ef3c9e7a"


@pytest.mark.parametrize(("content", "expected"), [
    ("{", "not valid JSON: line 1 column 2: Expecting property name enclosed in double quotes"),
    ('{"config": {"kv_pages": 4, "page_tokens": 4, "max_active": 1, "prefill_budget": 4, "decode_width": 1}, '
     '"requests": [{"id": "a", "prompt_tokens": 1, "max_new_tokens": 1}, '
     '{"id": "b", "prompt_tokens": 1, "max_new_tokens": 1}, {"id": "c", "prompt_tokens": 1, '
     '"max_new_tokens": 1}, {"id": "d", "prompt_tokens": 1, "max_new_tokens": "8"}]}',
     'requests[3].max_new_tokens: expected a positive integer, got "8" (string)'),
    ("[]", 'top level: expected a workload object with "config" and "requests", got a list of 0 item(s)'),
])
def test_bad_workloads_exit_nonzero_with_path_and_expectation(tmp_path, content, expected):
    bad = tmp_path / "w.json"
    bad.write_text(content)
    proc = subprocess.run([sys.executable, "-m", "edgecore", "replay", "--input", str(bad)],
                          capture_output=True, text=True, env={"PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"edgecore replay: error: {bad}: {expected}"
    assert "Traceback" not in proc.stderr


def test_replay_does_not_import_numpy():
    code = ("import sys; from edgecore.cli import main; "
            f"main(['replay', '--input', r'{EXAMPLES / 'workload_small.json'}', '--summary-only']); "
            "print('numpy' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT)}, check=True)
    assert proc.stdout.strip().splitlines()[-1] == "False"
