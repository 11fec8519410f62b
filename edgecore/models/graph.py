"""The layer graph: what each layer costs in memory and compute.

The planner splits these layers into consecutive groups under a budget, so
the numbers must be honest:
- weight_bytes: what must be resident while the layer runs. Weights run in
  their stored type (F32, F16, BF16 or a GGML block type), used in place
  from the mapped file, so a layer holds its stored bytes. Exceptions, each
  a copy in a pool buffer: 1-D tensors (norms, biases) not stored as F32 are
  widened to float32, and GPT-2 Conv1D weights ([in, out]) not stored as
  F32 are transposed to [out, in] in their type. A tensor shared by two
  layers (a tied embedding/head) is counted in the layer that reads all of
  it (the head); the embedding lookup only touches the rows it gathers.
- convert_scratch_bytes: mapped source pages held while one tensor is
  copied (the largest copied tensor in the layer).
- kv_bytes_per_token: K and V cache for this layer, float32.
- activation_bytes(tokens, context): the largest set of live float32
  buffers while the layer runs a step of `tokens` new tokens attending over
  `context` positions.
- expert_bytes: a MoE layer's one expert as an expert cache holds it: its
  gate, up and down matrices in their stored type, each part padded to
  EXPERT_PART_ALIGN bytes in one buffer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgecore.models.layout import LayerLayout, TensorSpec, all_tensors
from edgecore.models.spec import ModelSpec
from edgecore.weights.ggml_types import GGML_TYPES_BY_NAME

PAGE = 4096
F32 = 4
EXPERT_PART_ALIGN = 64  # the kernels' widest alignment need; each expert matrix starts on it
# roles of MoE expert tensors holding every expert of a layer (HF fused, GGUF stacked)
ALL_EXPERT_ROLES = ("moe.gate_up", "moe.down", "moe.gate_exps", "moe.up_exps", "moe.down_exps")


def stored_bytes(dtype: str, shape: tuple[int, ...]) -> int:
    """Bytes of a tensor of this shape stored as `dtype` (a safetensors
    float dtype or a GGML type name): blocks along the innermost dimension."""
    t = GGML_TYPES_BY_NAME[dtype]
    return math.prod(shape[:-1]) * t.row_bytes(shape[-1]) if shape else t.block_bytes


def padded(nbytes: int) -> int:
    return -(-nbytes // EXPERT_PART_ALIGN) * EXPERT_PART_ALIGN


def copied_in_pool(t: TensorSpec, dtype: str) -> bool:
    """Whether the runtime copies this tensor into a pool buffer instead of
    using it in place (see the module doc; misaligned views aside)."""
    return dtype != "F32" and (len(t.shape) == 1 or t.transposed)


@dataclass(frozen=True)
class LayerCost:
    name: str
    kind: str  # embed | block | head
    index: int
    weight_bytes: int
    file_bytes: int
    convert_scratch_bytes: int
    kv_bytes_per_token: int
    macs_per_token: int  # multiply-adds per token, excluding attention over the context
    expert_bytes: int = 0  # MoE: stored bytes of one expert as an expert cache holds it (0 for dense layers)
    num_experts: int = 0
    row_bytes_per_token: int = 0  # embed: page-rounded bytes gathered per token
    experts_cached: bool = False  # MoE: experts live in an expert cache, not in weight_bytes

    def resident_bytes(self, tokens: int) -> int:
        """Bytes that must be resident to run this layer on `tokens` tokens."""
        if self.kind == "embed":
            return min(self.weight_bytes, tokens * self.row_bytes_per_token)
        return self.weight_bytes


class LayerGraph:
    def __init__(self, spec: ModelSpec, layouts: list[LayerLayout], dtypes: dict[str, str],
                 experts_cached: bool = False):
        """experts_cached: cost MoE blocks without their experts (an expert
        cache holds those under its own share of the budget); copying one
        expert out of the mapped file then counts as conversion scratch."""
        self.spec = spec
        self.layouts = layouts
        self.dtypes = dtypes
        self.experts_cached = experts_cached
        self.layers = [_layer_cost(spec, lay, dtypes, experts_cached) for lay in layouts]

    def with_experts_cached(self) -> LayerGraph:
        return LayerGraph(self.spec, self.layouts, self.dtypes, experts_cached=True)

    @property
    def moe_layers(self) -> int:
        return sum(1 for layer in self.layers if layer.num_experts)

    @property
    def expert_bytes(self) -> int:
        """Bytes of one expert in an expert cache (0 for a dense model)."""
        return max((layer.expert_bytes for layer in self.layers), default=0)

    def total_weight_bytes(self, tokens: int = 1) -> int:
        """Resident bytes to hold every layer at once (tied tensors once)."""
        return sum(layer.resident_bytes(tokens) for layer in self.layers)

    @property
    def file_bytes(self) -> int:
        """Stored bytes of every tensor the model uses, a tied one once."""
        return sum(stored_bytes(self.dtypes.get(t.name, "F32"), t.shape) for t in all_tensors(self.layouts).values())

    @property
    def kv_bytes_per_token(self) -> int:
        return sum(layer.kv_bytes_per_token for layer in self.layers)

    def activation_bytes(self, layer: LayerCost, tokens: int, context: int, all_logits: bool = False) -> int:
        s = self.spec
        if layer.kind == "embed":
            return 2 * tokens * s.hidden_size * F32
        if layer.kind == "head":
            rows = tokens if all_logits else 1
            return (rows * s.vocab_size + 2 * tokens * s.hidden_size) * F32
        q_dim = s.num_heads * s.head_dim
        qkv = tokens * (q_dim + 2 * s.kv_dim)
        scores = 2 * s.num_heads * tokens * context  # scores + softmax probabilities
        mlp = (3 if s.family != "gpt2" else 1) * tokens * s.intermediate_size
        if s.is_moe:
            mlp += tokens * (s.num_experts + 2 * s.experts_per_token)  # router logits, ids, weights
        residual = 3 * tokens * s.hidden_size  # x, normed x, block output
        # the 8-bit copy of a linear call's input, and of its residual with q8x2 (at most 1.25 bytes
        # per element in either block format); one buffer serves every block (engine.DecoderBlock)
        quantized = 2 * tokens * max(s.hidden_size, q_dim, s.intermediate_size) * 5 // 4
        return (residual + qkv + scores + tokens * q_dim + mlp) * F32 + quantized

    def max_activation_bytes(self, tokens: int, context: int, all_logits: bool = False) -> int:
        return max(self.activation_bytes(layer, tokens, context, all_logits) for layer in self.layers)


def _layer_cost(spec: ModelSpec, layout: LayerLayout, dtypes: dict[str, str], experts_cached: bool) -> LayerCost:
    def tensor_bytes(ts) -> tuple[int, int, int]:
        """(resident bytes, file bytes, largest copied tensor's file bytes)."""
        resident = file = scratch = 0
        for t in ts:
            dtype = dtypes.get(t.name, "F32")
            stored = stored_bytes(dtype, t.shape)
            file += stored
            if copied_in_pool(t, dtype):
                resident += math.prod(t.shape) * F32 if len(t.shape) == 1 else stored
                scratch = max(scratch, stored)
            else:
                resident += stored
        return resident, file, scratch

    tensors = list(layout.tensors.values())
    if layout.kind == "embed":
        # only the gathered rows are touched: a row spans at most this many pages
        row_bytes = max(stored_bytes(dtypes.get(t.name, "F32"), t.shape[1:]) for t in tensors)
        row_pages = -(-row_bytes // PAGE) + 1
        full, file, _ = tensor_bytes(tensors)
        return LayerCost(layout.name, "embed", -1, full, file, 0, 0, 0,
                         row_bytes_per_token=len(tensors) * row_pages * PAGE)
    fused = [t for role, t in layout.tensors.items() if role in ALL_EXPERT_ROLES]
    dense = [t for role, t in layout.tensors.items() if role not in ALL_EXPERT_ROLES]
    resident, file, scratch = tensor_bytes(dense)
    expert_bytes = 0
    if layout.experts or fused:
        e_res, e_file, e_scratch = tensor_bytes(fused or [t for ex in layout.experts for t in ex.values()])
        n_experts = spec.num_experts
        # an expert cache holds one expert's part of each stacked tensor, or its own tensors, padded
        parts = [(t.name, t.shape[1:]) for t in fused] if fused else [
            (t.name, t.shape) for t in layout.experts[0].values()]
        expert_bytes = sum(padded(stored_bytes(dtypes.get(name, "F32"), shape)) for name, shape in parts)
        if experts_cached:  # one expert's source pages are mapped while it is copied out
            scratch = max(scratch, e_file // n_experts)
        else:
            resident, file, scratch = resident + e_res, file + e_file, max(scratch, e_scratch)
    kv = 2 * spec.kv_dim * F32 if layout.kind == "block" else 0
    d = spec.hidden_size
    if layout.kind == "head":
        macs = spec.vocab_size * d
    else:
        q_dim = spec.num_heads * spec.head_dim
        attn = d * (q_dim + 2 * spec.kv_dim) + q_dim * d
        ffn = (2 if spec.family == "gpt2" else 3) * d * spec.intermediate_size
        if spec.is_moe:
            ffn = ffn * spec.experts_per_token + spec.num_experts * d
        macs = attn + ffn
    return LayerCost(layout.name, layout.kind, layout.index, resident, file, scratch, kv, macs,
                     expert_bytes, spec.num_experts if expert_bytes else 0,
                     experts_cached=experts_cached and bool(expert_bytes))
