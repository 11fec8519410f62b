"""Transformer math for one step of T new tokens at positions [pos, pos+T).

Linear layers run on the C kernels in the weights' stored type (weight.py);
norms, RoPE and attention use NumPy in float32 (the same precision PyTorch
uses on CPU). Weights arrive as a dict role -> Weight for matrices, float32
array for norms and biases (see `runtime.py`).
"""

from __future__ import annotations

import numpy as np

from edgecore import ops
from edgecore.engine.weight import linear, linears, swiglu
from edgecore.models.spec import ModelSpec


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True, dtype=np.float32)
    centred = x - mean
    var = np.mean(np.square(centred), axis=-1, keepdims=True, dtype=np.float32)
    centred *= 1.0 / np.sqrt(var + np.float32(eps))
    centred *= weight
    centred += bias
    return centred


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    ms = np.mean(np.square(x), axis=-1, keepdims=True, dtype=np.float32)
    out = x * (1.0 / np.sqrt(ms + np.float32(eps)))
    out *= weight
    return out


class Rope:
    """Rotary position tables for positions [0, context): rotate-half form,
    as in Hugging Face Llama/Mistral/Mixtral, or with `interleaved` the
    adjacent pairs (2i, 2i+1) of GGUF llama files."""

    def __init__(self, inv_freq: np.ndarray, context: int, interleaved: bool = False):
        angles = np.outer(np.arange(context, dtype=np.float64), inv_freq)
        self.cos = np.cos(angles).astype(np.float32)
        self.sin = np.sin(angles).astype(np.float32)
        self.interleaved = interleaved

    def apply(self, x: np.ndarray, pos: int) -> np.ndarray:
        """x: [T, heads, head_dim] -> rotated copy."""
        t, half = x.shape[0], x.shape[-1] // 2
        cos = self.cos[pos:pos + t, None, :]
        sin = self.sin[pos:pos + t, None, :]
        if self.interleaved:
            x1, x2 = x[..., 0::2], x[..., 1::2]
        else:
            x1, x2 = x[..., :half], x[..., half:]
        out = np.empty_like(x)
        if self.interleaved:
            out[..., 0::2] = x1 * cos - x2 * sin
            out[..., 1::2] = x2 * cos + x1 * sin
        else:
            out[..., :half] = x1 * cos - x2 * sin
            out[..., half:] = x2 * cos + x1 * sin
        return out


class KVCache:
    """Per-layer K and V, [kv_heads, context, head_dim] float32, in buffers
    the engine allocates from its memory pool."""

    def __init__(self, keys: list[np.ndarray], values: list[np.ndarray]):
        self.keys, self.values = keys, values
        self.context = keys[0].shape[1] if keys else 0

    def store(self, layer: int, pos: int, k: np.ndarray, v: np.ndarray) -> None:
        """k, v: [T, kv_heads, head_dim] for positions [pos, pos+T)."""
        t = k.shape[0]
        self.keys[layer][:, pos:pos + t] = k.transpose(1, 0, 2)
        self.values[layer][:, pos:pos + t] = v.transpose(1, 0, 2)


def attention(q: np.ndarray, cache: KVCache, layer: int, pos: int, scale: float) -> np.ndarray:
    """Causal attention of q [T, heads, head_dim] (positions pos..pos+T-1)
    over cached keys/values 0..pos+T-1, grouped-query aware. Returns
    [T, heads * head_dim]."""
    t, heads, hd = q.shape
    keys = cache.keys[layer]
    kv_heads, end = keys.shape[0], pos + t
    group = heads // kv_heads
    k = keys[:, :end]  # [kvH, S, hd]
    v = cache.values[layer][:, :end]
    qg = np.ascontiguousarray(q.reshape(t, kv_heads, group, hd).transpose(1, 2, 0, 3)).reshape(
        kv_heads, group * t, hd)
    # The two products run on the edgecore kernels, one KV head at a time,
    # not np.matmul: NumPy's BLAS keeps its own threads spinning for ~0.1 s
    # after a call, and on a small CPU those steal the cores the next
    # fused_linear is split over (2-thread prefill measured 460 ms with
    # np.matmul, 260 ms without).
    scores = np.empty((kv_heads, group * t, end), np.float32)
    for h in range(kv_heads):
        ops.fused_linear(qg[h], k[h], out=scores[h])  # k[h]: [S, hd], the [N, K] layout
    scores *= np.float32(scale)
    if t > 1:  # query i sees keys <= pos + i
        scores = scores.reshape(kv_heads, group, t, end)
        scores[..., np.triu(np.ones((t, end), bool), k=pos + 1)] = -np.inf
        scores = scores.reshape(kv_heads, group * t, end)
    scores -= scores.max(axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True, dtype=np.float32)
    out = np.empty((kv_heads, group * t, hd), np.float32)
    for h in range(kv_heads):
        ops.fused_linear(scores[h], v[h], transposed=True, out=out[h])  # v[h]: [S, hd], the [K, N] layout
    return out.reshape(kv_heads, group, t, hd).transpose(2, 0, 1, 3).reshape(t, heads * hd)


def gpt2_block(spec: ModelSpec, w: dict, x: np.ndarray, cache: KVCache, layer: int, pos: int) -> np.ndarray:
    t, d, hd = x.shape[0], spec.hidden_size, spec.head_dim
    h = layer_norm(x, w["ln_1.weight"], w["ln_1.bias"], spec.norm_eps)
    qkv = linear(h, w["attn.c_attn.weight"], w["attn.c_attn.bias"])
    q = qkv[:, :d].reshape(t, spec.num_heads, hd)
    k = qkv[:, d:2 * d].reshape(t, spec.num_heads, hd)
    cache.store(layer, pos, k, qkv[:, 2 * d:].reshape(t, spec.num_heads, hd))
    a = attention(q, cache, layer, pos, hd ** -0.5)
    x = x + linear(a, w["attn.c_proj.weight"], w["attn.c_proj.bias"])
    h = layer_norm(x, w["ln_2.weight"], w["ln_2.bias"], spec.norm_eps)
    m = linear(h, w["mlp.c_fc.weight"], w["mlp.c_fc.bias"], activation=spec.activation)
    x += linear(m, w["mlp.c_proj.weight"], w["mlp.c_proj.bias"])
    return x


def llama_attention(spec: ModelSpec, w: dict, rope: Rope, x: np.ndarray, cache: KVCache, layer: int,
                    pos: int) -> np.ndarray:
    """Pre-norm GQA self-attention with RoPE; returns x + attention(x)."""
    t, hd = x.shape[0], spec.head_dim
    h = rms_norm(x, w["input_layernorm.weight"], spec.norm_eps)
    q, k, v = linears(h, [w[f"self_attn.{p}_proj.weight"] for p in "qkv"],
                      [w.get(f"self_attn.{p}_proj.bias") for p in "qkv"])
    q = rope.apply(q.reshape(t, spec.num_heads, hd), pos)
    k = rope.apply(k.reshape(t, spec.num_kv_heads, hd), pos)
    cache.store(layer, pos, k, v.reshape(t, spec.num_kv_heads, hd))
    a = attention(q, cache, layer, pos, hd ** -0.5)
    return x + linear(a, w["self_attn.o_proj.weight"], w.get("self_attn.o_proj.bias"))


def llama_block(spec: ModelSpec, w: dict, rope: Rope, x: np.ndarray, cache: KVCache, layer: int,
                pos: int) -> np.ndarray:
    x = llama_attention(spec, w, rope, x, cache, layer, pos)
    h = rms_norm(x, w["post_attention_layernorm.weight"], spec.norm_eps)
    x += swiglu(h, w["mlp.gate_proj.weight"], w["mlp.up_proj.weight"], w["mlp.down_proj.weight"],
                (w.get("mlp.gate_proj.bias"), w.get("mlp.up_proj.bias"), w.get("mlp.down_proj.bias")))
    return x


def head(spec: ModelSpec, w: dict, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Final norm + output projection for the rows of x."""
    if spec.family == "gpt2":
        h = layer_norm(x, w["ln_f.weight"], w["ln_f.bias"], spec.norm_eps)
    else:
        h = rms_norm(x, w["norm.weight"], spec.norm_eps)
    return linear(h, w["lm_head"], out=out)
