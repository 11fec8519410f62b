"""llama.cpp loads what `edgecore quantize` writes and generates greedily;
for f16 its tokens are transformers' on the same prompt.

llama.cpp is a benchmark peer, never a dependency: the test runs when a
build is found ($LLAMA_CPP_BIN, else /work/llamacpp/bin) and skips saying
so otherwise."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from support.gguf_export import roundtrip_model

from edgecore.quantize import quantize_model

pytest.importorskip("gguf", reason="the gguf package writes GGUF files (pip install gguf)")

BIN = Path(os.environ.get("LLAMA_CPP_BIN", "/work/llamacpp/bin"))
SIMPLE = BIN / "llama-simple"
PROMPT = "The capital of France is"
N = 12


@pytest.fixture(scope="module")
def llama_simple():
    if not SIMPLE.exists():
        pytest.skip(f"llama.cpp not built: no {SIMPLE} (set LLAMA_CPP_BIN to a build's bin/ folder); "
                    f"llama.cpp loading of edgecore quantize output NOT TESTED")
    return SIMPLE


@pytest.mark.reference
@pytest.mark.parametrize(("name", "wtype"), [("gpt2", "f16"), ("llama", "f16"), ("llama-tied-bf16", "f16"),
                                             ("mixtral", "f16"), ("gpt2", "q8_0"), ("llama", "q4_0"),
                                             ("mixtral", "q4_1"), ("llama", "bf16"), ("gemma3", "f16"),
                                             ("gemma3", "q8_0")])
def test_llamacpp_loads_and_generates(llama_simple, model_dirs, name, wtype, tmp_path):
    src, model, tok = model_dirs(name)
    out = tmp_path / f"{name}-{wtype}.gguf"
    quantize_model(src, out, wtype)
    proc = subprocess.run([str(llama_simple), "-m", str(out), "-n", str(N), PROMPT], capture_output=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    text = proc.stdout.decode("utf-8", errors="replace")
    assert text.startswith(PROMPT), text  # llama.cpp tokenized the prompt and printed its pieces back
    if wtype != "f16":
        return  # quantized random-weight models have near-flat logits: loading and generating is the check
    kind = name if name in ("gpt2", "mixtral", "gemma3") else "llama"
    want = _greedy(roundtrip_model(kind, model, wtype), tok.encode(PROMPT, add_special_tokens=False).ids,
                   tok.token_to_id("</s>"))
    # llama-simple prints the prompt, each new token's piece, then a newline
    assert text[len(PROMPT):].removesuffix("\n") == tok.decode(want, skip_special_tokens=False)


def _greedy(model, ids: list[int], eos: int) -> list[int]:
    """Greedy tokens as llama-simple picks them: argmax, stopping before EOS."""
    import torch

    ids, new = list(ids), []
    with torch.inference_mode():
        for _ in range(N):
            token = int(model(torch.tensor([ids])).logits[0, -1].argmax())
            if token == eos:
                break
            ids.append(token)
            new.append(token)
    return new
