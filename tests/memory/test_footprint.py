"""The process footprint: RSS and peak from the kernel, mapped weight files,
and resetting the peak."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import psutil
import pytest

from edgecore.memory import read_status, reset_peak_rss, sample_footprint
from edgecore.weights import load_safetensors, save_safetensors

MiB = 1 << 20
SAMPLES = Path(__file__).parent.parent / "monitor" / "data"


def test_footprint_matches_psutil():
    sample = sample_footprint()
    rss = psutil.Process().memory_info().rss
    assert abs(sample.rss - rss) < 4 * MiB
    assert sample.peak_rss >= sample.rss
    assert sample.rss_anon + sample.rss_file <= sample.rss
    assert sample.mapped == () and sample.mapped_resident == 0


def test_read_status_on_a_recorded_sample():
    status = read_status(SAMPLES / "rpi4-idle" / "proc" / "self" / "status")
    assert status["VmRSS"] == 187432 * 1024 and status["VmHWM"] == 201876 * 1024
    assert status["RssFile"] == 20480 * 1024
    assert "Cpus_allowed_list" not in status  # not a kB field


def test_sample_without_proc_still_reports_rss(tmp_path):
    sample = sample_footprint(status_path=tmp_path / "missing")
    assert sample.rss > 0
    assert sample.peak_rss is None and sample.rss_anon is None and sample.rss_file is None


def test_mapped_weights_show_up_in_the_footprint(tmp_path):
    path = save_safetensors(tmp_path / "w.safetensors", {"w": np.ones(8 * MiB // 4, np.float32)})
    with load_safetensors(path) as weights:
        before = sample_footprint([weights])
        weights["w"].sum()
        after = sample_footprint([weights])
        (entry,) = after.mapped
        assert entry.path == path and entry.resident >= 8 * MiB
        assert after.mapped_resident - before.mapped_resident >= 8 * MiB
        assert after.rss_file - before.rss_file >= 7 * MiB  # the kernel's own count agrees
        document = after.as_dict()
        json.dumps(document)
        assert document["mapped"][0]["path"] == str(path)


def test_reset_peak_rss_measures_a_phase():
    block = np.ones(64 * MiB, np.uint8)  # raise the peak
    del block
    peak = sample_footprint().peak_rss
    assert reset_peak_rss() is True
    after = sample_footprint()
    assert after.peak_rss < peak - 32 * MiB
    assert after.peak_rss - after.rss < 2 * MiB


def test_reset_peak_rss_reports_failure(tmp_path):
    assert reset_peak_rss(clear_refs_path=tmp_path / "no" / "clear_refs") is False
    fake = tmp_path / "clear_refs"
    fake.write_text("")
    # the write "succeeds" but the recorded status shows the peak far above the RSS
    assert reset_peak_rss(clear_refs_path=fake, status_path=SAMPLES / "rpi4-idle" / "proc" / "self" /
                          "status") is False


@pytest.mark.parametrize("sample", sorted(p.name for p in SAMPLES.iterdir() if p.is_dir()))
def test_every_recorded_status_parses(sample):
    status = read_status(SAMPLES / sample / "proc" / "self" / "status")
    assert status["VmRSS"] > 0 and status["VmHWM"] >= status["VmRSS"]
