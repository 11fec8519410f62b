#!/usr/bin/env python3
"""Check that a repaired wheel carries the platform tag it was repaired for.

    python3 tools/check_wheel_tag.py WHEEL_FILE_NAME manylinux_2_36_aarch64

auditwheel may add older tags the wheel's symbol versions allow
(manylinux_2_34_aarch64.manylinux_2_36_aarch64); that is fine. What is not:
the requested tag missing, a plain linux_* tag, another architecture, or a
glibc newer than the one the wheel was built against (a tag no system of
that age can install). Exits 0 when the tag is right, else 1 with one line.
"""

from __future__ import annotations

import re
import sys

MANYLINUX = re.compile(r"manylinux_(\d+)_(\d+)_(\w+)$")


def tag_problem(wheel: str, plat: str) -> str | None:
    """None if `wheel`'s platform tags are right for `plat`, else why not."""
    want = MANYLINUX.match(plat)
    if want is None:
        return f"{plat!r} is not a manylinux_X_Y_ARCH tag"
    parts = wheel.removesuffix(".whl").split("-")
    if len(parts) < 5 or not wheel.endswith(".whl"):
        return f"{wheel!r} is not a wheel file name (name-version-python-abi-platform.whl)"
    tags = parts[-1].split(".")
    if plat not in tags:
        return f"{wheel}: platform tags {tags} lack the requested {plat}"
    major, minor, arch = int(want[1]), int(want[2]), want[3]
    for tag in tags:
        got = MANYLINUX.match(tag)
        if got is None:
            return f"{wheel}: platform tag {tag!r} is not a manylinux tag"
        if got[3] != arch:
            return f"{wheel}: platform tag {tag} is not for {arch}"
        if (int(got[1]), int(got[2])) > (major, minor):
            return f"{wheel}: platform tag {tag} claims a newer glibc than the {major}.{minor} it was built against"
    return None


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: check_wheel_tag.py WHEEL_FILE_NAME MANYLINUX_TAG", file=sys.stderr)
        return 2
    problem = tag_problem(argv[1].rsplit("/", 1)[-1], argv[2])
    if problem:
        print(f"wheel tag check failed: {problem}", file=sys.stderr)
        return 1
    print(f"wheel tag check: {argv[1].rsplit('/', 1)[-1]} carries {argv[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
