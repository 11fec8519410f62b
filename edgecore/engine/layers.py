"""Transformer math for one engine step: the rows of every item of a batch
(engine/batch.py StepBatch) as one [M, d] activation.

Linear layers run on the C linear kernels in the weights' stored type
(weight.py: q/k/v in one `ops.linear_multi` call, SwiGLU or GeGLU as one
gated `linear_multi`); norms, RoPE, the paged KV store
and attention run on the per-token C kernels, every row at its own position,
attention per sequence over its own pages (engine/kv.py). The residual add
is fused into the next norm: a block returns its last output as the pending
`delta`, which the next block's first norm (or the head's) adds to x. Every
intermediate lives in a Workspace allocated once per engine, so a decode
step crosses into C about ten times per layer and allocates nothing per
layer; `decoder_block` builds the C form of a llama layer (one call per
layer, bitwise the same), which the engine uses for layers whose weights
stay loaded. No code path depends on the batch: each row's result is what it
would be alone (given batch-invariant kernels).

Weights arrive as a dict role -> Weight for matrices, float32 array for
norms and biases (see `runtime.py`).
"""

from __future__ import annotations

import numpy as np

from edgecore import ops
from edgecore.engine.batch import StepBatch
from edgecore.engine.kv import PagedKV
from edgecore.engine.weight import gated_mlp, linear, linears
from edgecore.models.spec import ModelSpec


class Rope:
    """Rotary position tables for positions [0, context), from float64
    angles: rotate-half form, as in Hugging Face Llama/Mistral/Mixtral, or
    with `interleaved` the adjacent pairs (2i, 2i+1) of GGUF llama files."""

    def __init__(self, inv_freq: np.ndarray, context: int, interleaved: bool = False):
        angles = np.outer(np.arange(context, dtype=np.float64), inv_freq)
        self.cos = np.cos(angles).astype(np.float32)
        self.sin = np.sin(angles).astype(np.float32)
        self.interleaved = interleaved

    def apply(self, x: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """x: [M, heads, head_dim], rotated in place (row i at positions[i])."""
        return ops.rope(x, positions, self.cos, self.sin, interleaved=self.interleaved)


class Workspace:
    """Activation buffers for up to `rows` rows, reused by every layer of
    every step: ws(name, m) is a C-contiguous view of the first m rows.
    (Counted in the plan's activation bytes, which the engine reserves.)"""

    def __init__(self, spec: ModelSpec, rows: int):
        d, f = spec.hidden_size, spec.intermediate_size
        q, kv = spec.num_heads * spec.head_dim, spec.kv_dim
        widths = {"h": d, "a": q, "o": d, "m": d}
        if spec.family == "gpt2":
            widths.update(qkv=3 * d, f=f)
        else:
            widths.update(q=q, k=kv, v=kv, g=f, u=f)
        self._buffers = {name: np.empty((rows, w), np.float32) for name, w in widths.items()}

    def __call__(self, name: str, m: int) -> np.ndarray:
        return self._buffers[name][:m]

    def full(self, name: str) -> np.ndarray:
        """The whole buffer (every row), for a DecoderBlock to write into."""
        return self._buffers[name]


def attention(spec: ModelSpec, q: np.ndarray, k: np.ndarray, v: np.ndarray, kv: PagedKV, layer: int,
              batch: StepBatch, out: np.ndarray) -> np.ndarray:
    """Store the rows' k, v [M, kv_heads, head_dim] in their sequences'
    pages, then causal GQA attention of q [M, heads, head_dim] over each
    row's own sequence into out [M, heads * head_dim]."""
    keys, values = kv.keys[layer], kv.values[layer]
    ops.kv_store(k, v, keys, values, batch.table, batch.starts, batch.pos0)
    return ops.attention(q, keys, values, batch.table, batch.starts, batch.pos0, scale=spec.attention_scale,
                         window=spec.window(layer), out=out)


def _norm(spec: ModelSpec, w: dict, name: str, x: np.ndarray, delta: np.ndarray | None, out: np.ndarray):
    """x += delta (when pending), then the block's norm of x into out (may
    be x itself without delta)."""
    if spec.family == "gpt2":
        return ops.layer_norm(x, w[name + ".weight"], w[name + ".bias"], spec.norm_eps, residual=delta, out=out)
    return ops.rms_norm(x, w[name + ".weight"], spec.norm_eps, residual=delta, out=out,
                        unit_offset=spec.norm_unit_offset)


def gpt2_block(spec: ModelSpec, w: dict, x: np.ndarray, delta, kv: PagedKV, layer: int, batch: StepBatch,
               ws: Workspace) -> np.ndarray:
    """One GPT-2 block on x (updated in place); returns its MLP output, the
    next pending delta."""
    m, hd, n = x.shape[0], spec.head_dim, spec.num_heads
    h = _norm(spec, w, "ln_1", x, delta, ws("h", m))
    qkv = linear(h, w["attn.c_attn.weight"], w["attn.c_attn.bias"], out=ws("qkv", m))
    heads = qkv.reshape(m, 3 * n, hd)  # q, k, v heads side by side in each row (strided views)
    a = attention(spec, heads[:, :n], heads[:, n:2 * n], heads[:, 2 * n:], kv, layer, batch, ws("a", m))
    proj = linear(a, w["attn.c_proj.weight"], w["attn.c_proj.bias"], out=ws("o", m))
    h = _norm(spec, w, "ln_2", x, proj, h)
    f = linear(h, w["mlp.c_fc.weight"], w["mlp.c_fc.bias"], activation=spec.activation, out=ws("f", m))
    return linear(f, w["mlp.c_proj.weight"], w["mlp.c_proj.bias"], out=ws("m", m))


def llama_attention(spec: ModelSpec, w: dict, rope: Rope, x: np.ndarray, delta, kv: PagedKV, layer: int,
                    batch: StepBatch, ws: Workspace) -> np.ndarray:
    """x += delta, then pre-norm GQA self-attention with RoPE; returns the
    attention output (the caller fuses its residual add into the next norm)."""
    m, hd = x.shape[0], spec.head_dim
    h = _norm(spec, w, "input_layernorm", x, delta, ws("h", m))
    q, k, v = linears(h, [w[f"self_attn.{p}_proj.weight"] for p in "qkv"],
                      [w.get(f"self_attn.{p}_proj.bias") for p in "qkv"], outs=[ws("q", m), ws("k", m), ws("v", m)])
    q = rope.apply(q.reshape(m, spec.num_heads, hd), batch.positions)
    k = rope.apply(k.reshape(m, spec.num_kv_heads, hd), batch.positions)
    a = attention(spec, q, k, v.reshape(m, spec.num_kv_heads, hd), kv, layer, batch, ws("a", m))
    return linear(a, w["self_attn.o_proj.weight"], w.get("self_attn.o_proj.bias"), out=ws("o", m))


def decoder_block(spec: ModelSpec, w: dict, rope: Rope, kv: PagedKV, layer: int, ws: Workspace,
                  scratch: np.ndarray) -> ops.DecoderBlock:
    """The C form of llama_block or gemma3_block (ops.DecoderBlock; `rope`:
    the layer's own), or for a MoE layer of llama_attention (its sparse
    MLP stays in Python): the same kernels in
    the same order over the same workspace buffers, one call per step
    instead of ~10 (bitwise the Python layers' result). scratch: uint8, at
    least decoder_block_scratch(...) bytes, shared by every block (steps run
    one at a time)."""
    def proj(role: str, out: str):
        weight = w[role + ".weight"]
        return weight.data, weight.wtype, w.get(role + ".bias"), weight.transposed, ws.full(out)

    roles = _block_roles(spec)
    refine = any(w[f"{role}.weight"].refine for role in roles)
    gemma = spec.family == "gemma3"
    ffn_norm = w["pre_feedforward_layernorm.weight" if gemma else "post_attention_layernorm.weight"]
    mlp = None if spec.is_moe else (ffn_norm, proj("mlp.gate_proj", "g"), proj("mlp.up_proj", "u"),
                                    proj("mlp.down_proj", "m"))
    extra = {}
    if gemma:  # gemma3_block's norms, in its order
        extra = dict(qk_norm=(w["self_attn.q_norm.weight"], w["self_attn.k_norm.weight"]),
                     post_norms=(w["post_attention_layernorm.weight"], w["post_feedforward_layernorm.weight"]),
                     unit_offset=spec.norm_unit_offset, mlp_activation=spec.activation)
    return ops.DecoderBlock(
        attn_norm=w["input_layernorm.weight"], q=proj("self_attn.q_proj", "q"), k=proj("self_attn.k_proj", "k"),
        v=proj("self_attn.v_proj", "v"), o=proj("self_attn.o_proj", "o"), mlp=mlp,
        h=ws.full("h"), a=ws.full("a"), n_heads=spec.num_heads, head_dim=spec.head_dim, eps=spec.norm_eps,
        scale=spec.attention_scale, window=spec.window(layer), refine=refine, cos=rope.cos, sin=rope.sin,
        interleaved=rope.interleaved, k_cache=kv.keys[layer], v_cache=kv.values[layer], scratch=scratch, **extra)


_BLOCK_ROLES = tuple(f"self_attn.{p}_proj" for p in "qkvo") + tuple(f"mlp.{p}_proj" for p in ("gate", "up", "down"))


def _block_roles(spec: ModelSpec) -> tuple[str, ...]:
    return _BLOCK_ROLES[:4] if spec.is_moe else _BLOCK_ROLES


def decoder_block_scratch(spec: ModelSpec, w: dict, rows: int) -> int:
    """Scratch bytes decoder_block's linear calls need at `rows` rows."""
    def need(roles, k):
        weights = [w[role + ".weight"] for role in roles]
        return ops.linear_scratch_bytes([x.wtype for x in weights], rows, k, refine=any(x.refine for x in weights))

    q_dim = spec.num_heads * spec.head_dim
    attention = max(need(_BLOCK_ROLES[:3], spec.hidden_size), need(_BLOCK_ROLES[3:4], q_dim))
    if spec.is_moe:
        return attention
    return max(attention, need(_BLOCK_ROLES[4:6], spec.hidden_size), need(_BLOCK_ROLES[6:], spec.intermediate_size))


def fits_decoder_block(spec: ModelSpec, w: dict) -> bool:
    """Whether a llama, gemma3 or mixtral layer can run as a DecoderBlock
    (for mixtral, its attention): a SwiGLU (GeGLU for gemma3) MLP, and
    weights in one layout (the C linear call takes one per call, as weight.linears
    does; a mixed layer runs op by op)."""
    roles = _block_roles(spec)
    mlp_act = "gelu_tanh" if spec.family == "gemma3" else "silu"
    if spec.family not in ("llama", "mixtral", "gemma3") or spec.activation != mlp_act or \
            any(role + ".weight" not in w for role in roles):
        return False
    return len({w[role + ".weight"].transposed for role in roles}) == 1


def llama_block(spec: ModelSpec, w: dict, rope: Rope, x: np.ndarray, delta, kv: PagedKV, layer: int,
                batch: StepBatch, ws: Workspace) -> np.ndarray:
    m = x.shape[0]
    a = llama_attention(spec, w, rope, x, delta, kv, layer, batch, ws)
    h = _norm(spec, w, "post_attention_layernorm", x, a, ws("h", m))
    return gated_mlp(h, w["mlp.gate_proj.weight"], w["mlp.up_proj.weight"], w["mlp.down_proj.weight"],
                     (w.get("mlp.gate_proj.bias"), w.get("mlp.up_proj.bias"), w.get("mlp.down_proj.bias")),
                     (ws("g", m), ws("u", m), ws("m", m)))


def gemma3_block(spec: ModelSpec, w: dict, rope: Rope, x: np.ndarray, delta, kv: PagedKV, layer: int,
                 batch: StepBatch, ws: Workspace) -> np.ndarray:
    """One Gemma 3 block, as Hugging Face's Gemma3DecoderLayer: x += delta,
    pre-norm attention with RMSNorm on every query and key head before RoPE
    (`rope`: this layer's, local or global), the layer's window, and a norm
    on the attention output before its residual add; then a pre- and
    post-normed GeGLU MLP, whose normed output is the next delta."""
    m, hd = x.shape[0], spec.head_dim
    h = _norm(spec, w, "input_layernorm", x, delta, ws("h", m))
    q, k, v = linears(h, [w[f"self_attn.{p}_proj.weight"] for p in "qkv"], outs=[ws("q", m), ws("k", m), ws("v", m)])
    q, k = (_norm(spec, w, f"self_attn.{p}_norm", t.reshape(-1, hd), None, t.reshape(-1, hd)) for p, t in
            (("q", q), ("k", k)))
    q = rope.apply(q.reshape(m, spec.num_heads, hd), batch.positions)
    k = rope.apply(k.reshape(m, spec.num_kv_heads, hd), batch.positions)
    a = attention(spec, q, k, v.reshape(m, spec.num_kv_heads, hd), kv, layer, batch, ws("a", m))
    o = linear(a, w["self_attn.o_proj.weight"], out=ws("o", m))
    o = _norm(spec, w, "post_attention_layernorm", o, None, o)
    h = _norm(spec, w, "pre_feedforward_layernorm", x, o, h)
    f = gated_mlp(h, w["mlp.gate_proj.weight"], w["mlp.up_proj.weight"], w["mlp.down_proj.weight"],
                  outs=(ws("g", m), ws("u", m), ws("m", m)), activation=spec.activation)
    return _norm(spec, w, "post_feedforward_layernorm", f, None, f)


def head(spec: ModelSpec, w: dict, x: np.ndarray, delta, ws: Workspace, rows: np.ndarray | None = None,
         out: np.ndarray | None = None) -> np.ndarray:
    """x += delta, final norm, output projection of x's `rows` (all rows
    when None, into out)."""
    name = "ln_f" if spec.family == "gpt2" else "norm"
    h = _norm(spec, w, name, x, delta, ws("h", x.shape[0]))
    return linear(h if rows is None else h[rows], w["lm_head"], out=out)
