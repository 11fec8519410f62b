"""The shipped demo checkpoints (edgecore/demo/*): format, size limit and recorded evidence.

Every expectation is computed here from config.json and the safetensors header
read by hand (struct + json), never taken from edgecore code.

The held-out check scores ``heldout_slice.bin`` (next to this file): the 16
evenly spaced held-out windows of 257 bytes that tools/train_demo.py scores as
``heldout_slice`` in training.json.  It is stored rather than rebuilt because
``pydoc_data`` (the training text) differs between Python versions.  Made with::

    python -c "import sys; sys.path.insert(0, 'tools'); import train_demo as t; \\
      open('tests/demo/heldout_slice.bin', 'wb').write(t.eval_slice_bytes(t.corpus_splits()[1], 256))"
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import struct
from pathlib import Path

import pytest

import edgecore

DEMO = Path(edgecore.__file__).parent / "demo"
SLICE = Path(__file__).with_name("heldout_slice.bin")
TOOLS = Path(__file__).resolve().parents[2] / "tools"
MODELS = {"gpt2-bytes": "GPT2LMHeadModel", "mixtral-bytes": "MixtralForCausalLM"}
MAX_BYTES = 8_000_000  # the "<= 8 MB", counted in decimal megabytes over the whole directory
ITEMSIZE = {"F32": 4, "F16": 2, "BF16": 2}


def load(name: str) -> tuple[dict, dict, dict]:
    d = DEMO / name
    return (
        json.loads((d / "config.json").read_text()),
        read_header(d / "model.safetensors"),
        json.loads((d / "training.json").read_text()),
    )


def read_header(path: Path) -> dict:
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    header["__data_start__"] = 8 + n
    return header


def expected_tensors(cfg: dict) -> dict[str, list[int]]:
    """Names and shapes save_pretrained writes for this config (tied lm_head not stored)."""
    if cfg["model_type"] == "gpt2":
        d, inner = cfg["n_embd"], cfg["n_inner"] or 4 * cfg["n_embd"]
        out = {
            "transformer.wte.weight": [256, d],
            "transformer.wpe.weight": [cfg["n_positions"], d],
            "transformer.ln_f.weight": [d],
            "transformer.ln_f.bias": [d],
        }
        for i in range(cfg["n_layer"]):
            p = f"transformer.h.{i}."
            out |= {
                p + "ln_1.weight": [d],
                p + "ln_1.bias": [d],
                p + "ln_2.weight": [d],
                p + "ln_2.bias": [d],
                p + "attn.c_attn.weight": [d, 3 * d],
                p + "attn.c_attn.bias": [3 * d],
                p + "attn.c_proj.weight": [d, d],
                p + "attn.c_proj.bias": [d],
                p + "mlp.c_fc.weight": [d, inner],
                p + "mlp.c_fc.bias": [inner],
                p + "mlp.c_proj.weight": [inner, d],
                p + "mlp.c_proj.bias": [d],
            }
        return out
    d, inner, n_exp = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_local_experts"]
    hd = cfg.get("head_dim") or d // cfg["num_attention_heads"]
    q, kv = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    out = {"model.embed_tokens.weight": [256, d], "model.norm.weight": [d]}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out |= {
            p + "input_layernorm.weight": [d],
            p + "post_attention_layernorm.weight": [d],
            p + "self_attn.q_proj.weight": [q, d],
            p + "self_attn.k_proj.weight": [kv, d],
            p + "self_attn.v_proj.weight": [kv, d],
            p + "self_attn.o_proj.weight": [d, q],
            p + "block_sparse_moe.gate.weight": [n_exp, d],
        }
        for j in range(n_exp):
            e = f"{p}block_sparse_moe.experts.{j}."
            out |= {e + "w1.weight": [inner, d], e + "w3.weight": [inner, d], e + "w2.weight": [d, inner]}
    return out


@pytest.mark.parametrize("name", MODELS)
def test_config_is_a_byte_level_model_of_the_right_architecture(name):
    cfg, _, _ = load(name)
    assert cfg["architectures"] == [MODELS[name]]
    assert cfg["vocab_size"] == 256
    assert cfg["edgecore_tokenizer"] == "bytes"
    assert cfg["bos_token_id"] is None and cfg["eos_token_id"] is None and cfg["pad_token_id"] is None
    assert cfg["tie_word_embeddings"] is True
    if cfg["model_type"] == "gpt2":
        assert cfg["n_positions"] >= 256
        assert cfg["activation_function"] == "gelu_new"  # GELU, tanh approximation
    else:
        assert cfg["model_type"] == "mixtral"
        assert cfg["max_position_embeddings"] >= 256
        assert (cfg["num_local_experts"], cfg["num_experts_per_tok"]) == (8, 2)


@pytest.mark.parametrize("name", MODELS)
def test_safetensors_header_holds_exactly_the_expected_tensors(name):
    cfg, header, record = load(name)
    data_start = header.pop("__data_start__")
    shapes = {k: v["shape"] for k, v in header.items()}
    assert shapes == expected_tensors(cfg)
    dtype = {"float32": "F32", "float16": "F16"}[record["stored_dtype"]]
    assert {v["dtype"] for v in header.values()} == {dtype}
    # Offsets tile the data region exactly: no gaps, no overlaps, sizes = shape x itemsize.
    spans = sorted(v["data_offsets"] for v in header.values())
    for v in header.values():
        start, end = v["data_offsets"]
        assert end - start == math.prod(v["shape"]) * ITEMSIZE[dtype]
    assert spans[0][0] == 0
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
    assert data_start + spans[-1][1] == (DEMO / name / "model.safetensors").stat().st_size


@pytest.mark.parametrize("name", MODELS)
def test_safetensors_package_reads_the_same_tensors(name):
    safetensors = pytest.importorskip("safetensors")
    _, header, _ = load(name)
    header.pop("__data_start__")
    with safetensors.safe_open(DEMO / name / "model.safetensors", framework="numpy") as f:
        assert {k: list(f.get_slice(k).get_shape()) for k in f.keys()} == {
            k: v["shape"] for k, v in header.items()
        }


@pytest.mark.parametrize("name", MODELS)
def test_directory_is_within_the_size_limit(name):
    files = sorted(p.name for p in (DEMO / name).iterdir())
    assert files == ["config.json", "generation_config.json", "model.safetensors", "training.json"]
    assert sum((DEMO / name / f).stat().st_size for f in files) <= MAX_BYTES


@pytest.mark.parametrize("name", MODELS)
def test_training_record_matches_the_checkpoint(name):
    _, header, record = load(name)
    header.pop("__data_start__")
    assert record["arch"] == MODELS[name]
    assert record["parameters"] == sum(math.prod(v["shape"]) for v in header.values())
    assert record["safetensors_bytes"] == (DEMO / name / "model.safetensors").stat().st_size
    nats = record["heldout_loss_nats_per_byte"]
    # Well below a uniform guess over 256 bytes (ln 256 = 5.55 nats) and consistent units.
    assert 0.5 < nats < 2.5
    assert record["heldout_loss_bits_per_byte"] == pytest.approx(nats / math.log(2), abs=1e-4)
    assert record["heldout_slice"]["sha256"] == hashlib.sha256(SLICE.read_bytes()).hexdigest()
    assert record["data"]["split_rule"].startswith("pydoc_data.topics.topics in sorted key order")
    assert record["steps"] > 0 and record["tokens_seen"] > 0 and record["train_wall_s"] < 30 * 60
    assert {"python", "torch", "transformers"} <= set(record["versions"])


def test_moe_routing_on_heldout_text_is_used_and_local():
    """All experts get work (no collapse) and consecutive bytes reuse experts more than chance."""
    _, _, record = load("mixtral-bytes")
    routing = record["routing_heldout"]
    for layer in routing["layers"]:
        assert len(layer["load"]) == 8 and sum(layer["load"]) == pytest.approx(1.0, abs=1e-3)
        assert min(layer["load"]) > 0.01
        assert layer["reuse_next_token"] > routing["random_reuse_baseline"]


def test_heldout_slice_fixture_matches_this_pythons_pydoc_data():
    spec = importlib.util.spec_from_file_location("train_demo", TOOLS / "train_demo.py")
    pytest.importorskip("torch")  # train_demo imports torch at module level
    train_demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_demo)
    _, _, record = load("gpt2-bytes")
    heldout = train_demo.corpus_splits()[1]
    if hashlib.sha256(heldout).hexdigest() != record["data"]["heldout_sha256"]:
        pytest.skip(
            f"this Python's pydoc_data differs from the training one ({record['versions']['python']})"
        )
    assert SLICE.read_bytes() == train_demo.eval_slice_bytes(heldout, 256)


@pytest.mark.reference
@pytest.mark.parametrize("name", MODELS)
def test_transformers_reproduces_the_recorded_heldout_loss(name):
    pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM

    _, _, record = load(name)
    ctx = record["hyperparameters"]["ctx"]
    data = SLICE.read_bytes()
    x = torch.tensor(list(data), dtype=torch.long).reshape(-1, ctx + 1)
    model = AutoModelForCausalLM.from_pretrained(DEMO / name, dtype=torch.float32).eval()
    assert type(model).__name__ == MODELS[name]
    with torch.inference_mode():
        logits = model(input_ids=x[:, :-1]).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 256), x[:, 1:].reshape(-1)).item()
    assert loss == pytest.approx(record["heldout_slice"]["loss_nats_per_byte"], rel=1e-3)
    assert loss == pytest.approx(record["heldout_loss_nats_per_byte"], rel=0.05)
