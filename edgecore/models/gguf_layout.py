"""GGUF tensor names (llama.cpp's `blk.N.*` scheme) for each role the
engine's math uses, grouped into the same `embed`, `block.<i>`, `head`
layers as a Hugging Face checkpoint (layout.py): the roles are the Hugging
Face names, so one set of layer functions runs both.

GGUF stores every linear weight [out, in] (GPT-2's Conv1D weights too: the
converter transposes them), and a MoE layer's experts stacked in one tensor
per projection: `ffn_gate_exps`/`ffn_up_exps` [E, I, d], `ffn_down_exps`
[E, d, I]. A file without `output.weight` ties the head to the embedding.
"""

from __future__ import annotations

from edgecore.models.layout import LayerLayout, TensorSpec
from edgecore.models.spec import ModelSpec

# roles of a MoE layer's stacked expert tensors
STACKED_EXPERT_ROLES = ("moe.gate_exps", "moe.up_exps", "moe.down_exps")


def gguf_layout(spec: ModelSpec) -> list[LayerLayout]:
    if spec.family == "gpt2":
        return _gpt2(spec)
    if spec.family == "gemma3":
        return _gemma3(spec)
    return _llama(spec)


def _head(spec: ModelSpec, embed: TensorSpec, norm: dict[str, TensorSpec]) -> LayerLayout:
    lm_head = embed if spec.tie_embeddings else TensorSpec("output.weight", (spec.vocab_size, spec.hidden_size))
    return LayerLayout("head", "head", -1, {**norm, "lm_head": lm_head})


def _gpt2(spec: ModelSpec) -> list[LayerLayout]:
    d, i_dim = spec.hidden_size, spec.intermediate_size
    embed = TensorSpec("token_embd.weight", (spec.vocab_size, d))
    layers = [LayerLayout("embed", "embed", -1, {
        "wte": embed, "wpe": TensorSpec("position_embd.weight", (spec.max_positions, d))})]
    for i in range(spec.num_layers):
        b = f"blk.{i}."
        t = {
            "ln_1.weight": ("attn_norm.weight", (d,)), "ln_1.bias": ("attn_norm.bias", (d,)),
            "attn.c_attn.weight": ("attn_qkv.weight", (3 * d, d)), "attn.c_attn.bias": ("attn_qkv.bias", (3 * d,)),
            "attn.c_proj.weight": ("attn_output.weight", (d, d)), "attn.c_proj.bias": ("attn_output.bias", (d,)),
            "ln_2.weight": ("ffn_norm.weight", (d,)), "ln_2.bias": ("ffn_norm.bias", (d,)),
            "mlp.c_fc.weight": ("ffn_up.weight", (i_dim, d)), "mlp.c_fc.bias": ("ffn_up.bias", (i_dim,)),
            "mlp.c_proj.weight": ("ffn_down.weight", (d, i_dim)), "mlp.c_proj.bias": ("ffn_down.bias", (d,)),
        }
        layers.append(LayerLayout(f"block.{i}", "block", i, {r: TensorSpec(b + n, s) for r, (n, s) in t.items()}))
    layers.append(_head(spec, embed, {"ln_f.weight": TensorSpec("output_norm.weight", (d,)),
                                      "ln_f.bias": TensorSpec("output_norm.bias", (d,))}))
    return layers


def _llama(spec: ModelSpec) -> list[LayerLayout]:
    d, i_dim, e = spec.hidden_size, spec.intermediate_size, spec.num_experts
    q_dim, kv_dim = spec.num_heads * spec.head_dim, spec.kv_dim
    embed = TensorSpec("token_embd.weight", (spec.vocab_size, d))
    layers = [LayerLayout("embed", "embed", -1, {"wte": embed})]
    for i in range(spec.num_layers):
        b = f"blk.{i}."
        t = {
            "input_layernorm.weight": ("attn_norm.weight", (d,)),
            "post_attention_layernorm.weight": ("ffn_norm.weight", (d,)),
            "self_attn.q_proj.weight": ("attn_q.weight", (q_dim, d)),
            "self_attn.k_proj.weight": ("attn_k.weight", (kv_dim, d)),
            "self_attn.v_proj.weight": ("attn_v.weight", (kv_dim, d)),
            "self_attn.o_proj.weight": ("attn_output.weight", (d, q_dim)),
        }
        if spec.attention_bias:  # Qwen2-style q/k/v biases (llama.cpp names them attn_*.bias)
            t.update({"self_attn.q_proj.bias": ("attn_q.bias", (q_dim,)),
                      "self_attn.k_proj.bias": ("attn_k.bias", (kv_dim,)),
                      "self_attn.v_proj.bias": ("attn_v.bias", (kv_dim,))})
        if spec.is_moe:
            t.update({"moe.gate.weight": ("ffn_gate_inp.weight", (e, d)),
                      "moe.gate_exps": ("ffn_gate_exps.weight", (e, i_dim, d)),
                      "moe.up_exps": ("ffn_up_exps.weight", (e, i_dim, d)),
                      "moe.down_exps": ("ffn_down_exps.weight", (e, d, i_dim))})
        else:
            t.update({"mlp.gate_proj.weight": ("ffn_gate.weight", (i_dim, d)),
                      "mlp.up_proj.weight": ("ffn_up.weight", (i_dim, d)),
                      "mlp.down_proj.weight": ("ffn_down.weight", (d, i_dim))})
        layers.append(LayerLayout(f"block.{i}", "block", i, {r: TensorSpec(b + n, s) for r, (n, s) in t.items()}))
    layers.append(_head(spec, embed, {"norm.weight": TensorSpec("output_norm.weight", (d,))}))
    return layers


# Gemma 3's block roles (the Hugging Face names) -> llama.cpp's tensor names
_GEMMA3_NORMS = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "post_attention_norm.weight",
    "pre_feedforward_layernorm.weight": "ffn_norm.weight",
    "post_feedforward_layernorm.weight": "post_ffw_norm.weight",
}


def _gemma3(spec: ModelSpec) -> list[LayerLayout]:
    d, i_dim, hd = spec.hidden_size, spec.intermediate_size, spec.head_dim
    q_dim, kv_dim = spec.num_heads * hd, spec.kv_dim
    embed = TensorSpec("token_embd.weight", (spec.vocab_size, d))
    layers = [LayerLayout("embed", "embed", -1, {"wte": embed})]
    for i in range(spec.num_layers):
        b = f"blk.{i}."
        t = {role: (name, (d,)) for role, name in _GEMMA3_NORMS.items()}
        t.update({
            "self_attn.q_norm.weight": ("attn_q_norm.weight", (hd,)),
            "self_attn.k_norm.weight": ("attn_k_norm.weight", (hd,)),
            "self_attn.q_proj.weight": ("attn_q.weight", (q_dim, d)),
            "self_attn.k_proj.weight": ("attn_k.weight", (kv_dim, d)),
            "self_attn.v_proj.weight": ("attn_v.weight", (kv_dim, d)),
            "self_attn.o_proj.weight": ("attn_output.weight", (d, q_dim)),
            "mlp.gate_proj.weight": ("ffn_gate.weight", (i_dim, d)),
            "mlp.up_proj.weight": ("ffn_up.weight", (i_dim, d)),
            "mlp.down_proj.weight": ("ffn_down.weight", (d, i_dim)),
        })
        layers.append(LayerLayout(f"block.{i}", "block", i, {r: TensorSpec(b + n, s) for r, (n, s) in t.items()}))
    layers.append(_head(spec, embed, {"norm.weight": TensorSpec("output_norm.weight", (d,))}))
    return layers
