"""What a GGUF file written from a Hugging Face model must hold, computed
here independently of edgecore.quantize: llama.cpp's tensor names, the
transposes and Q/K row order of its converter, and the gguf package's own
quantizer for the bytes."""

from __future__ import annotations

import numpy as np

WEIGHT, HEAD, KEEP = "weight", "head", "keep"


def rotary_rows(heads: int, rows: int) -> np.ndarray:
    """Row order of llama.cpp's Q/K: in each head of D rows, GGUF row 2i is
    HF row i and GGUF row 2i+1 is HF row D/2 + i (rotate-half pairs made adjacent)."""
    d = rows // heads
    order = np.empty(rows, np.int64)
    for h in range(heads):
        for i in range(d // 2):
            order[h * d + 2 * i] = h * d + i
            order[h * d + 2 * i + 1] = h * d + d // 2 + i
    return order


def expected_tensors(kind: str, model) -> dict[str, tuple[np.ndarray, str]]:
    """GGUF name -> (float32 array in GGUF's NumPy layout, role)."""
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    cfg = model.config
    out: dict[str, tuple[np.ndarray, str]] = {}
    if kind == "gpt2":
        p = "transformer."
        out["token_embd.weight"] = (sd[p + "wte.weight"], HEAD)
        out["position_embd.weight"] = (sd[p + "wpe.weight"], WEIGHT)
        for i in range(cfg.n_layer):
            h, b = f"{p}h.{i}.", f"blk.{i}."
            for hf, gg in (("attn.c_attn", "attn_qkv"), ("attn.c_proj", "attn_output"), ("mlp.c_fc", "ffn_up"),
                           ("mlp.c_proj", "ffn_down")):
                out[f"{b}{gg}.weight"] = (sd[f"{h}{hf}.weight"].T.copy(), WEIGHT)
                out[f"{b}{gg}.bias"] = (sd[f"{h}{hf}.bias"], KEEP)
            for hf, gg in (("ln_1", "attn_norm"), ("ln_2", "ffn_norm")):
                out[f"{b}{gg}.weight"] = (sd[f"{h}{hf}.weight"], KEEP)
                out[f"{b}{gg}.bias"] = (sd[f"{h}{hf}.bias"], KEEP)
        out["output_norm.weight"] = (sd[p + "ln_f.weight"], KEEP)
        out["output_norm.bias"] = (sd[p + "ln_f.bias"], KEEP)
        return out
    heads, kv = cfg.num_attention_heads, cfg.num_key_value_heads
    out["token_embd.weight"] = (sd["model.embed_tokens.weight"], HEAD)
    for i in range(cfg.num_hidden_layers):
        h, b = f"model.layers.{i}.", f"blk.{i}."
        out[f"{b}attn_norm.weight"] = (sd[h + "input_layernorm.weight"], KEEP)
        out[f"{b}ffn_norm.weight"] = (sd[h + "post_attention_layernorm.weight"], KEEP)
        q, k = sd[h + "self_attn.q_proj.weight"], sd[h + "self_attn.k_proj.weight"]
        out[f"{b}attn_q.weight"] = (q[rotary_rows(heads, q.shape[0])], WEIGHT)
        out[f"{b}attn_k.weight"] = (k[rotary_rows(kv, k.shape[0])], WEIGHT)
        out[f"{b}attn_v.weight"] = (sd[h + "self_attn.v_proj.weight"], WEIGHT)
        out[f"{b}attn_output.weight"] = (sd[h + "self_attn.o_proj.weight"], WEIGHT)
        if kind == "mixtral":
            inter = cfg.intermediate_size
            gate_up = sd[h + "mlp.experts.gate_up_proj"]  # [E, 2I, d], gate rows first
            out[f"{b}ffn_gate_inp.weight"] = (sd[h + "mlp.gate.weight"], KEEP)
            out[f"{b}ffn_gate_exps.weight"] = (np.ascontiguousarray(gate_up[:, :inter]), WEIGHT)
            out[f"{b}ffn_up_exps.weight"] = (np.ascontiguousarray(gate_up[:, inter:]), WEIGHT)
            out[f"{b}ffn_down_exps.weight"] = (sd[h + "mlp.experts.down_proj"], WEIGHT)
        else:
            for hf, gg in (("gate_proj", "ffn_gate"), ("up_proj", "ffn_up"), ("down_proj", "ffn_down")):
                out[f"{b}{gg}.weight"] = (sd[f"{h}mlp.{hf}.weight"], WEIGHT)
    out["output_norm.weight"] = (sd["model.norm.weight"], KEEP)
    if not cfg.tie_word_embeddings:
        out["output.weight"] = (sd["lm_head.weight"], HEAD)
    return out


def gguf_type(name: str):
    import gguf

    return getattr(gguf.GGMLQuantizationType, name.upper())


def roundtrip(x: np.ndarray, wtype: str) -> np.ndarray:
    """x quantized and dequantized by the gguf package, along the last axis."""
    import gguf

    if wtype == "f32":
        return x
    t = gguf_type(wtype)
    return gguf.quants.dequantize(gguf.quants.quantize(np.ascontiguousarray(x, np.float32), t), t).reshape(x.shape)


def roundtrip_model(kind: str, model, wtype: str, head_type: str | None = None):
    """A copy of ``model`` whose weight matrices went through ``wtype`` (the
    embedding and head through ``head_type``) the way a GGUF file stores
    them: blocks run along GGUF's rows, which for GPT-2's Conv1D is the HF
    first axis. What transformers must compute from the GGUF file."""
    import copy

    import torch

    ref = copy.deepcopy(model)
    head_type = head_type or wtype
    with torch.no_grad():
        for name, p in ref.named_parameters():
            x = p.detach().float().numpy()
            if x.ndim < 2 or name.endswith("mlp.gate.weight"):
                continue
            t = head_type if ("wte" in name or "embed_tokens" in name or "lm_head" in name) else wtype
            if kind == "gpt2" and name.endswith(("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight",
                                                 "mlp.c_proj.weight")):
                y = roundtrip(x.T, t).T
            else:
                y = roundtrip(x, t)
            p.copy_(torch.from_numpy(np.ascontiguousarray(y)))
    return ref


def dequantized_llama_dir(gguf_path, out_dir) -> None:
    """A llama-architecture GGUF file as a Hugging Face F32 directory
    (config.json + model.safetensors), decoded by the gguf package (its
    reader and dequantize) with llama.cpp's Q/K row order undone. No
    tokenizer: callers pass token ids."""
    import json
    from pathlib import Path

    import gguf
    from safetensors.numpy import save_file

    reader = gguf.GGUFReader(str(gguf_path))

    def meta(key):
        return reader.fields[key].contents()

    heads, kv = meta("llama.attention.head_count"), meta("llama.attention.head_count_kv")
    tensors = {t.name: gguf.quants.dequantize(t.data, t.tensor_type).reshape(tuple(int(n) for n in t.shape[::-1]))
               for t in reader.tensors}

    def undo(x, h):
        return x[np.argsort(rotary_rows(h, x.shape[0]))]

    layers = meta("llama.block_count")
    sd = {"model.embed_tokens.weight": tensors["token_embd.weight"], "model.norm.weight": tensors["output_norm.weight"]}
    names = {"attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj",
             "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm",
             "ffn_norm": "post_attention_layernorm"}
    for i in range(layers):
        b, p = f"blk.{i}.", f"model.layers.{i}."
        sd[p + "self_attn.q_proj.weight"] = undo(tensors[b + "attn_q.weight"], heads)
        sd[p + "self_attn.k_proj.weight"] = undo(tensors[b + "attn_k.weight"], kv)
        for g, h in names.items():
            sd[f"{p}{h}.weight"] = tensors[f"{b}{g}.weight"]
    tied = "output.weight" not in tensors
    if not tied:
        sd["lm_head.weight"] = tensors["output.weight"]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(v, np.float32) for k, v in sd.items()}, str(out_dir / "model.safetensors"))
    emb = sd["model.embed_tokens.weight"]
    (out_dir / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": emb.shape[0],
        "hidden_size": emb.shape[1], "intermediate_size": meta("llama.feed_forward_length"),
        "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv,
        "max_position_embeddings": meta("llama.context_length"),
        "rms_norm_eps": meta("llama.attention.layer_norm_rms_epsilon"), "rope_theta": meta("llama.rope.freq_base"),
        "tie_word_embeddings": tied}))
