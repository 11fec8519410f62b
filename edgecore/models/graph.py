"""The layer graph: what each layer costs in memory and compute.

The planner splits these layers into consecutive groups under a budget, so
the numbers must be honest:
- weight_bytes: what must be resident while the layer runs. F32 tensors are
  used in place from the mapped file (their pages); F16/BF16 tensors are
  widened into float32 buffers (2x the file bytes). A tensor shared by two
  layers (a tied embedding/head) is counted in the layer that reads all of
  it (the head); the embedding lookup only touches the rows it gathers.
- convert_scratch_bytes: mapped F16/BF16 pages held while one tensor is
  widened (the largest such tensor in the layer).
- kv_bytes_per_token: K and V cache for this layer, float32.
- activation_bytes(tokens, context): the largest set of live float32
  buffers while the layer runs a step of `tokens` new tokens attending over
  `context` positions.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgecore.models.layout import LayerLayout
from edgecore.models.spec import ModelSpec

PAGE = 4096
F32 = 4


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
    expert_bytes: int = 0  # MoE: float32 bytes of one expert (0 for dense layers)
    num_experts: int = 0
    row_bytes_per_token: int = 0  # embed: page-rounded bytes gathered per token

    def resident_bytes(self, tokens: int) -> int:
        """Bytes that must be resident to run this layer on `tokens` tokens."""
        if self.kind == "embed":
            return min(self.weight_bytes, tokens * self.row_bytes_per_token)
        return self.weight_bytes


class LayerGraph:
    def __init__(self, spec: ModelSpec, layouts: list[LayerLayout], dtypes: dict[str, str]):
        self.spec = spec
        self.layouts = layouts
        self.layers = [_layer_cost(spec, lay, dtypes) for lay in layouts]

    def total_weight_bytes(self, tokens: int = 1) -> int:
        """Resident bytes to hold every layer at once (tied tensors once)."""
        return sum(layer.resident_bytes(tokens) for layer in self.layers)

    @property
    def file_bytes(self) -> int:
        return sum(layer.file_bytes for layer in self.layers)

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
        return (residual + qkv + scores + tokens * q_dim + mlp) * F32

    def max_activation_bytes(self, tokens: int, context: int, all_logits: bool = False) -> int:
        return max(self.activation_bytes(layer, tokens, context, all_logits) for layer in self.layers)


def _layer_cost(spec: ModelSpec, layout: LayerLayout, dtypes: dict[str, str]) -> LayerCost:
    def tensor_bytes(ts) -> tuple[int, int, int]:
        """(resident float32 bytes, file bytes, largest reduced-precision tensor)."""
        resident = file = scratch = 0
        for t in ts:
            n = 1
            for dim in t.shape:
                n *= dim
            size = 2 if dtypes.get(t.name) in ("F16", "BF16") else F32
            file += n * size
            resident += n * F32
            if size != F32:
                scratch = max(scratch, n * size)
        return resident, file, scratch

    tensors = list(layout.tensors.values())
    if layout.kind == "embed":
        # only the gathered rows are touched: a row spans at most this many pages
        row_pages = -(-spec.hidden_size * F32 // PAGE) + 1
        full, file, _ = tensor_bytes(tensors)
        return LayerCost(layout.name, "embed", -1, full, file, 0, 0, 0,
                         row_bytes_per_token=len(tensors) * row_pages * PAGE)
    resident, file, scratch = tensor_bytes(tensors)
    expert_bytes = 0
    if layout.experts:
        e_res, e_file, e_scratch = tensor_bytes([t for ex in layout.experts for t in ex.values()])
        resident, file, scratch = resident + e_res, file + e_file, max(scratch, e_scratch)
        expert_bytes = e_res // len(layout.experts)
    elif spec.is_moe and layout.kind == "block":  # fused layout: experts live in two stacked tensors
        expert_bytes = 3 * spec.intermediate_size * spec.hidden_size * F32
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
                     expert_bytes, spec.num_experts if layout.kind == "block" else 0)
