"""The README's CLI reference matches `routerlib --help`, and its params table RunConfig
(regenerate both: make docs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from routerlib.cli.reference import (
    params_markdown,
    readme_block,
    readme_params_block,
    reference_markdown,
    write_readme,
)
from routerlib.config import RunConfig, run_default

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


def test_readme_params_table_is_current() -> None:
    assert readme_params_block(ROOT / "README.md") == params_markdown().strip("\n"), (
        "README params table is stale: run `make docs`"
    )


def test_the_params_table_has_every_key_with_its_default_once() -> None:
    rows = [line for line in params_markdown().splitlines() if line.startswith("| `")]
    keys = [row.split("`")[1] for row in rows]
    assert keys == list(RunConfig.model_fields)
    by_key = dict(zip(keys, rows, strict=True))
    assert by_key["max_tokens"].startswith(f"| `max_tokens` | `{run_default('max_tokens')}` | ")
    assert by_key["input_path"].startswith('| `input_path` | `""` | ')
    assert by_key["decoding"].startswith("| `decoding` | `[free, constrained]` | ")
    assert by_key["limit"].startswith("| `limit` | `null` | ")
    assert "params-reference" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_a_stale_table_is_caught_and_regenerated(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    stale = text.replace(f"| `epochs` | `{run_default('epochs')}` |", "| `epochs` | `3` |")
    assert stale != text
    readme.write_text(stale, encoding="utf-8")
    assert readme_params_block(readme) != params_markdown().strip("\n")
    write_readme(readme)
    assert readme.read_text(encoding="utf-8") == text
