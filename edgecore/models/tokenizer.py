"""Tokenizers: edgecore's byte tokenizer (the demo models) and Hugging Face
`tokenizer.json` files (through the `tokenizers` package).

Both decode incrementally: `StreamDecoder.push(token)` returns only the text
that is complete, so a multi-byte character split across tokens is never
printed as garbage.
"""

from __future__ import annotations

import codecs
from pathlib import Path

from edgecore.models.spec import ModelError, ModelSpec


class ByteTokenizer:
    """Token id = byte value (vocab 256); text is UTF-8."""

    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids) -> str:
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")

    def stream(self) -> StreamDecoder:
        return _ByteStream()


class HFTokenizer:
    def __init__(self, path: Path):
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise ModelError(f"{path}: reading tokenizer.json needs the `tokenizers` package "
                             f"(pip install 'edgecore[tokenizers]')") from None
        try:
            self._tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # the Rust library raises its own exception type
            raise ModelError(f"{path}: not a readable tokenizer ({exc})") from None
        self.vocab_size = self._tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids) -> str:
        return self._tok.decode([int(i) for i in ids])

    def stream(self) -> StreamDecoder:
        return _PrefixStream(self)


class StreamDecoder:
    def push(self, token: int) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def flush(self) -> str:
        return ""


class _ByteStream(StreamDecoder):
    def __init__(self):
        self._dec = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token: int) -> str:
        return self._dec.decode(bytes([int(token)]))

    def flush(self) -> str:
        return self._dec.decode(b"", final=True)


class _PrefixStream(StreamDecoder):
    """Decode everything so far and emit the new suffix, holding back text
    that ends in an incomplete character (U+FFFD)."""

    def __init__(self, tok: HFTokenizer):
        self._tok, self._ids, self._emitted = tok, [], 0

    def push(self, token: int) -> str:
        self._ids.append(int(token))
        text = self._tok.decode(self._ids)
        if text.endswith("\ufffd"):
            return ""
        new, self._emitted = text[self._emitted:], len(text)
        return new

    def flush(self) -> str:
        text = self._tok.decode(self._ids)
        new, self._emitted = text[self._emitted:], len(text)
        return new


def load_tokenizer(model_dir: Path, spec: ModelSpec):
    """The model's tokenizer, or None when it has none (token ids only)."""
    if spec.tokenizer == "bytes":
        if spec.vocab_size != 256:
            raise ModelError(f"{model_dir}: edgecore_tokenizer 'bytes' needs vocab_size 256, got {spec.vocab_size}")
        return ByteTokenizer()
    if spec.tokenizer not in (None, "hf"):
        raise ModelError(f"{model_dir}: unknown edgecore_tokenizer {spec.tokenizer!r} (expected 'bytes')")
    path = Path(model_dir) / "tokenizer.json"
    return HFTokenizer(path) if path.exists() else None
