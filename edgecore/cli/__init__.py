"""The `edgecore` command line.

Each subcommand lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func``. Commands
import what they need when they run, so `edgecore --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module

from edgecore import __version__

# subcommand -> module in edgecore.cli that registers it
COMMANDS: dict[str, str] = {
    "run": "run",
    "chat": "chat",
    "pull": "pull",
    "models": "models",
    "inspect": "inspect",
    "quantize": "quantize",
    "bench": "bench",
    "status": "status",
    "replay": "replay",
    "gate": "gate",
    "mirror-gate": "mirror_gate",
}


class CliError(Exception):
    """A user mistake (bad flag value, unreadable file, broken model
    directory): printed as one line naming what is wrong, never a traceback."""

    def __init__(self, message: str, status: int = 2):
        super().__init__(message)
        self.status = status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgecore",
        description="Transformer inference on small CPUs under a hard memory budget.",
    )
    parser.add_argument("--version", action="version", version=f"edgecore {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS.values():
        import_module(f"edgecore.cli.{module}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f"edgecore {args.command}: error: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        print(f"edgecore {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # output piped into `head` and closed: not an error of ours
        sys.stderr.close()
        return 0
