"""Shared fixtures: kernel tiers forced one at a time, and a record of which
tiers actually ran (printed at the end of the session, so CI logs show it)."""

import os

import pytest

from edgecore import ops

CAPS = ops.capabilities()
TIERS_RUN: set[str] = set()


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory):
    """Device calibration is cached per test session, not in ~/.cache."""
    os.environ["EDGECORE_CACHE_DIR"] = str(tmp_path_factory.mktemp("edgecore-cache"))


@pytest.fixture(params=CAPS["available"])
def tier(request):
    """Every compiled-and-available kernel tier, forced in turn."""
    with ops.forced_tier(request.param):
        TIERS_RUN.add(request.param)
        yield request.param


def _kernel_configs():
    from support.quant import kernel_configs

    return kernel_configs()


@pytest.fixture(params=_kernel_configs(), ids=lambda c: "+".join((c[0],) + tuple(c[1])))
def kernel_config(request):
    """Every available (tier, sub-features) combination, forced in turn: each
    tier plain, with each usable feature alone and with all of them. Tests
    of one weight type use support.quant.variant_params instead, which keeps
    only the configs that select a distinct kernel."""
    tier, features = request.param
    with ops.forced_tier(tier, list(features)):
        TIERS_RUN.add(tier)
        yield request.param


@pytest.fixture(scope="session")
def tested_tiers() -> set[str]:
    """The names the summary lists as tested. A test that runs a tier's kernels
    without the `tier` fixture (the emulated AVX-512 check) adds its own."""
    return TIERS_RUN


def pytest_terminal_summary(terminalreporter):
    tr = terminalreporter
    tr.section("edgecore kernel tiers")
    tr.write_line(f"compiled:  {', '.join(CAPS['compiled'])}")
    tr.write_line(f"available: {', '.join(CAPS['available'])}  (default active: {CAPS['active']})")
    tr.write_line(f"tested:    {', '.join(sorted(TIERS_RUN)) or 'none'}")
    skipped = [t for t in CAPS["compiled"] if t not in CAPS["available"]]
    if skipped:
        tr.write_line(f"NOT RUN on this CPU (compiled, unsupported here): {', '.join(skipped)}")
