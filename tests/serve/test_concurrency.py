"""32 concurrent streaming clients on a KV cache too small for them all:
the scheduler batches and preempts (watched on /metrics), and every client
still gets exactly the text it gets alone (`Engine.generate`), and a
replay of the same arrivals makes the same decisions."""

from __future__ import annotations

import pytest

# the server is an optional extra, and its tests drive it with the openai client
for _module in ("httpx", "openai", "starlette", "uvicorn"):
    pytest.importorskip(_module, reason=f"SKIPPED LOUDLY: {_module} missing (pip install 'edgecore[serve,test]')")

import asyncio  # noqa: E402

import openai  # noqa: E402
from support.serving import metric, paged_loader, serving  # noqa: E402

from edgecore.engine import Engine  # noqa: E402
from edgecore.scheduler import Workload, replay  # noqa: E402

CLIENTS = 32


def request(i: int) -> dict:
    prompts = ["The list", "Once upon a time", "In the year", "A dog and a cat", "She said"]
    case = {"prompt": prompts[i % len(prompts)] + " " * (i % 3), "max_tokens": 12 + (i * 7) % 21}
    if i % 2:
        case.update(temperature=0.8 + (i % 4) / 10, seed=1000 + i)
    else:
        case.update(temperature=0)
    return case


async def stream_one(client, case: dict) -> tuple[str, str]:
    pieces, finish = [], None
    async for chunk in await client.completions.create(model="demo", stream=True, **case):
        for choice in chunk.choices:
            pieces.append(choice.text)
            finish = choice.finish_reason or finish
    return "".join(pieces), finish


async def all_clients(url: str):
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=600)
    try:
        return await asyncio.gather(*(stream_one(client, request(i)) for i in range(CLIENTS)))
    finally:
        await client.close()


def test_32_streaming_clients_with_preemption_each_get_their_own_tokens():
    with Engine("demo") as ref:
        want = []
        for i in range(CLIENTS):
            case = request(i)
            r = ref.generate(case["prompt"], max_new_tokens=case["max_tokens"], temperature=case["temperature"],
                             seed=case.get("seed"))
            want.append((r.text, "length" if r.stats.finish_reason == "length" else "stop"))
    # 4-token pages, 40 of them: 8 active requests of up to ~50 tokens need more, so they preempt
    with serving(paged_loader("demo", pages=40, page_tokens=4), max_batch=8) as (server, url):
        got = asyncio.run(all_clients(url))
        assert metric(url, "edgecore_preemptions_total") > 0
        assert metric(url, 'edgecore_requests_total{outcome="completed"}') == CLIENTS
        assert metric(url, "edgecore_kv_pages_used") == 0 and metric(url, "edgecore_active_sequences") == 0
        mean_batch = metric(url, "edgecore_step_sequences_total") / metric(url, "edgecore_steps_total")
        live = server.loop.scheduler
    assert mean_batch > 2, f"steps ran {mean_batch:.2f} requests on average: not batching"
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == w, f"client {i} ({request(i)}): got {g!r}, alone it gets {w!r}"

    # one source of truth: replaying the live run's arrivals and lengths with the simulated executor
    # makes every decision the live scheduler made on the engine's pages
    states = list(live.states.values())
    result = replay(Workload(live.config, tuple(s.request for s in states), {s.id: s.generated for s in states}))
    for s in states:
        r = result.scheduler.states[s.id]
        assert (r.first_admit_tick, r.first_token_tick, r.finish_tick, r.preemptions, r.generated) == \
            (s.first_admit_tick, s.first_token_tick, s.finish_tick, s.preemptions, s.generated), s.id
    assert (result.scheduler.preemptions, result.scheduler.prefill_tokens, result.scheduler.decode_steps) == \
        (live.preemptions, live.prefill_tokens, live.decode_steps)
