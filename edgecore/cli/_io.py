"""Reading user documents and writing reports for the JSON-in/JSON-out commands."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from edgecore.cli import CliError


def input_error(file: str | Path, exc: Exception) -> CliError:
    """A CliError naming the file and the JSON path of an ``InputError``."""
    return CliError(f"{file}: {exc}")


def write_json(document: Any, output: str) -> None:
    """Write ``document`` as indented JSON to a file, or to stdout for ``-``."""
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    if output == "-":
        sys.stdout.write(text)
        return
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot write {output}: {exc.strerror or exc}") from None
