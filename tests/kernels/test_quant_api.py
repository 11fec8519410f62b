"""The weight-type registry as Python sees it, dispatch of (tier, feature)
variants, and every bad argument of the weight-type ops raising one named
error (never a crash or a wrong answer)."""

import numpy as np
import pytest
from support.quant import TYPES, kernel_configs, random_weights, row_bytes

from edgecore import ops

GGML_IDS = {
    "f32": 0,
    "f16": 1,
    "q4_0": 2,
    "q4_1": 3,
    "q5_0": 6,
    "q5_1": 7,
    "q8_0": 8,
    "q4_k": 12,
    "q5_k": 13,
    "q6_k": 14,
    "bf16": 30,
}
# (block elements, block bytes) from ggml's type traits (gguf.constants.GGML_QUANT_SIZES)
GGML_SIZES = {
    "f32": (1, 4),
    "f16": (1, 2),
    "bf16": (1, 2),
    "q4_0": (32, 18),
    "q4_1": (32, 20),
    "q5_0": (32, 22),
    "q5_1": (32, 24),
    "q8_0": (32, 34),
    "q4_k": (256, 144),
    "q5_k": (256, 176),
    "q6_k": (256, 210),
}


def test_registry_lists_every_type_once_with_ggml_ids_and_sizes():
    types = ops.weight_types()
    assert [t["name"] for t in types] == list(dict.fromkeys(t["name"] for t in types))
    assert {t["name"]: t["id"] for t in types} == GGML_IDS
    assert {t["name"]: (t["block_elems"], t["block_bytes"]) for t in types} == GGML_SIZES
    for t in types:
        want = "f32" if t["block_elems"] == 1 else ("q8_256" if t["block_elems"] == 256 else "q8_32")
        assert t["activations"] == want


def test_sizes_agree_with_gguf_package():
    gguf = pytest.importorskip("gguf", reason="LOUD SKIP: gguf not installed")
    for name, (elems, nbytes) in GGML_SIZES.items():
        assert gguf.constants.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[name.upper()]] == (elems, nbytes)


def test_every_type_has_a_complete_scalar_variant():
    for t in ops.weight_types():
        scalar = [v for v in t["variants"] if v["tier"] == "scalar" and not v["features"]]
        assert len(scalar) == 1, t["name"]
        assert scalar[0]["dequantize"]
        assert scalar[0]["gemm"] == (t["name"] != "f32")  # f32 runs the tuned linear_f32
        for v in t["variants"]:
            assert 1 <= v["mr"] <= 8 and 1 <= v["nr"] <= 16 or not v["gemm"]


def test_avx512_packs_the_32_block_types_and_vnni_k_quants():
    """The avx512 kernels of the 32-element block types, and the VNNI ones
    of q4_k, q5_k and q6_k, decode each strip of weight rows once per call
    (csrc/common/qkernels.h, packed strips); the row-independence tests
    compare those calls with unpacked ones."""
    packing = {(t["name"], v["label"]) for t in ops.weight_types() for v in t["variants"] if v["packs"]}
    for t in ops.weight_types():
        for v in t["variants"]:
            block32 = t["name"] in ("q8_0", "q4_0", "q4_1", "q5_0", "q5_1")
            k_vnni = t["name"] in ("q4_k", "q5_k", "q6_k") and v["features"] == ["avx512_vnni"]
            if v["tier"] == "avx512" and (block32 or k_vnni):
                assert (t["name"], v["label"]) in packing
    assert all(label.startswith("avx512") for _, label in packing)


def expected_dispatch(name, tier, features):
    """The dispatch rule, re-implemented from the registry listing: per slot,
    the tiers the active one runs, best first; in a tier, the first listed
    variant whose features are all enabled."""
    order = {
        "avx512": ["avx512", "avx2", "scalar"],
        "avx2": ["avx2", "scalar"],
        "neon": ["neon", "scalar"],
        "scalar": ["scalar"],
    }[tier]
    variants = TYPES[name]["variants"]

    def pick(slot):
        for t in order:
            for v in variants:
                if v["tier"] == t and v[slot] and set(v["features"]) <= set(features):
                    return v["label"]
        return None

    gemm = tier if name == "f32" else pick("gemm")
    return gemm, pick("dequantize")


def test_dispatch_follows_the_registry(kernel_config):
    tier, features = kernel_config
    caps = ops.capabilities()
    assert caps["active"] == tier
    assert sorted(f["name"] for f in caps["features"] if f["active"]) == sorted(features)
    for name in TYPES:
        d = ops.kernel_dispatch(name)
        assert (d["gemm"], d["dequantize"]) == expected_dispatch(name, tier, features), name
        assert (d["activations"] is None) == (TYPES[name]["activations"] == "f32")


def test_configs_cover_every_available_feature():
    configs = kernel_configs()
    usable = {f for _, feats in configs for f in feats}
    detected = {f["name"] for f in ops.capabilities()["features"] if f["compiled"] and f["detected"]}
    assert usable == detected
    assert {t for t, _ in configs} == set(ops.capabilities()["available"])


def test_forced_features_are_checked_and_restored():
    before = ops.capabilities()
    with ops.forced_tier("scalar", []):
        assert not any(f["active"] for f in ops.capabilities()["features"])
    assert ops.capabilities() == before
    with pytest.raises(ValueError, match="unknown feature 'sse9'"):
        with ops.forced_tier("scalar", ["sse9"]):
            pass
    foreign = next(f["name"] for f in before["features"] if f["tier"] not in ("scalar",))
    with pytest.raises(ValueError, match="not all available to the scalar tier"):
        with ops.forced_tier("scalar", [foreign]):
            pass
    assert ops.capabilities() == before


def test_features_belong_to_tiers_and_detection_implies_nothing_active_elsewhere():
    caps = ops.capabilities()
    names = [f["name"] for f in caps["features"]]
    assert names == ["avx_vnni", "avx512_vnni", "avx512_bf16", "dotprod", "i8mm"]
    for f in caps["features"]:
        assert f["tier"] in caps["compiled"] or not f["compiled"]
        assert not f["active"] or (f["compiled"] and f["detected"])


F = np.float32
K = 64
X = np.ones((2, K), F)
Q4 = random_weights(np.random.default_rng(0), "q4_0", 3, K)


@pytest.mark.parametrize(
    "kwargs, exc, message",
    [
        (dict(wtype="q9_9"), ValueError, "unknown weight type 'q9_9'; expected one of f32, f16"),
        (dict(wtype=99), ValueError, "unknown weight type 99"),
        (dict(wtype=None), TypeError, "wtype must be a weight type name or GGML type id"),
        (dict(wtype=True), TypeError, "wtype must be"),
        (dict(weight=Q4.view(np.int8)), TypeError, r"weight for q4_0 must be a native-byte-order uint8"),
        (dict(weight=Q4[:, :-1]), ValueError, "weight must be C-contiguous"),
        (dict(weight=np.ascontiguousarray(Q4[:, :-2])), ValueError, r"q4_0 expects \[N, 36\]"),
        (dict(weight=Q4.reshape(-1)), ValueError, r"weight for q4_0 must be 2-D"),
        (dict(x=np.ones((2, 48), F), weight=Q4), ValueError, "q4_0 weights need K to be a multiple of 32, x has K=48"),
        (dict(wtype="q4_k"), ValueError, "q4_k weights need K to be a multiple of 256"),
        (dict(transposed=True), ValueError, "transposed=True is for f32 weights only"),
        (dict(x=X.astype(np.float64)), TypeError, "x must be a native-byte-order float32"),
        (dict(x=np.ones((2, 2, K), F)), ValueError, r"x must be \[M, K\] or \[K\]"),
        (dict(bias=np.ones(4, F)), ValueError, r"bias must have shape \(3,\)"),
        (dict(activation="tanh"), ValueError, "activation must be one of"),
        (dict(out=np.empty((2, 4), F)), ValueError, r"out must have shape \(2, 3\)"),
        (dict(out=np.empty((2, 3), F)[:, ::-1]), ValueError, "out must be C-contiguous"),
        (dict(scratch=np.empty(10, np.uint8)), ValueError, "scratch has 10 bytes, this call needs"),
        (dict(scratch=np.empty(10000, np.float32)), TypeError, "scratch must be a native-byte-order uint8"),
        (dict(weight=np.zeros((0, 36), np.uint8)), ValueError, "no output features"),
    ],
)
def test_linear_bad_arguments(kwargs, exc, message):
    args = dict(x=X, weight=Q4, wtype="q4_0")
    args.update(kwargs)
    x, w = args.pop("x"), args.pop("weight")
    with pytest.raises(exc, match=message):
        ops.linear(x, w, **args)


def test_half_weight_dtypes():
    rng = np.random.default_rng(1)
    w16 = random_weights(rng, "f16", 5, K)
    x = rng.standard_normal((2, K)).astype(F)
    np.testing.assert_array_equal(ops.linear(x, w16, wtype="f16"), ops.linear(x, w16.view(np.uint16), wtype="f16"))
    with pytest.raises(TypeError, match="weight for bf16 must be a native-byte-order uint16"):
        ops.linear(x, w16, wtype="bf16")
    with pytest.raises(TypeError, match="weight for f32 must be a native-byte-order float32"):
        ops.linear(x, w16, wtype="f32")
    assert ops.linear(x, w16, wtype=1).shape == (2, 5)  # GGML id works as a name


def test_overlapping_outputs_and_scratch_are_rejected():
    buf = np.zeros(2 * 3 + 2 * K, F)
    x = buf[6:].reshape(2, K)
    x[:] = 1
    with pytest.raises(ValueError, match="out must not overlap x, the weights"):
        ops.linear(x, Q4, wtype="q4_0", out=buf[4:10].reshape(2, 3))
    need = ops.linear_scratch_bytes("q4_0", 2, K)
    big = np.zeros(need + 24, np.uint8)
    out = big[:24].view(F).reshape(2, 3)
    with pytest.raises(ValueError, match="scratch must not overlap"):
        ops.linear(np.ones((2, K), F), Q4, wtype="q4_0", out=out, scratch=big)
    with pytest.raises(ValueError, match=r"outs\[1\] must not overlap"):
        y = np.empty((2, 3), F)
        ops.linear_multi(np.ones((2, K), F), [Q4, Q4], wtypes="q4_0", outs=[y, y])


def test_linear_multi_bad_arguments():
    x = np.ones((2, K), F)
    w8 = random_weights(np.random.default_rng(2), "q8_0", 4, K)
    with pytest.raises(ValueError, match="glu=True needs exactly two weights"):
        ops.linear_multi(x, [Q4], wtypes="q4_0", glu=True)
    with pytest.raises(ValueError, match="glu=True needs gate and up of equal N, got 3 and 4"):
        ops.linear_multi(x, [Q4, w8], wtypes=["q4_0", "q8_0"], glu=True)
    with pytest.raises(ValueError, match="2 weights but 1 wtypes"):
        ops.linear_multi(x, [Q4, w8], wtypes=["q4_0"])
    with pytest.raises(ValueError, match="2 weights but 3 biases"):
        ops.linear_multi(x, [Q4, w8], wtypes=["q4_0", "q8_0"], biases=[None] * 3)
    with pytest.raises(ValueError, match="between 1 and 16 weights"):
        ops.linear_multi(x, [Q4] * 17, wtypes="q4_0")
    with pytest.raises(TypeError, match=r"weights\[1\] for q8_0 must be"):
        ops.linear_multi(x, [Q4, Q4.view(np.int8)], wtypes=["q4_0", "q8_0"])
    with pytest.raises(TypeError, match="weights must be a sequence"):
        ops.linear_multi(x, Q4, wtypes="q4_0")


def test_dequantize_and_quantize_bad_arguments():
    with pytest.raises(ValueError, match=r"rows\[2\] = 3 is outside \[0, 3\)"):
        ops.dequantize_rows(Q4, np.array([0, 1, 3]), wtype="q4_0")
    with pytest.raises(ValueError, match=r"rows\[0\] = -1 is outside"):
        ops.dequantize_rows(Q4, [-1], wtype="q4_0")
    with pytest.raises(TypeError, match="rows must be an integer array"):
        ops.dequantize_rows(Q4, np.array([0.0]), wtype="q4_0")
    with pytest.raises(ValueError, match="rows of 35 bytes are not whole q4_0 blocks"):
        ops.dequantize_rows(np.zeros((3, 35), np.uint8), [0], wtype="q4_0")
    with pytest.raises(ValueError, match=r"out must have shape \(2, 64\)"):
        ops.dequantize_rows(Q4, [0, 1], wtype="q4_0", out=np.empty((2, 63), F))
    with pytest.raises(ValueError, match="no quantizer for q4_k; supported: f16, bf16, q8_0"):
        ops.quantize(np.ones((1, 256), F), "q4_k")
    with pytest.raises(ValueError, match="q8_0 needs K to be a multiple of 32, x has K=33"):
        ops.quantize(np.ones((1, 33), F), "q8_0")
    with pytest.raises(TypeError, match="x must be a native-byte-order float32"):
        ops.quantize(np.ones((1, 32)), "q8_0")
    with pytest.raises(ValueError, match="format must be one of q8_32, q8_256"):
        ops.quantize_activations(np.ones((1, 32), F), "q4")
    with pytest.raises(ValueError, match="q8_256 needs K to be a positive multiple of 256"):
        ops.quantize_activations(np.ones((1, 32), F), "q8_256")


def test_quantize_shapes_follow_the_weight_layouts():
    x = np.random.default_rng(3).standard_normal((3, 64)).astype(F)
    for name in ("q8_0", "q4_0", "q4_1", "q5_0", "q5_1"):
        q = ops.quantize(x, name)
        assert q.dtype == np.uint8 and q.shape == (3, row_bytes(name, 64))
        assert ops.quantize(x[0], name).shape == (row_bytes(name, 64),)
    assert ops.quantize(x, "f16").dtype == np.float16
    assert ops.quantize(x, "bf16").dtype == np.uint16
