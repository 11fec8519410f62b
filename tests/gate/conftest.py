"""Builders for small synthetic baseline/candidate runs."""

from __future__ import annotations

import pytest

from edgecore.gate import Observation


def observation(rid: str, **fields) -> Observation:
    base = dict(request_id=rid, model="m", model_version="1", backend="avx2", accelerator="x86", ok=True,
                latency_ms=100.0, ttft_ms=20.0, decode_ms=(10.0, 10.0), output_tokens=(1, 2, 3),
                kv_pages=10, kv_pages_total=100, queue_depth=0, route="dense", scheduler="fp")
    base.update(fields)
    return Observation(**base)


def run(n: int = 20, **candidate_fields) -> tuple[list[Observation], list[Observation]]:
    """n identical baseline/candidate pairs; candidate fields overridden."""
    base = [observation(f"r{i:02d}") for i in range(n)]
    cand = [observation(f"r{i:02d}", model_version="2", **candidate_fields) for i in range(n)]
    return base, cand


@pytest.fixture(scope="session")
def make_run():
    return run


@pytest.fixture(scope="session")
def make_obs():
    return observation
