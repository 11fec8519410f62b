"""`edgecore run`, `inspect` and `bench` end to end on a small byte-level model."""

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from support.models import build, reference_greedy, rewrite_config  # noqa: E402

from edgecore.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli-bytes")
    ref = build("gpt2", path, vocab_size=256, n_embd=64, n_layer=4, n_head=4, n_positions=128,
                bos_token_id=None, eos_token_id=None)
    rewrite_config(path, edgecore_tokenizer="bytes")
    return path, ref


def test_run_streams_text_and_prints_stats(model, capsys):
    path, ref = model
    assert main(["run", "--model", str(path), "--prompt", "The list", "--max-new-tokens", "10"]) == 0
    out, err = capsys.readouterr()
    want = bytes(reference_greedy(ref, list(b"The list"), 10)).decode("utf-8", errors="replace")
    assert out.startswith("The list" + want)
    assert "prefill" in err and "tok/s" in err and "peak RSS" in err


def test_run_json_and_config_preset(model, tmp_path, capsys):
    path, _ = model
    preset = tmp_path / "p.toml"
    preset.write_text('strategy = "sequential"\nmemory_budget = "64M"\nmax_new_tokens = 5\ntemperature = 0.5\n'
                      'seed = 3\n')
    assert main(["run", "--model", str(path), "--prompt", "ab", "--config", str(preset), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["plan"]["strategy"] == "sequential" and len(first["tokens"]) == 5
    assert first["stats"]["budget"] == 64 << 20
    # flags override the preset
    assert main(["run", "--model", str(path), "--prompt", "ab", "--config", str(preset), "--json",
                 "--strategy", "greedy", "--max-new-tokens", "3"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["plan"]["strategy"] == "greedy" and len(second["tokens"]) == 3


def test_built_in_presets_load(model, capsys):
    path, _ = model
    for name in ("raspberry-pi-4", "2gb", "performance"):
        assert main(["run", "--model", str(path), "--prompt", "x", "--config", name, "--max-new-tokens", "2",
                     "--json", "--context", "64", "--step-tokens", "32"]) == 0
        json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("argv, message", [
    (["run", "--model", "/nonexistent/model", "--prompt", "x"], "not a model directory"),
    (["run", "--prompt", "x", "--config", "/nonexistent.toml"], "no such file or built-in preset"),
    (["run", "--prompt", "x", "--memory-budget", "lots"], "memory budget|size"),
])
def test_run_errors_exit_non_zero(argv, message, capsys):
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert err.startswith("edgecore run: error:") and "Traceback" not in err
    assert any(m in err for m in message.split("|"))


def test_bad_preset_setting(tmp_path, capsys):
    preset = tmp_path / "bad.toml"
    preset.write_text("threads = 'many'\n")
    assert main(["run", "--prompt", "x", "--config", str(preset)]) == 2
    assert "threads must be int" in capsys.readouterr().err
    preset.write_text("turbo = true\n")
    assert main(["run", "--prompt", "x", "--config", str(preset)]) == 2
    assert "unknown setting 'turbo'" in capsys.readouterr().err


def test_broken_model_directory_is_an_error(model, tmp_path, capsys):
    path, _ = model
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "config.json").write_text((path / "config.json").read_text())
    (bad / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    assert main(["run", "--model", str(bad), "--prompt", "x"]) == 1
    err = capsys.readouterr().err
    assert "edgecore run: error:" in err and "model.safetensors" in err


def test_inspect(model, capsys):
    path, _ = model
    assert main(["inspect", "--model", str(path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    names = [row["layer"] for row in report["layers"]]
    assert names == ["embed", "block.0", "block.1", "block.2", "block.3", "head"]
    assert report["summary"]["minimum_budget"]["sequential"]["bytes"] < report["summary"]["ideal_budget"]
    assert {row["strategy"] for row in report["plans"]} == {"sequential", "greedy", "speculative", "auto"}
    assert main(["inspect", "--model", str(path)]) == 0
    assert "minimum budget (sequential)" in capsys.readouterr().out


def test_bench_runs_each_configuration(model, capsys):
    path, _ = model
    assert main(["bench", "--model", str(path), "--budgets", "none,64K", "--strategies", "greedy,speculative",
                 "--prompt-tokens", "16", "--new-tokens", "4", "--json"]) == 1  # a row failed: exit 1
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 4
    unlimited = [r for r in rows if r["budget"] == "none"]
    assert all(r["decode_tps"] > 0 and r["groups"] >= 1 for r in unlimited)
    assert all("minimum" in r["error"] for r in rows if r["budget"] != "none")  # 64K is too small for this model


def test_generation_config_supplies_sampling_defaults(model, tmp_path, capsys):
    path, _ = model
    import shutil

    sampled = tmp_path / "sampled"
    shutil.copytree(path, sampled)
    (sampled / "generation_config.json").write_text('{"do_sample": true, "temperature": 5.0, "top_k": 0}')
    greedy = ["run", "--model", str(path), "--prompt", "ab", "--max-new-tokens", "12", "--json"]
    assert main(greedy) == 0
    base = json.loads(capsys.readouterr().out)["tokens"]
    runs = []
    for seed in ("1", "2"):
        assert main(["run", "--model", str(sampled), "--prompt", "ab", "--max-new-tokens", "12", "--json",
                     "--seed", seed]) == 0
        runs.append(json.loads(capsys.readouterr().out)["tokens"])
    assert runs[0] != runs[1]  # sampling at temperature 5, as the file says
    # an explicit flag wins over the file: greedy again
    assert main(["run", "--model", str(sampled), "--prompt", "ab", "--max-new-tokens", "12", "--json",
                 "--temperature", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["tokens"] == base


def test_demo_models_run(capsys):
    for name in ("demo", "demo-moe"):
        assert main(["run", "--model", name, "--prompt", "The list", "--max-new-tokens", "40", "--seed", "0"]) == 0
        out, err = capsys.readouterr()
        assert out.startswith("The list") and len(out) > 30
        assert "decode" in err
