"""A GGUF vocabulary (`tokenizer.ggml.*` metadata) as a Hugging Face tokenizer.

`tokenizer_from_gguf(metadata)` takes the file's metadata as a mapping:
strings as `str`, string arrays as `list[str]` (token strings may carry
surrogate escapes for bytes that are not UTF-8), numeric arrays as NumPy
arrays or lists. It builds the tokenizer transformers builds for the same
file (`AutoTokenizer.from_pretrained(dir, gguf_file=...)`):

- `tokenizer.ggml.model = "gpt2"`: byte-level BPE with the file's merges.
  `tokenizer.ggml.pre` names llama.cpp's pre-tokenizer regex; the known
  names are PRE_TOKENIZERS (an unknown one is refused: guessing would
  tokenize silently wrong). "smollm" isolates digits as SmolLM's own
  tokenizer.json does (transformers uses the GPT-2 regex for it; the ids
  agree because SmolLM's vocabulary has no multi-digit token).
- `tokenizer.ggml.model = "llama"`: SentencePiece-style BPE with byte
  fallback. Merges are the file's, or rebuilt from the vocabulary (every
  split of a token into two tokens, best first by the token's score, or by
  its position for Gemma, whose scores do not follow its merge order).
  `tokenizer.ggml.add_space_prefix` (default true) prepends "▁" to the
  text as a Metaspace pre-tokenizer. Gemma files (architecture gemma*)
  have no prefix space and spell their whitespace-run tokens with spaces;
  they are renamed to "▁" runs as transformers does.
- token_type: control tokens (3) become special tokens, user-defined ones
  (4) plain added tokens, both matched whole in the text.
- `add_bos_token` (default true for "llama", false otherwise) and
  `add_eos_token` decide what `encode(text)` adds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from edgecore.models.spec import ModelError
from edgecore.models.tokenizer import HFTokenizer

CONTROL, USER_DEFINED = 3, 4  # llama.cpp's token types

_GPT2_SPLIT = None  # ByteLevel's own regex (GPT-2's)
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_DIGITS = "digits"  # each digit alone, then GPT-2's regex

# tokenizer.ggml.pre -> how text is split before byte-level BPE
PRE_TOKENIZERS = {
    "default": _GPT2_SPLIT,
    "gpt2": _GPT2_SPLIT,
    "gpt-2": _GPT2_SPLIT,  # llama.cpp's name (its converter writes it for GPT-2's regex)
    "smollm": _DIGITS,
    "llama-bpe": _LLAMA3_SPLIT,
    "llama3": _LLAMA3_SPLIT,
    "llama-v3": _LLAMA3_SPLIT,
    "qwen2": _QWEN2_SPLIT,
    "deepseek-r1-qwen": _QWEN2_SPLIT,
}


def tokenizer_from_gguf(metadata: Mapping[str, Any], source: str = "GGUF file") -> HFTokenizer:
    """The tokenizer a GGUF file's metadata describes (see the module doc)."""
    meta = _Meta(metadata, source)
    model = meta.string("tokenizer.ggml.model")
    tokens = meta.strings("tokenizer.ggml.tokens")
    if not tokens:
        raise ModelError(f"{source}: tokenizer.ggml.tokens is empty")
    types = meta.ints("tokenizer.ggml.token_type", len(tokens))
    arch = meta.string("general.architecture", required=False) or ""
    if model == "gpt2":
        backend, spelled = _byte_level(meta, tokens)
    elif model == "llama":
        backend, spelled = _sentencepiece(meta, tokens, gemma=arch.startswith("gemma"))
    else:
        raise ModelError(f"{source}: tokenizer.ggml.model {model!r} is not supported (supported: gpt2, llama)")
    _add_marked_tokens(backend, tokens, spelled, types, byte_level=model == "gpt2")

    special = {}
    for name, key in (("bos_token", "bos_token_id"), ("eos_token", "eos_token_id"),
                      ("unk_token", "unknown_token_id"), ("pad_token", "padding_token_id")):
        token_id = meta.integer(f"tokenizer.ggml.{key}")
        if token_id is not None:
            if not 0 <= token_id < len(tokens):
                raise ModelError(f"{source}: tokenizer.ggml.{key} = {token_id} is outside the vocabulary "
                                 f"[0, {len(tokens)})")
            special[name] = tokens[token_id]
    add_bos = meta.boolean("tokenizer.ggml.add_bos_token", model == "llama") and "bos_token" in special
    add_eos = meta.boolean("tokenizer.ggml.add_eos_token", False) and "eos_token" in special
    tokenizer = HFTokenizer(backend, special, chat_template=meta.string("tokenizer.chat_template", required=False),
                            source=source)
    _set_template(backend, special, add_bos, add_eos)
    return tokenizer


def gguf_eos_token_ids(metadata: Mapping[str, Any], source: str = "GGUF file") -> tuple[int, ...]:
    """Every token id that ends generation: `eos_token_id`, `eot_token_id`
    and `eom_token_id` (llama.cpp's end-of-generation set)."""
    meta = _Meta(metadata, source)
    ids = [meta.integer(f"tokenizer.ggml.{k}") for k in ("eos_token_id", "eot_token_id", "eom_token_id")]
    return tuple(dict.fromkeys(i for i in ids if i is not None))


# ---- byte-level BPE -------------------------------------------------------


def byte_alphabet() -> dict[int, str]:
    """GPT-2's printable spelling of the 256 byte values: printable Latin-1
    bytes stand for themselves, the others for 256 + their rank."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    spelling = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in spelling:
            spelling[b] = chr(256 + extra)
            extra += 1
    return spelling


def _byte_level(meta: _Meta, tokens: list[str]):
    from tokenizers import Regex, Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import BPE

    pre = meta.string("tokenizer.ggml.pre", required=False) or "default"
    if pre not in PRE_TOKENIZERS:
        raise ModelError(f"{meta.source}: tokenizer.ggml.pre {pre!r} names a pre-tokenizer edgecore does not know "
                         f"(known: {', '.join(PRE_TOKENIZERS)})")
    spelling = byte_alphabet()
    alphabet = set(spelling.values())
    # a token written in the byte alphabet stays; any other is spelled from its UTF-8 bytes
    spelled = [t if set(t) <= alphabet else
               "".join(spelling[b] for b in t.encode("utf-8", "surrogateescape")) for t in tokens]
    merges = []
    for i, merge in enumerate(meta.strings("tokenizer.ggml.merges", required=False) or ()):
        pair = merge.split(" ")
        if len(pair) != 2:
            raise ModelError(f"{meta.source}: tokenizer.ggml.merges[{i}] = {merge!r} is not two tokens")
        merges.append((pair[0], pair[1]))
    vocab = {t: i for i, t in enumerate(spelled)}
    backend = Tokenizer(BPE(vocab=vocab, merges=merges, dropout=None, continuing_subword_prefix="",
                            end_of_word_suffix="", fuse_unk=False))
    split = PRE_TOKENIZERS[pre]
    if split is _GPT2_SPLIT:
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    elif split is _DIGITS:
        backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                          pre_tokenizers.ByteLevel(add_prefix_space=False)])
    else:
        backend.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(split), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    backend.decoder = decoders.ByteLevel()
    return backend, spelled


# ---- SentencePiece-style BPE ------------------------------------------------


def _sentencepiece(meta: _Meta, tokens: list[str], gemma: bool):
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import BPE

    # a piece that is not UTF-8 cannot be a Rust string: its bytes become U+FFFD
    tokens = [t.encode("utf-8", "surrogateescape").decode("utf-8", "replace") for t in tokens]
    if gemma:  # whitespace-run tokens are stored with spaces but looked up as "▁" runs
        tokens = ["▁" * len(t) if " " in t and not t.strip() else t for t in tokens]
    vocab = {t: i for i, t in enumerate(tokens)}
    merges = meta.strings("tokenizer.ggml.merges", required=False)
    if merges is not None:
        merges = [tuple(m.split(" ")) for m in merges]
    elif gemma:
        merges = merges_from_vocab(tokens, [-i for i in range(len(tokens))])
    else:
        merges = merges_from_vocab(tokens, meta.floats("tokenizer.ggml.scores", len(tokens)))
    if gemma:
        backend = Tokenizer(BPE(vocab=vocab, merges=merges, fuse_unk=True, dropout=None, byte_fallback=True,
                                unk_token="<unk>" if "<unk>" in vocab else None))
        backend.normalizer = normalizers.Replace(" ", "▁")
        backend.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
        return backend, tokens
    backend = Tokenizer(BPE(vocab=vocab, merges=merges, fuse_unk=True, dropout=None, byte_fallback=True))
    prefix = meta.boolean("tokenizer.ggml.add_space_prefix", True)
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first" if prefix else "never",
                                                     split=False)
    steps = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    if prefix:  # the space the pre-tokenizer added to the text is not the text's
        steps.append(decoders.Strip(" ", 1, 0))
    backend.decoder = decoders.Sequence(steps)
    return backend, tokens


def merges_from_vocab(tokens: Sequence[str], scores: Sequence[float]) -> list[tuple[str, str]]:
    """The merges a vocabulary implies: each way of writing a token as two
    tokens, ordered by the token's score (highest first), then by the
    longer left and right piece; within one token by the pieces' ids. The
    same order as transformers' generate_merges."""
    vocab = {t: i for i, t in enumerate(tokens)}
    score_of = {}
    for t, s in zip(tokens, scores, strict=True):
        score_of[t] = float(s)
    candidates = []
    for token, score in score_of.items():
        local = [(token[:i], token[i:]) for i in range(1, len(token)) if token[:i] in vocab and token[i:] in vocab]
        local.sort(key=lambda p: (vocab[p[0]], vocab[p[1]]))
        candidates.extend((score, left, right) for left, right in local)
    candidates.sort(key=lambda c: (c[0], len(c[1]), len(c[2])), reverse=True)
    return [(left, right) for _, left, right in candidates]


# ---- special tokens -----------------------------------------------------------


def _add_marked_tokens(backend, tokens, spelled, types, byte_level: bool) -> None:
    """Control tokens become special tokens and user-defined ones plain
    added tokens, as transformers adds them. In a byte-level vocabulary a
    control token outside the byte alphabet is a mislabel and is skipped."""
    from tokenizers import AddedToken

    if types is None:
        return
    alphabet = set(byte_alphabet().values()) if byte_level else None
    control = [AddedToken(t, normalized=False, special=True) for t, kind in zip(tokens, types, strict=True)
               if kind == CONTROL and (alphabet is None or set(t) <= alphabet)]
    if control:
        backend.add_special_tokens(control)
    vocab = set(spelled)
    user = [AddedToken(t, normalized=False, special=False) for t, kind in zip(tokens, types, strict=True)
            if kind == USER_DEFINED and t in vocab]
    if user:
        backend.add_tokens(user)


def _set_template(backend, special: dict, add_bos: bool, add_eos: bool) -> None:
    from tokenizers import processors

    bos, eos = special.get("bos_token"), special.get("eos_token")
    single = f"{bos}:0 " * add_bos + "$A:0" + f" {eos}:0" * add_eos
    pair = single + f" {bos}:1" * add_bos + " $B:1" + f" {eos}:1" * add_eos
    pairs = [(t, backend.token_to_id(t)) for t, on in ((bos, add_bos), (eos, add_eos)) if on]
    backend.post_processor = processors.TemplateProcessing(single=single, pair=pair, special_tokens=pairs)


class _Meta:
    """Typed access to the metadata mapping, with errors naming the key."""

    def __init__(self, metadata: Mapping[str, Any], source: str):
        self.metadata, self.source = metadata, source

    def _get(self, key: str, required: bool):
        if key not in self.metadata:
            if required:
                raise ModelError(f"{self.source}: no {key} in the metadata (the file has no usable vocabulary)")
            return None
        return self.metadata[key]

    def string(self, key: str, required: bool = True) -> str | None:
        value = self._get(key, required)
        if value is not None and not isinstance(value, str):
            raise ModelError(f"{self.source}: {key} must be a string, got {type(value).__name__}")
        return value

    def strings(self, key: str, required: bool = True) -> list[str] | None:
        value = self._get(key, required)
        if value is None:
            return None
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ModelError(f"{self.source}: {key} must be an array of strings")
        return list(value)

    def _numbers(self, key: str, length: int, kind) -> list | None:
        value = self._get(key, False)
        if value is None:
            return None
        try:
            import numpy as np

            arr = np.asarray(value)
        except (TypeError, ValueError):
            arr = None
        if arr is None or arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise ModelError(f"{self.source}: {key} must be an array of numbers")
        if len(arr) != length:
            raise ModelError(f"{self.source}: {key} has {len(arr)} entries for {length} tokens")
        return [kind(v) for v in arr.tolist()]

    def ints(self, key: str, length: int) -> list[int] | None:
        return self._numbers(key, length, int)

    def floats(self, key: str, length: int) -> list[float]:
        values = self._numbers(key, length, float)
        if values is None:
            raise ModelError(f"{self.source}: {key} is needed to rebuild the merges (the file has none)")
        return values

    def integer(self, key: str) -> int | None:
        value = self._get(key, False)
        if value is None:
            return None
        if isinstance(value, bool) or not hasattr(value, "__index__"):
            raise ModelError(f"{self.source}: {key} must be an integer, got {value!r}")
        return int(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key, False)
        if value is None:
            return default
        if not isinstance(value, (bool, int)) or int(value) not in (0, 1):
            raise ModelError(f"{self.source}: {key} must be a boolean, got {value!r}")
        return bool(value)
