"""GGUF models in the engine against transformers reading the same file.

Random-weight Llama (GQA, separate and tied heads), GPT-2 and a llama-MoE
are written as GGUF by the `gguf` package's writer (support/gguf_models.py:
llama.cpp's names, Q/K permutation, f32 / f16 / q8_0 / q4_0 matrices from
gguf.quants.quantize). transformers loads the dense files itself
(`from_pretrained(dir, gguf_file=...)` dequantizes and un-permutes them);
for the MoE file, which transformers does not read as a Mixtral, the
reference is a Mixtral holding the dequantized weights.

Tolerances (max |logit difference| / max |reference logit|):
- f32 and f16: the weights are exactly the reference's (f16 widens
  exactly) and activations stay float32, so only summation order differs:
  1e-4, as the safetensors reference tests.
- q8_0 and q4_0 with act_precision "q8": the weights are exact too, but
  every linear input is quantized to 8 bits per block of 32
  (docs/quantization.md), an error of up to 1/254 of each block's largest
  element per element. Over 2 blocks (7 projections each) and the head this
  measured at most ~1% of the logit scale on these models; the bound is 3%,
  with the mean error also bounded (0.5%) so a systematic bias cannot hide
  under it.
- the same with the default "q8x2" (an 8-bit residual pass on top): the
  input error shrinks ~250x; bounds 5e-4 (max) and 1e-4 (mean).
Greedy tokens must be identical for f32, f16 and every type under q8x2 (the models' weights are
scaled up so their logits are spread, support.models.build). For q8_0 every
token must be transformers' greedy choice after the same prefix, except
where transformers' own top-2 margin is within twice the measured logit
error (a near tie: strict identity failed at the 16th token of one run).
"""

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("accelerate")
gguf = pytest.importorskip("gguf")

from support.gguf_models import (  # noqa: E402
    GGUF_TYPES,
    dequantized_mixtral,
    write_gpt2_gguf,
    write_llama_gguf,
)
from support.models import build, reference_greedy, reference_logits  # noqa: E402

from edgecore import Engine  # noqa: E402

PROMPT = [int(i) for i in np.random.default_rng(3).integers(1, 300, 24)]
TOLERANCE = {"f32": (1e-4, 1e-4), "f16": (1e-4, 1e-4), "q8_0": (3e-2, 5e-3), "q4_0": (3e-2, 5e-3),
             "q8x2": (5e-4, 1e-4)}
GREEDY_TYPES = ("f32", "f16", "q8_0")
QUANTIZED = ("q8_0", "q4_0")
LLAMA = dict(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=128, rope_theta=50000.0)


def hf_from_gguf(path):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()


def assert_close(got, want, wtype, act_precision="q8"):
    worst, mean = TOLERANCE["q8x2" if wtype in QUANTIZED and act_precision == "q8x2" else wtype]
    scale = np.abs(want).max()
    err = np.abs(got - want)
    assert err.max() <= worst * scale, f"{wtype}: max diff {err.max():.4g} vs scale {scale:.4g}"
    assert err.mean() <= mean * scale, f"{wtype}: mean diff {err.mean():.4g} vs scale {scale:.4g}"


def check_against(path, ref, wtype):
    """Both activation precisions for the block types: the default q8x2
    (8 bits + an 8-bit residual) is held to the float types' greedy rule."""
    want = reference_logits(ref, PROMPT)
    for act_precision in ("q8x2", "q8") if wtype in QUANTIZED else ("q8x2",):
        # float32 KV: these bounds are the weights' and activations'; the f16 KV cache (the
        # default) has its own stated bound, tested in test_kv_dtype.py
        with Engine(path, act_precision=act_precision, kv_dtype="f32") as engine:
            got = engine.forward(PROMPT)
            assert_close(got, want, wtype, act_precision)
            if wtype in GREEDY_TYPES or act_precision == "q8x2":
                check_greedy(engine, ref, got, want, strict=act_precision == "q8x2" or wtype not in QUANTIZED)


def check_greedy(engine, ref, got, want, strict):
    for n in (1, 9):
        tokens = engine.generate(PROMPT[:n], max_new_tokens=16).tokens
        if strict:
            assert tokens == reference_greedy(ref, PROMPT[:n], 16)
            continue
        # 8-bit activations: each token must be the reference's greedy choice given the same
        # prefix, unless the reference's own top-2 margin there is within twice the logit
        # error measured above (a near tie that any rounding may flip)
        slack = 2 * np.abs(got - want).max()
        ref_logits = reference_logits(ref, PROMPT[:n] + tokens)[n - 1:-1]
        for i, (token, row) in enumerate(zip(tokens, ref_logits, strict=True)):
            margin = row.max() - row[token]
            assert margin <= slack, f"token {i}: {token} is {margin:.4g} below the reference's best " \
                                    f"{int(row.argmax())} (allowed near a tie: {slack:.4g})"


@pytest.fixture(scope="module")
def llama_source(tmp_path_factory):
    return build("llama", tmp_path_factory.mktemp("llama-src"), **LLAMA)


@pytest.fixture(scope="module")
def llama_tied_source(tmp_path_factory):
    cfg = dict(LLAMA, num_key_value_heads=4, tie_word_embeddings=True)
    return build("llama", tmp_path_factory.mktemp("llama-tied-src"), seed=1, **cfg)


@pytest.mark.parametrize("wtype", GGUF_TYPES)
def test_llama_gqa_separate_head(tmp_path, llama_source, wtype):
    path = write_llama_gguf(llama_source, tmp_path / f"llama-{wtype}.gguf", wtype)
    ref = hf_from_gguf(path)
    assert not ref.config.tie_word_embeddings
    check_against(path, ref, wtype)


@pytest.mark.parametrize("wtype", GGUF_TYPES)
def test_llama_tied_head(tmp_path, llama_tied_source, wtype):
    """No output.weight: the head is the (quantized) embedding."""
    path = write_llama_gguf(llama_tied_source, tmp_path / f"tied-{wtype}.gguf", wtype, tied=True)
    ref = hf_from_gguf(path)
    assert ref.config.tie_word_embeddings
    check_against(path, ref, wtype)


@pytest.fixture(scope="module")
def gpt2_source(tmp_path_factory):
    # n_positions 1024: transformers maps gpt2.context_length to n_ctx only, so its position table is 1024
    return build("gpt2", tmp_path_factory.mktemp("gpt2-src"), vocab_size=300, n_embd=64, n_layer=2, n_head=4,
                 n_positions=1024)


@pytest.mark.parametrize("wtype", GGUF_TYPES)
def test_gpt2(tmp_path, gpt2_source, wtype):
    path = write_gpt2_gguf(gpt2_source, tmp_path / f"gpt2-{wtype}.gguf", wtype)
    check_against(path, hf_from_gguf(path), wtype)


@pytest.fixture(scope="module")
def mixtral_source(tmp_path_factory):
    return build("mixtral", tmp_path_factory.mktemp("mixtral-src"), num_local_experts=4, num_experts_per_tok=2,
                 **{k: v for k, v in LLAMA.items() if k != "rope_theta"})


@pytest.mark.parametrize("wtype", GGUF_TYPES)
def test_llama_moe_stacked_experts(tmp_path, mixtral_source, wtype):
    """Experts stacked in ffn_*_exps, all resident and through an expert
    cache holding 2 of 4 per layer (loaded in their stored type): both
    match the dequantized Mixtral, and each other bitwise (the same kernels
    on the same bytes)."""
    path = write_llama_gguf(mixtral_source, tmp_path / f"moe-{wtype}.gguf", wtype)
    ref = dequantized_mixtral(mixtral_source, wtype)
    check_against(path, ref, wtype)
    with Engine(path) as full, Engine(path, expert_capacity=2) as cached:
        assert cached.experts is not None and cached.plan.expert_capacity == 2
        want = full.forward(PROMPT)
        got = cached.forward(PROMPT)
        np.testing.assert_array_equal(got, want)
        result = cached.generate(PROMPT[:5], max_new_tokens=8)
        assert result.stats.experts.loads > 0
        # one expert as the cache holds it: its three matrices' stored bytes, each padded to 64
        reader = gguf.GGUFReader(str(path))
        part = [t for t in reader.tensors if t.name.startswith("blk.0.ffn_") and t.name.endswith("_exps.weight")]
        assert len(part) == 3
        want_bytes = sum(-(-int(t.n_bytes) // 4 // 64) * 64 for t in part)
        assert cached.model.graph.expert_bytes == want_bytes


@pytest.mark.parametrize("wtype", ["f16", "q4_0"])
def test_memory_counts_stored_bytes(tmp_path, llama_source, llama_tied_source, wtype):
    """Plan, graph and loaded weights count the bytes the file stores (the
    gguf reader's n_bytes), not float32 widenings; a tied embedding once."""
    tied = write_llama_gguf(llama_tied_source, tmp_path / f"tied-{wtype}.gguf", wtype, tied=True)
    with Engine(tied) as engine:
        assert engine.model.graph.file_bytes == sum(int(t.n_bytes) for t in gguf.GGUFReader(str(tied)).tensors)
    path = write_llama_gguf(llama_source, tmp_path / f"bytes-{wtype}.gguf", wtype)
    stored = {t.name: int(t.n_bytes) for t in gguf.GGUFReader(str(path)).tensors}
    with Engine(path) as engine:
        graph = engine.model.graph
        assert graph.file_bytes == sum(stored.values())
        head = graph.layers[-1]
        assert head.weight_bytes == stored["output.weight"] + stored["output_norm.weight"]
        non_embed = sum(n for name, n in stored.items() if name != "token_embd.weight")
        assert engine.runtime.loaded_bytes() == non_embed  # every layer pinned, the embedding gathered
        assert engine.runtime.bytes_loaded == non_embed


# ---- files the engine must refuse, in one line -------------------------------------------

def _drop(name):
    return lambda t: t.pop(name)


def _retype(name, wtype):
    def edit(t):
        t[name] = (t[name][0], wtype)
    return edit


BROKEN = {
    "arch": (dict(arch="mamba"), "GGUF architecture 'mamba' is not supported; supported: llama, gpt2, gemma3"),
    "key": (dict(skip_keys=("embedding_length",)), "GGUF metadata key llama.embedding_length is missing"),
    "tensor": (dict(edit=_drop("blk.1.ffn_up.weight")), "missing tensor blk.1.ffn_up.weight (expected shape [96, 64])"),
    "norm-type": (dict(edit=_retype("blk.0.attn_norm.weight", "q8_0")),
                  "tensor blk.0.attn_norm.weight has dtype Q8_0; the engine runs F32, F16, BF16 here"),
    "matrix-type": (dict(edit=_retype("blk.0.attn_q.weight", "i32")), "tensor blk.0.attn_q.weight has dtype I32"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_files_are_one_line_model_errors(tmp_path, llama_source, case):
    from edgecore.models import ModelError

    options, message = BROKEN[case]
    path = write_llama_gguf(llama_source, tmp_path / f"{case}.gguf", "q8_0", **options)
    with pytest.raises(ModelError) as info:
        Engine(path)
    text = str(info.value)
    assert message in text and "\n" not in text and text.startswith(str(path))


def test_cli_prints_one_line_for_a_broken_file(tmp_path, llama_source):
    import subprocess
    import sys

    path = write_llama_gguf(llama_source, tmp_path / "mamba.gguf", "f32", arch="mamba")
    # from tmp_path: `python -m` puts the working directory first on sys.path (a checkout would shadow the wheel)
    proc = subprocess.run([sys.executable, "-m", "edgecore", "run", "--model", str(path), "--prompt", "hi"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "GGUF architecture 'mamba' is not supported" in lines[0], proc.stderr
