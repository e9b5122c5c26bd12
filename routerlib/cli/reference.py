"""The generated references in docs/: ``python -m routerlib.cli.reference [DOCS_DIR]`` rewrites the
CLI help in docs/cli.md (between the cli-reference markers, from the parsers) and the params table
in docs/params.md (between the params-reference markers, from RunConfig's fields); a test fails
when either is out of date (``make docs`` regenerates both)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from routerlib.cli import build_parser
from routerlib.config import RunConfig, run_default
from routerlib.errors import InputError

START, END = "<!-- cli-reference:start -->", "<!-- cli-reference:end -->"
PARAMS_START, PARAMS_END = "<!-- params-reference:start -->", "<!-- params-reference:end -->"
#: The pages (in the docs folder) that hold the generated blocks.
CLI_PAGE, PARAMS_PAGE = "cli.md", "params.md"


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


def _yaml_value(value: Any) -> str:
    """A default as a params file spells it (flow style, one line)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1000)
    return '""' if value == "" else text.removesuffix("\n...\n").strip()


def params_markdown() -> str:
    """Every params key, its default and what it does, in RunConfig's order, as a Markdown table."""
    lines = ["| key | default | what it does |", "| --- | --- | --- |"]
    for key, field in RunConfig.model_fields.items():
        what = " ".join((field.description or "").split()).replace("|", "\\|").replace("<", "&lt;")
        lines.append(f"| `{key}` | `{_yaml_value(run_default(key))}` | {what} |")
    return "\n".join(lines) + "\n"


def _split(page: Path, start: str, end: str) -> tuple[str, str, str]:
    """The page before, between and after the markers; InputError naming a missing marker."""
    if not page.is_file():
        raise InputError(f"{page}: no such page (it holds the generated block {start} … {end})")
    text = page.read_text(encoding="utf-8")
    for marker in (start, end):
        if text.count(marker) != 1:
            found = "is missing" if marker not in text else "appears more than once"
            raise InputError(f"{page}: the marker {marker} {found}")
    if text.index(end) < text.index(start):
        raise InputError(f"{page}: the marker {end} comes before {start}")
    head, rest = text.split(start, 1)
    body, tail = rest.split(end, 1)
    return head, body, tail


def cli_block(page: Path) -> str:
    """The CLI reference currently between its markers in ``page`` (docs/cli.md)."""
    return _split(page, START, END)[1].strip("\n")


def params_block(page: Path) -> str:
    """The params table currently between its markers in ``page`` (docs/params.md)."""
    return _split(page, PARAMS_START, PARAMS_END)[1].strip("\n")


def write_docs(docs: Path) -> list[Path]:
    """Regenerate both references (both pages checked before either is written); the pages."""
    pages = [(docs / CLI_PAGE, START, END), (docs / PARAMS_PAGE, PARAMS_START, PARAMS_END)]
    parts = [_split(*page) for page in pages]  # a missing marker fails before any write
    for (page, start, end), (head, _, tail), body in zip(
        pages, parts, (reference_markdown(), params_markdown()), strict=True
    ):
        page.write_text(f"{head}{start}\n{body}\n{end}{tail}", encoding="utf-8")
    return [page for page, _, _ in pages]


def main(argv: list[str] | None = None) -> int:
    """``python -m routerlib.cli.reference [DOCS_DIR]`` (default: docs)."""
    args = sys.argv[1:] if argv is None else argv
    docs = Path(args[0]) if args else Path("docs")
    try:
        pages = write_docs(docs)
    except InputError as err:
        print(f"routerlib: {err}", file=sys.stderr)
        return err.exit_code
    print("updated " + " and ".join(str(p) for p in pages))
    return 0


if __name__ == "__main__":
    sys.exit(main())
