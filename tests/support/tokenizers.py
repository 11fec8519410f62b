"""Small tokenizers trained in the test on the shipped corpus (with the
`tokenizers` library) and saved as Hugging Face directories, for the
cases the real GGUF files do not cover."""

from __future__ import annotations

import json
from pathlib import Path

CORPUS_PATH = Path(__file__).resolve().parent.parent / "data" / "tokenizer_corpus.json"
SPECIALS = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>", "<|endoftext|>"]
CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def corpus() -> list[str]:
    return json.loads(CORPUS_PATH.read_text(encoding="utf-8"))


def training_text() -> list[str]:
    return corpus() * 3 + ["The capital of France is Paris. Paris is a city in France."] * 20


def metaspace_bpe(vocab_size: int = 600, template: str | None = "<s> $A"):
    """SentencePiece-style BPE: Metaspace ("▁", prepended to the first
    word), byte fallback, the Llama decoder, and a BOS template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    bytes_ = [f"<0x{b:02X}>" for b in range(256)]
    tok.train_from_iterator(training_text(), trainers.BpeTrainer(vocab_size=vocab_size + 256,
                                                                 special_tokens=SPECIALS + bytes_,
                                                                 show_progress=False))
    if template:
        tok.post_processor = processors.TemplateProcessing(
            single=template, pair=template + " $B:1",
            special_tokens=[(t, tok.token_to_id(t)) for t in ("<s>", "</s>") if t in template])
    return tok


def byte_level_bpe(vocab_size: int = 700, template: str | None = None, pre=None):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre or pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(training_text(), trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    if template:
        tok.post_processor = processors.TemplateProcessing(
            single=template, pair=template + " $B:1",
            special_tokens=[(t, tok.token_to_id(t)) for t in ("<s>", "</s>") if t in template])
    return tok


def unigram_metaspace(vocab_size: int = 400):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.train_from_iterator(training_text(), trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=SPECIALS, unk_token="<unk>", show_progress=False))
    return tok


def save_dir(path: Path, tok, **config) -> Path:
    """tokenizer.json + tokenizer_config.json (loaded by transformers as a
    plain tokenizers backend, so both read the same pipeline)."""
    path.mkdir(parents=True, exist_ok=True)
    tok.save(str(path / "tokenizer.json"))
    cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>",
           "unk_token": "<unk>", **config}
    (path / "tokenizer_config.json").write_text(json.dumps(cfg))
    return path
