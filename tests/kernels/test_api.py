"""The public kernel API: capabilities, and every bad-input path raising a
clear TypeError / ValueError (never a crash)."""

import platform
import sys

import numpy as np
import pytest

import edgecore
from edgecore import ops


def test_capabilities_shape():
    caps = edgecore.capabilities()
    assert set(caps) == {"compiled", "available", "active", "features", "weight_prefetch"}
    if platform.machine().lower() not in ("x86_64", "amd64"):
        assert caps["weight_prefetch"] == "none"  # (QEMU user mode shows the host's /proc/cpuinfo)
    elif sys.platform == "linux":  # the non-temporal weight prefetch is AMD's
        vendor = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("vendor_id"))
        assert caps["weight_prefetch"] == ("non-temporal" if vendor == "AuthenticAMD" else "l2")
    assert "scalar" in caps["compiled"] and "scalar" in caps["available"]
    assert set(caps["available"]) <= set(caps["compiled"])
    assert caps["active"] in caps["available"]
    # the default is the best available tier
    assert caps["active"] == caps["available"][-1]


def test_forced_tier_restores_and_rejects_unknown():
    before = ops.capabilities()["active"]
    with ops.forced_tier("scalar"):
        assert ops.capabilities()["active"] == "scalar"
    assert ops.capabilities()["active"] == before
    with pytest.raises(ValueError, match="not available"):
        with ops.forced_tier("sse9"):
            pass


F = np.float32
X = np.ones((2, 4), F)
W = np.ones((3, 4), F)


@pytest.mark.parametrize(
    "kwargs, exc, message",
    [
        (dict(x=X.astype(np.float64), weight=W), TypeError, "x must be a native-byte-order float32"),
        (dict(x=X, weight=W.astype(np.float16)), TypeError, "weight must be a native-byte-order float32"),
        (dict(x=X.astype(">f4"), weight=W), TypeError, "x must be a native-byte-order float32"),
        (dict(x=np.ones((2, 3, 4), F), weight=W), ValueError, r"x must be \[M, K\] or \[K\]"),
        (dict(x=X, weight=np.ones(4, F)), ValueError, "weight must be 2-D"),
        (dict(x=X, weight=np.ones((3, 5), F)), ValueError, r"expected \[N, K\] with K=4"),
        (dict(x=X, weight=np.ones((3, 4), F), transposed=True), ValueError, r"expected \[K, N\] with K=4"),
        (dict(x=X, weight=np.ones((0, 4), F)), ValueError, "no output features"),
        (dict(x=X[:, ::2], weight=W[:, :2]), ValueError, "x must be C-contiguous"),
        (dict(x=X, weight=np.asfortranarray(np.ones((3, 4), F))), ValueError, "weight must be C-contiguous"),
        (dict(x=X, weight=W, bias=np.ones(4, F)), ValueError, r"bias must have shape \(3,\)"),
        (dict(x=X, weight=W, bias=np.ones(3, np.float64)), TypeError, "bias must be a native-byte-order float32"),
        (dict(x=X, weight=W, activation="tanh"), ValueError, "activation must be one of none, relu, gelu"),
        (dict(x=X, weight=W, activation=None), ValueError, "activation must be one of"),
        (dict(x=X, weight=W, out=np.empty((2, 4), F)), ValueError, r"out must have shape \(2, 3\)"),
        (dict(x=X, weight=W, out=np.empty((2, 3), np.float64)), TypeError, "out must be a native-byte-order float32"),
        (dict(x="abc", weight=W), TypeError, "x must be"),
        (dict(x=object(), weight=W), TypeError, "x must be"),
    ],
)
def test_fused_linear_rejects(kwargs, exc, message):
    with pytest.raises(exc, match=message):
        ops.fused_linear(**kwargs)


def test_fused_linear_out_checks():
    ro = np.empty((2, 3), F)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        ops.fused_linear(X, W, out=ro)
    buf = np.ones(32, F)
    x = buf[:8].reshape(2, 4)
    with pytest.raises(ValueError, match="out must not overlap"):
        ops.fused_linear(x, W, out=buf[6:12].reshape(2, 3))
    unaligned = np.frombuffer(np.zeros(4 * 12 + 1, np.uint8).data, dtype=F, count=12, offset=1).reshape(3, 4)
    with pytest.raises(ValueError, match="weight must be aligned"):
        ops.fused_linear(X, unaligned)


def test_fused_linear_accepts_buffer_protocol_objects():
    x = memoryview(np.arange(4, dtype=F))
    y = ops.fused_linear(x, np.eye(4, dtype=F))
    np.testing.assert_array_equal(y, [0, 1, 2, 3])


@pytest.mark.parametrize(
    "args, kwargs, exc, message",
    [
        ((np.ones((2, 8), np.float64), 2), {}, TypeError, "logits must be a native-byte-order float32"),
        ((np.ones((2, 2, 8), F), 2), {}, ValueError, r"logits must be \[T, E\] or \[E\]"),
        ((np.ones((2, 8), F), 0), {}, ValueError, r"k must be in \[1, 8\] for 8 experts, got 0"),
        ((np.ones((2, 8), F), 9), {}, ValueError, r"k must be in \[1, 8\]"),
        ((np.ones((2, 0), F), 1), {}, ValueError, "at least one expert"),
        ((np.ones((2, 8), F), 2), {"bonus": np.ones(7, F)}, ValueError, r"bonus must have shape \(8,\)"),
        ((np.ones((2, 8), F), 2), {"bonus": np.full(8, np.nan, F)}, ValueError, r"bonus\[0\] = nan is not finite"),
        ((np.ones((2, 8), F)[:, ::2], 2), {}, ValueError, "logits must be C-contiguous"),
    ],
)
def test_route_topk_rejects(args, kwargs, exc, message):
    with pytest.raises(exc, match=message):
        ops.route_topk(*args, **kwargs)


def test_route_topk_k_must_be_int():
    with pytest.raises(TypeError):
        ops.route_topk(np.ones((2, 8), F), 2.5)


S = np.zeros(8, F)


@pytest.mark.parametrize(
    "scores, ids, kwargs, exc, message",
    [
        (S.astype(np.float64), [1], {}, TypeError, "scores must be a native-byte-order float32"),
        (np.zeros((2, 4), F), [1], {}, ValueError, r"scores must be 1-D \[E\]"),
        (np.zeros(0, F), [], {}, ValueError, "E >= 1"),
        (S, np.array([1], np.int16), {}, TypeError, "activated must hold int32 or int64"),
        (S, np.array([1.0]), {}, TypeError, "activated must hold int32 or int64"),
        (S, [1], {"decay": 1.5}, ValueError, r"decay must be in \[0, 1\]"),
        (S, [1], {"decay": float("nan")}, ValueError, "decay must be"),
        (S, [1], {"boost": -1.0}, ValueError, "boost must be finite and >= 0"),
        (S, [1], {"max_score": 0.0}, ValueError, "max_score must be finite and > 0"),
        (S, [1], {"counts": np.zeros(8, np.int64)}, TypeError, "counts must be a native-byte-order uint64"),
        (S, [1], {"counts": np.zeros(7, np.uint64)}, ValueError, r"counts must have shape \(8,\)"),
    ],
)
def test_ema_update_rejects(scores, ids, kwargs, exc, message):
    params = {"decay": 0.9, "boost": 1.0}
    params.update(kwargs)
    with pytest.raises(exc, match=message):
        ops.ema_update(scores.copy(), ids, **params)


def test_ema_update_rejects_read_only_scores():
    s = np.zeros(8, F)
    s.flags.writeable = False
    with pytest.raises(ValueError, match="scores is read-only"):
        ops.ema_update(s, [1], decay=0.9, boost=1.0)
