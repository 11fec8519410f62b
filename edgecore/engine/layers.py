"""Transformer math for one engine step: the rows of every item of a batch
(engine/batch.py StepBatch) as one [M, d] activation.

Linear layers run on the fused C kernel (`ops.fused_linear`); norms (fused
with the residual add), RoPE, the paged KV store and attention run on the
per-token C kernels, every row at its own position, attention per sequence
over its own pages (engine/kv.py). No code path depends on the batch: each
row's result is what it would be alone (given batch-invariant kernels).
Weights arrive as a dict role -> float32 array (see `runtime.py`).
"""

from __future__ import annotations

import numpy as np

from edgecore import ops
from edgecore.engine.batch import StepBatch
from edgecore.engine.kv import PagedKV
from edgecore.models.spec import ModelSpec


class Rope:
    """Rotary position tables for positions [0, context) (rotate-half form,
    as in Hugging Face Llama/Mistral/Mixtral), from float64 angles."""

    def __init__(self, inv_freq: np.ndarray, context: int):
        angles = np.outer(np.arange(context, dtype=np.float64), inv_freq)
        self.cos = np.cos(angles).astype(np.float32)
        self.sin = np.sin(angles).astype(np.float32)

    def apply(self, x: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """x: [M, heads, head_dim], rotated in place (row i at positions[i])."""
        return ops.rope(x, positions, self.cos, self.sin)


def attention(spec: ModelSpec, q: np.ndarray, k: np.ndarray, v: np.ndarray, kv: PagedKV, layer: int,
              batch: StepBatch) -> np.ndarray:
    """Store the rows' k, v [M, kv_heads, head_dim] in their sequences'
    pages, then causal GQA attention of q [M, heads, head_dim] over each
    row's own sequence. Returns [M, heads * head_dim]."""
    keys, values = kv.keys[layer], kv.values[layer]
    ops.kv_store(k, v, keys, values, batch.table, batch.starts, batch.pos0)
    return ops.attention(q, keys, values, batch.table, batch.starts, batch.pos0, scale=spec.head_dim ** -0.5,
                         window=spec.sliding_window or 0)


def gpt2_block(spec: ModelSpec, w: dict, x: np.ndarray, kv: PagedKV, layer: int, batch: StepBatch) -> np.ndarray:
    m, hd, n = x.shape[0], spec.head_dim, spec.num_heads
    h = ops.layer_norm(x, w["ln_1.weight"], w["ln_1.bias"], spec.norm_eps)
    qkv = ops.fused_linear(h, w["attn.c_attn.weight"], w["attn.c_attn.bias"], transposed=True)
    heads = qkv.reshape(m, 3 * n, hd)  # q, k, v heads side by side in each row (strided views)
    a = attention(spec, heads[:, :n], heads[:, n:2 * n], heads[:, 2 * n:], kv, layer, batch)
    proj = ops.fused_linear(a, w["attn.c_proj.weight"], w["attn.c_proj.bias"], transposed=True)
    h = ops.layer_norm(x, w["ln_2.weight"], w["ln_2.bias"], spec.norm_eps, residual=proj)  # x += proj first
    f = ops.fused_linear(h, w["mlp.c_fc.weight"], w["mlp.c_fc.bias"], activation=spec.activation, transposed=True)
    x += ops.fused_linear(f, w["mlp.c_proj.weight"], w["mlp.c_proj.bias"], transposed=True)
    return x


def llama_attention(spec: ModelSpec, w: dict, rope: Rope, x: np.ndarray, kv: PagedKV, layer: int,
                    batch: StepBatch) -> np.ndarray:
    """Pre-norm GQA self-attention with RoPE; returns attention(x) (the
    residual add is the caller's, fused into its next norm)."""
    m, hd = x.shape[0], spec.head_dim
    h = ops.rms_norm(x, w["input_layernorm.weight"], spec.norm_eps)
    q = ops.fused_linear(h, w["self_attn.q_proj.weight"], w.get("self_attn.q_proj.bias"))
    k = ops.fused_linear(h, w["self_attn.k_proj.weight"], w.get("self_attn.k_proj.bias"))
    v = ops.fused_linear(h, w["self_attn.v_proj.weight"], w.get("self_attn.v_proj.bias"))
    q = rope.apply(q.reshape(m, spec.num_heads, hd), batch.positions)
    k = rope.apply(k.reshape(m, spec.num_kv_heads, hd), batch.positions)
    a = attention(spec, q, k, v.reshape(m, spec.num_kv_heads, hd), kv, layer, batch)
    return ops.fused_linear(a, w["self_attn.o_proj.weight"], w.get("self_attn.o_proj.bias"))


def swiglu(h: np.ndarray, gate: np.ndarray, up: np.ndarray, down: np.ndarray, biases=(None, None, None)
           ) -> np.ndarray:
    g = ops.fused_linear(h, gate, biases[0], activation="silu")
    g *= ops.fused_linear(h, up, biases[1])
    return ops.fused_linear(g, down, biases[2])


def llama_block(spec: ModelSpec, w: dict, rope: Rope, x: np.ndarray, kv: PagedKV, layer: int,
                batch: StepBatch) -> np.ndarray:
    a = llama_attention(spec, w, rope, x, kv, layer, batch)
    h = ops.rms_norm(x, w["post_attention_layernorm.weight"], spec.norm_eps, residual=a)  # x += a first
    x += swiglu(h, w["mlp.gate_proj.weight"], w["mlp.up_proj.weight"], w["mlp.down_proj.weight"],
                (w.get("mlp.gate_proj.bias"), w.get("mlp.up_proj.bias"), w.get("mlp.down_proj.bias")))
    return x


def head(spec: ModelSpec, w: dict, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Final norm + output projection for the rows of x."""
    if spec.family == "gpt2":
        h = ops.layer_norm(x, w["ln_f.weight"], w["ln_f.bias"], spec.norm_eps)
    else:
        h = ops.rms_norm(x, w["norm.weight"], spec.norm_eps)
    return ops.fused_linear(h, w["lm_head"], out=out)
