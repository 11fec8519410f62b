"""/metrics in Prometheus' text format, its counts checked against what the
clients were told (usage), and its histograms well formed."""

from __future__ import annotations

import pytest

# the server is an optional extra, and its tests drive it with the openai client
for _module in ("httpx", "openai", "starlette", "uvicorn"):
    pytest.importorskip(_module, reason=f"SKIPPED LOUDLY: {_module} missing (pip install 'edgecore[serve,test]')")

import re  # noqa: E402

import httpx  # noqa: E402
from support.serving import paged_loader, serving  # noqa: E402

SAMPLE = re.compile(r'^([a-z_]+)(\{[a-z_]+="[^"]*"\})? (-?[0-9.e+-]+|\+Inf)$')


def parse(text: str) -> tuple[dict, dict]:
    types, samples = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            types[name] = kind
        elif not line.startswith("# HELP "):
            m = SAMPLE.match(line)
            assert m, f"not a Prometheus sample line: {line!r}"
            samples[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return types, samples


def test_metrics_count_what_the_clients_got():
    with serving(paged_loader("demo", pages=32), max_batch=4) as (_, url):
        lengths = [5, 9, 13]
        for n in lengths:
            r = httpx.post(url + "/v1/completions", json={"model": "demo", "prompt": "The list", "max_tokens": n,
                                                         "temperature": 0}, timeout=60)
            assert r.json()["usage"]["completion_tokens"] == n and r.json()["choices"][0]["finish_reason"] == "length"
        response = httpx.get(url + "/metrics")
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    types, s = parse(response.text)
    assert s["edgecore_generated_tokens_total"] == sum(lengths)
    assert s["edgecore_prompt_tokens_total"] == 3 * len(b"The list")
    assert s['edgecore_requests_total{outcome="completed"}'] == 3
    assert s["edgecore_kv_pages_used"] == 0 and s["edgecore_kv_pages_free"] == s["edgecore_kv_pages_total"] == 32
    assert s["edgecore_queue_depth"] == 0 and s["edgecore_active_sequences"] == 0 and s["edgecore_ready"] == 1
    for name, count in (("edgecore_time_to_first_token_seconds", 3),
                        ("edgecore_inter_token_latency_seconds", sum(lengths) - 3)):
        assert types[name] == "histogram"
        buckets = [(k, v) for k, v in s.items() if k.startswith(name + "_bucket")]
        values = [v for _, v in buckets]
        assert values == sorted(values) and buckets[-1][0].endswith('le="+Inf"}') and values[-1] == count
        assert s[name + "_count"] == count and s[name + "_sum"] > 0
    for name in ("edgecore_preemptions_total", "edgecore_generated_tokens_total", "edgecore_steps_total"):
        assert types[name] == "counter"
    assert s["edgecore_tick_seconds_total"] >= s["edgecore_engine_step_seconds_total"] > 0
    assert s["edgecore_step_sequences_total"] >= s["edgecore_steps_total"] > 0
