"""Commands that run Python code in a child interpreter importing this same
edgecore.

`python -c` puts the current directory first on sys.path, so a child
started from a source checkout would import the checkout's edgecore (which
has no compiled extension unless built in place) instead of the installed
package its parent runs. The child therefore puts the parent's package root
first, explicitly.
"""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)


def python_command(code: str, *args: str) -> list[str]:
    """argv for `python -c code args...` that imports this edgecore."""
    return [sys.executable, "-c", f"import sys; sys.path.insert(0, {PACKAGE_ROOT!r})\n{code}", *args]
