"""A real pretrained model through `edgecore quantize`: SmolLM2-135M-Instruct
(the Q4_1 GGUF, dequantized by the gguf package into a Hugging Face F32
directory) written as q8_0 and run by the engine, beside the shipped file.

q8_0 of the dequantized Q4_1 weights is within 1/254 of each block's
largest value of the shipped model's weights, so it must give the shipped
model's answer to a chat question and agree with it on the next token at
nearly every position of a text."""

from __future__ import annotations

import numpy as np
import pytest
from support.gguf_export import dequantized_llama_dir
from support.real_models import real_model

from edgecore import Engine
from edgecore.quantize import quantize_model

pytest.importorskip("gguf", reason="the gguf package reads and writes GGUF files (pip install gguf)")

QUESTION = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
TEXT = ("The river runs through the old town, past the market and the church, and on towards the sea. "
        "In the morning the fishermen bring their boats in, and by noon the square is full of people "
        "buying bread, fish and vegetables for the week ahead.")


@pytest.mark.slow
def test_smollm2_requantized_to_q8_0(tmp_path):
    model = real_model("smollm2")
    src = tmp_path / "smollm2-hf"
    dequantized_llama_dir(model, src)
    out = tmp_path / "smollm2-q8_0.gguf"
    quantize_model(src, out, "q8_0")
    with Engine(model) as shipped, Engine(out) as ours:
        tok = shipped.tokenizer
        question = tok.encode(QUESTION, add_special_tokens=False)
        want = shipped.generate(question, max_new_tokens=12, temperature=0).tokens
        got = ours.generate(question, max_new_tokens=12, temperature=0).tokens
        assert "Paris" in tok.decode(got), tok.decode(got)
        assert got[:6] == want[:6]
        ids = tok.encode(TEXT, add_special_tokens=False)
        agree = np.mean(ours.forward(ids).argmax(-1) == shipped.forward(ids).argmax(-1))
        print(f"next-token agreement {agree:.3f} over {len(ids)} positions; answer {tok.decode(got)!r}")
        assert agree >= 0.95, f"next-token agreement {agree:.3f}"
