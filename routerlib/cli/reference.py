"""The README's generated references: ``python -m routerlib.cli.reference`` rewrites the CLI help
(between the cli-reference markers, from the parsers) and the params table (between the
params-reference markers, from RunConfig's fields); a test fails when either is out of date."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from routerlib.cli import build_parser

START, END = "<!-- cli-reference:start -->", "<!-- cli-reference:end -->"
PARAMS_START, PARAMS_END = "<!-- params-reference:start -->", "<!-- params-reference:end -->"


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
    """A default as a params file spells it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value == "":
        return '""'
    if isinstance(value, list):
        return "[" + ", ".join(_yaml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def params_markdown() -> str:
    """Every params key, its default and what it does, in RunConfig's order, as a Markdown table."""
    from routerlib.config import RunConfig, run_default

    lines = ["| key | default | what it does |", "| --- | --- | --- |"]
    for key, field in RunConfig.model_fields.items():
        what = (field.description or "").replace("|", "\\|").replace("<", "&lt;")
        lines.append(f"| `{key}` | `{_yaml_value(run_default(key))}` | {what} |")
    return "\n".join(lines) + "\n"


def _between(readme: Path, start: str, end: str) -> str:
    text = readme.read_text(encoding="utf-8")
    return text[text.index(start) + len(start) : text.index(end)].strip("\n")


def readme_block(readme: Path) -> str:
    """The CLI reference currently between its markers."""
    return _between(readme, START, END)


def readme_params_block(readme: Path) -> str:
    """The params table currently between its markers."""
    return _between(readme, PARAMS_START, PARAMS_END)


def _replace(text: str, start: str, end: str, body: str) -> str:
    head, rest = text.split(start, 1)
    tail = rest.split(end, 1)[1]
    return f"{head}{start}\n{body}\n{end}{tail}"


def write_readme(readme: Path) -> None:
    """Replace both generated blocks with the current CLI reference and params table."""
    text = readme.read_text(encoding="utf-8")
    text = _replace(text, START, END, reference_markdown())
    text = _replace(text, PARAMS_START, PARAMS_END, params_markdown())
    readme.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("README.md")
    write_readme(target)
    print(f"updated the CLI reference and the params table in {target}")
