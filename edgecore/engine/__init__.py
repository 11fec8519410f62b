"""The inference engine (see engine.py; the paged KV cache and batched step:
docs/engine-step.md)."""

from edgecore.engine.engine import Engine, GenerationResult, GenerationStats
from edgecore.engine.kv import KVSequence, PagedKV
from edgecore.memory.pages import KVPagesExhausted

__all__ = ["Engine", "GenerationResult", "GenerationStats", "KVPagesExhausted", "KVSequence", "PagedKV"]
