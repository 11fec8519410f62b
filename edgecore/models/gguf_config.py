"""Model hyper-parameters from GGUF metadata (`{arch}.*` keys, llama.cpp's
names) as the same `ModelSpec` a Hugging Face config.json gives.

Architectures: `llama` (Llama 1-3, SmolLM2, TinyLlama, Mistral converted as
llama; with `{arch}.expert_count` a Mixtral-style MoE), `gpt2` and `gemma3`
(text; llama.cpp's converter stores Gemma's norms as 1 + w, and its RoPE
rotates halves, NEOX style, so neither needs undoing). llama.cpp's
converter permutes each head's Q/K rows so that its interleaved RoPE (pairs
2i, 2i+1) computes what rotate-half computes on the original rows; the spec
asks for that pairing (RopeSpec.interleaved) instead of un-permuting.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from edgecore.models.spec import GEMMA3_WINDOW_PATTERN, ModelError, ModelSpec, RopeSpec, pattern_windows
from edgecore.models.tokenizer_gguf import gguf_eos_token_ids

ARCHITECTURES = ("llama", "gpt2", "gemma3")
# llama.cpp's constants for gemma3 files, which do not store them: the RoPE base of the
# sliding-window layers, and the layer pattern (every sixth layer global)
GEMMA3_LOCAL_ROPE_BASE = 10000.0
GEMMA3_27B_LAYERS = 62  # Gemma 3 27B scales queries by (d / heads)^-1/2, the others by head_dim^-1/2


def gemma3_query_scale(d: int, heads: int, head_dim: int, layers: int) -> float:
    """The query scale llama.cpp gives a gemma3 file (it stores none)."""
    return float(d // heads if layers == GEMMA3_27B_LAYERS else head_dim) ** -0.5


def spec_from_gguf(metadata: Mapping[str, Any], tensors: Mapping[str, Any], source: str,
                   rope_freqs: np.ndarray | None = None) -> ModelSpec:
    """The spec of a GGUF model. `tensors`: name -> info (with .shape), used
    for the vocabulary size when the metadata has none and to tell tied from
    separate output heads. rope_freqs: the `rope_freqs.weight` tensor, if the
    file has one (Llama 3 frequency factors)."""
    meta = _Meta(metadata, source)
    arch = meta.string("general.architecture")
    if arch not in ARCHITECTURES:
        raise ModelError(f"{source}: GGUF architecture {arch!r} is not supported; supported: "
                         f"{', '.join(ARCHITECTURES)}")
    d = meta.positive(f"{arch}.embedding_length")
    heads = meta.positive(f"{arch}.attention.head_count")
    vocab = _vocab_size(meta, arch, tensors, source)
    common = dict(
        architecture=arch, vocab_size=vocab, hidden_size=d, num_layers=meta.positive(f"{arch}.block_count"),
        num_heads=heads, intermediate_size=meta.positive(f"{arch}.feed_forward_length"),
        max_positions=meta.positive(f"{arch}.context_length"), tie_embeddings="output.weight" not in tensors,
        bos_token_id=meta.optional_int("tokenizer.ggml.bos_token_id"),
        eos_token_ids=gguf_eos_token_ids(metadata, source), extra=dict(metadata),
    )
    if arch == "gpt2":
        if d % heads:
            raise ModelError(f"{source}: {arch}.embedding_length={d} is not divisible by "
                             f"{arch}.attention.head_count={heads}")
        return ModelSpec(family="gpt2", num_kv_heads=heads, head_dim=d // heads,
                         norm_eps=meta.positive_float(f"{arch}.attention.layer_norm_epsilon", 1e-5),
                         activation="gelu_tanh", attention_bias=True, mlp_bias=True, **common)

    kv_heads = meta.positive(f"{arch}.attention.head_count_kv", heads)
    if heads % kv_heads:
        raise ModelError(f"{source}: {arch}.attention.head_count={heads} is not a multiple of "
                         f"{arch}.attention.head_count_kv={kv_heads}")
    head_dim = meta.positive(f"{arch}.attention.key_length", 256 if arch == "gemma3" else d // heads)
    value_dim = meta.positive(f"{arch}.attention.value_length", head_dim)
    if value_dim != head_dim:
        raise ModelError(f"{source}: {arch}.attention.value_length={value_dim} differs from key_length "
                         f"{head_dim}; the engine needs equal key and value head sizes")
    if arch == "gemma3":
        return _gemma3(meta, d, heads, kv_heads, head_dim, common, source)
    moe = {}
    experts = meta.optional_int(f"{arch}.expert_count") or 0
    if experts:
        used = meta.positive(f"{arch}.expert_used_count")
        if not 1 <= used <= experts:
            raise ModelError(f"{source}: {arch}.expert_used_count={used} must be in [1, expert_count={experts}]")
        moe = dict(num_experts=experts, experts_per_token=used)
    return ModelSpec(family="mixtral" if experts else "llama", num_kv_heads=kv_heads, head_dim=head_dim,
                     norm_eps=meta.positive_float(f"{arch}.attention.layer_norm_rms_epsilon", 1e-5),
                     activation="silu", attention_bias="blk.0.attn_q.bias" in tensors,
                     rope=_rope(meta, arch, head_dim, rope_freqs, source), **moe, **common)


def _gemma3(meta: _Meta, d: int, heads: int, kv_heads: int, head_dim: int, common: dict,
            source: str) -> ModelSpec:
    arch = "gemma3"
    for key in ("attn_logit_softcapping", "final_logit_softcapping"):
        if meta.metadata.get(f"{arch}.{key}"):
            raise ModelError(f"{source}: GGUF metadata key {arch}.{key} is set; soft-capping is not supported")
    window = meta.positive(f"{arch}.attention.sliding_window")
    pattern = meta.positive(f"{arch}.attention.sliding_window_pattern", GEMMA3_WINDOW_PATTERN)
    layers = common["num_layers"]
    return ModelSpec(family="gemma3", num_kv_heads=kv_heads, head_dim=head_dim,
                     norm_eps=meta.positive_float(f"{arch}.attention.layer_norm_rms_epsilon", 1e-6),
                     activation="gelu_tanh", rope=_rope(meta, arch, head_dim, None, source, interleaved=False),
                     local_rope=RopeSpec(theta=GEMMA3_LOCAL_ROPE_BASE, dim=head_dim),
                     layer_windows=pattern_windows(layers, window, pattern),
                     attn_scale=gemma3_query_scale(d, heads, head_dim, layers), embed_scale=float(d) ** 0.5,
                     **common)


def _vocab_size(meta: _Meta, arch: str, tensors: Mapping[str, Any], source: str) -> int:
    vocab = meta.optional_int(f"{arch}.vocab_size")
    if vocab is not None:
        return vocab
    embed = tensors.get("token_embd.weight")
    if embed is None:
        raise ModelError(f"{source}: no {arch}.vocab_size key and no token_embd.weight tensor to read it from")
    return int(embed.shape[0])


def _rope(meta: _Meta, arch: str, head_dim: int, rope_freqs, source: str, interleaved: bool = True) -> RopeSpec:
    dim = meta.positive(f"{arch}.rope.dimension_count", head_dim)
    if dim != head_dim:
        raise ModelError(f"{source}: {arch}.rope.dimension_count={dim} rotates part of a {head_dim}-wide head; "
                         f"partial rotary embeddings are not supported")
    kind = meta.optional_string(f"{arch}.rope.scaling.type") or "none"
    factor = meta.positive_float(f"{arch}.rope.scaling.factor", 1.0)
    if kind not in ("none", "linear"):
        raise ModelError(f"{source}: {arch}.rope.scaling.type {kind!r} is not supported (none, linear)")
    factors = None
    if rope_freqs is not None:
        values = np.asarray(rope_freqs, np.float64).reshape(-1)
        if values.size != head_dim // 2 or not np.all(np.isfinite(values)) or np.any(values <= 0):
            raise ModelError(f"{source}: rope_freqs.weight must hold {head_dim // 2} positive frequency factors, "
                             f"got {values.size} values")
        factors = tuple(values.tolist())
    return RopeSpec(theta=meta.positive_float(f"{arch}.rope.freq_base", 10000.0), dim=head_dim,
                    scaling="linear" if kind == "linear" and factor != 1.0 else "default", factor=factor,
                    interleaved=interleaved, freq_factors=factors)


class _Meta:
    """Typed reads of GGUF metadata with one-line errors naming the key."""

    def __init__(self, metadata: Mapping[str, Any], source: str):
        self.metadata, self.source = metadata, source

    def string(self, key: str) -> str:
        value = self.metadata.get(key)
        if not isinstance(value, str):
            what = "missing" if value is None else f"not a string ({value!r})"
            raise ModelError(f"{self.source}: GGUF metadata key {key} is {what}")
        return value

    def optional_string(self, key: str) -> str | None:
        return None if key not in self.metadata else self.string(key)

    def optional_int(self, key: str) -> int | None:
        value = self.metadata.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ModelError(f"{self.source}: GGUF metadata key {key} must be a non-negative integer, got {value!r}")
        return int(value)

    def positive(self, key: str, default: int | None = None) -> int:
        value = self.optional_int(key)
        if value is None:
            if default is None:
                raise ModelError(f"{self.source}: GGUF metadata key {key} is missing")
            return default
        if value == 0:
            raise ModelError(f"{self.source}: GGUF metadata key {key} must be positive, got 0")
        return value

    def positive_float(self, key: str, default: float) -> float:
        value = self.metadata.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not 0 < value < float("inf"):
            raise ModelError(f"{self.source}: GGUF metadata key {key} must be a positive number, got {value!r}")
        return float(value)
