"""Tokenizers built from the real SmolLM2 and Gemma 3 GGUF files against
transformers' tokenizer for the same files (AutoTokenizer with gguf_file):
identical ids on the shipped corpus, identical decoded text, identical
streamed text of token streams, and chat-templated ids equal to
apply_chat_template."""

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("gguf")

from support.gguf_meta import gguf_metadata  # noqa: E402
from support.real_models import REAL_MODEL_NAMES, real_model  # noqa: E402
from support.tokenizers import corpus  # noqa: E402

from edgecore.models.tokenizer_gguf import gguf_eos_token_ids, tokenizer_from_gguf  # noqa: E402


@pytest.fixture(scope="module", params=REAL_MODEL_NAMES)
def pair(request):
    path = real_model(request.param)
    from transformers import AutoTokenizer

    metadata = gguf_metadata(path, numeric_as_lists=request.param == "smollm2")  # both array forms
    mine = tokenizer_from_gguf(metadata, source=str(path))
    ref = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    return request.param, mine, ref, metadata


# transformers builds every unlisted `tokenizer.ggml.pre` with GPT-2's regex; for "smollm" llama.cpp (and
# SmolLM's own tokenizer.json) isolate each digit first, which edgecore follows. The two differ only where
# a digit follows two or more spaces, or is a numeral outside ASCII:
SMOLLM_REGEX_DIFFERENCES = {"  2024", "١٢٣ ٤٥٦", "½ ¾ ⅓", "Ⅷ Ⅻ"}


@pytest.fixture(scope="module")
def reference(pair):
    """transformers' tokenizer, with SmolLM's own pre-tokenizer (Digits, then
    ByteLevel, as its tokenizer.json) for "smollm"."""
    name, _, ref, metadata = pair
    if metadata.get("tokenizer.ggml.pre") == "smollm":
        import copy

        from tokenizers import pre_tokenizers

        ref = copy.deepcopy(ref)
        ref.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)])
    return ref


def test_corpus_ids_identical(pair, reference):
    name, mine, ref, metadata = pair
    texts = corpus()
    assert len(texts) >= 200
    for special in (True, False):  # the chat path encodes without special tokens
        bad = [(t, mine.encode(t, special), reference(t, add_special_tokens=special)["input_ids"]) for t in texts
               if mine.encode(t, special) != reference(t, add_special_tokens=special)["input_ids"]]
        assert not bad, f"{name}: {len(bad)} strings differ, first: {bad[0]}"
    differ = {t for t in texts if mine.encode(t) != ref(t)["input_ids"]}
    assert differ == (SMOLLM_REGEX_DIFFERENCES if name == "smollm2" else set())


def test_bos_as_the_file_says(pair):
    name, mine, ref, metadata = pair
    ids = mine.encode("Hello")
    if name == "gemma3":  # add_bos_token = true
        assert ids[0] == metadata["tokenizer.ggml.bos_token_id"] == ref.bos_token_id
    else:  # SmolLM2: add_bos_token = false
        assert ids == mine.encode("Hello", add_special_tokens=False)
    assert mine.special_tokens == {k: str(getattr(ref, k)) for k in mine.special_tokens}


def test_decode_identical(pair):
    name, mine, ref, _ = pair
    for text in corpus():
        ids = ref(text)["input_ids"]
        assert mine.decode(ids) == ref.decode(ids), text
        assert mine.decode(ids, skip_special_tokens=True) == ref.decode(ids, skip_special_tokens=True), text


def streamed(tokenizer, context, tokens):
    decoder = tokenizer.stream(context)
    return "".join(decoder.push(t) for t in tokens) + decoder.flush()


def test_streamed_text_of_token_streams(pair):
    """What a generation streams after a prompt is exactly the text that
    transformers' decode of prompt + tokens adds to the prompt's: the first
    word keeps its space, split characters come out whole."""
    name, mine, ref, _ = pair
    prompt = ref("Question: what is the capital of France? Answer:")["input_ids"]
    rng = np.random.default_rng(0)
    vocab = ref.vocab_size
    streams = [ref(t, add_special_tokens=False)["input_ids"] for t in corpus()[::7]]
    streams += [rng.integers(0, vocab, 12).tolist() for _ in range(20)]
    for tokens in streams:
        want = ref.decode(prompt + tokens)
        head = ref.decode(prompt)
        assert want.startswith(head)
        assert streamed(mine, prompt, tokens) == want[len(head):], tokens


def test_first_word_keeps_its_space(pair):
    name, mine, ref, _ = pair
    prompt = ref("The capital of France is")["input_ids"]
    answer = ref(" Paris.", add_special_tokens=False)["input_ids"]
    assert streamed(mine, prompt, answer) == " Paris."


def test_chat_template_ids_equal_apply_chat_template(pair):
    name, mine, ref, _ = pair
    if ref.chat_template is None:
        assert mine.chat_template is None
        pytest.skip(f"{name}'s GGUF has no chat template (nothing to compare)")
    conversations = [
        [{"role": "user", "content": "What is the capital of France?"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi 🤗"},
         {"role": "assistant", "content": "Hello! How can I help?"}, {"role": "user", "content": "2+2?"}],
    ]
    for messages in conversations:
        for gen in (True, False):
            want = ref.apply_chat_template(messages, add_generation_prompt=gen, tokenize=True, return_dict=False)
            assert mine.apply_chat_template(messages, add_generation_prompt=gen) == list(want)
            assert mine.render_chat(messages, gen) == ref.apply_chat_template(messages, add_generation_prompt=gen,
                                                                             tokenize=False)


def test_eos_ids(pair):
    name, _, _, metadata = pair
    assert gguf_eos_token_ids(metadata) == (metadata["tokenizer.ggml.eos_token_id"],)


def test_saved_backend_reloads_to_the_same_ids(pair, reference, tmp_path):
    """`backend` is the tokenizers.Tokenizer itself: saved as tokenizer.json
    (as bench_quant does for its requantized SmolLM2) it encodes the corpus
    as transformers does, without the wrapper."""
    from tokenizers import Tokenizer

    name, mine, _, _ = pair
    mine.backend.save(str(tmp_path / "tokenizer.json"))
    reloaded = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    bad = [t for t in corpus()[:100] if reloaded.encode(t).ids != reference(t)["input_ids"]]
    assert not bad, f"{name}: {len(bad)} strings differ after a save and reload, first: {bad[0]!r}"
