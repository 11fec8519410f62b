"""The neon tier's weight-type kernels (plain, +dotprod, +i8mm): they are what
the dispatcher runs when their features are enabled, and their results are
bit for bit the scalar kernels' (docs/quantization.md, "neon tier": exact
integer sums, then the scalar kernel's float steps in its order). Runs on
aarch64 (natively or under QEMU, tools/check-aarch64.sh); elsewhere the
module skips with the reason."""

import numpy as np
import pytest
from support.quant import TYPES, block_of, random_weights, use, variant_params

from edgecore import ops

pytestmark = pytest.mark.skipif(
    "neon" not in ops.capabilities()["available"],
    reason="LOUD SKIP: the neon tier is not available on this machine (aarch64 only; "
    "tools/check-aarch64.sh runs these tests under QEMU)",
)

NEON_PARAMS = [p for p in variant_params() if p.values[1][0] == "neon"]


def detected_features() -> set[str]:
    with ops.forced_tier("neon"):
        return {f["name"] for f in ops.capabilities()["features"] if f["detected"]}


def test_every_registered_neon_variant_is_dispatched():
    """Each neon table line whose features this CPU has is the one that runs
    when exactly those features are enabled (a broken table line or a
    feature mix-up would fall back to another kernel and pass silently)."""
    have = detected_features()
    checked = 0
    for t in ops.weight_types():
        for v in t["variants"]:
            if v["tier"] != "neon" or not v["gemm"] or not set(v["features"]) <= have:
                continue
            with ops.forced_tier("neon", v["features"]):
                assert ops.kernel_dispatch(t["name"])["gemm"] == v["label"], (t["name"], v["label"])
            checked += 1
    assert checked >= 10  # every quantized and half type has at least a plain neon kernel


def shapes(name):
    if block_of(name) == 256:
        return [(1, 37, 256), (3, 17, 768), (8, 16, 512), (13, 33, 256)]
    if block_of(name) == 32:
        return [(1, 37, 576), (2, 19, 32), (5, 16, 96), (8, 3, 288), (17, 21, 64)]
    return [(1, 37, 576), (2, 19, 1), (5, 16, 7), (8, 3, 33), (17, 21, 65)]


@pytest.mark.parametrize("name, config", NEON_PARAMS)
def test_bitwise_equal_to_scalar(name, config):
    """Every M tile shape (1..8 rows, an odd last row for i8mm's row pairs),
    column tails and K tails, with NaN/inf rows: the same bits as scalar."""
    rng = np.random.default_rng(TYPES[name]["id"])
    for m, n, k in shapes(name):
        w = random_weights(rng, name, n, k)
        x = (rng.standard_normal((m, k)) * np.exp(rng.uniform(-3, 2, (m, 1)))).astype(np.float32)
        if m > 2:
            x[1, k // 2] = np.nan
            x[2, 0] = -np.inf
        with use(("scalar", ())):
            want = ops.linear(x, w, wtype=name)
        with use(config):
            got = ops.linear(x, w, wtype=name)
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32), err_msg=f"{name} m={m} n={n} k={k}")
