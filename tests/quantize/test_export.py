"""`edgecore quantize` output read back by independent code: the gguf
package's GGUFReader (names, shapes, types, metadata, and blocks equal to
gguf.quants.quantize of the source), and transformers loading the file."""

from __future__ import annotations

import numpy as np
import pytest
from support.gguf_export import HEAD, KEEP, expected_tensors, gguf_type, roundtrip_model
from support.models import reference_logits

from edgecore.quantize import quantize_model

gguf = pytest.importorskip("gguf", reason="the gguf package reads the files back (pip install gguf)")

TYPES = ["q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "f16", "bf16", "f32"]
KIND = {"gpt2": "gpt2", "llama": "llama", "llama-tied-bf16": "llama", "mixtral": "mixtral"}
PROMPT = [5, 17, 42, 99, 3, 250, 7, 61, 130, 8, 11, 200]


def _field(reader, key):
    field = reader.fields[key]
    return field.contents()


def _export(model_dirs, name, wtype, tmp_path, head_type=None):
    src, model, tok = model_dirs(name)
    out = tmp_path / f"{name}-{wtype}.gguf"
    summary = quantize_model(src, out, wtype, head_type)
    return out, summary, model, tok


@pytest.mark.parametrize("wtype", TYPES)
@pytest.mark.parametrize("name", list(KIND))
def test_tensors_and_blocks_match_the_gguf_package(model_dirs, name, wtype, tmp_path):
    head_type = "q8_0" if wtype.startswith(("q4", "q5")) else None
    out, summary, model, _ = _export(model_dirs, name, wtype, tmp_path, head_type)
    want = expected_tensors(KIND[name], model)
    reader = gguf.GGUFReader(str(out))
    got = {t.name: t for t in reader.tensors}
    assert sorted(got) == sorted(want)
    for tname, (x, role) in want.items():
        t = got[tname]
        tt = "f32" if role == KEEP else (head_type or wtype) if role == HEAD else wtype
        assert t.tensor_type == gguf_type(tt), tname
        assert tuple(int(n) for n in t.shape) == x.shape[::-1], tname  # GGUF lists ne0 (K) first
        expected = x if tt == "f32" else gguf.quants.quantize(np.ascontiguousarray(x, np.float32), gguf_type(tt))
        assert np.asarray(t.data).tobytes() == np.ascontiguousarray(expected).tobytes(), f"{tname} ({tt})"
    assert summary.tensors == len(want)
    assert summary.file_bytes == out.stat().st_size


@pytest.mark.parametrize("name", list(KIND))
def test_metadata(model_dirs, name, tmp_path):
    out, summary, model, tok = _export(model_dirs, name, "q8_0", tmp_path)
    cfg = model.config
    r = gguf.GGUFReader(str(out))
    arch = "gpt2" if name == "gpt2" else "llama"
    assert _field(r, "general.architecture") == arch
    assert _field(r, "general.file_type") == gguf.LlamaFileType.MOSTLY_Q8_0
    assert _field(r, "general.quantization_version") == gguf.GGML_QUANT_VERSION
    if arch == "gpt2":
        want = {"block_count": cfg.n_layer, "context_length": cfg.n_positions, "embedding_length": cfg.n_embd,
                "feed_forward_length": 4 * cfg.n_embd, "attention.head_count": cfg.n_head}
        assert _field(r, "gpt2.attention.layer_norm_epsilon") == pytest.approx(cfg.layer_norm_epsilon)
    else:
        want = {"block_count": cfg.num_hidden_layers, "context_length": cfg.max_position_embeddings,
                "embedding_length": cfg.hidden_size, "feed_forward_length": cfg.intermediate_size,
                "attention.head_count": cfg.num_attention_heads, "attention.head_count_kv": cfg.num_key_value_heads,
                "rope.dimension_count": cfg.hidden_size // cfg.num_attention_heads, "vocab_size": cfg.vocab_size}
        assert _field(r, "llama.rope.freq_base") == pytest.approx(cfg.rope_parameters["rope_theta"])
        assert _field(r, "llama.attention.layer_norm_rms_epsilon") == pytest.approx(cfg.rms_norm_eps)
        if name == "mixtral":
            want.update(expert_count=cfg.num_local_experts, expert_used_count=cfg.num_experts_per_tok)
        else:
            assert f"{arch}.expert_count" not in r.fields
    for key, value in want.items():
        assert _field(r, f"{arch}.{key}") == value, key

    # tokenizer: every id's token string, types, merges, special ids
    tokens = _field(r, "tokenizer.ggml.tokens")
    assert len(tokens) == cfg.vocab_size
    vocab = tok.get_vocab()
    for token, i in vocab.items():
        assert tokens[i] == token
    n = tok.get_vocab_size()
    assert tokens[n:] == [f"[PAD{i}]" for i in range(n, cfg.vocab_size)]
    types = list(_field(r, "tokenizer.ggml.token_type"))
    assert types[vocab["<s>"]] == 3 and types[vocab["e"]] == 1 and types[-1] == 5
    import json

    merges = json.loads(tok.to_str())["model"]["merges"]
    assert _field(r, "tokenizer.ggml.merges") == [m if isinstance(m, str) else " ".join(m) for m in merges]
    assert _field(r, "tokenizer.ggml.model") == "gpt2"
    assert _field(r, "tokenizer.ggml.pre") == "gpt-2"
    assert _field(r, "tokenizer.ggml.bos_token_id") == vocab["<s>"]
    assert _field(r, "tokenizer.ggml.eos_token_id") == vocab["</s>"]
    assert summary.tokenizer


@pytest.mark.reference
@pytest.mark.parametrize("name", ["gpt2", "llama", "llama-tied-bf16"])
def test_transformers_tokenizer_from_the_file(model_dirs, name, tmp_path):
    transformers = pytest.importorskip("transformers")
    out, _, _, tok = _export(model_dirs, name, "f16", tmp_path)
    hf = transformers.AutoTokenizer.from_pretrained(str(out.parent), gguf_file=out.name)
    text = "The capital of France is Paris. <|im_start|>user\nHello, 1234 worlds!<|im_end|>"
    assert hf.encode(text, add_special_tokens=False) == tok.encode(text, add_special_tokens=False).ids


@pytest.mark.reference
@pytest.mark.parametrize(("name", "wtype"), [
    ("gpt2", "f16"), ("gpt2", "q8_0"), ("gpt2", "q4_0"), ("llama", "f16"), ("llama", "bf16"), ("llama", "q8_0"),
    ("llama", "q4_1"), ("llama-tied-bf16", "q8_0"), ("llama-tied-bf16", "q5_0")])
def test_transformers_loads_the_file(model_dirs, name, wtype, tmp_path):
    """transformers reads the GGUF file (undoing llama.cpp's Q/K order and
    GPT-2's transposes itself) into the model whose weights went through
    the gguf package's quantizer: logits equal up to float32 summation
    order. Against the unquantized source, f16/bf16/q8_0 keep the greedy
    tokens."""
    transformers = pytest.importorskip("transformers")
    out, _, model, _ = _export(model_dirs, name, wtype, tmp_path)
    loaded = transformers.AutoModelForCausalLM.from_pretrained(str(out.parent), gguf_file=out.name).eval()
    ref = roundtrip_model(KIND[name], model, wtype)
    got, want = reference_logits(loaded, PROMPT), reference_logits(ref, PROMPT)
    scale = np.abs(want).max()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * scale)
    if wtype in ("f16", "bf16", "q8_0"):
        src = reference_logits(model, PROMPT)
        assert (got.argmax(-1) == src.argmax(-1)).mean() >= 0.9


@pytest.mark.reference
@pytest.mark.parametrize("wtype", ["f16", "q8_0", "q4_0"])
def test_mixtral_experts_read_back(model_dirs, wtype, tmp_path):
    """transformers does not read Mixtral GGUF files: the test maps the
    stacked experts back itself (gguf's dequantize, llama.cpp's Q/K order
    undone) into a MixtralForCausalLM and compares with the round-tripped
    source model."""
    import torch
    from support.gguf_export import rotary_rows

    out, _, model, _ = _export(model_dirs, "mixtral", wtype, tmp_path)
    cfg = model.config
    tensors = {t.name: gguf.quants.dequantize(t.data, t.tensor_type) for t in gguf.GGUFReader(str(out)).tensors}
    sd = {"model.embed_tokens.weight": tensors["token_embd.weight"], "model.norm.weight": tensors["output_norm.weight"],
          "lm_head.weight": tensors["output.weight"]}
    for i in range(cfg.num_hidden_layers):
        h, b = f"model.layers.{i}.", f"blk.{i}."
        q, k = tensors[b + "attn_q.weight"], tensors[b + "attn_k.weight"]
        qo, ko = rotary_rows(cfg.num_attention_heads, q.shape[0]), rotary_rows(cfg.num_key_value_heads, k.shape[0])
        sd[h + "self_attn.q_proj.weight"] = q[np.argsort(qo)]
        sd[h + "self_attn.k_proj.weight"] = k[np.argsort(ko)]
        sd[h + "self_attn.v_proj.weight"] = tensors[b + "attn_v.weight"]
        sd[h + "self_attn.o_proj.weight"] = tensors[b + "attn_output.weight"]
        sd[h + "input_layernorm.weight"] = tensors[b + "attn_norm.weight"]
        sd[h + "post_attention_layernorm.weight"] = tensors[b + "ffn_norm.weight"]
        sd[h + "mlp.gate.weight"] = tensors[b + "ffn_gate_inp.weight"]
        sd[h + "mlp.experts.gate_up_proj"] = np.concatenate(
            [tensors[b + "ffn_gate_exps.weight"], tensors[b + "ffn_up_exps.weight"]], axis=1)
        sd[h + "mlp.experts.down_proj"] = tensors[b + "ffn_down_exps.weight"]
    loaded = type(model)(cfg).eval()
    missing, unexpected = loaded.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in sd.items()},
                                                 strict=False)
    assert not unexpected and all("rotary" in m for m in missing)
    ref = roundtrip_model("mixtral", model, wtype)
    got, want = reference_logits(loaded, PROMPT), reference_logits(ref, PROMPT)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_edgecore_tokenizer_from_the_file(model_dirs, name, tmp_path):
    from support.gguf_meta import gguf_metadata

    from edgecore.models.tokenizer_gguf import tokenizer_from_gguf

    out, _, _, tok = _export(model_dirs, name, "q8_0", tmp_path)
    ours = tokenizer_from_gguf(gguf_metadata(out), str(out))
    text = "The capital of France is Paris. <|im_start|>user\nHello, 1234 worlds!<|im_end|>"
    assert ours.encode(text, add_special_tokens=False) == tok.encode(text, add_special_tokens=False).ids


def test_fused_mixtral_experts_give_the_same_file(model_dirs, tmp_path):
    """A Mixtral checkpoint with transformers 5's fused experts
    (mlp.experts.gate_up_proj [E, 2I, d], down_proj [E, d, I]) gives the
    same bytes as one with per-expert w1/w2/w3."""
    import json
    import shutil

    from safetensors.numpy import load_file, save_file

    src, model, _ = model_dirs("mixtral")
    fused = tmp_path / "fused"
    shutil.copytree(src, fused)
    tensors = load_file(fused / "model.safetensors")
    cfg = json.loads((fused / "config.json").read_text())
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        e = cfg["num_local_experts"]
        w = {r: [tensors.pop(f"{p}block_sparse_moe.experts.{j}.{r}.weight") for j in range(e)]
             for r in ("w1", "w2", "w3")}
        pairs = zip(w["w1"], w["w3"], strict=True)
        tensors[p + "mlp.experts.gate_up_proj"] = np.stack([np.concatenate([g, u]) for g, u in pairs])
        tensors[p + "mlp.experts.down_proj"] = np.stack(w["w2"])
        tensors[p + "mlp.gate.weight"] = tensors.pop(p + "block_sparse_moe.gate.weight")
    save_file(tensors, fused / "model.safetensors")
    a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
    quantize_model(src, a, "q4_0")
    quantize_model(fused, b, "q4_0")
    ra, rb = gguf.GGUFReader(str(a)), gguf.GGUFReader(str(b))
    assert [t.name for t in ra.tensors] == [t.name for t in rb.tensors]
    for ta, tb in zip(ra.tensors, rb.tensors, strict=True):
        assert np.asarray(ta.data).tobytes() == np.asarray(tb.data).tobytes(), ta.name


def test_llama3_rope_scaling_writes_rope_freqs(model_dirs, tmp_path):
    """Llama 3 RoPE scaling becomes llama.cpp's rope_freqs tensor: per
    frequency 1 (short wavelengths), the factor (long ones) or the smooth
    blend between, as llama.cpp's converter computes it."""
    import json
    import math
    import shutil

    src, model, _ = model_dirs("llama")
    d = tmp_path / "llama3"
    shutil.copytree(src, d)
    cfg = json.loads((d / "config.json").read_text())
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 64, "rope_theta": 500000.0}
    cfg.pop("rope_parameters", None)
    cfg["rope_scaling"], cfg["rope_theta"] = scaling, scaling["rope_theta"]
    (d / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "l3.gguf"
    quantize_model(d, out, "f16")
    tensors = {t.name: t for t in gguf.GGUFReader(str(out)).tensors}
    got = np.asarray(tensors["rope_freqs.weight"].data)
    dim = cfg["hidden_size"] // cfg["num_attention_heads"]
    want = []
    low, high = 64 / 1.0, 64 / 4.0
    for i in range(0, dim, 2):
        wavelen = 2 * math.pi * 500000.0 ** (i / dim)
        if wavelen < high:
            want.append(1.0)
        elif wavelen > low:
            want.append(8.0)
        else:
            smooth = (64 / wavelen - 1.0) / (4.0 - 1.0)
            want.append(1 / ((1 - smooth) / 8.0 + smooth))
    assert tensors["rope_freqs.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    np.testing.assert_allclose(got, np.array(want, np.float32), rtol=1e-6)


@pytest.mark.parametrize(("template", "config", "want"), [
    ("<s> $A", {}, True), (None, {}, False), ("$A </s>", {}, False), ("<s> $A", {"add_bos_token": False}, False)])
def test_add_bos_token_follows_the_source(tmp_path, template, config, want):
    """tokenizer.ggml.add_bos_token: tokenizer_config.json's add_bos_token
    when set, else whether the post-processor starts with the BOS token."""
    from support.tokenizers import byte_level_bpe, save_dir

    from edgecore.models.spec import parse_config
    from edgecore.quantize.tokenizer import tokenizer_metadata

    tok = byte_level_bpe(300, template=template)
    save_dir(tmp_path, tok, **config)
    spec = parse_config({"architectures": ["LlamaForCausalLM"], "vocab_size": tok.get_vocab_size(), "hidden_size": 64,
                         "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4,
                         "max_position_embeddings": 64, "bos_token_id": tok.token_to_id("<s>")})
    meta = {key: value for key, _, value in tokenizer_metadata(tmp_path, spec)}
    assert meta["tokenizer.ggml.add_bos_token"] is want


def test_sharded_source_gives_the_same_file(model_dirs, tmp_path):
    import shutil

    from safetensors.numpy import load_file

    from edgecore.weights import save_sharded

    src, _, _ = model_dirs("llama")
    sharded = tmp_path / "sharded"
    shutil.copytree(src, sharded)
    tensors = load_file(sharded / "model.safetensors")
    (sharded / "model.safetensors").unlink()
    save_sharded(sharded, tensors, max_shard_bytes=64 << 10)
    assert len(list(sharded.glob("model-*.safetensors"))) > 2
    a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
    quantize_model(src, a, "q5_1")
    quantize_model(sharded, b, "q5_1")
    ra, rb = gguf.GGUFReader(str(a)), gguf.GGUFReader(str(b))
    for ta, tb in zip(ra.tensors, rb.tensors, strict=True):
        assert ta.name == tb.name and np.asarray(ta.data).tobytes() == np.asarray(tb.data).tobytes()
