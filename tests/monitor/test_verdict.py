"""The "constrained" verdict and its thresholds, on the recorded samples."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecore.monitor import Thresholds, assess, sample_device

DATA = Path(__file__).parent / "data"
MiB = 1 << 20


def verdict(sample: str, **thresholds):
    return assess(sample_device(DATA / sample), Thresholds(**thresholds))


def test_idle_pi_is_not_constrained():
    v = verdict("rpi4-idle")
    assert not v.constrained and v.reasons == () and v.unknown == ()


def test_hot_pi_is_constrained_for_every_reason():
    v = verdict("rpi4-hot")
    assert v.constrained
    kinds = [reason.split(":")[0] for reason in v.reasons]
    assert kinds == ["hot", "throttled", "throttled", "low memory", "loaded"]
    assert "cpu-thermal (thermal_zone0) at 83.2 °C, limit 80.0 °C" in v.reasons[0]
    assert "192 KiB" not in v.reasons[3] and "192 MiB available of 3.7 GiB" in v.reasons[3]
    assert "load 4.52 over 4 usable CPU(s) = 1.13 per CPU" in v.reasons[4]


def test_thresholds_move_the_verdict():
    # 83.2 °C is fine under an 85 °C limit; the critical trip (110 °C) is far
    v = verdict("rpi4-hot", max_temp_c=85, min_available_fraction=0.04, max_load_per_cpu=1.5)
    assert [r.split(":")[0] for r in v.reasons] == ["throttled", "throttled"]


def test_within_the_trip_margin_is_hot():
    v = verdict("rpi4-hot", max_temp_c=200, trip_margin_c=30)  # 110 - 30 = 80 <= 83.2
    assert v.reasons[0].startswith("hot:")
    assert "within 30.0 °C of its critical trip point at 110.0 °C" in v.reasons[0]
    v = verdict("rpi4-hot", max_temp_c=200, trip_margin_c=20)  # 90 > 83.2
    assert not any(r.startswith("hot:") for r in v.reasons)


def test_quota_makes_a_moderate_load_count():
    # load 2.1 on an 8-CPU host is light, but the container may use 2 CPUs
    v = verdict("container-cgroup2")
    assert v.reasons == ("loaded: 1-minute load 2.10 over 2 usable CPU(s) = 1.05 per CPU, limit 1.00",)


def test_memory_floor_in_bytes():
    # the container can still get 1.25 GiB: below a 1.5 GiB floor
    v = verdict("container-cgroup2", max_load_per_cpu=2, min_available_bytes=1536 * MiB)
    assert v.reasons == ("low memory: 1.2 GiB available of 2.0 GiB, below 1.5 GiB",)


def test_unknowns_are_listed_not_guessed():
    v = verdict("vm-no-thermal", max_load_per_cpu=100)
    assert not v.constrained
    assert v.unknown == ("temperature (no readable thermal sensor)",
                         "throttling (not exposed by this system)")


def test_empty_root_is_all_unknown(tmp_path):
    v = assess(sample_device(tmp_path))
    assert not v.constrained and len(v.unknown) == 4


@pytest.mark.parametrize("bad", [{"min_available_fraction": 1.0}, {"min_available_fraction": -0.1},
                                 {"trip_margin_c": -1}, {"max_load_per_cpu": 0}, {"min_available_bytes": -5}])
def test_invalid_thresholds(bad):
    with pytest.raises(ValueError):
        Thresholds(**bad)
