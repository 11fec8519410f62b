"""Strict reading of user-supplied JSON/TOML documents.

Workloads, gate inputs, policies and mirrored request logs are written by
people and by other programs; a typo must come back as one line naming the
JSON path (``requests[3].max_new_tokens``), what was expected and what was
found, never as a traceback or a silently ignored field. Everything here is
standard library only, so the commands that use it start fast.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_MISSING = object()
# Gate inputs, policies and request logs nest a few levels; a document far
# deeper is a mistake or an attack, refused before anything recurses into it.
MAX_DEPTH = 64


class InputError(ValueError):
    """A document does not have the expected shape.

    ``path`` is the JSON path of the offending value (``""`` for the top
    level); the message reads ``<path>: expected <what>, got <found>``.
    """

    def __init__(self, path: str, expected: str, got: Any = _MISSING, note: str = ""):
        self.path = path
        self.expected = expected
        where = path or "top level"
        found = "nothing (field is missing)" if got is _MISSING else describe(got)
        message = f"{where}: expected {expected}, got {found}"
        if note:
            message += f" ({note})"
        super().__init__(message)


class DocumentError(InputError):
    """The file itself is unreadable or not valid JSON/TOML (no JSON path yet)."""

    def __init__(self, message: str):
        self.path = ""
        self.expected = message
        ValueError.__init__(self, message)


def describe(value: Any) -> str:
    """A short, type-revealing rendering of a JSON value for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{'true' if value else 'false'} (boolean)"
    if isinstance(value, int):
        return f"{value} (integer)"
    if isinstance(value, float):
        return f"{value!r} (number)"
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return f"{json.dumps(text)} (string)"
    if isinstance(value, dict):
        return f"an object with {len(value)} field(s)"
    if isinstance(value, list):
        return f"a list of {len(value)} item(s)"
    return type(value).__name__


def join(path: str, key: str | int) -> str:
    """Extend a JSON path by an object key or a list index. A key that is not
    a plain name (empty, or with spaces, dots, brackets, quotes, control or
    non-ASCII characters) is written quoted, ``path["a key"]``, so the path
    stays one unambiguous line."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    if not (key.isascii() and key.replace("_", "a").replace("-", "a").isalnum()):
        return f"{path}[{json.dumps(key)}]"
    return f"{path}.{key}" if path else key


def read_document(file: str | Path) -> Any:
    """Parse a JSON file, or TOML when the name ends in ``.toml``.

    Raises ``DocumentError`` for unreadable or malformed files, with line and
    column for JSON syntax errors.
    """
    file = Path(file)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DocumentError("no such file") from None
    except UnicodeDecodeError as exc:
        raise DocumentError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise DocumentError(f"cannot read: {exc.strerror or exc}") from None
    if file.suffix.lower() == ".toml":
        # imported here: only policies are TOML, and Python 3.10 needs the tomli package
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - Python 3.10 only
            import tomli as tomllib
        try:
            return _shallow(tomllib.loads(text))
        except RecursionError:
            raise DocumentError(f"nested more than {MAX_DEPTH} levels deep") from None
        except ValueError as exc:  # TOMLDecodeError, or an integer too long to convert
            raise DocumentError(f"not valid TOML: {exc}") from None
    try:
        return _shallow(json.loads(text))
    except RecursionError:
        raise DocumentError(f"nested more than {MAX_DEPTH} levels deep") from None
    except json.JSONDecodeError as exc:
        raise DocumentError(f"not valid JSON: line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except ValueError as exc:  # an integer with more digits than Python converts
        raise DocumentError(f"not valid JSON: {exc}") from None


def _shallow(document: Any) -> Any:
    """The document, if it nests at most MAX_DEPTH levels (checked without
    recursion, so that later code walking it cannot overflow the stack)."""
    stack = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > MAX_DEPTH:
                raise DocumentError(f"nested more than {MAX_DEPTH} levels deep")
            stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict) else value))
    return document


class Fields:
    """Typed access to one JSON object whose every error names the JSON path.

    Read each field with one of the typed getters, then call ``done()``: any
    field that was never read is reported as unknown (usually a typo).
    """

    def __init__(self, value: Any, path: str, what: str = "an object"):
        if not isinstance(value, dict):
            raise InputError(path, what, value)
        self.value = value
        self.path = path
        self._seen: set[str] = set()

    def has(self, key: str) -> bool:
        """True when the field is present and not null."""
        self._seen.add(key)
        return self.value.get(key) is not None

    def _get(self, key: str, default: Any) -> Any:
        """The field's value, or ``_MISSING`` when absent/null and a default applies."""
        self._seen.add(key)
        value = self.value.get(key)
        if value is None:
            if default is _MISSING:
                raise InputError(join(self.path, key), "a value", self.value.get(key, _MISSING))
            return _MISSING
        return value

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        """The field as parsed, without a type check (for free-form provenance)."""
        value = self._get(key, default)
        return default if value is _MISSING else value

    def str(self, key: str, default: Any = _MISSING, choices: Iterable[str] | None = None) -> Any:
        value = self._get(key, default)
        if value is _MISSING:
            return default
        expected = "a non-empty string"
        if choices is not None:
            choices = tuple(choices)
            expected = "one of " + ", ".join(json.dumps(c) for c in choices)
        if not isinstance(value, str) or not value or (choices is not None and value not in choices):
            raise InputError(join(self.path, key), expected, value)
        return value

    def int(self, key: str, default: Any = _MISSING, minimum: int | None = None) -> Any:
        value = self._get(key, default)
        return default if value is _MISSING else check_int(value, join(self.path, key), minimum)

    def number(self, key: str, default: Any = _MISSING, minimum: float | None = None) -> Any:
        value = self._get(key, default)
        return default if value is _MISSING else check_number(value, join(self.path, key), minimum)

    def bool(self, key: str, default: Any = _MISSING) -> Any:
        value = self._get(key, default)
        if value is _MISSING:
            return default
        if not isinstance(value, bool):
            raise InputError(join(self.path, key), "true or false", value)
        return value

    def list(self, key: str, default: Any = _MISSING) -> Any:
        value = self._get(key, default)
        if value is _MISSING:
            return default
        if not isinstance(value, list):
            raise InputError(join(self.path, key), "a list", value)
        return value

    def obj(self, key: str, default: Any = _MISSING) -> Any:
        value = self._get(key, default)
        return default if value is _MISSING else Fields(value, join(self.path, key))

    def done(self) -> None:
        """Reject fields that no getter asked for."""
        for key in self.value:
            if key not in self._seen:
                raise InputError(join(self.path, key), "no such field (unknown field; check the spelling)",
                                 self.value[key])


def check_int(value: Any, path: str, minimum: int | None = None) -> int:
    """An integer (not a boolean, not a float) at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
        if minimum is None:
            expected = "an integer"
        elif minimum == 0:
            expected = "a non-negative integer"
        elif minimum == 1:
            expected = "a positive integer"
        else:
            expected = f"an integer >= {minimum}"
        raise InputError(path, expected, value)
    return value


def check_number(value: Any, path: str, minimum: float | None = None) -> float:
    """A finite number (integers accepted) at least ``minimum``; returned as float."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (minimum is not None and value < minimum):
        expected = "a finite number" if minimum is None else f"a finite number >= {minimum:g}"
        raise InputError(path, expected, value)
    return float(value)


def check_str_list(value: Any, path: str) -> list[str]:
    """A list of non-empty strings."""
    if not isinstance(value, list):
        raise InputError(path, "a list of strings", value)
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item:
            raise InputError(join(path, i), "a non-empty string", item)
    return value
