"""`edgecore gate` and `edgecore mirror-gate`: outputs, exit codes, and user
mistakes reported as one line (file, JSON path, expectation), never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgecore.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def test_gate_writes_the_decision_json(tmp_path, capsys):
    out = tmp_path / "decision.json"
    assert main(["gate", "--input", str(EXAMPLES / "gate_hold.json"), "--output", str(out)]) == 0
    report = json.loads(out.read_text())
    assert list(report)[0] == "decision" and report["decision"] == "hold"
    assert {"checks", "segments", "triage", "policy", "traffic", "reasons"} <= set(report)
    assert "decision: HOLD" in capsys.readouterr().out


@pytest.mark.parametrize(("name", "code"), [
    ("gate_promote.json", 0), ("gate_hold.json", 10), ("gate_rollback.json", 20),
])
def test_exit_code_option(name, code, capsys):
    assert main(["gate", "--input", str(EXAMPLES / name), "--exit-code"]) == code


def test_output_dash_prints_only_json(capsys):
    assert main(["mirror-gate", "--input", str(EXAMPLES / "mirror_gate_vllm_sglang_rollback.json"),
                 "--output", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["decision"] == "rollback"


def test_policy_file_overrides_the_embedded_policy(tmp_path, capsys):
    lenient = tmp_path / "lenient.toml"
    lenient.write_text("max_latency_p95_regression = 0.6\nmax_ttft_p95_regression = 0.6\n"
                       "max_decode_p95_regression = 0.6\n")
    out = tmp_path / "d.json"
    main(["gate", "--input", str(EXAMPLES / "gate_hold.json"), "--policy", str(lenient),
          "--output", str(out)])
    assert json.loads(out.read_text())["decision"] == "promote"


def test_mirror_gate_can_write_the_normalised_observations(tmp_path, capsys):
    obs = tmp_path / "obs.json"
    main(["mirror-gate", "--input", str(EXAMPLES / "mirror_gate_sglang_streaming_hold.json"),
          "--observations", str(obs)])
    capsys.readouterr()
    # the normalised file is itself a valid `gate` input with the same decision
    out = tmp_path / "d.json"
    main(["gate", "--input", str(obs), "--output", str(out)])
    assert json.loads(out.read_text())["decision"] == "hold"


@pytest.mark.parametrize(("command", "content", "expected"), [
    ("gate", '{"baseline": [', "not valid JSON: line 1 column 15: Expecting value"),
    ("gate", '{"baseline": [], "candidate": [{"request_id": 3}]}',
     "candidate[0].request_id: expected a non-empty string, got 3 (integer)"),
    ("gate", '{"baseline": [], "candidate": [], "policy": {"max_kv_pressure": "x"}}',
     'policy.max_kv_pressure: expected a finite number >= 0, got "x" (string)'),
    ("mirror-gate", '{"baseline": {"format": "vllm", "deployment": {}, "records": []}, "candidate": {}}',
     "baseline.deployment.model: expected a value, got nothing (field is missing)"),
])
def test_user_mistakes_are_one_line_errors(tmp_path, command, content, expected):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    proc = subprocess.run([sys.executable, "-m", "edgecore", command, "--input", str(bad)],
                          capture_output=True, text=True, env={"PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip() == f"edgecore {command}: error: {bad}: {expected}"


def test_missing_input_and_bad_policy_file(tmp_path, capsys):
    assert main(["gate", "--input", str(tmp_path / "nope.json")]) == 2
    assert f"{tmp_path / 'nope.json'}: no such file" in capsys.readouterr().err
    policy = tmp_path / "p.toml"
    policy.write_text("max_kv_pressure = [")
    assert main(["gate", "--input", str(EXAMPLES / "gate_promote.json"), "--policy", str(policy)]) == 2
    assert f"{policy}: not valid TOML: " in capsys.readouterr().err


def test_unwritable_output_is_a_one_line_error(tmp_path, capsys):
    assert main(["gate", "--input", str(EXAMPLES / "gate_promote.json"),
                 "--output", str(tmp_path / "no" / "such" / "dir.json")]) == 2
    assert "cannot write" in capsys.readouterr().err
