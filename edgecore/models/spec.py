"""Model hyper-parameters read from a Hugging Face `config.json`.

One `ModelSpec` describes any supported architecture; family-specific
tensor layouts live in `layout.py`. Both transformers 4.x and 5.x config
styles are accepted (5.x moves RoPE settings into `rope_parameters`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path


class ModelError(ValueError):
    """A model directory that cannot be run: names the file and what is wrong."""


ARCHITECTURES = {
    "GPT2LMHeadModel": "gpt2",
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "llama",
    "MixtralForCausalLM": "mixtral",
    "Gemma3ForCausalLM": "gemma3",
}
MODEL_TYPES = {"gpt2": "gpt2", "llama": "llama", "mistral": "llama", "mixtral": "mixtral", "gemma3_text": "gemma3"}
# Gemma 3's default local/global layer pattern: every sixth layer attends globally
GEMMA3_WINDOW_PATTERN = 6


def pattern_windows(layers: int, window: int, pattern: int = GEMMA3_WINDOW_PATTERN) -> tuple[int, ...]:
    """Per-layer windows when every `pattern`-th layer is global (0) and the
    others see `window` positions (Gemma 3's layout)."""
    return tuple(0 if (i + 1) % pattern == 0 else window for i in range(layers))


@dataclass(frozen=True)
class RopeSpec:
    """Rotary embedding: frequencies inv_freq[i] = theta^(-2i/d), optionally
    rescaled ("linear" divides positions; "llama3" rescales low frequencies;
    `freq_factors`, GGUF's `rope_freqs` tensor, divides each frequency).
    `interleaved`: frequency i rotates the pair (2i, 2i+1) of a head (the
    GGUF llama layout, whose converter permuted the Q/K rows for it) instead
    of (i, i + d/2) (rotate-half, Hugging Face)."""

    theta: float
    dim: int
    scaling: str = "default"  # default | linear | llama3
    factor: float = 1.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_positions: int = 8192
    interleaved: bool = False
    freq_factors: tuple[float, ...] | None = None

    def inv_freq(self):
        import numpy as np

        inv = 1.0 / (self.theta ** (np.arange(0, self.dim, 2, dtype=np.float64) / self.dim))
        if self.scaling == "linear":
            inv = inv / self.factor
        elif self.scaling == "llama3":
            low_wavelen = self.original_max_positions / self.low_freq_factor
            high_wavelen = self.original_max_positions / self.high_freq_factor
            wavelen = 2 * math.pi / inv
            smooth = (self.original_max_positions / wavelen - self.low_freq_factor) / (
                self.high_freq_factor - self.low_freq_factor)
            scaled = np.where(wavelen > low_wavelen, inv / self.factor, inv)
            medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
            inv = np.where(medium, (1 - smooth) * inv / self.factor + smooth * inv, scaled)
        if self.freq_factors is not None:
            inv = inv / np.asarray(self.freq_factors, np.float64)
        return inv


@dataclass(frozen=True)
class ModelSpec:
    """Hyper-parameters of any supported architecture. Gemma 3 sets the
    fields after `sliding_window`: per-layer attention windows (local layers
    see the last `window` positions, global ones everything, each with its
    own RoPE), an attention scale other than head_dim^-1/2, the embedding
    scaled by sqrt(hidden), and Hugging Face's norms stored as w - 1."""

    family: str  # gpt2 | llama | mixtral | gemma3
    architecture: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    max_positions: int
    norm_eps: float
    tie_embeddings: bool
    activation: str  # a fused_linear activation name
    attention_bias: bool = False
    mlp_bias: bool = False
    rope: RopeSpec | None = None
    num_experts: int = 0
    experts_per_token: int = 0
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()
    tokenizer: str | None = None  # "bytes" for edgecore's byte-level demo models
    sliding_window: int | None = None  # Mistral-style: one window for every layer
    layer_windows: tuple[int, ...] = ()  # per block, 0 = global (Gemma 3); overrides sliding_window
    local_rope: RopeSpec | None = None  # RoPE of the windowed layers when it differs from `rope`
    attn_scale: float | None = None  # None: head_dim ** -0.5
    embed_scale: float = 1.0  # the embedding rows are multiplied by it
    norm_unit_offset: bool = False  # RMSNorm weights are used as 1 + w
    extra: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    @property
    def attention_scale(self) -> float:
        return self.head_dim ** -0.5 if self.attn_scale is None else self.attn_scale

    def window(self, layer: int) -> int:
        """Block `layer`'s attention window in positions (0: unlimited)."""
        if self.layer_windows:
            return self.layer_windows[layer]
        return self.sliding_window or 0


def load_spec(model_dir: str | Path) -> ModelSpec:
    path = Path(model_dir) / "config.json"
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"{path}: no config.json in the model directory") from None
    except RecursionError:
        raise ModelError(f"{path}: its JSON is nested too deeply") from None
    except (OSError, ValueError) as exc:  # ValueError: bad JSON or UTF-8, an over-long integer
        raise ModelError(f"{path}: not a readable JSON config ({exc})") from None
    if not isinstance(config, dict):
        raise ModelError(f"{path}: expected a JSON object")
    return parse_config(config, path)


def parse_config(config: dict, path: str | Path = "config.json") -> ModelSpec:
    get = _Getter(config, path)
    archs = config.get("architectures") or []
    arch = archs[0] if isinstance(archs, list) and archs else None
    family = ARCHITECTURES.get(arch) if arch else None
    if family is None:
        model_type = config.get("model_type")
        family = MODEL_TYPES.get(model_type)
        arch = arch or model_type
    if family is None:
        raise ModelError(f"{path}: architecture {arch!r} is not supported; supported: {', '.join(ARCHITECTURES)}")
    eos = config.get("eos_token_id")
    eos_ids = tuple(eos) if isinstance(eos, list) else (() if eos is None else (eos,))
    common = dict(
        architecture=arch,
        bos_token_id=config.get("bos_token_id"),
        eos_token_ids=tuple(int(e) for e in eos_ids),
        tokenizer=config.get("edgecore_tokenizer"),
        extra=config,
    )
    if family == "gpt2":
        d = get.int("n_embd")
        heads = get.int("n_head")
        if d % heads:
            raise ModelError(f"{path}: n_embd={d} is not divisible by n_head={heads}")
        act = config.get("activation_function", "gelu_new")
        activation = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu",
                      "relu": "relu", "silu": "silu", "swish": "silu"}.get(act)
        if activation is None:
            raise ModelError(f"{path}: activation_function {act!r} is not supported")
        for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
            if config.get(flag):
                raise ModelError(f"{path}: {flag}=true is not supported")
        return ModelSpec(
            family="gpt2", vocab_size=get.int("vocab_size"), hidden_size=d, num_layers=get.int("n_layer"),
            num_heads=heads, num_kv_heads=heads, head_dim=d // heads,
            intermediate_size=config.get("n_inner") or 4 * d, max_positions=get.int("n_positions"),
            norm_eps=get.float("layer_norm_epsilon", 1e-5),
            tie_embeddings=bool(config.get("tie_word_embeddings", True)),
            activation=activation, attention_bias=True, mlp_bias=True, **common)

    if family == "gemma3":
        return _gemma3(config, get, path, common)
    d = get.int("hidden_size")
    heads = get.int("num_attention_heads")
    kv_heads = get.int("num_key_value_heads", heads)
    head_dim = config.get("head_dim") or d // heads
    if heads % kv_heads:
        raise ModelError(f"{path}: num_attention_heads={heads} is not a multiple of num_key_value_heads={kv_heads}")
    act = config.get("hidden_act", "silu")
    if act not in ("silu", "swish"):
        raise ModelError(f"{path}: hidden_act {act!r} is not supported (SwiGLU with silu only)")
    window = config.get("sliding_window")
    if window:  # Mistral-style local attention; the engine refuses contexts longer than the window
        common["sliding_window"] = int(window)
    moe = {}
    if family == "mixtral":
        moe = dict(num_experts=get.int("num_local_experts"), experts_per_token=get.int("num_experts_per_tok"))
        if not 1 <= moe["experts_per_token"] <= moe["num_experts"]:
            raise ModelError(f"{path}: num_experts_per_tok must be in [1, num_local_experts]")
    return ModelSpec(
        family=family, vocab_size=get.int("vocab_size"), hidden_size=d, num_layers=get.int("num_hidden_layers"),
        num_heads=heads, num_kv_heads=kv_heads, head_dim=head_dim, intermediate_size=get.int("intermediate_size"),
        max_positions=get.int("max_position_embeddings"), norm_eps=get.float("rms_norm_eps", 1e-6),
        tie_embeddings=bool(config.get("tie_word_embeddings", False)), activation="silu",
        attention_bias=bool(config.get("attention_bias", False)), mlp_bias=bool(config.get("mlp_bias", False)),
        rope=_rope(config, head_dim, path), **moe, **common)


def _gemma3(config: dict, get: _Getter, path, common: dict) -> ModelSpec:
    """Gemma 3 text models (Gemma3ForCausalLM): GeGLU, q/k norms, four norms
    per block, local (sliding-window) and global layers with their own RoPE."""
    for key in ("attn_logit_softcapping", "final_logit_softcapping"):
        if config.get(key) is not None:
            raise ModelError(f"{path}: {key}={config[key]!r} is not supported (Gemma 3 uses none)")
    if config.get("use_bidirectional_attention"):
        raise ModelError(f"{path}: use_bidirectional_attention=true is not supported (causal models only)")
    if config.get("attention_bias"):
        raise ModelError(f"{path}: attention_bias=true is not supported for gemma3")
    act = config.get("hidden_activation") or config.get("hidden_act") or "gelu_pytorch_tanh"
    if act not in ("gelu_pytorch_tanh", "gelu_tanh"):
        raise ModelError(f"{path}: hidden_activation {act!r} is not supported (GeGLU with gelu_pytorch_tanh only)")
    d, layers = get.int("hidden_size"), get.int("num_hidden_layers")
    heads = get.int("num_attention_heads")
    kv_heads = get.int("num_key_value_heads", heads)
    if heads % kv_heads:
        raise ModelError(f"{path}: num_attention_heads={heads} is not a multiple of num_key_value_heads={kv_heads}")
    head_dim = get.int("head_dim", 256)
    window = get.int("sliding_window", 4096)
    types = config.get("layer_types")
    if types is None:
        key = "sliding_window_pattern" if "sliding_window_pattern" in config else "_sliding_window_pattern"
        windows = pattern_windows(layers, window, get.int(key, GEMMA3_WINDOW_PATTERN))
    elif isinstance(types, list) and len(types) == layers and \
            all(t in ("sliding_attention", "full_attention") for t in types):
        windows = tuple(window if t == "sliding_attention" else 0 for t in types)
    else:
        raise ModelError(f"{path}: layer_types must list sliding_attention or full_attention for each of "
                         f"the {layers} layers")
    # transformers 5: rope_parameters per layer type; 4.x: rope_theta (global), rope_local_base_freq, rope_scaling
    params = _mapping(config, "rope_parameters", path)
    if "full_attention" in params:
        full, local = _mapping(params, "full_attention", path), _mapping(params, "sliding_attention", path)
    else:
        full = {"rope_theta": config.get("rope_theta", 1000000.0), **(config.get("rope_scaling") or {})}
        local = {"rope_theta": config.get("rope_local_base_freq", 10000.0)}
    local.setdefault("rope_theta", 10000.0)
    scalar = config.get("query_pre_attn_scalar", head_dim)
    if isinstance(scalar, bool) or not isinstance(scalar, (int, float)) or not scalar > 0:
        raise ModelError(f"{path}: query_pre_attn_scalar must be a positive number, got {scalar!r}")
    return ModelSpec(
        family="gemma3", vocab_size=get.int("vocab_size"), hidden_size=d, num_layers=layers, num_heads=heads,
        num_kv_heads=kv_heads, head_dim=head_dim, intermediate_size=get.int("intermediate_size"),
        max_positions=get.int("max_position_embeddings"), norm_eps=get.float("rms_norm_eps", 1e-6),
        tie_embeddings=bool(config.get("tie_word_embeddings", True)), activation="gelu_tanh",
        rope=_rope({"rope_parameters": full}, head_dim, path),
        local_rope=_rope({"rope_parameters": local}, head_dim, path),
        layer_windows=windows,
        attn_scale=float(scalar) ** -0.5, embed_scale=float(d) ** 0.5, norm_unit_offset=True, **common)


def _rope(config: dict, head_dim: int, path) -> RopeSpec:
    # transformers 5: rope_parameters {"rope_type", "rope_theta", ...}; 4.x: rope_theta + rope_scaling
    params = _mapping(config, "rope_parameters", path)
    scaling = _mapping(config, "rope_scaling", path)
    merged = {**scaling, **params}
    merged["rope_theta"] = params.get("rope_theta", config.get("rope_theta", 10000.0))
    kind = merged.get("rope_type", merged.get("type", "default")) or "default"
    partial = config.get("partial_rotary_factor", merged.get("partial_rotary_factor", 1.0))
    if partial != 1.0:
        raise ModelError(f"{path}: partial_rotary_factor={partial} is not supported")
    if kind not in ("default", "linear", "llama3"):
        raise ModelError(f"{path}: rope type {kind!r} is not supported (default, linear, llama3)")
    get = _Getter(merged, path)
    return RopeSpec(
        theta=get.float("rope_theta", 10000.0), dim=head_dim, scaling=kind, factor=get.float("factor", 1.0),
        low_freq_factor=get.float("low_freq_factor", 1.0), high_freq_factor=get.float("high_freq_factor", 4.0),
        original_max_positions=get.int("original_max_position_embeddings", 8192))


def _mapping(config: dict, key: str, path) -> dict:
    """config[key] as a dict ({} when missing or null); anything else is a ModelError."""
    value = config.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ModelError(f"{path}: {key} must be an object, got {value!r}")
    return dict(value)


class _Getter:
    def __init__(self, config: dict, path):
        self.config, self.path = config, path

    def int(self, key: str, default: int | None = None) -> int:
        value = self.config.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ModelError(f"{self.path}: {key} must be a positive integer, got {value!r}")
        return value

    def float(self, key: str, default: float) -> float:
        value = self.config.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ModelError(f"{self.path}: {key} must be a positive number, got {value!r}")
        return float(value)
