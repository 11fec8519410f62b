"""Random-weight Hugging Face models built with `transformers` for the
reference tests (real checkpoint layouts, saved with save_pretrained)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def build(kind: str, path: Path, *, seed: int = 0, dtype: str = "float32", **overrides):
    """Build and save a model; returns the transformers model (float32, eval).
    kind: gpt2 | llama | mixtral | gemma3. dtype: float32, float16 or bfloat16 for the
    saved tensors (the returned reference model is float32 with the same,
    rounded weights)."""
    import torch
    from transformers import (
        Gemma3ForCausalLM,
        Gemma3TextConfig,
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
        MixtralConfig,
        MixtralForCausalLM,
    )

    torch.manual_seed(seed)
    if kind == "gpt2":
        cfg = dict(vocab_size=300, n_embd=64, n_layer=2, n_head=4, n_positions=128, bos_token_id=0, eos_token_id=0)
        cfg.update(overrides)
        model = GPT2LMHeadModel(GPT2Config(**cfg))
    elif kind == "llama":
        cfg = dict(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, max_position_embeddings=128, bos_token_id=0, eos_token_id=0)
        cfg.update(overrides)
        model = LlamaForCausalLM(LlamaConfig(**cfg))
    elif kind == "mixtral":
        cfg = dict(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, max_position_embeddings=128, num_local_experts=8, num_experts_per_tok=2,
                   bos_token_id=0, eos_token_id=0)
        cfg.update(overrides)
        model = MixtralForCausalLM(MixtralConfig(**cfg))
    elif kind == "gemma3":
        # windows shorter than the tests' prompts, so local and global layers differ
        cfg = dict(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
                   num_key_value_heads=2, head_dim=32, query_pre_attn_scalar=24, sliding_window=8,
                   layer_types=["sliding_attention", "full_attention", "sliding_attention"],
                   max_position_embeddings=128, bos_token_id=0, eos_token_id=0, pad_token_id=0)
        cfg.update(overrides)
        model = Gemma3ForCausalLM(Gemma3TextConfig(**cfg))
        with torch.no_grad():  # Gemma's norms start at w = 0 (used as 1 + w): make them matter
            for name, p in model.named_parameters():
                if "norm" in name:
                    p.normal_(0.0, 0.5)
    else:
        raise ValueError(kind)
    # random init gives tiny logits; scale weights up so logits spread and
    # greedy decoding is not decided by float noise between near-ties
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2 and "norm" not in name and "ln" not in name:
                p.mul_(2.5)
    model = model.eval()
    if dtype == "float32":
        model.save_pretrained(path)
        return model
    # the reference reads the same reduced-precision file and computes in
    # float32 (casting the live model would also round buffers such as
    # RoPE's inv_freq, which a checkpoint never stores)
    model.to(getattr(torch, dtype)).save_pretrained(path)
    return type(model).from_pretrained(path, dtype=torch.float32).eval()


def reference_logits(model, ids) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return model(torch.tensor([list(ids)])).logits[0].float().numpy()


def reference_greedy(model, ids, n: int) -> list[int]:
    import torch

    with torch.inference_mode():
        out = model.generate(torch.tensor([list(ids)]), max_new_tokens=n, min_new_tokens=n, do_sample=False,
                             pad_token_id=0)
    return out[0, len(ids):].tolist()


def rewrite_config(path: Path, **changes) -> None:
    cfg_path = Path(path) / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.update(changes)
    cfg_path.write_text(json.dumps(cfg))


def perplexity(logits: np.ndarray, ids) -> float:
    """exp of the mean negative log-likelihood of ids[1:] under logits[:-1] (float64)."""
    z = logits[:-1].astype(np.float64)
    z -= z.max(axis=-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return float(np.exp(-logp[np.arange(len(ids) - 1), list(ids)[1:]].mean()))


def compare_to_reference(got: np.ndarray, want: np.ndarray, ids) -> tuple[float, float, float]:
    """(top-1 agreement, perplexity of got, perplexity of want) over a text's ids."""
    agreement = float((got.argmax(-1) == want.argmax(-1)).mean())
    return agreement, perplexity(got, ids), perplexity(want, ids)
