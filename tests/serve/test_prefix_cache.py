"""The server's prefix cache (serve/prefix_cache.py): a completed request's
K/V rows, copied back into a later request that starts the same way.

The reference for every copy is the engine's own prefill of the same
tokens in a fresh sequence: the copied rows, and the logits computed after
them, must be bitwise what that prefill gives (K/V rows depend only on the
tokens up to their position). Then eviction (least recently used, an entry
superseded by a longer one), and the server: a repeated prompt and a
conversation's next turn reuse rows, /metrics counts them, and the outputs
are still `Engine.generate`'s.
"""

from __future__ import annotations

import numpy as np
import pytest

for _module in ("httpx", "openai", "starlette", "uvicorn"):
    pytest.importorskip(_module, reason=f"SKIPPED LOUDLY: {_module} missing (pip install 'edgecore[serve,test]')")

import openai  # noqa: E402
from support.serving import metric, paged_loader, serving, wait_for  # noqa: E402

from edgecore.engine import Engine  # noqa: E402
from edgecore.serve.prefix_cache import PrefixCache, tokens_that_fit  # noqa: E402

PAGE = 4


@pytest.fixture(scope="module")
def engine():
    with Engine("demo", kv_pages=64, page_tokens=PAGE) as e:
        yield e


def prefill(engine, tokens):
    seq = engine.kv.new_sequence()
    engine.kv.reserve(seq, len(tokens))
    logits = engine.step([(seq, np.array(tokens, np.int64))])[0]
    return seq, logits


def store(engine, cache, text):
    """Prefill `text` in a fresh sequence, save its rows in the cache, free its pages."""
    seq, _ = prefill(engine, text)
    cache.save(text, seq.pages)
    engine.kv.release(seq)


def rows(engine, seq, n):
    """Every layer's K and V rows of positions 0..n-1, [n, kv_heads, width] each."""
    out = []
    for arr in engine.kv.keys + engine.kv.values:
        pages = arr[seq.pages]  # [pages, kv_heads, page_tokens, width]
        out.append(pages.transpose(0, 2, 1, 3).reshape(-1, pages.shape[1], pages.shape[3])[:n])
    return out


def tokens(seed, n):
    return [int(t) for t in np.random.default_rng(seed).integers(1, 250, n)]


def test_a_reused_prefix_is_bitwise_a_fresh_prefill(engine):
    cache = PrefixCache(engine, 64)
    try:
        text = tokens(0, 21)
        first, _ = prefill(engine, text)
        cache.save(text, first.pages)
        engine.kv.release(first)
        dirty, _ = prefill(engine, tokens(1, 30))  # the freed pages now hold other rows
        engine.kv.release(dirty)

        context = text[:13] + tokens(2, 9)  # shares 13 tokens with the stored entry
        seq = engine.kv.new_sequence()
        engine.kv.reserve(seq, len(context))
        n = cache.load(context, len(context) - 1, seq.pages)
        assert n == 13
        fresh, want = prefill(engine, context)
        for got_rows, want_rows in zip(rows(engine, seq, n), rows(engine, fresh, n), strict=True):
            assert np.array_equal(got_rows, want_rows), "copied K/V rows differ from a fresh prefill's"
        seq.length = n
        got = engine.step([(seq, np.array(context[n:], np.int64))])[0]
        assert np.array_equal(got, want), "logits after the reused prefix differ from a full prefill's"
        assert (cache.lookups, cache.hits, cache.reused_tokens) == (1, 1, 13)
        engine.kv.release(seq)
        engine.kv.release(fresh)
    finally:
        cache.close()


def test_load_is_bounded_by_the_limit_and_the_pages(engine):
    cache = PrefixCache(engine, 64)
    try:
        text = tokens(3, 20)
        store(engine, cache, text)
        target = engine.kv.new_sequence()
        engine.kv.reserve(target, 8)  # two pages
        assert cache.load(text, 19, target.pages) == 8, "no more than its pages hold"
        assert cache.load(text, 5, target.pages) == 5
        assert cache.load(tokens(4, 20), 19, target.pages) == 0, "no common prefix: nothing reused"
        engine.kv.release(target)
    finally:
        cache.close()


def test_eviction_is_least_recently_used_and_longer_entries_supersede(engine):
    cache = PrefixCache(engine, 4 * PAGE)  # four pages
    try:
        a, b, c = tokens(10, 8), tokens(11, 8), tokens(12, 4)
        for t in (a, b):
            store(engine, cache, t)
        assert cache.entries == 2 and cache.allocator.free == 0
        probe = engine.kv.new_sequence()
        engine.kv.reserve(probe, 8)
        assert cache.load(a, 8, probe.pages) == 8  # a is now the most recently used
        store(engine, cache, c)
        assert cache.evictions == 1
        assert cache.load(b, 8, probe.pages) == 0, "b, the least recently used, was evicted"
        assert cache.load(a, 8, probe.pages) == 8

        longer = a + tokens(13, 4)
        seq, _ = prefill(engine, longer)
        cache.save(longer, seq.pages)
        cache.save(longer[:6], seq.pages)  # already held as a prefix: nothing new
        engine.kv.release(seq)
        assert cache.entries == 2, "the longer entry replaced a; c stays"
        engine.kv.reserve(probe, 12)
        assert cache.load(longer, 12, probe.pages) == 12
        engine.kv.release(probe)

        too_long = tokens(14, 40)
        store(engine, cache, too_long)  # its first 16 tokens: what the store holds
        probe = engine.kv.new_sequence()
        engine.kv.reserve(probe, 40)
        assert cache.load(too_long, 39, probe.pages) == 16
        engine.kv.release(probe)
    finally:
        cache.close()


def test_the_cache_counts_against_the_memory_budget(tmp_path):
    with Engine("demo", kv_pages=16, page_tokens=PAGE) as free:
        per_page = 2 * len(free.kv.keys) * free.kv.keys[0][0].nbytes
        assert tokens_that_fit(free, 1000) == 1000 // PAGE * PAGE  # no budget: all of it
    plan = Engine("demo", kv_pages=16, page_tokens=PAGE)
    budget = plan.pool.stats().held + 8 * per_page + (1 << 16)
    plan.close()
    with Engine("demo", kv_pages=16, page_tokens=PAGE, memory_budget=budget) as tight:
        fits = tokens_that_fit(tight, 1000)
        assert 0 < fits < 1000 and fits % PAGE == 0, fits
        PrefixCache(tight, fits).close()
        with pytest.raises(MemoryError, match="does not fit the memory budget beside the model; pass a smaller "
                                              r"--prefix-cache \(0 turns it off\)"):
            PrefixCache(tight, 1000)


# ---- in the server ------------------------------------------------------------


def complete(client, prompt, max_tokens=12):
    r = client.completions.create(model="demo", prompt=prompt, max_tokens=max_tokens, temperature=0)
    return r.choices[0].text


def test_a_repeated_prompt_and_a_next_turn_reuse_rows_with_the_same_outputs():
    with Engine("demo") as ref, serving(paged_loader("demo", pages=64), max_batch=4) as (_, url):
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        prompt = "The river runs past the old mill and"
        first = complete(client, prompt)
        assert metric(url, "edgecore_prefix_cache_hits_total") == 0
        wait_for(lambda: metric(url, "edgecore_prefix_cache_entries") == 1, what="the request was not saved")
        # another request takes the freed pages (handed out last-freed first) and writes its own rows
        complete(client, "Zebras and yaks walked into the xylophone shop at noon")
        again = complete(client, prompt)
        assert again == first == ref.generate(prompt, max_new_tokens=12, temperature=0).text
        assert metric(url, "edgecore_prefix_cache_hits_total") == 1
        # the demo's tokens are bytes: all but the prompt's last token came from the cache
        assert metric(url, "edgecore_prefix_cache_reused_tokens_total") == len(prompt.encode()) - 1

        turn = prompt + first + " Then"
        got = complete(client, turn)
        assert got == ref.generate(turn, max_new_tokens=12, temperature=0).text
        # the first request's prompt and all but its last generated token were stored
        reused = metric(url, "edgecore_prefix_cache_reused_tokens_total") - (len(prompt.encode()) - 1)
        assert reused == len((prompt + first).encode()) - 1


def test_prefix_cache_zero_turns_it_off():
    with serving(paged_loader("demo", pages=64), max_batch=4, prefix_cache_tokens=0) as (server, url):
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        complete(client, "Hello there")
        assert server.loop.prefix_cache is None
        with pytest.raises(KeyError):
            metric(url, "edgecore_prefix_cache_hits_total")


def test_a_cache_the_budget_cannot_hold_fails_the_load_with_a_reason():
    with Engine("demo", kv_pages=16, page_tokens=PAGE) as probe:
        budget = probe.pool.stats().held + (1 << 16)
    load = paged_loader("demo", pages=16, memory_budget=budget)
    with serving(load, wait_ready=False, prefix_cache_tokens=4096) as (server, _):
        wait_for(lambda: server.loop.status == "failed", 60, "the load did not fail")
        assert "does not fit the memory budget" in server.loop.error
