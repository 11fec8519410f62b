"""Generation as transformers does it: the logits processors against
transformers' own (repetition penalty, temperature, top-k, top-p, min-p in
its order), greedy tokens against transformers.generate on random models
with EOS lists, a repetition penalty from generation_config.json, and a
Metaspace tokenizer with a BOS template; seeded sampling reproduces;
max_new_tokens=-1; the KV prefix reuse between calls."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from support.models import build, rewrite_config  # noqa: E402
from support.tokenizers import CHATML, metaspace_bpe, save_dir  # noqa: E402

from edgecore import Engine  # noqa: E402
from edgecore.engine.sampling import process_logits  # noqa: E402
from edgecore.models.generation import GenerationConfig  # noqa: E402


def hf_processors(temperature, top_k, top_p, min_p, penalty):
    from transformers.generation.logits_process import (
        LogitsProcessorList,
        MinPLogitsWarper,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    procs = []
    if penalty not in (None, 1.0):
        procs.append(RepetitionPenaltyLogitsProcessor(float(penalty)))
    if temperature:
        if temperature != 1.0:
            procs.append(TemperatureLogitsWarper(temperature))
        if top_k:
            procs.append(TopKLogitsWarper(top_k))
        if top_p is not None and top_p < 1:
            procs.append(TopPLogitsWarper(top_p))
        if min_p is not None:
            procs.append(MinPLogitsWarper(min_p))
    return LogitsProcessorList(procs)


@pytest.mark.parametrize("temperature, top_k, top_p, min_p, penalty", [
    (0.0, None, None, None, 1.3),
    (0.0, None, None, None, 0.7),
    (1.0, 50, None, None, None),
    (0.7, None, 0.9, None, None),
    (1.3, None, None, 0.05, None),
    (0.8, 40, 0.95, 0.02, 1.2),
    (2.0, 3, 0.5, 0.3, 1.5),
    (0.5, 1, None, None, None),
    (1.0, None, 1e-6, None, None),
])
def test_processors_match_transformers(temperature, top_k, top_p, min_p, penalty):
    rng = np.random.default_rng(3)
    for vocab in (7, 64, 1000):
        logits = (rng.standard_normal(vocab) * 4).astype(np.float32)
        previous = rng.integers(0, vocab, 12)
        got = process_logits(logits, temperature, top_k, top_p, min_p, penalty, previous)
        want = hf_processors(temperature, top_k, top_p, min_p, penalty)(
            torch.tensor(previous[None]), torch.tensor(logits[None]))[0].double().numpy()
        assert np.array_equal(np.isfinite(got), np.isfinite(want)), (vocab, np.isfinite(got), np.isfinite(want))
        kept = np.isfinite(want)
        np.testing.assert_allclose(got[kept], want[kept], rtol=1e-6, atol=1e-6)


def test_nan_logits_never_win():
    logits = np.array([np.nan, 1.0, 3.0, np.nan], np.float32)
    z = process_logits(logits, 0.0, repetition_penalty=1.5, previous=[2])
    assert np.isneginf(z[[0, 3]]).all() and z[2] == 2.0
    with pytest.raises(FloatingPointError):
        process_logits(np.full(4, np.nan, np.float32), 0.0)


GREEDY = dict(temperature=0.0, repetition_penalty=1.1)


def sampled(**kw):
    return {"temperature": 0.6, "top_k": 50, "top_p": 0.9, "min_p": None, "repetition_penalty": 1.1, **kw}


@pytest.mark.parametrize("flags, want", [
    ({}, GREEDY),
    (dict(temperature=0), GREEDY),
    (dict(top_k=5), sampled(top_k=5)),
    (dict(top_p=0.5), sampled(top_p=0.5)),
    (dict(top_p=1.0), sampled(top_p=None)),
    (dict(min_p=0.1), sampled(min_p=0.1)),
    (dict(temperature=1.5), sampled(temperature=1.5)),
    (dict(do_sample=True), sampled()),
    (dict(do_sample=True, temperature=0), GREEDY),
    (dict(repetition_penalty=1.0), dict(GREEDY, repetition_penalty=1.0)),
])
def test_flags_follow_hugging_face(flags, want):
    """A config like Llama's (do_sample false, temperature 0.6, top_p 0.9):
    no flag is greedy, a sampling flag samples at the configured
    temperature, top_k is transformers' 50 when the config has none."""
    cfg = GenerationConfig(do_sample=False, temperature=0.6, top_p=0.9, repetition_penalty=1.1)
    assert cfg.sampling(**flags) == want


def test_sampling_config_defaults():
    cfg = GenerationConfig(do_sample=True, temperature=0.7, top_k=0)  # top_k 0: none
    assert cfg.sampling() == dict(temperature=0.7, top_k=None, top_p=None, min_p=None, repetition_penalty=1.0)
    assert cfg.sampling(temperature=0) == dict(temperature=0.0, repetition_penalty=1.0)


# ---- greedy against transformers.generate ---------------------------------------


def hf_generate(model, ids, n, **kw):
    with torch.inference_mode():
        out = model.generate(torch.tensor([list(ids)]), max_new_tokens=n, do_sample=False, pad_token_id=0, **kw)
    return out[0, len(ids):].tolist()


def test_eos_list_stops_like_transformers(tmp_path):
    """config.json and generation_config.json give EOS lists; the first of
    them generated ends the call (transformers includes it, edgecore does not)."""
    ref = build("llama", tmp_path, vocab_size=300, max_position_embeddings=128)
    prompt = [5, 17, 42, 99]
    free = hf_generate(ref, prompt, 30, min_new_tokens=30)
    first = [t for i, t in enumerate(free) if t not in free[:i]]
    assert len(first) >= 3
    eos = [first[2], first[1]]  # stop at the second distinct token generated
    rewrite_config(tmp_path, eos_token_id=[eos[0]])
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": eos, "do_sample": False}))
    want = hf_generate(ref, prompt, 30, eos_token_id=eos)
    assert want[-1] in eos
    with Engine(tmp_path) as engine:
        result = engine.generate(prompt, max_new_tokens=30)
    assert result.tokens == want[:-1] and result.stats.finish_reason == "eos"


def test_repetition_penalty_from_generation_config(tmp_path):
    ref = build("llama", tmp_path, vocab_size=300, max_position_embeddings=128)
    (tmp_path / "generation_config.json").write_text(json.dumps({"repetition_penalty": 1.4}))
    prompt = [5, 17, 42, 99, 5, 17]
    want = hf_generate(ref, prompt, 24, min_new_tokens=24, repetition_penalty=1.4)
    with Engine(tmp_path) as engine:
        assert engine.generate(prompt, max_new_tokens=24).tokens == want
        assert engine.generate(prompt, max_new_tokens=24, repetition_penalty=1.0).tokens == \
            hf_generate(ref, prompt, 24, min_new_tokens=24)


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory):
    """A random Llama with a Metaspace BPE tokenizer (BOS template) and a
    ChatML template: the shape of a real SentencePiece chat checkpoint."""
    path = tmp_path_factory.mktemp("metaspace-llama")
    tok = metaspace_bpe()
    save_dir(path, tok, chat_template=CHATML)
    ref = build("llama", path, vocab_size=tok.get_vocab_size(), max_position_embeddings=256,
                bos_token_id=tok.token_to_id("<s>"), eos_token_id=tok.token_to_id("</s>"))
    from transformers import AutoTokenizer

    return path, ref, AutoTokenizer.from_pretrained(str(path))


def test_bos_template_and_metaspace_text(chat_model):
    path, ref, hf_tok = chat_model
    text = "The capital of France is"
    ids = hf_tok(text)["input_ids"]
    assert ids[0] == hf_tok.bos_token_id
    want = hf_generate(ref, ids, 20, min_new_tokens=20)
    pieces = []
    with Engine(path) as engine:
        result = engine.generate(text, max_new_tokens=20, stream=lambda t, p: pieces.append(p))
    assert result.prompt_tokens == ids and result.tokens == want
    full, head = hf_tok.decode(ids + want), hf_tok.decode(ids)
    assert result.text == full[len(head):] == "".join(pieces)


def test_chat_template_ids_match(chat_model):
    path, ref, hf_tok = chat_model
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    with Engine(path) as engine:
        ids = engine.tokenizer.apply_chat_template(messages)
        assert ids == list(hf_tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                      return_dict=False))
        assert engine.generate(ids, max_new_tokens=12).tokens == hf_generate(ref, ids, 12, min_new_tokens=12)


def test_seeded_sampling_reproduces(chat_model):
    path, _, _ = chat_model
    kw = dict(max_new_tokens=20, temperature=0.9, top_k=40, top_p=0.95, min_p=0.01, repetition_penalty=1.2)
    with Engine(path) as engine:
        a = engine.generate("Hello", seed=11, **kw).tokens
        b = engine.generate("Hello", seed=11, **kw).tokens
        c = engine.generate("Hello", seed=12, **kw).tokens
    assert a == b and a != c


def test_until_the_context_ends(tmp_path):
    build("llama", tmp_path, vocab_size=300, max_position_embeddings=64, eos_token_id=None, bos_token_id=None)
    with Engine(tmp_path, context=40) as engine:
        result = engine.generate([1, 2, 3], max_new_tokens=-1)
        assert result.stats.new_tokens == 37 and result.stats.finish_reason == "length"
        with pytest.raises(ValueError, match="exceed the context"):
            engine.generate(list(range(1, 41)), max_new_tokens=-1)


# ---- KV prefix reuse ----------------------------------------------------------------


def test_prefix_reuse_prefills_only_the_new_part(chat_model):
    path, ref, _ = chat_model
    turn1 = [1, 50, 60, 70, 80, 90]
    with Engine(path) as engine:
        first = engine.generate(turn1, max_new_tokens=8)
        assert first.stats.prompt_tokens_reused == 0
        turn2 = turn1 + first.tokens + [100, 110, 120]
        second = engine.generate(turn2, max_new_tokens=8)
        # the last generated token was never fed back: everything before it is reused
        assert second.stats.prompt_tokens_reused == len(turn1) + len(first.tokens) - 1
        assert second.stats.prompt_tokens_prefilled == 4
        assert second.tokens == hf_generate(ref, turn2, 8, min_new_tokens=8)
        again = engine.generate(turn2, max_new_tokens=8)  # the same prompt: all but its last token
        assert again.stats.prompt_tokens_reused == len(turn2) - 1 and again.tokens == second.tokens
        other = engine.generate([1, 50, 61, 62], max_new_tokens=8)  # a different prompt: its common prefix only
        assert other.stats.prompt_tokens_reused == 2
        assert other.tokens == hf_generate(ref, [1, 50, 61, 62], 8, min_new_tokens=8)


def test_forward_and_failures_invalidate(chat_model):
    path, ref, _ = chat_model
    prompt = [1, 50, 60, 70, 80, 90]
    with Engine(path) as engine:
        engine.generate(prompt, max_new_tokens=4)
        engine.forward([1, 50, 61])  # rewrites the cache from position 0
        result = engine.generate(prompt, max_new_tokens=6)
        assert result.stats.prompt_tokens_reused == 2
        assert result.tokens == hf_generate(ref, prompt, 6, min_new_tokens=6)

        def boom(token, piece):
            raise RuntimeError("callback failed")

        with pytest.raises(RuntimeError):
            engine.generate(prompt, max_new_tokens=6, stream=boom)
        result = engine.generate(prompt, max_new_tokens=6)
        assert result.stats.prompt_tokens_reused == 0  # a failed call forgets the cache
        assert result.tokens == hf_generate(ref, prompt, 6, min_new_tokens=6)


def test_should_stop_cancels_and_keeps_the_cache(chat_model):
    path, ref, _ = chat_model
    prompt = [1, 50, 60, 70]
    with Engine(path) as engine:
        seen = []
        result = engine.generate(prompt, max_new_tokens=20, stream=lambda t, p: seen.append(t),
                                 should_stop=lambda: len(seen) >= 3)
        assert result.stats.finish_reason == "cancelled" and len(result.tokens) == 3
        assert result.tokens == hf_generate(ref, prompt, 3, min_new_tokens=3)
        follow = engine.generate(prompt + result.tokens, max_new_tokens=4)
        assert follow.stats.prompt_tokens_reused == len(prompt) + 2
