"""Random-weight GPT-2 / Llama / Mixtral directories with a byte-level BPE
tokenizer, built once per session with transformers."""

from __future__ import annotations

import pytest

MODELS = {
    # name: (kind, build overrides)
    # transformers' GGUF reader takes gpt2.context_length as n_ctx and leaves n_positions (the size of
    # wpe) at its default of 1024, so the GPT-2 model must have 1024 positions to load there
    "gpt2": ("gpt2", {"n_positions": 1024}),
    "llama": ("llama", {}),
    "llama-tied-bf16": ("llama", {"tie_word_embeddings": True, "dtype": "bfloat16"}),
    "mixtral": ("mixtral", {}),
    # the Gemma 3 settings a gemma3 GGUF carries (test_gemma3_export.py)
    "gemma3": ("gemma3", dict(num_hidden_layers=6, layer_types=None, num_attention_heads=2, num_key_value_heads=1,
                              head_dim=256, query_pre_attn_scalar=256, sliding_window=8)),
}


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory):
    """name -> (directory, float32 transformers model, tokenizers.Tokenizer); built on first use."""
    pytest.importorskip("torch", reason="torch builds the random-weight models")
    pytest.importorskip("transformers", reason="transformers builds the random-weight models")
    from support.models import build
    from support.tokenizers import byte_level_bpe, save_dir

    cache = {}

    def get(name: str):
        if name not in cache:
            kind, overrides = MODELS[name]
            overrides = dict(overrides)
            dtype = overrides.pop("dtype", "float32")
            tok = byte_level_bpe(500)
            # four embedding rows no token uses: padding the writer must fill with placeholder tokens
            vocab = tok.get_vocab_size() + 4
            path = tmp_path_factory.mktemp(name)
            model = build(kind, path, dtype=dtype, vocab_size=vocab, bos_token_id=tok.token_to_id("<s>"),
                          eos_token_id=tok.token_to_id("</s>"), **overrides)
            save_dir(path, tok)
            cache[name] = (path, model, tok)
        return cache[name]

    return get
