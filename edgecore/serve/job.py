"""One request's generation: its sampler, its text and where its events go.

A ``Job`` is built on the HTTP side (prompt tokenized, sampling resolved)
and from then on touched only by the engine thread. It makes the same
choices, in the same order, as ``Engine.generate`` does for one sequence:
the same processors and seeded generator (``engine/sampling.py``), EOS
ids ending the request without being emitted, the streaming decoder
and the stop-string holdback (``models/detokenize.py``), and the same
flush at the end. That is what makes a served request's tokens equal to
``Engine.generate``'s, preempted or not: the generator and the tokens live
here, not in the KV cache, so a recompute continues the same stream.

Events go to ``sink`` (thread-safe; the HTTP side's queue):
``("token", text_piece)`` for each token (the piece may be "" while text
is held back), then exactly one of ``("done", finish_reason, rest)`` or
``("error", status, message)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from edgecore.engine.sampling import choose
from edgecore.models.detokenize import StopText


class Job:
    __slots__ = ("id", "prompt", "max_new", "sampling", "rng", "eos", "decoder", "text", "tokens", "finish",
                 "priority", "sink", "created", "first_token_at", "last_token_at", "admitted", "kv", "_penalty")

    def __init__(self, rid: str, prompt: Sequence[int], max_new: int, sampling: dict, seed: int | None,
                 stop: Sequence[str], eos: Sequence[int], tokenizer, sink: Callable[[tuple], object],
                 created: float | None = None, priority: int = 0):
        self.id = rid
        self.prompt = [int(t) for t in prompt]
        self.max_new = max_new
        self.sampling = sampling
        self.rng = np.random.default_rng(seed)
        self.eos = frozenset(eos)
        self.decoder = tokenizer.stream(self.prompt)
        self.text = StopText(list(stop))
        self.tokens: list[int] = []
        self.finish: str | None = None
        self.priority = priority
        self.sink = sink
        self.created = time.perf_counter() if created is None else created
        self.first_token_at: float | None = None
        self.last_token_at: float | None = None
        self.admitted = False  # left the waiting queue at least once
        self.kv = None  # the engine's KV sequence while the scheduler holds pages for it
        self._penalty = sampling["repetition_penalty"] != 1.0

    def context(self) -> list[int]:
        """What the KV cache must hold before the next token: the prompt and
        every token generated so far (all of them after a preemption)."""
        return self.prompt + self.tokens

    def choose(self, logits: np.ndarray) -> int:
        s = self.sampling
        previous = self.prompt + self.tokens if self._penalty else ()
        return choose(logits, s["temperature"], s.get("top_k"), s.get("top_p"), self.rng, min_p=s.get("min_p"),
                      repetition_penalty=s["repetition_penalty"], previous=previous)

    def accept(self, token: int) -> bool:
        """Take a sampled token; True if the request ends with it (an EOS id,
        which is not part of the output, or a stop string)."""
        if token in self.eos:
            self.finish = "stop"
            return True
        self.tokens.append(token)
        self.sink(("token", self.text.push(self.decoder.push(token))))
        if self.text.stopped:
            self.finish = "stop"
            return True
        return False

    def complete(self) -> None:
        """The request ended normally: flush held text, send ``done``."""
        finish = self.finish or "length"
        rest = ""
        if not self.text.stopped:
            rest = self.text.push(self.decoder.flush())
            rest += "" if self.text.stopped else self.text.flush()
            if self.text.stopped:
                finish = "stop"
        self.finish = finish
        self.sink(("done", finish, rest))

    def fail(self, status: int, message: str) -> None:
        self.finish = "error"
        self.sink(("error", status, message))
