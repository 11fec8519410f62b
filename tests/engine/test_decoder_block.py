"""The one-call decoder block (ops.DecoderBlock, csrc/common/decoder_block.c).

The engine runs every dense llama (and Gemma 3) layer whose weights stay
loaded as one DecoderBlock call per step. The block calls the same kernels in
the same order as the Python layers (engine/layers.py llama_block,
gemma3_block), so its logits
must be bitwise the op-by-op path's, for any weight type, biases, batch and
chunking; the op-by-op path itself is checked against transformers in
test_reference.py, test_gguf_models.py and test_smollm2.py (which now run
through the block). Bad per-step arguments get one clear ValueError.
"""

import numpy as np
import pytest

pytest.importorskip("torch", reason="random test models are built with torch + transformers")
pytest.importorskip("transformers", reason="random test models are built with torch + transformers")
pytest.importorskip("gguf", reason="the quantized test models are GGUF files written with the gguf package")

from support.gguf_models import write_llama_gguf  # noqa: E402
from support.models import build  # noqa: E402

from edgecore import Engine, ops  # noqa: E402

LLAMA = dict(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=128)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """name -> model path: safetensors f32 / f16 (with q/k/v/o and MLP
    biases), GGUF q8_0 / q4_1 (what the gguf package quantizes); a Mixtral
    (its attention runs as a block) as safetensors and GGUF q8_0."""
    root = tmp_path_factory.mktemp("block")
    plain = build("llama", root / "f32", **LLAMA)
    paths = {"f32": root / "f32"}
    build("llama", root / "f16-bias", dtype="float16", attention_bias=True, mlp_bias=True, **LLAMA)
    paths["f16-bias"] = root / "f16-bias"
    for wtype in ("q8_0", "q4_1"):
        paths[wtype] = write_llama_gguf(plain, root / f"{wtype}.gguf", wtype)
    moe = build("mixtral", root / "mixtral", seed=3, **dict(LLAMA, num_local_experts=4, num_experts_per_tok=2))
    paths["mixtral"] = root / "mixtral"
    paths["mixtral-q8_0"] = write_llama_gguf(moe, root / "mixtral-q8_0.gguf", "q8_0")
    build("gemma3", root / "gemma3")  # q/k and post norms, GeGLU, 1 + w norms, local and global layers
    paths["gemma3"] = root / "gemma3"
    return paths


def run_steps(engine, mode):
    """Three sequences: a chunked prefill, then decode steps with all three
    in one batch. Returns every step's logits. mode: "stack" as the engine
    runs (its layers in one DecoderStack call), "blocks" (one DecoderBlock
    call per layer) or "ops" (op by op through the Python layers)."""
    blocks, stacks = engine._blocks, engine._stacks
    if mode != "stack":
        engine._stacks = {}
    if mode == "ops":
        engine._blocks = {}
    try:
        rng = np.random.default_rng(0)
        seqs = [engine.kv.new_sequence() for _ in range(3)]
        prompts = [rng.integers(0, 300, n).astype(np.int64) for n in (5, 17, 9)]
        out = []
        for seq, p in zip(seqs, prompts, strict=True):
            for chunk in (p[:4], p[4:]):
                engine.kv.reserve(seq, len(chunk))
                out.append(engine.step([(seq, chunk)]))
        tokens = [int(rng.integers(0, 300)) for _ in seqs]
        for _ in range(3):
            for seq in seqs:
                engine.kv.reserve(seq, 1)
            logits = engine.step([(seq, np.array([t], np.int64)) for seq, t in zip(seqs, tokens, strict=True)])
            out.append(logits)
            tokens = [int(row.argmax()) for row in logits]
        for seq in seqs:
            engine.kv.release(seq)
        return out
    finally:
        engine._blocks, engine._stacks = blocks, stacks


def assert_bitwise(got, want, what):
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        assert np.array_equal(a, b), f"step {i}: {what} logits differ by {np.abs(a - b).max():.3g}"


@pytest.mark.parametrize("name", ["f32", "f16-bias", "q8_0", "q4_1", "gemma3"])
@pytest.mark.parametrize("act_precision", ["q8x2", "q8"])
def test_block_is_bitwise_the_op_by_op_path(sources, name, act_precision):
    if act_precision == "q8" and name in ("f32", "f16-bias", "gemma3"):
        pytest.skip("float activations: act_precision does not apply")
    with Engine(sources[name], act_precision=act_precision, context=64, step_tokens=16) as engine:
        assert len(engine._blocks) == engine.spec.num_layers, "every pinned llama layer runs as one block"
        assert [len(s) for s in engine._stacks.values()] == [engine.spec.num_layers], "and all in one stack"
        stacked, blocks, reference = (run_steps(engine, mode) for mode in ("stack", "blocks", "ops"))
    assert_bitwise(blocks, reference, "block and op-by-op")
    assert_bitwise(stacked, blocks, "stack and per-block")


@pytest.mark.parametrize("name", ["mixtral", "mixtral-q8_0"])
@pytest.mark.parametrize("expert_capacity", [None, 2])
def test_moe_attention_block_is_bitwise_the_op_by_op_path(sources, name, expert_capacity):
    """Mixtral layers run their attention as a block (mlp=None) and the
    sparse MLP in Python, with every expert resident or through the cache."""
    with Engine(sources[name], context=64, step_tokens=16, expert_capacity=expert_capacity) as engine:
        assert len(engine._blocks) == engine.spec.num_layers
        assert not engine._stacks, "attention-only blocks are not stacked (the sparse MLP runs between them)"
        fused, reference = run_steps(engine, "blocks"), run_steps(engine, "ops")
    assert_bitwise(fused, reference, "block and op-by-op")


def test_block_matches_on_the_scalar_tier_too(sources):
    with ops.forced_tier("scalar"), Engine(sources["q4_1"], context=64, step_tokens=16) as engine:
        fused, reference = run_steps(engine, "stack"), run_steps(engine, "ops")
    assert_bitwise(fused, reference, "stack and op-by-op")


def test_streamed_layers_run_op_by_op(sources):
    """Under a budget that streams layers, their weights are mapped again each
    step: no blocks are built for them, and the output is unchanged."""
    with Engine(sources["f32"], context=64) as whole:
        want = whole.forward(list(range(1, 20)))
        plan, graph = whole.plan, whole.model.graph
        budget = graph.total_weight_bytes(plan.step_tokens) // 2 + plan.kv_bytes + plan.activation_bytes + \
            plan.scratch_bytes
    with Engine(sources["f32"], context=64, memory_budget=budget, strategy="sequential") as streamed:
        blocks = [li for g in streamed.plan.groups if not g.pinned for li in g.layers
                  if graph.layers[li].kind == "block"]
        assert blocks, "the budget should stream some blocks"
        assert not set(blocks) & set(streamed._blocks)
        assert all(li in streamed._blocks for li in streamed._stacks), "stacks hold pinned blocks only"
        got = streamed.forward(list(range(1, 20)))
    assert np.array_equal(got, want)


# ---- the Cython boundary: checked once at build, cheaply per step -------------


@pytest.fixture(scope="module")
def block_engine(sources):
    with Engine(sources["q8_0"], context=64, step_tokens=16) as engine:
        yield engine


@pytest.mark.parametrize("kind", ["block", "stack"])
def test_run_rejects_bad_step_arguments(block_engine, kind):
    engine = block_engine
    block = next(iter((engine._blocks if kind == "block" else engine._stacks).values()))
    d = engine.spec.hidden_size
    x = np.zeros((2, d), np.float32)
    table, starts, pos0 = np.zeros((1, 4), np.int32), np.array([0, 2], np.int32), np.zeros(1, np.int32)
    positions = np.array([0, 1], np.int64)
    with pytest.raises(ValueError, match="x must be"):
        block.run(np.zeros((2, d + 1), np.float32), None, positions, table, starts, pos0)
    with pytest.raises(ValueError, match=r"x must be \[m, 64\] with m <= 16"):
        block.run(np.zeros((17, d), np.float32), None, np.arange(17), table, starts, pos0)
    with pytest.raises(TypeError, match="positions must be a native-byte-order int64"):
        block.run(x, None, positions.astype(np.int32), table, starts, pos0)
    with pytest.raises(ValueError, match="delta must have x's shape"):
        block.run(x, np.zeros((1, d), np.float32), positions, table, starts, pos0)
    with pytest.raises(ValueError, match="x has 2 rows but starts"):
        block.run(x, None, positions, table, np.array([0, 1], np.int32), pos0)
    with pytest.raises(ValueError, match=r"page_table\[0, 0\] = 999 is not a page"):
        block.run(x, None, positions, np.full((1, 4), 999, np.int32), starts, pos0)
    with pytest.raises(ValueError, match=r"positions\[1\] = 64 is outside the RoPE tables' \[0, 64\)"):
        block.run(x, None, np.array([0, 64], np.int64), table, starts, pos0)


def test_build_rejects_inconsistent_parts(block_engine):
    from edgecore.engine import layers as L

    engine = block_engine
    w = engine.runtime.layer_weights(1)
    ws = engine._ws
    scratch = np.empty(L.decoder_block_scratch(engine.spec, w, engine.step_tokens), np.uint8)
    L.decoder_block(engine.spec, w, engine.rope, engine.kv, 0, ws, scratch)  # the parts as the engine gives them
    with pytest.raises(ValueError, match="scratch has 8 bytes, the block needs"):
        L.decoder_block(engine.spec, w, engine.rope, engine.kv, 0, ws, np.empty(8, np.uint8))
    swapped = dict(w)
    swapped["self_attn.q_proj.weight"] = w["self_attn.k_proj.weight"]
    with pytest.raises(ValueError, match="q out must have shape"):
        L.decoder_block(engine.spec, swapped, engine.rope, engine.kv, 0, ws, scratch)
    shared = L.Workspace(engine.spec, engine.step_tokens)
    shared._buffers["a"] = shared._buffers["h"][:, :engine.spec.hidden_size]  # a aliasing h
    with pytest.raises(ValueError, match="must not overlap"):
        L.decoder_block(engine.spec, w, engine.rope, engine.kv, 0, shared, scratch)


def test_build_rejects_bad_gemma_norms(sources):
    from edgecore.engine import layers as L

    with Engine(sources["gemma3"], context=64, step_tokens=16) as engine:
        spec, w, ws = engine.spec, engine.runtime.layer_weights(1), engine._ws
        scratch = np.empty(L.decoder_block_scratch(spec, w, engine.step_tokens), np.uint8)
        L.decoder_block(spec, w, engine.rope, engine.kv, 0, ws, scratch)
        for role, message in (("self_attn.q_norm.weight", r"q_norm must have shape \(32,\)"),
                              ("post_feedforward_layernorm.weight", r"post_ffn_norm must have shape \(64,\)")):
            bad = dict(w)
            bad[role] = np.ones(7, np.float32)
            with pytest.raises(ValueError, match=message):
                L.decoder_block(spec, bad, engine.rope, engine.kv, 0, ws, scratch)
        parts = dict(attn_norm=w["input_layernorm.weight"], h=ws.full("h"), a=ws.full("a"))
        with pytest.raises(ValueError, match="qk_norm needs both q_norm and k_norm"):
            _gemma_block(engine, w, scratch, qk_norm=(w["self_attn.q_norm.weight"], None), **parts)
        with pytest.raises(ValueError, match="mlp_activation must be silu or gelu_tanh"):
            _gemma_block(engine, w, scratch, mlp_activation="relu", **parts)


def _gemma_block(engine, w, scratch, **kwargs):
    ws = engine._ws

    def proj(role, out):
        return w[role + ".weight"].data, w[role + ".weight"].wtype, None, False, ws.full(out)

    mlp = (w["pre_feedforward_layernorm.weight"], proj("mlp.gate_proj", "g"), proj("mlp.up_proj", "u"),
           proj("mlp.down_proj", "m"))
    return ops.DecoderBlock(q=proj("self_attn.q_proj", "q"), k=proj("self_attn.k_proj", "k"),
                            v=proj("self_attn.v_proj", "v"), o=proj("self_attn.o_proj", "o"), mlp=mlp,
                            n_heads=4, head_dim=32, eps=1e-6, scale=0.2, window=0, refine=False,
                            cos=engine.rope.cos, sin=engine.rope.sin, interleaved=False,
                            k_cache=engine.kv.keys[0], v_cache=engine.kv.values[0], scratch=scratch, **kwargs)


def test_stack_rejects_what_it_cannot_run(block_engine, sources):
    engine = block_engine
    blocks = list(engine._blocks.values())
    with pytest.raises(ValueError, match="needs at least one DecoderBlock"):
        ops.DecoderStack([])
    with pytest.raises(TypeError, match=r"blocks\[1\] is str, not a DecoderBlock"):
        ops.DecoderStack([blocks[0], "layer"])
    with Engine(sources["mixtral"], context=64, step_tokens=16) as moe:
        with pytest.raises(ValueError, match=r"blocks\[0\] has no MLP"):
            ops.DecoderStack(list(moe._blocks.values()))
    with Engine(sources["q8_0"], context=128, step_tokens=16) as other:  # more pages in its cache
        with pytest.raises(ValueError, match="another page geometry"):
            ops.DecoderStack([blocks[0], next(iter(other._blocks.values()))])
    with Engine(sources["q8_0"], context=64, step_tokens=8) as other:
        with pytest.raises(ValueError, match=r"blocks\[1\] has rows, d = 8, 64"):
            ops.DecoderStack([blocks[0], next(iter(other._blocks.values()))])
