"""Random-weight models written as GGUF files with the `gguf` package's
GGUFWriter (the independent writer), with llama.cpp's tensor names and
metadata keys, the Q/K row permutation its converter applies for llama,
and matrices stored as f32, f16 or a block type quantized by
`gguf.quants.quantize` (norms, biases and the MoE router stay F32, as
llama.cpp keeps them).

The source weights come from a transformers model (support.models.build);
`dequantized_state` gives what a reader of the file should find (the
quantize -> dequantize round trip, un-permuted), for references that do not
read GGUF themselves.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

GGUF_TYPES = ("f32", "f16", "q8_0", "q4_0")


def permute_qk(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's converter order: within each head, rows (i, i + hd/2) of
    the rotate-half layout become adjacent rows (2i, 2i + 1)."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _store(wtype: str, array: np.ndarray):
    """(data, raw_dtype) for GGUFWriter.add_tensor."""
    import gguf

    array = np.ascontiguousarray(array, np.float32)
    if wtype == "f32":
        return array, None
    if wtype == "f16":
        return array.astype(np.float16), None
    qtype = gguf.GGMLQuantizationType[wtype.upper()]
    return gguf.quants.quantize(array, qtype), qtype


def _round_trip(wtype: str, array: np.ndarray) -> np.ndarray:
    import gguf

    data, qtype = _store(wtype, array)
    if qtype is None:
        return data.astype(np.float32)
    return gguf.quants.dequantize(data, qtype).reshape(array.shape).astype(np.float32)


def _tokens(writer, vocab: int) -> None:
    # transformers reads gpt2's vocabulary size from the token list
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list([f"<t{i}>" for i in range(vocab)])


def llama_tensors(model, wtype: str, *, tied: bool) -> dict[str, tuple[np.ndarray, str]]:
    """GGUF name -> (float32 array in GGUF layout, storage type) of a
    transformers Llama or Mixtral model."""
    cfg = model.config
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    heads, kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads
    out = {"token_embd.weight": (sd["model.embed_tokens.weight"], wtype),
           "output_norm.weight": (sd["model.norm.weight"], "f32")}
    if not tied:
        out["output.weight"] = (sd["lm_head.weight"], wtype)
    for i in range(cfg.num_hidden_layers):
        p, b = f"model.layers.{i}.", f"blk.{i}."
        out[b + "attn_norm.weight"] = (sd[p + "input_layernorm.weight"], "f32")
        out[b + "ffn_norm.weight"] = (sd[p + "post_attention_layernorm.weight"], "f32")
        out[b + "attn_q.weight"] = (permute_qk(sd[p + "self_attn.q_proj.weight"], heads), wtype)
        out[b + "attn_k.weight"] = (permute_qk(sd[p + "self_attn.k_proj.weight"], kv_heads), wtype)
        out[b + "attn_v.weight"] = (sd[p + "self_attn.v_proj.weight"], wtype)
        out[b + "attn_output.weight"] = (sd[p + "self_attn.o_proj.weight"], wtype)
        if getattr(cfg, "num_local_experts", 0):
            e = cfg.num_local_experts
            ex = f"{p}mlp.experts."
            if ex + "gate_up_proj" in sd:  # transformers 5: fused [E, 2I, d] and [E, d, I]
                gate_up, down = sd[ex + "gate_up_proj"], sd[ex + "down_proj"]
                inter = gate_up.shape[1] // 2
                gate, up = gate_up[:, :inter], gate_up[:, inter:]
                router = sd[p + "mlp.gate.weight"]
            else:
                mp = f"{p}block_sparse_moe."
                gate = np.stack([sd[f"{mp}experts.{j}.w1.weight"] for j in range(e)])
                up = np.stack([sd[f"{mp}experts.{j}.w3.weight"] for j in range(e)])
                down = np.stack([sd[f"{mp}experts.{j}.w2.weight"] for j in range(e)])
                router = sd[mp + "gate.weight"]
            out[b + "ffn_gate_inp.weight"] = (router, "f32")
            out[b + "ffn_gate_exps.weight"] = (gate, wtype)
            out[b + "ffn_up_exps.weight"] = (up, wtype)
            out[b + "ffn_down_exps.weight"] = (down, wtype)
        else:
            out[b + "ffn_gate.weight"] = (sd[p + "mlp.gate_proj.weight"], wtype)
            out[b + "ffn_up.weight"] = (sd[p + "mlp.up_proj.weight"], wtype)
            out[b + "ffn_down.weight"] = (sd[p + "mlp.down_proj.weight"], wtype)
    return out


def write_llama_gguf(model, path: Path, wtype: str, *, tied: bool = False) -> Path:
    """A transformers Llama (or Mixtral: experts stacked as ffn_*_exps) as
    a GGUF file of architecture `llama`."""
    from gguf import GGUFWriter

    cfg = model.config
    writer = GGUFWriter(str(path), "llama")
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    theta = (getattr(cfg, "rope_parameters", None) or {}).get("rope_theta", getattr(cfg, "rope_theta", 10000.0))
    writer.add_rope_freq_base(float(theta))
    writer.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    writer.add_vocab_size(cfg.vocab_size)
    writer.add_bos_token_id(0)  # no EOS id: greedy runs compare full lengths
    if getattr(cfg, "num_local_experts", 0):
        writer.add_expert_count(cfg.num_local_experts)
        writer.add_expert_used_count(cfg.num_experts_per_tok)
    _tokens(writer, cfg.vocab_size)
    for name, (array, t) in llama_tensors(model, wtype, tied=tied).items():
        data, raw = _store(t, array)
        writer.add_tensor(name, data, raw_dtype=raw)
    _finish(writer)
    return path


def write_gpt2_gguf(model, path: Path, wtype: str) -> Path:
    """A transformers GPT-2 as a GGUF file of architecture `gpt2` (Conv1D
    weights transposed to [out, in] as llama.cpp's converter does; the head
    tied to the embedding)."""
    from gguf import GGUFWriter

    cfg = model.config
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    writer = GGUFWriter(str(path), "gpt2")
    writer.add_block_count(cfg.n_layer)
    writer.add_context_length(cfg.n_positions)
    writer.add_embedding_length(cfg.n_embd)
    writer.add_feed_forward_length(cfg.n_inner or 4 * cfg.n_embd)
    writer.add_head_count(cfg.n_head)
    writer.add_layer_norm_eps(cfg.layer_norm_epsilon)
    writer.add_bos_token_id(0)  # no EOS id: greedy runs compare full lengths
    _tokens(writer, cfg.vocab_size)
    tensors = {"token_embd.weight": (sd["transformer.wte.weight"], wtype),
               "position_embd.weight": (sd["transformer.wpe.weight"], "f32"),
               "output_norm.weight": (sd["transformer.ln_f.weight"], "f32"),
               "output_norm.bias": (sd["transformer.ln_f.bias"], "f32")}
    names = {"ln_1": "attn_norm", "attn.c_attn": "attn_qkv", "attn.c_proj": "attn_output", "ln_2": "ffn_norm",
             "mlp.c_fc": "ffn_up", "mlp.c_proj": "ffn_down"}
    for i in range(cfg.n_layer):
        for hf, gg in names.items():
            w, b = sd[f"transformer.h.{i}.{hf}.weight"], sd[f"transformer.h.{i}.{hf}.bias"]
            matrix = w.ndim == 2
            tensors[f"blk.{i}.{gg}.weight"] = (w.T if matrix else w, wtype if matrix else "f32")
            tensors[f"blk.{i}.{gg}.bias"] = (b, "f32")
    for name, (array, t) in tensors.items():
        data, raw = _store(t, array)
        writer.add_tensor(name, data, raw_dtype=raw)
    _finish(writer)
    return path


def _finish(writer) -> None:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def dequantized_mixtral(model, wtype: str):
    """The transformers Mixtral `model` with every matrix the GGUF file
    stores as `wtype` replaced by its quantize -> dequantize round trip
    (what the file holds, in the rotate-half layout): the reference for a
    llama-MoE GGUF, which transformers does not read."""
    import torch

    ref = type(model)(model.config).eval()
    state = {}
    for name, value in model.state_dict().items():
        array = value.detach().float().numpy()
        quantized = array.ndim >= 2 and not name.endswith(("mlp.gate.weight", "block_sparse_moe.gate.weight"))
        if quantized:
            array = _round_trip(wtype, array.reshape(-1, array.shape[-1])).reshape(array.shape)
        state[name] = torch.from_numpy(array)
    ref.load_state_dict(state)
    return ref
