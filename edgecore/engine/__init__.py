"""The inference engine (see engine.py)."""

from edgecore.engine.engine import Engine, GenerationResult, GenerationStats

__all__ = ["Engine", "GenerationResult", "GenerationStats"]
