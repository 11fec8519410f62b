"""ops.linear_multi: several weights (mixed types) sharing x in one run,
and the GLU combine (SwiGLU / GeGLU)."""

import numpy as np
import pytest
from support.quant import (
    NAMES,
    NEEDS_GGUF,
    TYPES,
    activation_ref,
    assert_within,
    linear_reference,
    random_weights,
    refined_reference,
    use,
)

from edgecore import ops


def qkv(rng, k, types):
    return [random_weights(rng, t, n, k) for t, n in zip(types, (48, 16, 16, 33), strict=True)]


@pytest.mark.parametrize(
    "config", [("scalar", ())] + [(t, ()) for t in ops.capabilities()["available"][1:]], ids=lambda c: c[0]
)
def test_mixed_types_equal_separate_calls(config, tested_tiers):
    """Every output equals its own linear call bit for bit, whatever shares
    the run (the activations are quantized once per format, identically)."""
    rng = np.random.default_rng(1)
    k = 512
    for types in (["q8_0", "q4_k", "f16", "f32"], ["q4_1", "q6_k", "bf16", "q5_0"], ["q5_1", "q5_k", "q4_0", "f32"]):
        ws = qkv(rng, k, types)
        bs = [rng.standard_normal(w.shape[0]).astype(np.float32) for w in ws]
        bs[1] = None
        for m in (1, 5):
            x = rng.standard_normal((m, k)).astype(np.float32)
            with use(config, tested_tiers):
                ys = ops.linear_multi(x, ws, bs, wtypes=types, activation="gelu")
                for y, w, b, t in zip(ys, ws, bs, types, strict=True):
                    np.testing.assert_array_equal(y, ops.linear(x, w, b, wtype=t, activation="gelu"), err_msg=t)


@NEEDS_GGUF
@pytest.mark.parametrize("activation", ["silu", "gelu_tanh"])
@pytest.mark.parametrize(
    "gate, up", [("q4_0", "q4_0"), ("q4_k", "q6_k"), ("f16", "q8_0"), ("f32", "q4_1"), ("bf16", "bf16"), ("f32", "f32")]
)
def test_glu_matches_reference(gate, up, activation):
    rng = np.random.default_rng([NAMES.index(gate), NAMES.index(up)])
    k, n = 512, 70
    wg, wu = random_weights(rng, gate, n, k), random_weights(rng, up, n, k)
    bg, bu = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    for tier in ops.capabilities()["available"]:
        with ops.forced_tier(tier):
            for m in (1, 3, 17):
                x = rng.standard_normal((m, k)).astype(np.float32)
                y, u = ops.linear_multi(x, [wg, wu], [bg, bu], wtypes=[gate, up], activation=activation, glu=True)
                g_ref, g_tol = linear_reference(x, wg, gate, bg)
                u_ref, u_tol = linear_reference(x, wu, up, bu)
                assert_within(u, u_ref, u_tol, "up")
                a = activation_ref(g_ref, activation)
                tol = 1.2 * g_tol * np.abs(u_ref) + np.abs(a) * u_tol + 1e-5 * np.abs(a * u_ref) + 1e-30
                assert_within(y, a * u_ref, tol, f"{gate}/{up} {tier} m={m}")
                # quantized/half gates: the same activation code as a plain linear
                if gate != "f32":
                    g = ops.linear(x, wg, bg, wtype=gate, activation=activation)
                    np.testing.assert_array_equal(y, g * u)


@NEEDS_GGUF
@pytest.mark.parametrize("gate, up", [("q4_1", "q4_1"), ("q4_k", "q8_0"), ("f16", "q6_k")])
def test_refined_glu_matches_reference(gate, up):
    """glu with refine=True: each quantized output refined (the f16 one reads x
    exactly), SiLU(gate) * up against the float64 references of both."""
    rng = np.random.default_rng([NAMES.index(gate), NAMES.index(up), 7])
    k, n = 512, 70
    wg, wu = random_weights(rng, gate, n, k), random_weights(rng, up, n, k)
    for tier in ops.capabilities()["available"]:
        with ops.forced_tier(tier):
            for m in (1, 3, 17):
                x = rng.standard_normal((m, k)).astype(np.float32)
                y, u = ops.linear_multi(x, [wg, wu], wtypes=[gate, up], activation="silu", glu=True, refine=True)
                (g_ref, g_tol), (u_ref, u_tol) = (
                    refined_reference(x, w, t) if TYPES[t]["activations"] != "f32" else linear_reference(x, w, t)
                    for w, t in ((wg, gate), (wu, up)))
                assert_within(u, u_ref, u_tol, "up")
                a = activation_ref(g_ref, "silu")
                tol = 1.2 * g_tol * np.abs(u_ref) + np.abs(a) * u_tol + 1e-5 * np.abs(a * u_ref) + 1e-30
                assert_within(y, a * u_ref, tol, f"{gate}/{up} {tier} m={m} refined")


def test_glu_row_and_thread_invariance():
    rng = np.random.default_rng(9)
    k, n = 1024, 600
    wg, wu = random_weights(rng, "q4_k", n, k), random_weights(rng, "q8_0", n, k)
    x = rng.standard_normal((9, k)).astype(np.float32)
    before = ops.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            ops.set_num_threads(threads)
            results.append(ops.linear_multi(x, [wg, wu], wtypes=["q4_k", "q8_0"], activation="silu", glu=True)[0])
        np.testing.assert_array_equal(results[0], results[1])
        alone = ops.linear_multi(x[4:5], [wg, wu], wtypes=["q4_k", "q8_0"], activation="silu", glu=True)[0]
        np.testing.assert_array_equal(alone[0], results[0][4])
    finally:
        ops.set_num_threads(before)


def test_outs_and_scratch_are_used():
    rng = np.random.default_rng(4)
    k = 256
    ws = [random_weights(rng, "q4_0", 32, k), random_weights(rng, "q4_k", 32, k)]
    x = rng.standard_normal((3, k)).astype(np.float32)
    outs = [np.empty((3, 32), np.float32), np.empty((3, 32), np.float32)]
    scratch = np.empty(ops.linear_scratch_bytes(["q4_0", "q4_k"], 3, k), np.uint8)
    ys = ops.linear_multi(x, ws, wtypes=["q4_0", "q4_k"], outs=outs, scratch=scratch, glu=True, activation="silu")
    assert ys[0] is outs[0] and ys[1] is outs[1]
    assert ops.linear_scratch_bytes(["q4_0", "q4_k"], 3, k) > ops.linear_scratch_bytes("q4_k", 3, k)
