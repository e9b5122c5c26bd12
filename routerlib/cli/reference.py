"""The README's CLI reference, generated from the parsers: ``python -m routerlib.cli.reference``
rewrites the block between the cli-reference markers; a test fails when it is out of date."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from routerlib.cli import build_parser

START, END = "<!-- cli-reference:start -->", "<!-- cli-reference:end -->"


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.update(action.choices)
    return found


def reference_markdown() -> str:
    """``routerlib --help`` and every subcommand's help, verbatim, as fenced blocks."""
    os.environ["COLUMNS"] = "100"
    parser = build_parser()
    blocks = [("routerlib --help", parser.format_help())]
    for name, sub in _subparsers(parser).items():
        blocks.append((f"routerlib {name} --help", sub.format_help()))
        for inner, leaf in _subparsers(sub).items():
            blocks.append((f"routerlib {name} {inner} --help", leaf.format_help()))
    return "\n".join(f"```text\n$ {title}\n{text.rstrip()}\n```\n" for title, text in blocks)


def readme_block(readme: Path) -> str:
    """The text currently between the markers."""
    text = readme.read_text(encoding="utf-8")
    return text[text.index(START) + len(START) : text.index(END)].strip("\n")


def write_readme(readme: Path) -> None:
    """Replace the block between the markers with the generated reference."""
    text = readme.read_text(encoding="utf-8")
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    readme.write_text(f"{head}{START}\n{reference_markdown()}\n{END}{tail}", encoding="utf-8")


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("README.md")
    write_readme(target)
    print(f"updated the CLI reference in {target}")
