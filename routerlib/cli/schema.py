"""CLI: ``routerlib schema`` writes the completion's JSON Schema (validation or generation)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from routerlib.atomic import write_text
from routerlib.schema import schema_text


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``schema``."""
    p = subparsers.add_parser(
        "schema",
        help="write the completion's JSON Schema (from the contract in routerlib.schema)",
        description="The 10 completion keys, their types, the difficulty enum and the route-step "
        "grammar as a JSON Schema (draft 2020-12). --generation writes the bounded variant a "
        "constrained decoder uses; the default is the validation schema every real row passes.",
    )
    p.add_argument("--out", metavar="FILE", help="file to write (default: standard output)")
    p.add_argument(
        "--generation",
        action="store_true",
        help="the generation schema (bounded lengths and counts, no extra keys)",
    )
    p.set_defaults(func=run_schema)


def run_schema(args: argparse.Namespace) -> int:
    """Handler of ``routerlib schema``."""
    text = schema_text(generation=args.generation)
    if args.out:
        write_text(Path(args.out), text)
        print(args.out)
    else:
        sys.stdout.write(text)
    return 0
