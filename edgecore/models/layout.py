"""Which tensors each architecture needs, with their expected shapes,
grouped into the layers the planner schedules: `embed`, `block.<i>`, `head`.

A role is the name the engine's math uses ("attn.qkv.weight"); the tensor
name is what the checkpoint calls it. A tied output head refers to the
embedding tensor: it appears in both layers but is one tensor.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from edgecore.models.spec import ModelError, ModelSpec


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    transposed: bool = False  # a linear weight stored [in, out] (GPT-2's Conv1D), not [out, in]


@dataclass(frozen=True)
class LayerLayout:
    name: str  # "embed", "block.3", "head"
    kind: str  # embed | block | head
    index: int  # block index, -1 for embed/head
    tensors: dict[str, TensorSpec]  # role -> tensor
    experts: tuple[dict[str, TensorSpec], ...] = ()  # MoE: per-expert roles w1/w2/w3 (or a fused view)


def model_layout(spec: ModelSpec, names: Collection[str]) -> list[LayerLayout]:
    """Layers with the tensors they need. `names` (what the checkpoint holds)
    decides between equivalent naming schemes; validation is separate."""
    if spec.family == "gpt2":
        return _gpt2(spec, names)
    return _llama_like(spec, names)


def _gemma3_norms(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """Gemma 3's norms beside a llama block's: post-attention (on the
    attention output, before its residual add), pre- and post-feed-forward,
    and RMSNorm of each query and key head."""
    d, hd = spec.hidden_size, spec.head_dim
    return {"pre_feedforward_layernorm.weight": (d,), "post_feedforward_layernorm.weight": (d,),
            "self_attn.q_norm.weight": (hd,), "self_attn.k_norm.weight": (hd,)}


def _gpt2(spec: ModelSpec, names: Collection[str]) -> list[LayerLayout]:
    p = "transformer." if "transformer.wte.weight" in names or "wte.weight" not in names else ""
    d, i_dim = spec.hidden_size, spec.intermediate_size
    wte = TensorSpec(f"{p}wte.weight", (spec.vocab_size, d))
    wpe = TensorSpec(f"{p}wpe.weight", (spec.max_positions, d))
    layers = [LayerLayout("embed", "embed", -1, {"wte": wte, "wpe": wpe})]
    for i in range(spec.num_layers):
        b = f"{p}h.{i}."
        t = {
            "ln_1.weight": (d,), "ln_1.bias": (d,),
            "attn.c_attn.weight": (d, 3 * d), "attn.c_attn.bias": (3 * d,),
            "attn.c_proj.weight": (d, d), "attn.c_proj.bias": (d,),
            "ln_2.weight": (d,), "ln_2.bias": (d,),
            "mlp.c_fc.weight": (d, i_dim), "mlp.c_fc.bias": (i_dim,),
            "mlp.c_proj.weight": (i_dim, d), "mlp.c_proj.bias": (d,),
        }
        layers.append(LayerLayout(f"block.{i}", "block", i, {
            r: TensorSpec(b + r, s, transposed=len(s) == 2) for r, s in t.items()}))
    lm_head = TensorSpec("lm_head.weight", (spec.vocab_size, d))
    head = {"ln_f.weight": TensorSpec(f"{p}ln_f.weight", (d,)), "ln_f.bias": TensorSpec(f"{p}ln_f.bias", (d,)),
            "lm_head": wte if spec.tie_embeddings else lm_head}
    layers.append(LayerLayout("head", "head", -1, head))
    return layers


def _llama_like(spec: ModelSpec, names: Collection[str]) -> list[LayerLayout]:
    d, i_dim, q_dim, kv_dim = spec.hidden_size, spec.intermediate_size, spec.num_heads * spec.head_dim, spec.kv_dim
    embed = TensorSpec("model.embed_tokens.weight", (spec.vocab_size, d))
    layers = [LayerLayout("embed", "embed", -1, {"wte": embed})]
    for i in range(spec.num_layers):
        b = f"model.layers.{i}."
        t = {
            "input_layernorm.weight": (d,), "post_attention_layernorm.weight": (d,),
            "self_attn.q_proj.weight": (q_dim, d), "self_attn.k_proj.weight": (kv_dim, d),
            "self_attn.v_proj.weight": (kv_dim, d), "self_attn.o_proj.weight": (d, q_dim),
        }
        if spec.family == "gemma3":
            t.update(_gemma3_norms(spec))
        if spec.attention_bias:
            t.update({"self_attn.q_proj.bias": (q_dim,), "self_attn.k_proj.bias": (kv_dim,),
                      "self_attn.v_proj.bias": (kv_dim,), "self_attn.o_proj.bias": (d,)})
        experts: tuple = ()
        if spec.is_moe:
            experts = _mixtral_experts(spec, names, b, t)
        else:
            t.update({"mlp.gate_proj.weight": (i_dim, d), "mlp.up_proj.weight": (i_dim, d),
                      "mlp.down_proj.weight": (d, i_dim)})
            if spec.mlp_bias:
                t.update({"mlp.gate_proj.bias": (i_dim,), "mlp.up_proj.bias": (i_dim,), "mlp.down_proj.bias": (d,)})
        tensors = {r: s if isinstance(s, TensorSpec) else TensorSpec(b + r, s) for r, s in t.items()}
        layers.append(LayerLayout(f"block.{i}", "block", i, tensors, experts))
    lm_head = TensorSpec("lm_head.weight", (spec.vocab_size, d))
    head = {"norm.weight": TensorSpec("model.norm.weight", (d,)), "lm_head": embed if spec.tie_embeddings else lm_head}
    layers.append(LayerLayout("head", "head", -1, head))
    return layers


def _mixtral_experts(spec: ModelSpec, names: Collection[str], b: str, roles: dict) -> tuple:
    """Router + experts in either layout: per-expert
    `block_sparse_moe.experts.{j}.w1/w2/w3.weight` (transformers 4.x files),
    or fused `mlp.experts.gate_up_proj [E, 2I, d]` + `mlp.experts.down_proj
    [E, d, I]` (transformers 5 in memory, and files written from it)."""
    d, i_dim, e = spec.hidden_size, spec.intermediate_size, spec.num_experts
    fused = f"{b}mlp.experts.gate_up_proj" in names
    if fused:
        roles["moe.gate.weight"] = TensorSpec(f"{b}mlp.gate.weight", (e, d))
        roles["moe.gate_up"] = TensorSpec(f"{b}mlp.experts.gate_up_proj", (e, 2 * i_dim, d))
        roles["moe.down"] = TensorSpec(f"{b}mlp.experts.down_proj", (e, d, i_dim))
        return ()
    roles["moe.gate.weight"] = TensorSpec(f"{b}block_sparse_moe.gate.weight", (e, d))
    return tuple(
        {"w1": TensorSpec(f"{b}block_sparse_moe.experts.{j}.w1.weight", (i_dim, d)),
         "w2": TensorSpec(f"{b}block_sparse_moe.experts.{j}.w2.weight", (d, i_dim)),
         "w3": TensorSpec(f"{b}block_sparse_moe.experts.{j}.w3.weight", (i_dim, d))}
        for j in range(e))


def all_tensors(layers: list[LayerLayout]) -> dict[str, TensorSpec]:
    """Every distinct tensor the model needs, by name."""
    out: dict[str, TensorSpec] = {}
    for layer in layers:
        for t in layer.tensors.values():
            out[t.name] = t
        for expert in layer.experts:
            for t in expert.values():
                out[t.name] = t
    return out


FLOAT_TYPES = ("F32", "F16", "BF16")


def validate(layers: list[LayerLayout], infos: dict, source: str, matrix_types: Collection[str] = FLOAT_TYPES,
             ) -> None:
    """Every expected tensor present with the expected shape and a type the
    engine runs: F32, F16 or BF16, and for matrices (2-D and more) also
    `matrix_types` (GGML block types the linear kernels read, e.g. "Q4_1").
    `infos` maps name -> object with `.shape` and `.dtype` (safetensors
    dtype or GGML type name). Raises ModelError naming every problem (up
    to 10)."""
    problems = []
    for name, want in all_tensors(layers).items():
        info = infos.get(name)
        allowed = matrix_types if len(want.shape) >= 2 else FLOAT_TYPES
        if info is None:
            problems.append(f"missing tensor {name} (expected shape {list(want.shape)})")
        elif tuple(info.shape) != want.shape:
            problems.append(f"tensor {name} has shape {list(info.shape)}, expected {list(want.shape)}")
        elif info.dtype not in allowed:
            problems.append(f"tensor {name} has dtype {info.dtype}; the engine runs {', '.join(allowed)} here")
    if problems:
        more = f" (and {len(problems) - 10} more)" if len(problems) > 10 else ""
        raise ModelError(f"{source}: " + "; ".join(problems[:10]) + more)
