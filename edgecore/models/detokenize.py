"""Streaming text out of generated tokens.

`IncrementalDecoder` turns tokens pushed one at a time into text pieces
whose concatenation is the text the tokenizer's decoder gives the whole
continuation: it decodes a short window (the last tokens already shown, or
the prompt's last tokens at first) with the new token, and emits what the
new token adds. The window is what keeps a SentencePiece/Metaspace word's
leading space (decoded alone, "▁Paris" loses it: the decoder strips the
first space of a text). Text that ends in an incomplete UTF-8 sequence
(U+FFFD) is held until the character completes.

`StopText` sits after it: it holds back the end of the text while it could
still be the start of a stop string, so nothing a stop string later cuts
from the result is ever shown.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Sequence

CONTEXT_TOKENS = 4  # prompt tokens decoded in front of the first new token


class StreamDecoder:
    def push(self, token: int) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def flush(self) -> str:
        """Whatever is still held (an unfinished character becomes U+FFFD)."""
        return ""


class ByteStream(StreamDecoder):
    """Token id = byte: an incremental UTF-8 decoder."""

    def __init__(self):
        self._dec = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token: int) -> str:
        return self._dec.decode(bytes([int(token)]))

    def flush(self) -> str:
        return self._dec.decode(b"", final=True)


class IncrementalDecoder(StreamDecoder):
    def __init__(self, decode: Callable[[list[int]], str], context: Sequence[int] = ()):
        self._decode = decode
        self._ids = [int(t) for t in list(context)[-CONTEXT_TOKENS:]]
        self._start = 0  # first token of the decoding window
        self._shown = len(self._ids)  # tokens before this one have been emitted

    def push(self, token: int) -> str:
        self._ids.append(int(token))
        shown = self._decode(self._ids[self._start:self._shown])
        text = self._decode(self._ids[self._start:])
        if text == shown or text.endswith("\ufffd"):
            return ""  # nothing new yet, or a character still incomplete
        self._advance()
        # text starts with shown, except when the prompt's context ended inside a character
        return text[_common_prefix(text, shown):]

    def flush(self) -> str:
        shown = self._decode(self._ids[self._start:self._shown])
        text = self._decode(self._ids[self._start:])
        self._advance()
        return text[_common_prefix(text, shown):]

    def _advance(self) -> None:
        # the tokens just emitted become the next window's context
        del self._ids[:self._shown]
        self._start, self._shown = 0, len(self._ids)


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class StopText:
    """The generated text, cut before the first stop string.

    push(piece) returns the text that is now safe to show: never a part of
    a stop string, and never text that could still become one."""

    def __init__(self, stops: Sequence[str]):
        self.stops = [s for s in stops if s]
        self.text = ""
        self.stopped = False
        self._emitted = 0
        self._longest = max((len(s) for s in self.stops), default=0)

    def push(self, piece: str) -> str:
        if self.stopped or not piece:
            return ""
        search_from = max(0, len(self.text) - self._longest + 1)
        self.text += piece
        if not self.stops:
            return self._emit(len(self.text))
        found = [i for i in (self.text.find(s, search_from) for s in self.stops) if i >= 0]
        if found:
            self.text = self.text[:min(found)]
            self.stopped = True
            return self._emit(len(self.text))
        return self._emit(len(self.text) - self._held())

    def flush(self) -> str:
        return self._emit(len(self.text))

    def _held(self) -> int:
        """Length of the longest end of the text that begins a stop string."""
        for k in range(min(self._longest - 1, len(self.text) - self._emitted), 0, -1):
            tail = self.text[-k:]
            if any(s.startswith(tail) for s in self.stops):
                return k
        return 0

    def _emit(self, end: int) -> str:
        out = self.text[self._emitted:end]
        self._emitted = max(self._emitted, end)
        return out
