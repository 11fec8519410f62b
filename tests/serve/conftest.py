"""Servers for the tests: a model behind `edgecore serve`'s app in this
process, on a free 127.0.0.1 port, and a reference Engine for the same
model to compare outputs with `Engine.generate`."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def chat_model(tmp_path_factory):
    """A random Llama with a Metaspace BPE tokenizer and a ChatML template."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from support.models import build
    from support.tokenizers import CHATML, metaspace_bpe, save_dir

    path = tmp_path_factory.mktemp("serve-chat-llama")
    tok = metaspace_bpe()
    save_dir(path, tok, chat_template=CHATML, eos_token="<|im_end|>")
    build("llama", path, vocab_size=tok.get_vocab_size(), max_position_embeddings=256,
          bos_token_id=tok.token_to_id("<s>"), eos_token_id=tok.token_to_id("<|im_end|>"))
    return path
