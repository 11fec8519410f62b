"""The `edgecore` command line.

Each subcommand lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func``. Commands
import what they need when they run, so `edgecore --help` stays fast.

Every mistake is one line on standard error, ``edgecore CMD: error: ...``,
and the exit status says which kind it was (the same for every command):

- 2 (EXIT_USAGE): the command line, a preset, an input file or an
  EDGECORE_* environment variable is wrong, whatever the model: an unknown
  flag, a missing or out-of-range value, an unreadable or malformed file.
  argparse uses 2 for the same mistakes. Checked before any model loads.
- 1 (EXIT_REFUSED): well-formed, but this model, budget or machine cannot
  do it: a broken checkpoint, a budget below the minimum, a context or
  prompt longer than the model allows, a model that produced no scores.
- 130: interrupted (Ctrl-C).

Commands with statuses of their own (``gate --exit-code``) keep them apart
from these. An unexpected exception is a bug: it keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module

from edgecore import __version__
from edgecore._env import EnvSettingError

EXIT_USAGE = 2
EXIT_REFUSED = 1

# subcommand -> module in edgecore.cli that registers it
COMMANDS: dict[str, str] = {
    "run": "run",
    "chat": "chat",
    "serve": "serve",
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

EPILOG = ("exit status: 0 success; 2 a usage mistake (flag, preset, input file or EDGECORE_* variable); "
          "1 refused (this model, budget or machine cannot do it); 130 interrupted")


class CliError(Exception):
    """A user mistake (bad flag value, unreadable file, broken model
    directory): printed as one line naming what is wrong, never a traceback.
    status: EXIT_USAGE (default) or EXIT_REFUSED, see the module doc."""

    def __init__(self, message: str, status: int = EXIT_USAGE):
        super().__init__(message)
        self.status = status


# every character str.splitlines breaks at, written as its escape
_LINE_BREAKS_ESCAPED = {ord(c): ascii(c)[1:-1] for c in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"}


class Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (no usage block) pointing at --help."""

    def error(self, message: str):
        # an argument typed with a line break in it stays on the one line
        message = message.translate(_LINE_BREAKS_ESCAPED)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="edgecore",
        description="Transformer inference on small CPUs under a hard memory budget.",
        epilog=EPILOG,
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
        print(f"edgecore {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return exc.status
    except EnvSettingError as exc:  # raised where the kernels are first imported
        print(f"edgecore {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"edgecore {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # output piped into `head` and closed: not an error of ours
        sys.stderr.close()
        return 0


def _one_line(exc: Exception) -> str:
    """The message on one line: a value quoted from a file may hold newlines."""
    return " ".join(str(exc).split())
