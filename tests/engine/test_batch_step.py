"""The batched engine step over the paged KV cache (engine.kv, engine.step).

Batch invariance is checked bitwise against the same engine run one
sequence at a time: a sequence's logits must not depend on what shares its
step, on how its tokens were chunked, on page reuse or on the thread count.
Bitwise holds because every kernel is batch invariant on every tier (the
per-token kernels, and the linear kernels f32 included:
docs/quantization.md), so the invariance tests run both on the scalar tier
and on the machine's default tier. The engine itself is checked against
transformers in test_reference.py (and test_kv_dtype.py).
"""

import numpy as np
import pytest

from edgecore import Engine, ops
from edgecore.memory import KVPagesExhausted
from edgecore.scheduler import PageAllocator


def _random_model(kind, tmp_path_factory, **cfg):
    pytest.importorskip("torch", reason="random test models are built with torch + transformers")
    pytest.importorskip("transformers", reason="random test models are built with torch + transformers")
    from support.models import build

    path = tmp_path_factory.mktemp(kind)
    build(kind, path, **cfg)
    return path


MODELS = {
    "demo": lambda f: "demo",
    "demo-moe": lambda f: "demo-moe",
    "llama-gqa": lambda f: _random_model("llama", f, vocab_size=300, hidden_size=64, intermediate_size=96,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                         max_position_embeddings=128),
    "gpt2": lambda f: _random_model("gpt2", f, vocab_size=300, n_embd=64, n_layer=2, n_head=4, n_positions=128),
    "gemma3": lambda f: _random_model("gemma3", f),  # a window of 8: local layers see only the last 8 positions
}


@pytest.fixture(scope="module", params=sorted(MODELS))
def model_path(request, tmp_path_factory):
    return MODELS[request.param](tmp_path_factory)


@pytest.fixture(params=["scalar", "default"])
def tier(request):
    """The scalar reference tier, then the tier the machine dispatches to."""
    if request.param == "default":
        yield
        return
    with ops.forced_tier("scalar"):
        yield


def prompts(vocab, lengths, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, vocab, n).astype(np.int64) for n in lengths]


def alone(engine, tokens):
    """Every row's logits of one sequence, run by itself in one step
    (engine.forward: a fresh sequence)."""
    return engine.forward(tokens)


def run_schedule(engine, seqs, tokens, schedule):
    """Feed tokens by a schedule: a list of steps, each a list of (item,
    count) (the next `count` tokens of sequence `item`). Returns, per item,
    {position of the last token fed: logits}."""
    fed = [0] * len(seqs)
    got = [{} for _ in seqs]
    for step in schedule:
        items = []
        for i, count in step:
            chunk = tokens[i][fed[i]:fed[i] + count]
            engine.kv.reserve(seqs[i], len(chunk))
            items.append((seqs[i], chunk))
        logits = engine.step(items)
        assert logits.shape == (len(step), engine.spec.vocab_size) and logits.dtype == np.float32
        for row, (i, count) in enumerate(step):
            fed[i] += count
            assert seqs[i].length == fed[i]
            got[i][fed[i] - 1] = logits[row].copy()
    return got


# a mixed schedule: prefill chunks of different sequences next to decode rows
# of others, sequences of different lengths, joining and leaving
LENGTHS = [23, 9, 40]
SCHEDULE = [
    [(0, 17), (1, 3)],  # two prefill chunks
    [(0, 1), (1, 6), (2, 11)],  # decode row + the end of a prefill + a new prefill
    [(0, 1), (2, 20)],
    [(2, 1), (0, 1)],  # two decode rows, in the other order
    [(2, 8), (0, 3)],
]


def check_equal(got, refs):
    for i, rows in enumerate(got):
        for pos, logits in rows.items():
            np.testing.assert_array_equal(logits, refs[i][pos], err_msg=f"sequence {i} position {pos}")


@pytest.mark.parametrize("kv_dtype", ["f16", "f32"])
def test_batch_matches_alone_bitwise(model_path, tier, kv_dtype):
    with Engine(model_path, context=64, kv_pages=16, kv_dtype=kv_dtype) as engine:
        tokens = prompts(engine.spec.vocab_size, LENGTHS)
        refs = [alone(engine, t) for t in tokens]
        seqs = [engine.kv.new_sequence() for _ in tokens]
        got = run_schedule(engine, seqs, tokens, SCHEDULE)
        assert all(s.length == n for s, n in zip(seqs, LENGTHS, strict=True))
        check_equal(got, refs)


def test_thread_count_does_not_change_a_sequence(model_path, tier):
    with Engine(model_path, context=64, kv_pages=16) as engine:
        tokens = prompts(engine.spec.vocab_size, LENGTHS, seed=2)
        before = ops.get_num_threads()
        results = []
        try:
            for threads in (1, 2, 3):
                ops.set_num_threads(threads)
                seqs = [engine.kv.new_sequence() for _ in tokens]
                results.append(run_schedule(engine, seqs, tokens, SCHEDULE))
                for s in seqs:
                    engine.kv.release(s)
        finally:
            ops.set_num_threads(before)
        check_equal(results[1], results[0])
        check_equal(results[2], results[0])


def test_greedy_generate_equals_batched_decode(model_path, tier):
    """Three sequences decoded greedily together, each picking its own next
    token from its own row, give generate's tokens for each alone."""
    with Engine(model_path, context=64, kv_pages=16) as engine:
        tokens = prompts(engine.spec.vocab_size, [5, 12, 2], seed=3)
        want = [engine.generate(t.tolist(), max_new_tokens=10, temperature=0).tokens for t in tokens]
        seqs = [engine.kv.new_sequence() for _ in tokens]
        out = [[] for _ in tokens]
        items = list(zip(seqs, tokens, strict=True))
        for s, t in items:
            engine.kv.reserve(s, len(t))
        for _ in range(10):
            logits = engine.step(items)
            items = []
            for i, s in enumerate(seqs):
                nxt = int(logits[i].argmax())
                out[i].append(nxt)
                engine.kv.reserve(s, 1)
                items.append((s, np.array([nxt])))
        # generate stops at an EOS token; compare up to where it stopped
        for got, ref in zip(out, want, strict=True):
            assert got[:len(ref)] == ref


def test_pages_are_shared_released_and_reused():
    with Engine("demo", context=64, kv_pages=12, page_tokens=4) as engine:
        kv = engine.kv
        assert isinstance(kv.allocator, PageAllocator) and kv.page_tokens == 4 and kv.pages == 12
        a, b = kv.new_sequence(), kv.new_sequence()
        tokens = prompts(256, [10, 13, 10], seed=4)
        kv.reserve(a, 10)
        assert len(a.pages) == 3 and kv.allocator.used == 3
        kv.reserve(b, 13)
        assert len(b.pages) == 4 and kv.allocator.free == 5
        engine.step([(a, tokens[0]), (b, tokens[1])])
        # too few pages: refused before anything changes
        with pytest.raises(KVPagesExhausted, match="KV cache full: 7 more page"):
            kv.reserve(a, 30)
        assert len(a.pages) == 3 and kv.allocator.free == 5 and a.length == 10
        old_pages = list(a.pages)
        kv.release(a)
        assert a.pages == [] and a.length == 0 and kv.allocator.free == 8
        # a new sequence takes the released pages (stale K/V in them) and is unaffected by what they held
        c = kv.new_sequence()
        kv.reserve(c, 10)
        assert c.pages == old_pages  # freed pages are reused last-in first-out
        got = engine.step([(c, tokens[2]), (b, np.array([5]))])
        ref = engine.forward(tokens[2])
        np.testing.assert_array_equal(got[0], ref[-1])
        np.testing.assert_array_equal(got[1], engine.forward(np.concatenate([tokens[1], [5]]))[-1])


def test_truncate_drops_tokens_and_pages():
    with Engine("demo", context=64, kv_pages=8, page_tokens=4) as engine:
        kv = engine.kv
        s = kv.new_sequence()
        tokens = prompts(256, [14, 3], seed=5)
        kv.reserve(s, 14)
        engine.step([(s, tokens[0])])
        kv.truncate(s, 5)  # keep 5 tokens: 2 pages
        assert s.length == 5 and len(s.pages) == 2 and kv.allocator.used == 2
        kv.reserve(s, 3)
        got = engine.step([(s, tokens[1])])[0]
        np.testing.assert_array_equal(got, engine.forward(np.concatenate([tokens[0][:5], tokens[1]]))[-1])
        with pytest.raises(ValueError, match="truncate: n must be"):
            kv.truncate(s, 9)


def test_generate_prefix_reuse_runs_through_truncate():
    with Engine("demo", context=64) as engine:
        first = engine.generate(list(b"The list of"), max_new_tokens=6, temperature=0)
        again = engine.generate(list(b"The list of things"), max_new_tokens=6, temperature=0)
        cached = list(b"The list of") + first.tokens[:-1]  # the last new token was never fed
        prompt = list(b"The list of things")
        common = next(i for i, (a, b) in enumerate(zip(cached + [-1], prompt, strict=False)) if a != b)
        assert again.stats.prompt_tokens_reused == common >= len(b"The list of")
        with Engine("demo", context=64) as fresh:
            assert fresh.generate(list(b"The list of things"), max_new_tokens=6, temperature=0).tokens == again.tokens
        assert first.tokens == engine.generate(list(b"The list of"), max_new_tokens=6, temperature=0).tokens


def test_step_errors_are_clear():
    with Engine("demo", context=32, kv_pages=4, step_tokens=16) as engine:
        kv = engine.kv
        s = kv.new_sequence()
        with pytest.raises(ValueError, match=r"call engine.kv.reserve\(seq, 3\) first"):
            engine.step([(s, [1, 2, 3])])
        kv.reserve(s, 3)
        with pytest.raises(ValueError, match="repeats a sequence"):
            engine.step([(s, [1]), (s, [2])])
        with pytest.raises(ValueError, match="outside the vocabulary"):
            engine.step([(s, [1, 999])])
        with pytest.raises(ValueError, match="non-empty list"):
            engine.step([])
        with pytest.raises(ValueError, match="KVSequence, token_ids"):
            engine.step([[1, 2]])
        with pytest.raises(ValueError, match="exceed the context"):
            kv.reserve(s, 40)
        t = kv.new_sequence()
        kv.reserve(t, 16)
        with pytest.raises(ValueError, match="exceed step_tokens=16"):
            engine.step([(s, [1, 2, 3]), (t, list(range(16)))])
        assert s.length == 0 and t.length == 0  # nothing ran
        with pytest.raises(ValueError, match="kv_dtype must be one of f16, f32"):
            Engine("demo", kv_dtype="bf16")
        with pytest.raises(ValueError, match="kv_pages must be a positive integer"):
            Engine("demo", kv_pages=0)


def test_cli_too_few_kv_pages_is_one_line(capsys):
    from edgecore.cli import main

    argv = ["run", "--model", "demo", "--raw", "--prompt", "Once upon a time, long ago", "--max-new-tokens", "4",
            "--temperature", "0"]
    assert main([*argv, "--kv-pages", "1"]) == 1
    err = capsys.readouterr().err
    assert "KV cache full" in err and "--kv-pages" in err and "Traceback" not in err
    assert main([*argv, "--kv-pages", "2", "--kv-dtype", "f32"]) == 0
    assert main([*argv, "--kv-dtype", "bf16"]) == 2  # a usage mistake, caught before the model opens
    assert "--kv-dtype: expected one of f16, f32" in capsys.readouterr().err
