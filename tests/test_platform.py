"""The kernel tiers this build reports match the machine it runs on.

The expected tiers come from independent sources: /proc/cpuinfo flags on
x86_64 (Linux clears AVX flags when the OS does not save the registers) and
getauxval(AT_HWCAP) through ctypes on aarch64 (under QEMU, /proc/cpuinfo shows
the host CPU). On aarch64 the default tier must be NEON: this is the test that
proves the NEON kernels are what the aarch64 wheel runs (tools/check-aarch64.sh).
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

import numpy as np
import pytest

import edgecore

MACHINE = platform.machine().lower()
IS_X86_64 = MACHINE in ("x86_64", "amd64")
IS_AARCH64 = MACHINE in ("aarch64", "arm64")
ORDER = ["scalar", "avx2", "avx512", "neon"]  # the dispatcher prefers later tiers
ISA_CAP = os.environ.get("EDGECORE_ISA", "").strip().lower()

AT_HWCAP = 16
AT_HWCAP2 = 26
HWCAP_ASIMD = 1 << 1
HWCAP_ASIMDDP = 1 << 20
HWCAP2_I8MM = 1 << 13


def cpuinfo_flags() -> set[str]:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def expected_available() -> list[str]:
    if IS_X86_64 and sys.platform == "linux":
        flags = cpuinfo_flags()
        tiers = ["scalar"]
        if {"avx2", "fma", "f16c"} <= flags:
            tiers.append("avx2")
            if {"avx512f", "avx512bw", "avx512dq", "avx512vl"} <= flags:
                tiers.append("avx512")
        return tiers
    if IS_AARCH64 and sys.platform == "linux":
        hwcap = ctypes.CDLL(None).getauxval
        hwcap.restype = ctypes.c_ulong
        hwcap.argtypes = [ctypes.c_ulong]
        return ["scalar", "neon"] if hwcap(AT_HWCAP) & HWCAP_ASIMD else ["scalar"]
    pytest.skip(f"no independent CPU feature source for {MACHINE} on {sys.platform}")


@pytest.mark.skipif(not IS_X86_64, reason="x86_64 build")
def test_x86_64_build_compiles_every_x86_tier():
    assert edgecore.capabilities()["compiled"] == ["scalar", "avx2", "avx512"]


@pytest.mark.skipif(not IS_AARCH64, reason="aarch64 build")
def test_aarch64_build_compiles_neon_and_no_x86_tier():
    assert edgecore.capabilities()["compiled"] == ["scalar", "neon"]


def test_available_tiers_match_the_cpu():
    assert edgecore.capabilities()["available"] == expected_available()


def test_active_tier_is_the_best_one_allowed():
    caps = edgecore.capabilities()
    allowed = [t for t in caps["available"] if not ISA_CAP or ORDER.index(t) <= ORDER.index(ISA_CAP)]
    assert caps["active"] == max(allowed, key=ORDER.index)


@pytest.mark.skipif(not IS_AARCH64, reason="aarch64 build")
def test_aarch64_runs_neon_by_default():
    if ISA_CAP:
        pytest.skip(f"EDGECORE_ISA={ISA_CAP} caps the tier")
    assert edgecore.capabilities()["active"] == "neon"


def test_each_tier_computes_a_linear_layer_like_numpy(tier):
    """A smoke check that the tier dispatched here computes, not only loads:
    odd sizes cover the vector tails, float64 NumPy is the reference."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 37), dtype=np.float32)
    w = rng.standard_normal((11, 37), dtype=np.float32)
    b = rng.standard_normal(11, dtype=np.float32)
    ref = x.astype(np.float64) @ w.astype(np.float64).T + b
    got = edgecore.ops.fused_linear(x, w, b)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    got_t = edgecore.ops.fused_linear(x, np.ascontiguousarray(w.T), b, transposed=True)
    np.testing.assert_allclose(got_t, ref, rtol=1e-5, atol=1e-5)


def getauxval(key: int) -> int:
    fn = ctypes.CDLL(None).getauxval
    fn.restype = ctypes.c_ulong
    fn.argtypes = [ctypes.c_ulong]
    return fn(key)


def expected_features() -> set[str]:
    """Sub-features the CPU and OS offer, from the same independent sources
    (Linux lists avx512_vnni / avx_vnni / avx512_bf16 only when usable)."""
    if IS_X86_64 and sys.platform == "linux":
        flags = cpuinfo_flags()
        tiers = expected_available()
        found = set()
        if "avx2" in tiers and "avx_vnni" in flags:
            found.add("avx_vnni")
        if "avx512" in tiers:
            found |= {f for f in ("avx512_vnni", "avx512_bf16") if f in flags}
        return found
    if IS_AARCH64 and sys.platform == "linux":
        found = set()
        if getauxval(AT_HWCAP) & HWCAP_ASIMDDP:
            found.add("dotprod")
        if getauxval(AT_HWCAP2) & HWCAP2_I8MM:
            found.add("i8mm")
        return found
    pytest.skip(f"no independent CPU feature source for {MACHINE} on {sys.platform}")


def test_detected_features_match_the_cpu():
    detected = {f["name"] for f in edgecore.capabilities()["features"] if f["detected"]}
    assert detected == expected_features()


def test_features_of_this_architecture_are_compiled():
    """The probes of setup.py pass with the project's compilers (GCC >= 11
    on x86-64, the Debian cross GCC on aarch64): every feature of this
    architecture's tiers is built, none of the other's."""
    compiled = {f["name"] for f in edgecore.capabilities()["features"] if f["compiled"]}
    if IS_X86_64:
        assert compiled == {"avx_vnni", "avx512_vnni", "avx512_bf16"}
    elif IS_AARCH64:
        assert compiled == {"dotprod", "i8mm"}
