"""Every mistake is one clear line with the documented exit status (issue 15).

Each test here reproduces one defect of the issue: before the fix it printed a
traceback, exited 0, named a Python parameter instead of the flag, or refused
something that works. Exit statuses (edgecore/cli/__init__.py): 2 for a usage
mistake (checked before any model is opened), 1 when this model, budget or
machine cannot do what was asked.
"""

import importlib.resources
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from edgecore._child import python_command
from edgecore.cli import EXIT_REFUSED, EXIT_USAGE, main
from edgecore.memory import parse_size


def demo_path():
    return importlib.resources.files("edgecore.demo") / "gpt2-bytes"


def one_line_error(capsys, command: str) -> str:
    """stderr of the last call: exactly one line, the command's error, no traceback."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"edgecore {command}: error: "), err
    assert "Traceback" not in err
    return lines[0]


def cli(*argv, env=None, stdin=""):
    """The installed command in a fresh process (for what is read at import: EDGECORE_* variables)."""
    code = "import sys; from edgecore.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(python_command(code, *argv), capture_output=True, text=True, timeout=300, env=env,
                          input=stdin)


# ---- bench ---------------------------------------------------------------------


@pytest.mark.parametrize("argv", [
    ["--prompt-tokens", "1000", "--new-tokens", "2"],
    ["--new-tokens", "300", "--prompt-tokens", "4"],
])
def test_bench_beyond_the_context_is_one_line(argv, capsys):
    assert main(["bench", "--budgets", "none", "--strategies", "greedy", *argv]) == EXIT_REFUSED
    line = one_line_error(capsys, "bench")
    assert "exceed the context of 256 tokens" in line and "--prompt-tokens" in line


def test_bench_exits_non_zero_with_each_rows_full_reason(capsys):
    assert main(["bench", "--budgets", "64K,1.5M", "--strategies", "sequential,speculative",
                 "--prompt-tokens", "4", "--new-tokens", "2"]) == EXIT_REFUSED
    out, err = capsys.readouterr()
    failures = [line for line in out.splitlines() if ": failed: " in line]
    assert len(failures) == 4, out
    for line in failures:  # the whole reason, not 80 characters of it
        assert re.search(r"minimum \d+\.\d MiB$", line), line
    assert "Traceback" not in err and "4 of 4 configurations failed" in err


# ---- the environment -------------------------------------------------------------


@pytest.mark.parametrize("name, value", [("EDGECORE_ISA", "bogus"), ("EDGECORE_NUM_THREADS", "0"),
                                         ("EDGECORE_NUM_THREADS", "lots")])
def test_bad_environment_variable_is_one_line(name, value):
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGECORE_")}
    env[name] = value
    done = cli("run", "--prompt", "x", "--max-new-tokens", "1", env=env)
    assert done.returncode == EXIT_USAGE, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgecore run: error: ") and f"{name}={value!r}" in lines[0], \
        done.stderr


# ---- hostile model files and inputs ----------------------------------------------------


def test_nan_weights_are_refused_in_one_line(tmp_path, capsys):
    from safetensors.numpy import load_file, save_file

    model = tmp_path / "nan"
    shutil.copytree(demo_path(), model)
    tensors = load_file(model / "model.safetensors")
    name = next(k for k in tensors if k.endswith("h.0.attn.c_attn.weight"))
    tensors[name] = np.full_like(tensors[name], np.nan)
    save_file(tensors, model / "model.safetensors", metadata={"format": "pt"})
    assert main(["run", "--model", str(model), "--prompt", "x", "--max-new-tokens", "2"]) == EXIT_REFUSED
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "every logit is NaN or infinite" in lines[0] and "Traceback" not in err


def test_deeply_nested_gate_input_is_one_line(tmp_path, capsys):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    assert main(["gate", "--input", str(deep)]) == EXIT_USAGE
    assert "nested more than 64 levels deep" in one_line_error(capsys, "gate")


def test_nested_but_parseable_gate_input_is_refused_before_use(tmp_path, capsys):
    # deep enough to break code that recurses into it, shallow enough for json.loads
    deep = tmp_path / "deep.json"
    deep.write_text('{"baseline": [], "candidate": [], "policy": ' + "[" * 500 + "]" * 500 + "}")
    assert main(["gate", "--input", str(deep)]) == EXIT_USAGE
    assert "nested more than 64 levels deep" in one_line_error(capsys, "gate")


def test_deeply_nested_preset_and_config_json(tmp_path, capsys):
    preset = tmp_path / "deep.toml"
    preset.write_text("a = " + "[" * 100_000 + "]" * 100_000 + "\n")
    assert main(["run", "--prompt", "x", "--config", str(preset)]) == EXIT_USAGE
    assert "not valid TOML" in one_line_error(capsys, "run")
    model = tmp_path / "deep-model"
    shutil.copytree(demo_path(), model)
    (model / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    assert main(["run", "--model", str(model), "--prompt", "x"]) == EXIT_REFUSED
    assert "nested too deeply" in one_line_error(capsys, "run")


# ---- presets: context is a ceiling -----------------------------------------------------


@pytest.mark.parametrize("preset", ["raspberry-pi-4", "2gb", "performance"])
def test_readme_preset_example_runs_on_the_demo(preset, capsys):
    # the README's own example: the preset asks for more context than the demo's 256 positions
    assert main(["run", "--config", preset, "--prompt", "The list", "--max-new-tokens", "4", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["tokens"]) == 4


def test_explicit_context_over_the_model_is_still_an_error(capsys):
    assert main(["run", "--config", "raspberry-pi-4", "--context", "1024", "--prompt", "x"]) == EXIT_REFUSED
    line = one_line_error(capsys, "run")
    assert "--context 1024 exceeds the model's max_position_embeddings (256)" in line


# ---- validation: the same limits and messages in run, inspect and bench ------------------


@pytest.mark.parametrize("command, extra", [("run", ["--prompt", "x"]), ("inspect", []), ("bench", [])])
@pytest.mark.parametrize("flag, value, message", [
    ("--context", "0", "--context: expected a positive whole number, got 0"),
    ("--step-tokens", "0", "--step-tokens: expected a positive whole number, got 0"),
    ("--threads", "0", "--threads: expected a thread count in [1, 256], got 0"),
])
def test_zero_is_rejected_everywhere(command, extra, flag, value, message, capsys):
    if command == "inspect" and flag == "--threads":
        pytest.skip("inspect plans; it has no --threads")
    assert main([command, flag, value, *extra]) == EXIT_USAGE
    assert message in one_line_error(capsys, command)


@pytest.mark.parametrize("command, extra", [("run", ["--prompt", "x"]), ("inspect", []), ("bench", [])])
def test_context_over_the_model_is_refused_everywhere(command, extra, capsys):
    assert main([command, "--context", "100000", *extra]) == EXIT_REFUSED
    assert "--context 100000 exceeds the model's max_position_embeddings (256): pass --context 256 or less" \
        in one_line_error(capsys, command)


def test_memory_budget_none_unsets_a_presets_budget(tmp_path, capsys):
    preset = tmp_path / "tight.toml"
    preset.write_text('memory_budget = "64K"\n')
    assert main(["run", "--config", str(preset), "--prompt", "x", "--max-new-tokens", "1"]) == EXIT_REFUSED
    assert "too small" in one_line_error(capsys, "run")
    assert main(["run", "--config", str(preset), "--memory-budget", "none", "--prompt", "x",
                 "--max-new-tokens", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["stats"]["budget"] is None
    assert main(["inspect", "--budgets", "none", "--json"]) == 0
    plans = json.loads(capsys.readouterr().out)["plans"]
    assert {p["budget"] for p in plans} == {"none"}
    assert all(p["pinned"] == p["groups"] and p["streamed"] == 0 for p in plans)  # nothing streams


@pytest.mark.parametrize("argv, message", [
    (["--expert-capacity", "3"], "--expert-capacity apply to mixture-of-experts models"),
    (["--model", "demo-moe", "--expert-capacity", "100"], "--expert-capacity: expected 2 to 8 experts per layer"),
    (["--cache-bonus", "nan"], "--cache-bonus: expected a finite number >= 0, got nan"),
    (["--memory-budget", "lots"], "--memory-budget: invalid size 'lots'"),
    (["--seed", "-1"], "--seed: expected a whole number >= 0, got -1"),
    (["--strategy", "fast"], "--strategy: expected one of sequential, greedy, speculative, auto, got 'fast'"),
])
def test_messages_name_the_flag(argv, message, capsys):
    status = main(["run", "--prompt", "x", *argv])
    assert status in (EXIT_USAGE, EXIT_REFUSED)
    line = one_line_error(capsys, "run")
    assert message in line
    assert "expert_capacity" not in line and "set_num_threads" not in line and "context=" not in line


def test_preset_values_are_named_by_their_preset(tmp_path, capsys):
    preset = tmp_path / "p.toml"
    preset.write_text("step_tokens = 0\n")
    assert main(["run", "--config", str(preset), "--prompt", "x"]) == EXIT_USAGE
    assert f"step_tokens in --config {preset}: expected a positive whole number, got 0" \
        in one_line_error(capsys, "run")


def test_flags_are_checked_before_the_model_is_opened(capsys):
    # the model does not exist: a flag mistake must still be what is reported
    assert main(["run", "--model", "/nonexistent/model", "--prompt", "x", "--temperature", "-1"]) == EXIT_USAGE
    assert "--temperature: expected a finite number >= 0" in one_line_error(capsys, "run")


def test_context_overflow_is_reported_before_the_prompt_is_echoed(capsys):
    assert main(["run", "--prompt", "x" * 200, "--max-new-tokens", "100"]) == EXIT_REFUSED
    out, err = capsys.readouterr()
    assert out == "" and "exceed the context of 256 tokens" in err


def test_usage_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--no-such-flag"])
    assert exit_info.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unrecognized arguments: --no-such-flag" in err


# ---- the minimum budget, typed back, works ------------------------------------------------


def test_minimum_shown_by_inspect_works_when_typed_back(capsys):
    assert main(["inspect"]) == 0
    out = capsys.readouterr().out
    shown = re.search(r"minimum budget \(sequential\): (\d+\.\d) MiB", out)[1]
    assert main(["run", "--memory-budget", f"{shown}M", "--strategy", "sequential", "--prompt", "The list",
                 "--max-new-tokens", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["stats"]["budget"] == parse_size(f"{shown}M")


def test_minimum_in_a_refusal_works_when_typed_back(capsys):
    assert main(["run", "--memory-budget", "1M", "--prompt", "x", "--max-new-tokens", "1"]) == EXIT_REFUSED
    shown = re.search(r"minimum (\d+\.\d) MiB", one_line_error(capsys, "run"))[1]
    assert main(["run", "--memory-budget", f"{shown}M", "--prompt", "x", "--max-new-tokens", "1", "--json"]) == 0
    capsys.readouterr()


# ---- Mistral's sliding window caps the default context -----------------------------------------


def test_sliding_window_caps_the_default_context(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from support.models import build, rewrite_config

    build("llama", tmp_path, max_position_embeddings=256)
    rewrite_config(tmp_path, architectures=["MistralForCausalLM"], model_type="mistral", sliding_window=48)
    assert main(["run", "--model", str(tmp_path), "--ids", "1,2,3", "--max-new-tokens", "4", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["tokens"]) == 4
    assert main(["run", "--model", str(tmp_path), "--ids", "1,2,3", "--context", "64"]) == EXIT_REFUSED
    assert "--context 64 exceeds the model's sliding_window (48" in one_line_error(capsys, "run")

    from edgecore import Engine

    with Engine(tmp_path) as engine:
        assert engine.context == 48


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))


# ---- budget honesty: the stats line shows what the budget counts and what it does not -----------


def test_stats_show_the_budgeted_peak_and_the_process_baseline(capsys):
    assert main(["run", "--memory-budget", "64M", "--prompt", "The list", "--max-new-tokens", "4"]) == 0
    err = capsys.readouterr().err
    size = r"\d+(\.\d)? MiB"
    assert re.search(rf"peak RSS {size} \({size} before the model: interpreter \+ libraries\) \| "
                     rf"budget counts {size} of 64\.0 MiB", err), err
    assert main(["run", "--memory-budget", "64M", "--prompt", "The list", "--max-new-tokens", "4", "--json"]) == 0
    memory = json.loads(capsys.readouterr().out)["memory"]
    assert 0 < memory["budgeted_peak_bytes"] <= memory["budget_bytes"] == 64 << 20
    assert 0 < memory["baseline_rss_bytes"] < memory["peak_rss_bytes"]
