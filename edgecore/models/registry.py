"""Models by name: the registry (registry.toml beside this file) and the
model cache that `edgecore pull` fills.

The cache is `$EDGECORE_HOME/models` when EDGECORE_HOME is set, else
`$XDG_CACHE_HOME/edgecore/models`, else `~/.cache/edgecore/models`. A
model is present when its file is there with the registry's size (pull
writes it atomically, after checking every byte against its hashes).
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REGISTRY_PATH = Path(__file__).resolve().parent / "registry.toml"


class RegistryError(ValueError):
    """The registry file itself is malformed (a packaging mistake, not the user's)."""


@dataclass(frozen=True)
class WheelMember:
    """One file inside a PyPI wheel: package==version, path in the wheel."""

    package: str
    version: str
    member: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class RegistryEntry:
    name: str
    title: str
    file: str
    size: int
    sha256: str
    license: str
    source: str
    parts: tuple[WheelMember, ...]
    checksums: WheelMember | None = None  # SHA256SUMS listing `file` (multi-part models)

    @property
    def path(self) -> Path:
        return models_dir() / self.file

    @property
    def present(self) -> bool:
        try:
            return self.path.stat().st_size == self.size
        except OSError:
            return False

    @property
    def pull_command(self) -> str:
        return f"edgecore pull {self.name}"


def models_dir() -> Path:
    home = os.environ.get("EDGECORE_HOME")
    if home:
        return Path(home) / "models"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "edgecore" / "models"


def registry() -> dict[str, RegistryEntry]:
    return dict(_load(REGISTRY_PATH))


@lru_cache(maxsize=4)
def _load(path: Path) -> tuple[tuple[str, RegistryEntry], ...]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise RegistryError(f"{path}: not a readable registry ({exc})") from None
    return tuple((name, _entry(path, name, body)) for name, body in data.items())


def _entry(path: Path, name: str, body) -> RegistryEntry:
    where = f"{path} [{name}]"
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", name) or not isinstance(body, dict):
        raise RegistryError(f"{where}: an entry is a lowercase name with a table")
    for key, kind in (("title", str), ("file", str), ("size", int), ("sha256", str), ("license", str),
                      ("source", str), ("parts", list)):
        if not isinstance(body.get(key), kind) or isinstance(body.get(key), bool):
            raise RegistryError(f"{where}: {key} must be a {kind.__name__}")
    if not re.fullmatch(r"[0-9a-f]{64}", body["sha256"]) or "/" in body["file"] or not body["parts"]:
        raise RegistryError(f"{where}: sha256 must be 64 hex digits, file a plain name, parts non-empty")
    checksums = body.get("checksums")
    return RegistryEntry(name=name, title=body["title"], file=body["file"], size=body["size"],
                         sha256=body["sha256"], license=body["license"], source=body["source"],
                         parts=tuple(_member(where, p) for p in body["parts"]),
                         checksums=None if checksums is None else _member(where, checksums))


def _member(where: str, body) -> WheelMember:
    if not isinstance(body, dict) or not all(isinstance(body.get(k), str) for k in ("package", "version", "member")):
        raise RegistryError(f"{where}: a wheel member has string package, version and member")
    return WheelMember(body["package"], body["version"], body["member"])
