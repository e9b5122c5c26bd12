"""The README's CLI reference matches `routerlib --help` (regenerate: make docs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from routerlib.cli.reference import readme_block, reference_markdown

ROOT = Path(__file__).resolve().parent.parent


def test_readme_cli_reference_is_current() -> None:
    assert readme_block(ROOT / "README.md") == reference_markdown().strip("\n"), (
        "README CLI reference is stale: run `make docs`"
    )


def test_help_of_the_console_script_is_what_the_readme_shows() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "routerlib", "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={"COLUMNS": "100", "PATH": "/usr/bin:/bin"},
    ).stdout
    assert out.strip() in readme_block(ROOT / "README.md")


def test_every_subcommand_is_documented() -> None:
    block = readme_block(ROOT / "README.md")
    for command in (
        "prepare",
        "synth",
        "tune",
        "jobs",
        "deploy",
        "endpoints",
        "serve",
        "evaluate",
        "baseline",
        "run",
        "report",
    ):
        assert f"$ routerlib {command} --help" in block
