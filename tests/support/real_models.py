"""Where the real GGUF models are for the tests: `$EDGECORE_TEST_MODELS/<name>.gguf`
(or the registry file name there), else the edgecore model cache once
`edgecore pull <name>` has fetched them (CI). Absent: the test skips and
says so loudly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgecore.models.registry import registry


def real_model(name: str) -> Path:
    entry = registry()[name]
    folder = os.environ.get("EDGECORE_TEST_MODELS")
    candidates = [Path(folder) / f"{name}.gguf", Path(folder) / entry.file] if folder else []
    candidates.append(entry.path)
    for path in candidates:
        if path.is_file():
            return path
    pytest.skip(f"SKIPPED LOUDLY: real model {name!r} not found (looked at {', '.join(map(str, candidates))}); "
                f"set EDGECORE_TEST_MODELS or run `{entry.pull_command}`")
