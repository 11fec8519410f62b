"""What a Hugging Face checkpoint becomes in a GGUF file: llama.cpp's tensor
names, shapes and architecture metadata, tensor by tensor.

A `Job` is one GGUF tensor; its `parts` are read one at a time (a stacked
expert tensor has one part per expert), so the writer never holds more than
one source tensor in float32. Transformations follow llama.cpp's converter
(convert_hf_to_gguf.py): GPT-2's Conv1D weights are transposed to
[out, in]; Llama's Q and K rows are permuted from rotate-half pairs to the
interleaved pairs llama.cpp's RoPE rotates; Mixtral's experts are stacked
into `ffn_{gate,up,down}_exps` [experts, rows, K]; Gemma 3's norm weights,
stored as w - 1 by Hugging Face, are written as 1 + w (llama.cpp's
convention; its Gemma RoPE rotates halves, so Q/K stay as they are).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgecore.models.gguf_config import GEMMA3_LOCAL_ROPE_BASE, gemma3_query_scale
from edgecore.models.gguf_layout import gguf_layout
from edgecore.models.layout import LayerLayout, all_tensors
from edgecore.models.spec import GEMMA3_WINDOW_PATTERN, ModelError, ModelSpec, pattern_windows

# checkpoint entries that are not weights (attention masks, cached RoPE tables)
BUFFER_SUFFIXES = (".attn.bias", ".attn.masked_bias", ".rotary_emb.inv_freq")

KEEP, WEIGHT, HEAD = "keep", "weight", "head"  # stays F32 | takes --type | takes --head-type


@dataclass(frozen=True)
class Part:
    sources: tuple[str, ...]  # checkpoint tensors it reads (their pages are released after)
    load: Callable[[], np.ndarray]  # float32, C-contiguous: [rows, K], or [n] for a 1-D tensor


@dataclass(frozen=True)
class Job:
    name: str  # GGUF tensor name
    shape: tuple[int, ...]  # NumPy order (GGUF stores it reversed); the last axis is K
    role: str  # KEEP | WEIGHT | HEAD
    parts: tuple[Part, ...]

    @property
    def rows(self) -> int:
        return math.prod(self.shape[:-1])


@dataclass(frozen=True)
class Plan:
    arch: str  # general.architecture
    jobs: tuple[Job, ...]
    metadata: tuple[tuple[str, str, object], ...]  # (key, kind: u32 | f32 | str | bool, value)


# (checkpoint tensor name, index along its first axis or None) -> float32 array;
# an index widens only that slice of an F16/BF16 tensor
Reader = Callable[[str, int | None], np.ndarray]


def plan_model(spec: ModelSpec, layers: list[LayerLayout], names: set[str], read: Reader) -> Plan:
    """The GGUF tensors and metadata for a validated checkpoint (see
    `models.layout.validate`). Refuses checkpoint tensors it would drop."""
    expected = set(all_tensors(layers))
    if spec.tie_embeddings:
        expected.add("lm_head.weight")  # a saved copy of the tied embedding is not a separate head
    extra = sorted(n for n in names - expected if not n.endswith(BUFFER_SUFFIXES))
    if extra:
        more = f" (and {len(extra) - 5} more)" if len(extra) > 5 else ""
        raise ModelError(f"checkpoint has tensors the {spec.family} layout does not use: "
                         f"{', '.join(extra[:5])}{more}; they would be lost in the GGUF file")
    if spec.family == "gpt2":
        return Plan("gpt2", tuple(_gpt2_jobs(spec, layers, read)), _gpt2_metadata(spec))
    if spec.family == "gemma3":
        _check_gemma3_expressible(spec)
        return Plan("gemma3", tuple(_gemma3_jobs(spec, layers, read)), _gemma3_metadata(spec))
    return Plan("llama", tuple(_llama_jobs(spec, layers, read)), _llama_metadata(spec))


def _plain(name: str, tensor: str, role: str, shape: tuple[int, ...], read: Reader,
           transform: Callable[[np.ndarray], np.ndarray] | None = None) -> Job:
    def load() -> np.ndarray:
        x = read(tensor, None)
        return np.ascontiguousarray(transform(x) if transform else x)
    return Job(name, shape, role, (Part((tensor,), load),))


def _gpt2_jobs(spec: ModelSpec, layers: list[LayerLayout], read: Reader):
    d, i_dim = spec.hidden_size, spec.intermediate_size
    embed, *blocks, head = layers
    yield _plain("token_embd.weight", embed.tensors["wte"].name, HEAD, (spec.vocab_size, d), read)
    yield _plain("position_embd.weight", embed.tensors["wpe"].name, WEIGHT, (spec.max_positions, d), read)
    # Conv1D stores [in, out]; GGUF (like every other layer) wants [out, in]
    weights = {"attn.c_attn": ("attn_qkv", 3 * d, d), "attn.c_proj": ("attn_output", d, d),
               "mlp.c_fc": ("ffn_up", i_dim, d), "mlp.c_proj": ("ffn_down", d, i_dim)}
    norms = {"ln_1": "attn_norm", "ln_2": "ffn_norm"}
    for layer in blocks:
        b, t = f"blk.{layer.index}.", layer.tensors
        for role, (name, rows, k) in weights.items():
            yield _plain(f"{b}{name}.weight", t[f"{role}.weight"].name, WEIGHT, (rows, k), read, np.transpose)
            yield _plain(f"{b}{name}.bias", t[f"{role}.bias"].name, KEEP, (rows,), read)
        for role, name in norms.items():
            for p in ("weight", "bias"):
                yield _plain(f"{b}{name}.{p}", t[f"{role}.{p}"].name, KEEP, (d,), read)
    for p in ("weight", "bias"):
        yield _plain(f"output_norm.{p}", head.tensors[f"ln_f.{p}"].name, KEEP, (d,), read)
    if not spec.tie_embeddings:
        yield _plain("output.weight", head.tensors["lm_head"].name, HEAD, (spec.vocab_size, d), read)


def permute_rotary(w: np.ndarray, heads: int) -> np.ndarray:
    """Rows of a Q or K projection (weight or bias) reordered per head from
    rotate-half pairs (i, i + D/2) to adjacent pairs (2i, 2i + 1), as
    llama.cpp's converter does for the `llama` architecture."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _llama_jobs(spec: ModelSpec, layers: list[LayerLayout], read: Reader):
    d, i_dim, e = spec.hidden_size, spec.intermediate_size, spec.num_experts
    q_dim, kv_dim = spec.num_heads * spec.head_dim, spec.kv_dim
    embed, *blocks, head = layers
    yield _plain("token_embd.weight", embed.tensors["wte"].name, HEAD, (spec.vocab_size, d), read)
    if spec.rope is not None and spec.rope.scaling == "llama3":
        yield Job("rope_freqs.weight", (spec.head_dim // 2,), KEEP, (Part((), lambda: llama3_rope_factors(spec)),))

    def q_perm(x):
        return permute_rotary(x, spec.num_heads)

    def k_perm(x):
        return permute_rotary(x, spec.num_kv_heads)

    projections = {"q_proj": ("attn_q", q_dim, d, q_perm), "k_proj": ("attn_k", kv_dim, d, k_perm),
                   "v_proj": ("attn_v", kv_dim, d, None), "o_proj": ("attn_output", d, q_dim, None)}
    mlp = {"gate_proj": ("ffn_gate", i_dim, d), "up_proj": ("ffn_up", i_dim, d), "down_proj": ("ffn_down", d, i_dim)}
    for layer in blocks:
        b, t = f"blk.{layer.index}.", layer.tensors
        yield _plain(f"{b}attn_norm.weight", t["input_layernorm.weight"].name, KEEP, (d,), read)
        for role, (name, rows, k, perm) in projections.items():
            yield _plain(f"{b}{name}.weight", t[f"self_attn.{role}.weight"].name, WEIGHT, (rows, k), read, perm)
            if spec.attention_bias:
                yield _plain(f"{b}{name}.bias", t[f"self_attn.{role}.bias"].name, KEEP, (rows,), read, perm)
        yield _plain(f"{b}ffn_norm.weight", t["post_attention_layernorm.weight"].name, KEEP, (d,), read)
        if spec.is_moe:
            # the router stays F32, as llama.cpp's quantizer keeps ffn_gate_inp
            yield _plain(f"{b}ffn_gate_inp.weight", t["moe.gate.weight"].name, KEEP, (e, d), read)
            yield from _experts(spec, layer, read)
            continue
        for role, (name, rows, k) in mlp.items():
            yield _plain(f"{b}{name}.weight", t[f"mlp.{role}.weight"].name, WEIGHT, (rows, k), read)
            if spec.mlp_bias:
                yield _plain(f"{b}{name}.bias", t[f"mlp.{role}.bias"].name, KEEP, (rows,), read)
    yield _plain("output_norm.weight", head.tensors["norm.weight"].name, KEEP, (d,), read)
    if not spec.tie_embeddings:
        yield _plain("output.weight", head.tensors["lm_head"].name, HEAD, (spec.vocab_size, d), read)


def _check_gemma3_expressible(spec: ModelSpec) -> None:
    """A gemma3 GGUF carries only the window and the global RoPE: llama.cpp
    (and edgecore's reader) take the rest as constants. Refuse a checkpoint
    that differs from them rather than write a file that runs another model."""
    windows = {w for w in spec.layer_windows if w}
    problems = []
    if len(windows) != 1 or spec.layer_windows != pattern_windows(spec.num_layers, next(iter(windows))):
        problems.append(f"its layer pattern {spec.layer_windows} is not every {GEMMA3_WINDOW_PATTERN}th layer "
                        f"global, the rest with one window")
    scale = gemma3_query_scale(spec.hidden_size, spec.num_heads, spec.head_dim, spec.num_layers)
    if not math.isclose(spec.attention_scale, scale, rel_tol=1e-6):
        problems.append(f"query_pre_attn_scalar {spec.attention_scale ** -2:g} is not {scale ** -2:g}")
    local = spec.local_rope
    if local is None or local.theta != GEMMA3_LOCAL_ROPE_BASE or local.scaling != "default":
        problems.append(f"its local RoPE is not base {GEMMA3_LOCAL_ROPE_BASE:g} unscaled")
    if spec.rope.scaling not in ("default", "linear"):
        problems.append(f"RoPE scaling {spec.rope.scaling!r} has no gemma3 GGUF key")
    if problems:
        raise ModelError("this gemma3 checkpoint cannot be written as a GGUF file that llama.cpp and edgecore "
                         "read back as the same model: " + "; ".join(problems))


def _gemma3_jobs(spec: ModelSpec, layers: list[LayerLayout], read: Reader):
    """Every tensor under the name and shape edgecore's own gemma3 reader
    expects (models/gguf_layout.py, one table for both directions); 1-D
    tensors are the norms, written as 1 + w."""
    def plus_one(x):
        return x + np.float32(1.0)

    targets = gguf_layout(spec)
    for source, target in zip(layers, targets, strict=True):
        for role, t in target.tensors.items():
            if role == "lm_head" and spec.tie_embeddings:
                continue  # the embedding itself
            kind = KEEP if len(t.shape) == 1 else HEAD if role in ("wte", "lm_head") else WEIGHT
            yield _plain(t.name, source.tensors[role].name, kind, t.shape, read, plus_one if kind == KEEP else None)


def _gemma3_metadata(spec: ModelSpec) -> tuple:
    a = "gemma3"
    meta = _shared_metadata(a, spec) + [
        (f"{a}.attention.head_count_kv", "u32", spec.num_kv_heads),
        (f"{a}.attention.key_length", "u32", spec.head_dim),
        (f"{a}.attention.value_length", "u32", spec.head_dim),
        (f"{a}.attention.layer_norm_rms_epsilon", "f32", spec.norm_eps),
        (f"{a}.rope.freq_base", "f32", spec.rope.theta),
        (f"{a}.attention.sliding_window", "u32", max(spec.layer_windows)),
    ]
    if spec.rope.scaling == "linear":
        meta += [(f"{a}.rope.scaling.type", "str", "linear"), (f"{a}.rope.scaling.factor", "f32", spec.rope.factor)]
    return tuple(meta)


def _experts(spec: ModelSpec, layer: LayerLayout, read: Reader):
    """ffn_gate_exps / ffn_up_exps [E, I, d] and ffn_down_exps [E, d, I] from
    per-expert w1 (gate), w3 (up), w2 (down), or from the fused
    gate_up_proj [E, 2I, d] (gate first) and down_proj [E, d, I]."""
    d, i_dim, e = spec.hidden_size, spec.intermediate_size, spec.num_experts
    b = f"blk.{layer.index}."
    shapes = {"gate": (e, i_dim, d), "up": (e, i_dim, d), "down": (e, d, i_dim)}

    def part(tensor: str, j: int, rows: slice | None = None) -> Part:
        def load() -> np.ndarray:
            x = read(tensor, j)
            return np.ascontiguousarray(x if rows is None else x[rows])
        return Part((tensor,), load)

    def whole(tensor: str) -> Part:
        return Part((tensor,), lambda: np.ascontiguousarray(read(tensor, None)))

    if layer.experts:
        by_kind = {"gate": "w1", "up": "w3", "down": "w2"}
        for kind, role in by_kind.items():
            parts = tuple(whole(expert[role].name) for expert in layer.experts)
            yield Job(f"{b}ffn_{kind}_exps.weight", shapes[kind], WEIGHT, parts)
        return
    gate_up, down = layer.tensors["moe.gate_up"].name, layer.tensors["moe.down"].name
    halves = {"gate": slice(0, i_dim), "up": slice(i_dim, 2 * i_dim)}
    for kind in ("gate", "up"):
        yield Job(f"{b}ffn_{kind}_exps.weight", shapes[kind], WEIGHT,
                  tuple(part(gate_up, j, halves[kind]) for j in range(e)))
    yield Job(f"{b}ffn_down_exps.weight", shapes["down"], WEIGHT, tuple(part(down, j) for j in range(e)))


def llama3_rope_factors(spec: ModelSpec) -> np.ndarray:
    """`rope_freqs.weight` for Llama 3 RoPE scaling: llama.cpp divides each
    base frequency by its factor, so the factor is base / scaled."""
    rope = spec.rope
    plain = type(rope)(theta=rope.theta, dim=rope.dim)
    return (plain.inv_freq() / rope.inv_freq()).astype(np.float32)


def _shared_metadata(a: str, spec: ModelSpec) -> list:
    """The `{arch}.*` keys llama and gpt2 files both carry."""
    return [
        (f"{a}.vocab_size", "u32", spec.vocab_size),
        (f"{a}.context_length", "u32", spec.max_positions),
        (f"{a}.embedding_length", "u32", spec.hidden_size),
        (f"{a}.feed_forward_length", "u32", spec.intermediate_size),
        (f"{a}.block_count", "u32", spec.num_layers),
        (f"{a}.attention.head_count", "u32", spec.num_heads),
    ]


def _llama_metadata(spec: ModelSpec) -> tuple:
    a = "llama"
    meta = _shared_metadata(a, spec) + [
        (f"{a}.rope.dimension_count", "u32", spec.head_dim),
        (f"{a}.attention.head_count_kv", "u32", spec.num_kv_heads),
        (f"{a}.attention.layer_norm_rms_epsilon", "f32", spec.norm_eps),
        (f"{a}.rope.freq_base", "f32", spec.rope.theta),
    ]
    if spec.head_dim != spec.hidden_size // spec.num_heads:
        meta += [(f"{a}.attention.key_length", "u32", spec.head_dim),
                 (f"{a}.attention.value_length", "u32", spec.head_dim)]
    if spec.rope.scaling == "linear":
        meta += [(f"{a}.rope.scaling.type", "str", "linear"), (f"{a}.rope.scaling.factor", "f32", spec.rope.factor)]
    if spec.sliding_window:
        meta.append((f"{a}.attention.sliding_window", "u32", spec.sliding_window))
    if spec.is_moe:
        meta += [(f"{a}.expert_count", "u32", spec.num_experts),
                 (f"{a}.expert_used_count", "u32", spec.experts_per_token)]
    return tuple(meta)


def _gpt2_metadata(spec: ModelSpec) -> tuple:
    return tuple(_shared_metadata("gpt2", spec) + [("gpt2.attention.layer_norm_epsilon", "f32", spec.norm_eps)])
