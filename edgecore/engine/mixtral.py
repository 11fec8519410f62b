"""Mixtral's sparse mixture-of-experts block: GQA attention (as Llama), then
a router picks top-k experts per token and each chosen expert's SwiGLU MLP
runs on the tokens routed to it, weighted by the renormalised softmax of the
router logits (the Mixtral rule, as `ops.route_topk` computes it).

Experts run in increasing id order and their outputs are summed in that
order, as Hugging Face does, so results match it to float rounding.
"""

from __future__ import annotations

import numpy as np

from edgecore import ops
from edgecore.engine.batch import StepBatch
from edgecore.engine.kv import PagedKV
from edgecore.engine.layers import Rope, Workspace, llama_attention
from edgecore.engine.weight import Weight, gated_mlp, linear
from edgecore.models.spec import ModelSpec


def expert_weights(w: dict, expert: int, intermediate: int) -> tuple[Weight, Weight, Weight]:
    """(gate [I, d], up [I, d], down [d, I]) for every checkpoint layout."""
    if "moe.gate_up" in w:  # fused: gate_up [E, 2I, d] (gate rows first), down [E, d, I]
        gate_up = w["moe.gate_up"][expert]
        return gate_up.rows(0, intermediate), gate_up.rows(intermediate, 2 * intermediate), w["moe.down"][expert]
    if "moe.gate_exps" in w:  # GGUF stacked: gate, up [E, I, d], down [E, d, I]
        return w["moe.gate_exps"][expert], w["moe.up_exps"][expert], w["moe.down_exps"][expert]
    e = w["experts"][expert]
    return e["w1"], e["w3"], e["w2"]


def moe_mlp(spec: ModelSpec, w: dict, h: np.ndarray, experts=None, route=None) -> tuple[np.ndarray, np.ndarray]:
    """Sparse MLP of h [T, d]. `experts(e)` returns an expert's (gate, up,
    down) weights (default: from w, all resident); `route(logits)` returns
    (ids, weights) [T, k] (default: plain top-k). Returns (out [T, d],
    router logits [T, E])."""
    logits = linear(h, w["moe.gate.weight"])
    ids, weights = route(logits) if route else ops.route_topk(logits, spec.experts_per_token)
    get = experts or (lambda e: expert_weights(w, e, spec.intermediate_size))
    out = np.zeros_like(h)
    for e in np.unique(ids):
        rows, slot = np.nonzero(ids == e)
        gate, up, down = get(int(e))
        y = gated_mlp(np.ascontiguousarray(h[rows]), gate, up, down)
        y *= weights[rows, slot][:, None]
        out[rows] += y
    return out, logits


def mixtral_block(spec: ModelSpec, w: dict, rope: Rope, x: np.ndarray, delta, kv: PagedKV, layer: int,
                  batch: StepBatch, ws: Workspace, experts=None, route=None, attention=None) -> np.ndarray:
    """x += delta, attention, x += its output, then the sparse MLP; returns
    the MLP output (the next delta). attention: a callable doing the first
    part in one call (an attention-only ops.DecoderBlock's run), bitwise
    llama_attention's."""
    a = attention() if attention else llama_attention(spec, w, rope, x, delta, kv, layer, batch, ws)
    h = ops.rms_norm(x, w["post_attention_layernorm.weight"], spec.norm_eps, residual=a, out=ws("h", x.shape[0]))
    out, _ = moe_mlp(spec, w, h, experts, route)
    return out
