"""The ``routerlib`` command: each subcommand module registers its own parser; a handler returns
an exit code, and a RouterlibError is printed as one line per problem (no traceback).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from routerlib import __version__
from routerlib.errors import RouterlibError

#: Modules under routerlib.cli that each define ``register(subparsers)``, in help order.
COMMAND_MODULES = ("data", "tune", "serve", "evaluate", "run", "pipeline", "doctor")


def echo(line: str) -> None:
    """Print one line at once (a long run's progress, read as it comes)."""
    print(line, flush=True)


def build_parser() -> argparse.ArgumentParser:
    """The full ``routerlib`` parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="routerlib",
        description="Router dataset -> Vertex AI tuning data -> tuned router agents -> evaluation.",
    )
    parser.add_argument("--version", action="version", version=f"routerlib {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"routerlib.cli.{name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except RouterlibError as exc:
        *problems, summary = exc.lines()
        print(*problems, f"routerlib {args.command}: {summary}", sep="\n", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
