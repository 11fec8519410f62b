"""The monitor's readers on recorded /proc and /sys samples (see
data/README.md); expected values are read off the sample files by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecore.monitor import sample_device
from edgecore.monitor._files import key_values, parse_cpu_list

DATA = Path(__file__).parent / "data"
KiB, MiB, GiB = 1024, 1 << 20, 1 << 30


def test_raspberry_pi_idle():
    s = sample_device(DATA / "rpi4-idle")
    assert (s.cpu.online, s.cpu.affinity, s.cpu.quota, s.cpu.usable) == (4, 4, None, 4)
    assert (s.load.one, s.load.five, s.load.fifteen) == (0.08, 0.12, 0.09)
    assert [f.cpu for f in s.frequencies] == [0, 1, 2, 3]
    f0 = s.frequencies[0]
    assert (f0.current_mhz, f0.min_mhz, f0.max_mhz, f0.limit_mhz) == (600, 600, 1800, 1800)
    assert f0.source == "cpufreq"
    assert f0.capped is False
    assert s.memory.total == 3884376 * KiB and s.memory.available == 3145728 * KiB
    assert s.memory.swap_total == 102396 * KiB
    assert s.memory.cgroup_limit is None and s.memory.effective_available == 3145728 * KiB
    assert (s.process.rss, s.process.peak_rss) == (187432 * KiB, 201876 * KiB)
    # one zone: the cpu_thermal hwmon chip mirrors it and is not listed twice
    (zone,) = s.thermal
    assert (zone.name, zone.type, zone.temp_c) == ("thermal_zone0", "cpu-thermal", 47.225)
    assert zone.source == "thermal"
    assert [(t.type, t.temp_c) for t in zone.trips] == [("critical", 110.0)]
    assert zone.throttle_trip.temp_c == 110.0
    t = s.throttling
    assert t.active is False and t.reasons == () and t.firmware_flags == 0 and t.events_since_boot is None
    (fan,) = t.cooling
    assert (fan.type, fan.cur_state, fan.max_state, fan.limits_cpu) == ("gpio-fan", 0, 1, False)


def test_raspberry_pi_hot():
    s = sample_device(DATA / "rpi4-hot")
    assert s.thermal[0].temp_c == 83.224
    assert s.frequencies[2].current_mhz == 1000
    assert s.memory.available == 196608 * KiB
    t = s.throttling
    assert t.firmware_flags == 0xE0006 and t.active is True
    assert t.reasons == ("Raspberry Pi firmware: ARM frequency capped now",
                         "Raspberry Pi firmware: throttled now")
    assert t.cooling[0].cur_state == 1  # the fan runs; a fan is not throttling


def test_container_with_cgroup_v2_limits():
    s = sample_device(DATA / "container-cgroup2")
    # 8 CPUs in the affinity mask, but a quota of 1.5 CPUs: 2 are worth threads
    assert (s.cpu.online, s.cpu.affinity, s.cpu.quota, s.cpu.usable) == (8, 8, 1.5, 2)
    assert s.memory.total == 16303296 * KiB and s.memory.swap_total == 0
    assert s.memory.cgroup_limit == 2 * GiB
    # usage 1 GiB of which 256 MiB is inactive file cache the kernel can drop
    assert s.memory.cgroup_used == GiB - 256 * MiB
    assert s.memory.effective_available == 2 * GiB - (GiB - 256 * MiB)
    assert s.memory.effective_total == 2 * GiB
    assert [f.current_mhz for f in s.frequencies] == [3400 + 100 * i for i in range(8)]
    names = [(z.name, z.type) for z in s.thermal]
    assert names == [("thermal_zone0", "acpitz"), ("thermal_zone1", "x86_pkg_temp"),
                     ("hwmon2/temp1", "coretemp Package id 0"), ("hwmon2/temp2", "coretemp Core 0")]
    acpi, pkg, package, core = s.thermal
    assert acpi.trips[0].temp_c == 105.0
    assert pkg.temp_c == 61.0 and pkg.trips == () and pkg.throttle_trip is None  # its 0 trips are unset
    assert [(t.type, t.temp_c) for t in package.trips] == [("hot", 80.0), ("critical", 100.0)]
    assert core.temp_c == 58.0
    t = s.throttling
    # Processor cooling at state 0 of 3: known, not active; powerclamp's -1 is no state
    assert t.active is False and t.reasons == ()
    assert t.events_since_boot == 3 + 12  # core events plus the package count, once per package
    assert t.firmware_flags is None


def test_machine_without_thermal_zones():
    s = sample_device(DATA / "vm-no-thermal")
    assert (s.cpu.online, s.cpu.affinity, s.cpu.quota, s.cpu.usable) == (2, 2, None, 2)
    assert s.thermal == ()
    assert s.throttling.active is None and s.throttling.cooling == ()
    assert s.throttling.events_since_boot is None
    # no cpufreq: the clock comes from /proc/cpuinfo, with no limits known
    assert [f.source for f in s.frequencies] == ["cpuinfo", "cpuinfo"]
    assert s.frequencies[0].current_mhz == 2445.404 and s.frequencies[0].max_mhz is None
    assert s.frequencies[0].capped is None
    # cgroup v1 with the "no limit" value: no limit
    assert s.memory.cgroup_limit is None and s.memory.cgroup_used is None
    assert s.memory.total == 24683656 * KiB and s.memory.available == 22323012 * KiB
    assert s.load.one == 4.42


def test_an_empty_root_reports_unknown_not_zero(tmp_path):
    s = sample_device(tmp_path)
    assert (s.cpu.online, s.cpu.affinity, s.cpu.quota, s.cpu.usable) == (None, None, None, None)
    assert s.load is None and s.frequencies == () and s.thermal == ()
    assert s.memory.total is None and s.memory.available is None and s.memory.effective_available is None
    assert s.process.rss is None and s.process.peak_rss is None
    assert s.throttling.active is None


def test_unreadable_values_are_unknown(tmp_path):
    zone = tmp_path / "sys/class/thermal/thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "type").write_text("soc\n")
    (zone / "temp").write_text("garbage\n")
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/loadavg").write_text("not numbers\n")
    (tmp_path / "proc/meminfo").write_text("MemTotal: lots kB\n")
    s = sample_device(tmp_path)
    assert s.thermal[0].temp_c is None and s.load is None and s.memory.total is None


def test_cgroup_v1_memory_limit(tmp_path):
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/cgroup").write_text("4:memory:/job\n0::/\n")
    job = tmp_path / "sys/fs/cgroup/memory/job"
    job.mkdir(parents=True)
    (job / "memory.limit_in_bytes").write_text(f"{512 * MiB}\n")
    (job / "memory.usage_in_bytes").write_text(f"{300 * MiB}\n")
    (job / "memory.stat").write_text(f"cache 1\ntotal_inactive_file {100 * MiB}\n")
    s = sample_device(tmp_path)
    assert s.memory.cgroup_limit == 512 * MiB and s.memory.cgroup_used == 200 * MiB
    assert s.memory.effective_available == 312 * MiB  # MemAvailable unknown: the cgroup's headroom


def test_cgroup_v2_parent_limit_binds(tmp_path):
    (tmp_path / "proc/self").mkdir(parents=True)
    (tmp_path / "proc/self/cgroup").write_text("0::/outer/inner\n")
    root = tmp_path / "sys/fs/cgroup"
    (root / "outer/inner").mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu memory\n")
    (root / "outer/memory.max").write_text(f"{GiB}\n")
    (root / "outer/memory.current").write_text(f"{900 * MiB}\n")
    (root / "outer/inner/memory.max").write_text("max\n")
    (root / "outer/inner/memory.current").write_text(f"{10 * MiB}\n")
    (root / "outer/cpu.max").write_text("50000 100000\n")
    s = sample_device(tmp_path)
    assert s.memory.cgroup_limit == GiB and s.memory.effective_available == 124 * MiB
    assert s.cpu.quota == 0.5


@pytest.mark.parametrize("text, expected", [
    ("0-3", {0, 1, 2, 3}), ("0", {0}), ("0-1,4,6-7", {0, 1, 4, 6, 7}), ("", None), ("x", None), (None, None),
])
def test_parse_cpu_list(text, expected):
    assert parse_cpu_list(text) == expected


def test_key_values():
    assert key_values("VmRSS:\t 12 kB\nbad line\n", ":") == {"VmRSS": "12 kB"}
    assert key_values("anon 5\ninactive_file 7\n\n") == {"anon": "5", "inactive_file": "7"}


def test_as_dict_is_json_ready():
    import json

    for sample in ("rpi4-hot", "container-cgroup2", "vm-no-thermal"):
        document = json.loads(json.dumps(sample_device(DATA / sample).as_dict()))
        assert document["root"].endswith(sample)
    document = sample_device(DATA / "rpi4-hot").as_dict()
    assert document["thermal"][0]["throttle_trip"] == {"type": "critical", "temp_c": 110.0}
    assert document["memory"]["effective_available"] == 196608 * KiB
    assert document["frequencies"][0]["capped"] is False


def test_live_system_reads_without_errors():
    s = sample_device()
    assert s.cpu.usable is None or s.cpu.usable >= 1
    assert s.memory.total is None or s.memory.total > 0
