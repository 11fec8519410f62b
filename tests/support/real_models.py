"""Where the real GGUF models are for the tests: `$EDGECORE_TEST_MODELS/<name>.gguf`
(or the registry file name there), else the edgecore model cache once
`edgecore pull <name>` has fetched them (CI). Absent: the test skips and
says so loudly. The benchmarks use find_real_model too (bench/common.py), so
pytest is imported only where a test skips."""

from __future__ import annotations

import os
from pathlib import Path

from edgecore.models.registry import registry

REAL_MODEL_NAMES = ("gemma3", "smollm2")


def _candidates(name: str) -> list[Path]:
    entry = registry()[name]
    folder = os.environ.get("EDGECORE_TEST_MODELS")
    candidates = [Path(folder) / f"{name}.gguf", Path(folder) / entry.file] if folder else []
    return candidates + [entry.path]


def find_real_model(name: str) -> Path | None:
    """The model's file, or None where it is not on this machine."""
    return next((path for path in _candidates(name) if path.is_file()), None)


def real_model(name: str) -> Path:
    import pytest

    path = find_real_model(name)
    if path is not None:
        return path
    entry, candidates = registry()[name], _candidates(name)
    pytest.skip(f"SKIPPED LOUDLY: real model {name!r} not found (looked at {', '.join(map(str, candidates))}); "
                f"set EDGECORE_TEST_MODELS or run `{entry.pull_command}`")
