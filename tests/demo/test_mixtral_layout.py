"""tools/mixtral_layout.py: per-expert <-> fused rewrite of a Mixtral checkpoint.

References: NumPy stacking of the tensors read by the ``safetensors`` package,
and transformers' own fused writer (``save_pretrained(save_original_format=False)``).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import edgecore

safetensors_numpy = pytest.importorskip("safetensors.numpy")

SRC = Path(edgecore.__file__).parent / "demo" / "mixtral-bytes"
TOOL = Path(__file__).resolve().parents[2] / "tools" / "mixtral_layout.py"


@pytest.fixture(scope="module")
def layout():
    spec = importlib.util.spec_from_file_location("mixtral_layout", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fused_dir(layout, tmp_path_factory):
    dst = tmp_path_factory.mktemp("fused")
    assert layout.convert(SRC, dst, "fused") == "per-expert"
    return dst


def test_fused_tensors_are_the_stacked_experts(fused_dir):
    src = safetensors_numpy.load_file(SRC / "model.safetensors")
    fused = safetensors_numpy.load_file(fused_dir / "model.safetensors")
    cfg = json.loads((SRC / "config.json").read_text())
    n_exp, layers = cfg["num_local_experts"], cfg["num_hidden_layers"]
    for i in range(layers):
        e = f"model.layers.{i}.block_sparse_moe.experts"
        gate_up = np.stack(
            [np.concatenate([src[f"{e}.{j}.w1.weight"], src[f"{e}.{j}.w3.weight"]]) for j in range(n_exp)]
        )
        down = np.stack([src[f"{e}.{j}.w2.weight"] for j in range(n_exp)])
        assert np.array_equal(fused[f"model.layers.{i}.mlp.experts.gate_up_proj"], gate_up)
        assert np.array_equal(fused[f"model.layers.{i}.mlp.experts.down_proj"], down)
        assert np.array_equal(
            fused[f"model.layers.{i}.mlp.gate.weight"], src[f"model.layers.{i}.block_sparse_moe.gate.weight"]
        )
    moved = {k for k in src if ".block_sparse_moe." in k}
    assert {k: v for k, v in src.items() if k not in moved}.keys() <= fused.keys()
    assert len(fused) == len(src) - len(moved) + 3 * layers
    assert (fused_dir / "config.json").read_bytes() == (SRC / "config.json").read_bytes()


def test_round_trip_is_bit_exact(layout, fused_dir, tmp_path):
    assert layout.convert(fused_dir, tmp_path, "per-expert") == "fused"
    src = safetensors_numpy.load_file(SRC / "model.safetensors")
    back = safetensors_numpy.load_file(tmp_path / "model.safetensors")
    assert src.keys() == back.keys()
    for k in src:
        assert src[k].dtype == back[k].dtype and np.array_equal(src[k], back[k]), k


def test_converting_to_the_layout_it_already_has_copies_it(layout, tmp_path):
    assert layout.convert(SRC, tmp_path, "per-expert") == "per-expert"
    src = safetensors_numpy.load_file(SRC / "model.safetensors")
    out = safetensors_numpy.load_file(tmp_path / "model.safetensors")
    assert all(np.array_equal(src[k], out[k]) for k in src) and src.keys() == out.keys()


def test_bad_inputs_are_named(layout, tmp_path):
    with pytest.raises(ValueError, match="layout 'packed'"):
        layout.convert(SRC, tmp_path / "x", "packed")
    with pytest.raises(ValueError, match="no Mixtral expert tensors"):
        layout.detect_layout(["model.embed_tokens.weight"])
    broken = tmp_path / "broken"
    shutil.copytree(SRC, broken)
    tensors, meta = layout.read_safetensors(broken / "model.safetensors")
    del tensors["model.layers.1.block_sparse_moe.experts.5.w3.weight"]
    layout.write_safetensors(broken / "model.safetensors", tensors, meta)
    with pytest.raises(ValueError, match=r"model\.layers\.1: .*experts\.5\.w3"):
        layout.convert(broken, tmp_path / "y", "fused")
    cfg = json.loads((SRC / "config.json").read_text()) | {"model_type": "llama"}
    (broken / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="model_type 'llama'"):
        layout.convert(broken, tmp_path / "z", "fused")


@pytest.mark.reference
def test_matches_transformers_fused_writer_and_logits(fused_dir, tmp_path):
    pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    from transformers import MixtralForCausalLM

    model = MixtralForCausalLM.from_pretrained(SRC, dtype=torch.float16)
    model.save_pretrained(tmp_path, save_original_format=False)
    theirs = safetensors_numpy.load_file(tmp_path / "model.safetensors")
    ours = safetensors_numpy.load_file(fused_dir / "model.safetensors")
    assert theirs.keys() == ours.keys()
    assert all(np.array_equal(theirs[k], ours[k]) for k in ours)

    x = torch.tensor([list(b"The list of experts is routed per byte.")])
    with torch.inference_mode():
        a = MixtralForCausalLM.from_pretrained(SRC, dtype=torch.float32)(x).logits
        b = MixtralForCausalLM.from_pretrained(fused_dir, dtype=torch.float32)(x).logits
    assert torch.equal(a, b)
