"""`edgecore quantize` on the command line: the summary, and one clear line
for each user mistake (never a traceback, never a partial OUT)."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest

from edgecore.cli import main

pytest.importorskip("gguf", reason="the gguf package writes GGUF files (pip install gguf)")


def _run(capsys, *argv):
    rc = main(["quantize", *map(str, argv)])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def llama_dir(model_dirs, tmp_path):
    src, _, _ = model_dirs("llama")
    copy = tmp_path / "llama"
    shutil.copytree(src, copy)
    return copy


def test_summary_and_progress(llama_dir, tmp_path, capsys):
    out = tmp_path / "m.gguf"
    rc, stdout, err = _run(capsys, llama_dir, out, "--type", "q4_0", "--head-type", "q8_0")
    assert rc == 0, err
    assert out.exists()
    assert "llama" in stdout and "q4_0" in stdout and "q8_0" in stdout and "tokenizer included" in stdout
    assert "->" in stdout
    assert "100%" in err  # the progress bar reached its end
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_existing_output_needs_force(llama_dir, tmp_path, capsys):
    out = tmp_path / "m.gguf"
    out.write_bytes(b"keep me")
    rc, _, err = _run(capsys, llama_dir, out, "--type", "q8_0")
    assert rc != 0 and "--force" in _one_error_line(err)
    assert out.read_bytes() == b"keep me"
    rc, _, err = _run(capsys, llama_dir, out, "--type", "q8_0", "--force")
    assert rc == 0, err
    assert out.read_bytes()[:4] == b"GGUF"


@pytest.mark.parametrize("where", ["missing-dir", "is-dir"])
def test_unwritable_output(llama_dir, tmp_path, capsys, where):
    out = tmp_path / "no" / "such" / "m.gguf" if where == "missing-dir" else tmp_path
    rc, _, err = _run(capsys, llama_dir, out, "--type", "q8_0")
    assert rc != 0
    _one_error_line(err)


def test_unsupported_architecture(llama_dir, tmp_path, capsys):
    cfg = json.loads((llama_dir / "config.json").read_text())
    cfg["architectures"], cfg["model_type"] = ["BertModel"], "bert"
    (llama_dir / "config.json").write_text(json.dumps(cfg))
    rc, _, err = _run(capsys, llama_dir, tmp_path / "m.gguf", "--type", "q8_0")
    assert rc != 0 and "BertModel" in _one_error_line(err)
    assert not (tmp_path / "m.gguf").exists()


def _rewrite_weights(model_dir, change):
    from safetensors.numpy import load_file, save_file

    path = model_dir / "model.safetensors"
    tensors = load_file(path)
    change(tensors)
    save_file(tensors, path)


def test_missing_tensor(llama_dir, tmp_path, capsys):
    _rewrite_weights(llama_dir, lambda t: t.pop("model.layers.1.self_attn.k_proj.weight"))
    rc, _, err = _run(capsys, llama_dir, tmp_path / "m.gguf", "--type", "q8_0")
    assert rc != 0 and "model.layers.1.self_attn.k_proj.weight" in _one_error_line(err)


def test_unsupported_dtype(llama_dir, tmp_path, capsys):
    def to_f64(t):
        t["model.layers.0.mlp.up_proj.weight"] = t["model.layers.0.mlp.up_proj.weight"].astype(np.float64)
    _rewrite_weights(llama_dir, to_f64)
    rc, _, err = _run(capsys, llama_dir, tmp_path / "m.gguf", "--type", "q8_0")
    line = _one_error_line(err)
    assert rc != 0 and "F64" in line and "up_proj" in line


def test_unknown_tensor_is_not_dropped(llama_dir, tmp_path, capsys):
    _rewrite_weights(llama_dir, lambda t: t.update({"model.layers.0.self_attn.q_norm.weight": np.ones(16, np.float32)}))
    rc, _, err = _run(capsys, llama_dir, tmp_path / "m.gguf", "--type", "q8_0")
    assert rc != 0 and "q_norm" in _one_error_line(err)


def test_not_a_model_directory(tmp_path, capsys):
    rc, _, err = _run(capsys, tmp_path / "nothing", tmp_path / "m.gguf", "--type", "q8_0")
    assert rc != 0
    _one_error_line(err)


def test_bad_type_is_refused_by_the_parser(llama_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["quantize", str(llama_dir), str(tmp_path / "m.gguf"), "--type", "q4_k"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_gguf_package_missing(llama_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "gguf", None)  # import gguf raises ImportError
    rc, _, err = _run(capsys, llama_dir, tmp_path / "m.gguf", "--type", "q8_0")
    assert rc != 0 and 'pip install "edgecore[quantize]"' in _one_error_line(err)


def test_unrecognised_tokenizer_is_refused_unless_left_out(llama_dir, tmp_path, capsys):
    from support.tokenizers import metaspace_bpe

    metaspace_bpe(200).save(str(llama_dir / "tokenizer.json"))
    rc, _, err = _run(capsys, llama_dir, tmp_path / "m.gguf", "--type", "q8_0")
    assert rc != 0 and "--no-tokenizer" in _one_error_line(err)
    rc, stdout, err = _run(capsys, llama_dir, tmp_path / "m.gguf", "--type", "q8_0", "--no-tokenizer")
    assert rc == 0, err
    assert "tokenizer not included" in stdout


def test_rows_that_do_not_divide_into_blocks_fall_back_to_f16_and_say_so(tmp_path, capsys):
    """A hidden size of 48 cannot hold 32-element blocks: those matrices are
    written as f16 (as llama.cpp's quantizer does) and each is named."""
    pytest.importorskip("torch")
    from support.models import build

    src = tmp_path / "odd"
    build("llama", src, hidden_size=48, intermediate_size=64, num_attention_heads=4, num_key_value_heads=2)
    out = tmp_path / "odd.gguf"
    rc, _, err = _run(capsys, src, out, "--type", "q8_0")
    assert rc == 0, err
    assert "blk.0.attn_q.weight" in err and "f16" in err
    import gguf

    types = {t.name: t.tensor_type for t in gguf.GGUFReader(str(out)).tensors}
    assert types["blk.0.attn_q.weight"] == gguf.GGMLQuantizationType.F16
    assert types["blk.0.ffn_down.weight"] == gguf.GGMLQuantizationType.Q8_0  # K = 64 divides
