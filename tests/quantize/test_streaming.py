"""Bounded memory: `edgecore quantize` holds about one source tensor at a
time, not the model. A synthetic BF16 Llama checkpoint (no torch needed)
much larger than its largest tensor is quantized in a fresh process whose
peak RSS is measured around the call."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from edgecore._child import python_command
from edgecore.weights import save_safetensors

pytest.importorskip("gguf", reason="the gguf package writes GGUF files (pip install gguf)")

MiB = 1 << 20
D, INTER, LAYERS, VOCAB = 1024, 2048, 8, 1024

CHILD = """
import json, sys
from edgecore.memory import read_status, reset_peak_rss
from edgecore.quantize import quantize_model
import gguf  # imported before the baseline, like everything the call needs
if not reset_peak_rss():
    print(json.dumps({"skip": "cannot reset VmHWM on this kernel"})); sys.exit(0)
before = read_status()["VmRSS"]
quantize_model(sys.argv[1], sys.argv[2], "q8_0")
print(json.dumps({"before": before, "peak": read_status()["VmHWM"]}))
"""


def _bf16(rng, *shape):
    return (rng.standard_normal(shape, dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16)


@pytest.mark.slow
def test_peak_memory_is_about_one_tensor(tmp_path):
    rng = np.random.default_rng(0)
    src = tmp_path / "big"
    src.mkdir()
    tensors = {"model.embed_tokens.weight": _bf16(rng, VOCAB, D), "model.norm.weight": _bf16(rng, D),
               "lm_head.weight": _bf16(rng, VOCAB, D)}
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        tensors.update({
            p + "input_layernorm.weight": _bf16(rng, D), p + "post_attention_layernorm.weight": _bf16(rng, D),
            p + "self_attn.q_proj.weight": _bf16(rng, D, D), p + "self_attn.k_proj.weight": _bf16(rng, D, D),
            p + "self_attn.v_proj.weight": _bf16(rng, D, D), p + "self_attn.o_proj.weight": _bf16(rng, D, D),
            p + "mlp.gate_proj.weight": _bf16(rng, INTER, D), p + "mlp.up_proj.weight": _bf16(rng, INTER, D),
            p + "mlp.down_proj.weight": _bf16(rng, D, INTER)})
    save_safetensors(src / "model.safetensors", tensors, dtypes={n: "BF16" for n in tensors})
    source_bytes = sum(t.nbytes for t in tensors.values())
    del tensors
    (src / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": VOCAB, "hidden_size": D,
        "intermediate_size": INTER, "num_hidden_layers": LAYERS, "num_attention_heads": 16,
        "num_key_value_heads": 16, "max_position_embeddings": 512, "rms_norm_eps": 1e-5}))

    proc = subprocess.run(python_command(CHILD, str(src), str(tmp_path / "big.gguf")), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if "skip" in result:
        pytest.skip(result["skip"])
    grown = result["peak"] - result["before"]
    largest_f32 = INTER * D * 4  # 8 MiB: the widened tensor, plus its q8_0 blocks and a transform copy
    print(f"source {source_bytes / MiB:.0f} MiB, peak growth {grown / MiB:.1f} MiB")
    assert source_bytes > 150 * MiB
    assert grown < 4 * largest_f32 + 16 * MiB, f"peak grew {grown / MiB:.1f} MiB, source {source_bytes / MiB:.0f} MiB"
