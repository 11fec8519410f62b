"""Small tokenizers built in the test, for what the real GGUF files do not
cover: tokenizer.json directories (Metaspace BPE with a BOS template,
byte-level BPE with an EOS template or none, Unigram) against transformers'
AutoTokenizer for the same directory, and GGUF vocabularies written with
the gguf package (SentencePiece scores without merges, byte-level BPE
under each known pre-tokenizer name) against transformers' GGUF loader or,
for "smollm", the tokenizers pipeline it names."""

import json

import pytest

pytest.importorskip("transformers")

from support.tokenizers import (  # noqa: E402
    CHATML,
    SPECIALS,
    byte_level_bpe,
    corpus,
    metaspace_bpe,
    save_dir,
    unigram_metaspace,
)

from edgecore.models import ModelError  # noqa: E402
from edgecore.models.tokenizer import tokenizer_from_dir  # noqa: E402
from edgecore.models.tokenizer_gguf import tokenizer_from_gguf  # noqa: E402


def auto(path, **kw):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), **kw)


def assert_same_ids(mine, ref, texts=None):
    texts = corpus() if texts is None else texts
    for special in (True, False):
        bad = [(t, mine.encode(t, special), ref(t, add_special_tokens=special)["input_ids"]) for t in texts
               if mine.encode(t, special) != ref(t, add_special_tokens=special)["input_ids"]]
        assert not bad, f"{len(bad)} differ, first: {bad[0]}"


def assert_same_stream(mine, ref, prompt_text="The capital of France is"):
    prompt = ref(prompt_text)["input_ids"]
    for text in corpus()[::5]:
        tokens = ref(text, add_special_tokens=False)["input_ids"]
        decoder = mine.stream(prompt)
        got = "".join(decoder.push(t) for t in tokens) + decoder.flush()
        want, head = ref.decode(prompt + tokens), ref.decode(prompt)
        assert want.startswith(head) and got == want[len(head):], (text, got, want[len(head):])
        assert mine.decode(tokens) == ref.decode(tokens)


@pytest.fixture(scope="module")
def metaspace_dir(tmp_path_factory):
    return save_dir(tmp_path_factory.mktemp("metaspace"), metaspace_bpe(), chat_template=CHATML)


def test_metaspace_bpe_directory(metaspace_dir):
    mine, ref = tokenizer_from_dir(metaspace_dir), auto(metaspace_dir)
    assert mine.encode("hi")[0] == mine.token_to_id("<s>")  # the tokenizer.json's BOS template
    assert_same_ids(mine, ref)
    assert_same_stream(mine, ref)


def test_metaspace_first_word_keeps_space(metaspace_dir):
    mine, ref = tokenizer_from_dir(metaspace_dir), auto(metaspace_dir)
    prompt = ref("The capital of France is")["input_ids"]
    answer = ref(" Paris.", add_special_tokens=False)["input_ids"]
    assert ref.decode(answer) == "Paris."  # decoded alone, the decoder strips the space
    decoder = mine.stream(prompt)
    assert "".join(decoder.push(t) for t in answer) + decoder.flush() == " Paris."


@pytest.mark.parametrize("template", [None, "$A </s>"])
def test_byte_level_directory(tmp_path, template):
    path = save_dir(tmp_path, byte_level_bpe(template=template))
    mine, ref = tokenizer_from_dir(path), auto(path)
    if template:
        assert mine.encode("hi")[-1] == mine.token_to_id("</s>")
    assert_same_ids(mine, ref)
    assert_same_stream(mine, ref)


def test_unigram_directory(tmp_path):
    path = save_dir(tmp_path, unigram_metaspace())
    mine, ref = tokenizer_from_dir(path), auto(path)
    assert_same_ids(mine, ref)
    assert_same_stream(mine, ref)


def test_config_special_token_missing_from_the_vocabulary_is_added(tmp_path):
    """A named special token that is not an added token is matched whole,
    as transformers adds it."""
    path = save_dir(tmp_path, byte_level_bpe(), pad_token="<pad>", additional_special_tokens=["<tool>"])
    mine, ref = tokenizer_from_dir(path), auto(path)
    assert_same_ids(mine, ref, ["a<pad>b<tool>c", "<pad>", "x <tool> y"])
    assert mine.special_tokens["pad_token"] == "<pad>"


def test_chat_template_file_wins(metaspace_dir, tmp_path):
    import shutil

    path = tmp_path / "t"
    shutil.copytree(metaspace_dir, path)
    (path / "chat_template.jinja").write_text("{% for m in messages %}[{{ m['content'] }}]{% endfor %}")
    mine, ref = tokenizer_from_dir(path), auto(path)
    messages = [{"role": "user", "content": "hi"}]
    assert mine.render_chat(messages) == ref.apply_chat_template(messages, tokenize=False) == "[hi]"


def test_broken_directories(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ModelError, match="not a readable tokenizer"):
        tokenizer_from_dir(tmp_path)
    save_dir(tmp_path, byte_level_bpe())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"bos_token": 5}))
    with pytest.raises(ModelError, match="bos_token must be a token string"):
        tokenizer_from_dir(tmp_path)


# ---- GGUF vocabularies ----------------------------------------------------------


def spm_metadata(tok, add_space_prefix=None, arch="llama"):
    """A SentencePiece-style GGUF vocabulary from a trained Metaspace BPE:
    tokens, scores (earlier merges score higher), types, no merges."""
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    tokens = [t for t, _ in vocab]
    types = [3 if t in SPECIALS else 6 if t.startswith("<0x") else 1 for t in tokens]
    meta = {"general.architecture": arch, "tokenizer.ggml.model": "llama", "tokenizer.ggml.pre": "default",
            "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.scores": [-float(i) for i in range(len(tokens))],
            "tokenizer.ggml.token_type": types, "tokenizer.ggml.bos_token_id": tokens.index("<s>"),
            "tokenizer.ggml.eos_token_id": tokens.index("</s>"), "tokenizer.ggml.unknown_token_id": 0}
    if add_space_prefix is not None:
        meta["tokenizer.ggml.add_space_prefix"] = add_space_prefix
    return meta


def byte_level_metadata(tok, pre, add_bos=None):
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    tokens = [t for t, _ in vocab]
    model = json.loads(tok.to_str())["model"]
    merges = [" ".join(m) if isinstance(m, list) else m for m in model["merges"]]
    meta = {"general.architecture": "llama", "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": pre,
            "tokenizer.ggml.tokens": tokens, "tokenizer.ggml.merges": merges,
            "tokenizer.ggml.token_type": [3 if t in SPECIALS else 1 for t in tokens],
            "tokenizer.ggml.bos_token_id": tokens.index("<s>"), "tokenizer.ggml.eos_token_id": tokens.index("</s>"),
            "tokenizer.chat_template": CHATML}
    if add_bos is not None:
        meta["tokenizer.ggml.add_bos_token"] = add_bos
    return meta


def gguf_reference(tmp_path, metadata, arch="llama"):
    pytest.importorskip("gguf")
    from support.gguf_meta import gguf_metadata, write_vocab_gguf

    path = write_vocab_gguf(tmp_path / "vocab.gguf", metadata, arch)
    return gguf_metadata(path), auto(tmp_path, gguf_file=path.name)


@pytest.fixture(scope="module")
def trained_metaspace():
    return metaspace_bpe(template=None)


@pytest.mark.parametrize("scores", ["by rank", "tied"])
def test_gguf_sentencepiece_scores_without_merges(tmp_path, trained_metaspace, scores):
    """Merges rebuilt from scores (tied scores: the pieces' lengths decide),
    BOS added by default, Metaspace prefix."""
    meta = spm_metadata(trained_metaspace)
    if scores == "tied":
        meta["tokenizer.ggml.scores"] = [-float(i // 50) for i in range(len(meta["tokenizer.ggml.scores"]))]
    meta, ref = gguf_reference(tmp_path, meta)
    mine = tokenizer_from_gguf(meta)
    assert mine.encode("hi")[0] == meta["tokenizer.ggml.bos_token_id"]
    assert_same_ids(mine, ref)
    assert_same_stream(mine, ref)


def test_gguf_gemma_style_vocabulary(tmp_path, trained_metaspace):
    """No prefix space, merges by position, whitespace tokens spelled with spaces."""
    meta = spm_metadata(trained_metaspace, add_space_prefix=False, arch="gemma3")
    meta["tokenizer.ggml.tokens"] = [t.replace("▁", " ") if not t.strip("▁") else t
                                     for t in meta["tokenizer.ggml.tokens"]]
    gemma_specials = ["<pad>", "<bos>", "<eos>", "<mask>"]  # a real Gemma vocabulary has them all
    meta["tokenizer.ggml.tokens"] += gemma_specials
    meta["tokenizer.ggml.scores"] += [-1e4] * 4
    meta["tokenizer.ggml.token_type"] += [3] * 4
    meta, ref = gguf_reference(tmp_path, meta, arch="gemma3")
    mine = tokenizer_from_gguf(meta)
    assert_same_ids(mine, ref)
    assert_same_stream(mine, ref)


@pytest.mark.parametrize("pre", ["gpt2", "default", "llama-bpe", "qwen2"])
def test_gguf_byte_level_pre_tokenizers(tmp_path, pre):
    meta, ref = gguf_reference(tmp_path, byte_level_metadata(byte_level_bpe(), pre, add_bos=True))
    mine = tokenizer_from_gguf(meta)
    assert mine.encode("x")[0] == meta["tokenizer.ggml.bos_token_id"]
    assert_same_ids(mine, ref)
    assert_same_stream(mine, ref)
    messages = [{"role": "user", "content": "Hi 2024"}]
    assert mine.apply_chat_template(messages) == list(ref.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=False))


def test_gguf_smollm_isolates_digits():
    """"smollm" is SmolLM's tokenizer.json pipeline: Digits, then ByteLevel.
    A vocabulary trained with that pipeline has no multi-digit tokens; one
    trained without it has, and its GGUF under "smollm" must still split
    each digit (the reference is the tokenizers pipeline itself)."""
    from tokenizers import pre_tokenizers

    tok = byte_level_bpe()
    assert any(t.isdigit() and len(t) > 1 for t in tok.get_vocab()), "the test needs multi-digit tokens"
    mine = tokenizer_from_gguf(byte_level_metadata(tok, "smollm", add_bos=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False)])
    for text in corpus():
        assert mine.encode(text) == tok.encode(text).ids, text
    assert len(mine.encode("12345")) == 5


def test_numeric_arrays_as_lists_or_numpy(trained_metaspace):
    import numpy as np

    meta = spm_metadata(trained_metaspace)
    as_numpy = dict(meta, **{k: np.asarray(meta[k]) for k in ("tokenizer.ggml.scores", "tokenizer.ggml.token_type")})
    a, b = tokenizer_from_gguf(meta), tokenizer_from_gguf(as_numpy)
    assert all(a.encode(t) == b.encode(t) for t in corpus())


@pytest.mark.parametrize("change, message", [
    ({"tokenizer.ggml.pre": "made-up"}, "tokenizer.ggml.pre 'made-up' names a pre-tokenizer edgecore does not know"),
    ({"tokenizer.ggml.model": "bert"}, "tokenizer.ggml.model 'bert' is not supported"),
    ({"tokenizer.ggml.tokens": None}, "no tokenizer.ggml.tokens"),
    ({"tokenizer.ggml.bos_token_id": 10**6}, "bos_token_id = 1000000 is outside the vocabulary"),
    ({"tokenizer.ggml.token_type": [1, 2]}, "token_type has 2 entries for"),
    ({"tokenizer.ggml.merges": ["a b c"]}, r"merges\[0\] = 'a b c' is not two tokens"),
    ({"tokenizer.ggml.add_bos_token": "yes"}, "add_bos_token must be a boolean"),
])
def test_gguf_refusals(change, message):
    meta = byte_level_metadata(byte_level_bpe(vocab_size=300), "gpt2")
    meta.update(change)
    meta = {k: v for k, v in meta.items() if v is not None}
    with pytest.raises(ModelError, match=message):
        tokenizer_from_gguf(meta, source="x.gguf")
