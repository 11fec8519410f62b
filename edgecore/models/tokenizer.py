"""Tokenizers: edgecore's byte tokenizer (the demo models) and Hugging Face
tokenizers, which behave as transformers' tokenizer for the same files.

A `tokenizer.json` directory is read with the `tokenizers` library; its
`tokenizer_config.json` names the special tokens and the chat template. A
GGUF vocabulary becomes the same kind of tokenizer in tokenizer_gguf.py.
As in transformers 5, `encode(text)` adds special tokens as the
tokenizer's post-processor says (a tokenizer.json's own template; for a
GGUF, `tokenizer.ggml.add_bos_token`/`add_eos_token`), and every named
special token (bos, eos, unk, pad, ...) is matched whole in the text.

Decoding for display goes through `stream(context)` (detokenize.py), which
keeps the leading space of a SentencePiece word that follows the context.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edgecore.models.chat_template import ChatTemplate
from edgecore.models.detokenize import ByteStream, IncrementalDecoder, StreamDecoder
from edgecore.models.spec import ModelError, ModelSpec

# transformers' named special tokens, in its order
SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


class ByteTokenizer:
    """Token id = byte value (vocab 256); text is UTF-8. No special tokens."""

    vocab_size = 256
    chat_template = None
    special_tokens: dict[str, str] = {}

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")

    def stream(self, context: Sequence[int] = ()) -> StreamDecoder:
        return ByteStream()


class HFTokenizer:
    """A `tokenizers.Tokenizer` with the special tokens and chat template
    transformers would give it.

    special_tokens: name ("bos_token", ...) -> token text, as in
    transformers' `special_tokens_map`; they are passed to chat templates.
    extra_special_tokens: further texts matched whole as special tokens.
    clean_up_spaces: transformers' clean_up_tokenization_spaces (applied,
    as there, only to non-BPE models)."""

    def __init__(self, backend, special_tokens: Mapping[str, str | None] | None = None, *,
                 extra_special_tokens: Sequence[str] = (), chat_template: str | None = None,
                 clean_up_spaces: bool = False, split_special_tokens: bool = False, source: str = "tokenizer"):
        from tokenizers import AddedToken

        self._tok = backend
        self._tok.no_truncation()  # never cut a prompt silently
        self._tok.no_padding()
        self.source = source
        self.special_tokens = {k: v for k, v in (special_tokens or {}).items() if v is not None}
        # transformers adds every named special token that is not an added token yet, so it is matched whole
        added = {t.content for t in self._tok.get_added_tokens_decoder().values()}
        missing = [t for t in [*self.special_tokens.values(), *extra_special_tokens] if t not in added]
        if missing:
            self._tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                          for t in dict.fromkeys(missing)])
        self._tok.encode_special_tokens = split_special_tokens
        self._clean_up = clean_up_spaces and type(self._tok.model).__name__ != "BPE"
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)
        self.chat_template = ChatTemplate(chat_template, source) if chat_template else None

    @property
    def backend(self):
        """The `tokenizers.Tokenizer` this wraps (e.g. to save it as tokenizer.json)."""
        return self._tok

    # ---- ids -------------------------------------------------------------

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids of `text`; add_special_tokens applies the tokenizer's
        post-processor (BOS/EOS), as transformers' `tokenizer(text)` does."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return self._tok.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        text = self._tok.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)
        return _clean_up_tokenization(text) if self._clean_up else text

    def stream(self, context: Sequence[int] = ()) -> StreamDecoder:
        """An incremental decoder for tokens that follow `context` (e.g. the
        prompt), so the first word keeps the space it has after the context."""
        return IncrementalDecoder(self.decode, context)

    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        return self._tok.id_to_token(int(token_id))

    @property
    def bos_token_id(self) -> int | None:
        return self._named_id("bos_token")

    @property
    def eos_token_id(self) -> int | None:
        return self._named_id("eos_token")

    def _named_id(self, name: str) -> int | None:
        text = self.special_tokens.get(name)
        return None if text is None else self._tok.token_to_id(text)

    # ---- chat ------------------------------------------------------------

    def render_chat(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True,
                    **kwargs) -> str:
        """The chat template rendered as transformers' apply_chat_template(tokenize=False)."""
        if self.chat_template is None:
            raise ModelError(f"{self.source}: this model has no chat template")
        return self.chat_template.render(messages, add_generation_prompt=add_generation_prompt,
                                         **{**self.special_tokens, **kwargs})

    def apply_chat_template(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True,
                            **kwargs) -> list[int]:
        """Token ids of the rendered chat, as transformers' apply_chat_template
        (the template writes the special tokens itself: none are added)."""
        return self.encode(self.render_chat(messages, add_generation_prompt, **kwargs), add_special_tokens=False)


def load_tokenizer(model_dir: Path, spec: ModelSpec):
    """The model's tokenizer, or None when it has none (token ids only)."""
    if spec.tokenizer == "bytes":
        if spec.vocab_size != 256:
            raise ModelError(f"{model_dir}: edgecore_tokenizer 'bytes' needs vocab_size 256, got {spec.vocab_size}")
        return ByteTokenizer()
    if spec.tokenizer not in (None, "hf"):
        raise ModelError(f"{model_dir}: unknown edgecore_tokenizer {spec.tokenizer!r} (expected 'bytes')")
    path = Path(model_dir) / "tokenizer.json"
    return tokenizer_from_dir(model_dir) if path.exists() else None


def tokenizer_from_dir(model_dir: str | Path) -> HFTokenizer:
    """A Hugging Face tokenizer directory: tokenizer.json, plus (optional)
    tokenizer_config.json, special_tokens_map.json and chat_template.jinja."""
    model_dir = Path(model_dir)
    path = model_dir / "tokenizer.json"
    try:
        from tokenizers import Tokenizer
    except ImportError:  # a regular dependency; only a broken installation lacks it
        raise ModelError(f"{path}: reading tokenizer.json needs the `tokenizers` package (pip install tokenizers)") \
            from None
    try:
        backend = Tokenizer.from_file(str(path))
    except Exception as exc:  # the Rust library raises its own exception type
        raise ModelError(f"{path}: not a readable tokenizer ({exc})") from None
    config = _read_json(model_dir / "tokenizer_config.json")
    if "added_tokens_decoder" not in config:  # legacy file, read by transformers only in that case
        for key, value in _read_json(model_dir / "special_tokens_map.json").items():
            config.setdefault(key, value)
    special = {}
    for name in SPECIAL_TOKEN_NAMES:
        value = _token_text(config.get(name), model_dir / "tokenizer_config.json", name)
        if value is not None:
            special[name] = value
    extra = config.get("additional_special_tokens") or config.get("extra_special_tokens") or []
    if isinstance(extra, dict):  # transformers 5: named model-specific tokens
        extra = list(extra.values())
    if not isinstance(extra, list):
        raise ModelError(f"{model_dir / 'tokenizer_config.json'}: additional_special_tokens must be a list")
    extra = [_token_text(t, model_dir / "tokenizer_config.json", "additional_special_tokens") for t in extra]
    return HFTokenizer(backend, special, extra_special_tokens=extra,
                       chat_template=_chat_template(model_dir, config),
                       clean_up_spaces=bool(config.get("clean_up_tokenization_spaces", False)),
                       split_special_tokens=bool(config.get("split_special_tokens", False)), source=str(model_dir))


def _chat_template(model_dir: Path, config: dict) -> str | None:
    """chat_template.jinja wins over the config's entry (as in transformers);
    a list of named templates gives its "default"."""
    jinja = model_dir / "chat_template.jinja"
    if jinja.exists():
        try:
            return jinja.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ModelError(f"{jinja}: not readable ({exc})") from None
    template = config.get("chat_template")
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    if template is not None and not isinstance(template, str):
        raise ModelError(f"{model_dir / 'tokenizer_config.json'}: chat_template must be a string")
    return template


def _read_json(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise ModelError(f"{path}: its JSON is nested too deeply") from None
    except (OSError, ValueError) as exc:  # ValueError: bad JSON or UTF-8, an over-long integer
        raise ModelError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path}: expected a JSON object")
    return data


def _token_text(value, path: Path, name: str) -> str | None:
    """A token as tokenizer_config.json writes it: a string or an AddedToken dict."""
    if isinstance(value, dict):
        value = value.get("content")
    if value is not None and not isinstance(value, str):
        raise ModelError(f"{path}: {name} must be a token string, got {value!r}")
    return value


_CLEAN_UP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"),
             (" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))


def _clean_up_tokenization(text: str) -> str:
    """transformers' clean_up_tokenization: no space before punctuation and contractions."""
    for old, new in _CLEAN_UP:
        text = text.replace(old, new)
    return text
