"""docs/cli.md's CLI reference matches `routerlib --help`, and docs/params.md's params table
RunConfig (regenerate both: make docs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from routerlib.cli.reference import (
    END,
    PARAMS_END,
    PARAMS_START,
    START,
    cli_block,
    main,
    params_block,
    params_markdown,
    reference_markdown,
    write_docs,
)
from routerlib.config import RunConfig, run_default
from routerlib.errors import InputError

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CLI_PAGE, PARAMS_PAGE = DOCS / "cli.md", DOCS / "params.md"


def test_docs_cli_reference_is_current() -> None:
    assert cli_block(CLI_PAGE) == reference_markdown().strip("\n"), (
        "docs/cli.md's CLI reference is stale: run `make docs`"
    )


def test_help_of_the_console_script_is_what_the_docs_show() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "routerlib", "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={"COLUMNS": "100", "PATH": "/usr/bin:/bin"},
    ).stdout
    assert out.strip() in cli_block(CLI_PAGE)


def test_every_subcommand_is_documented() -> None:
    block = cli_block(CLI_PAGE)
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


def test_docs_params_table_is_current() -> None:
    assert params_block(PARAMS_PAGE) == params_markdown().strip("\n"), (
        "docs/params.md's params table is stale: run `make docs`"
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
    assert "params-reference" in PARAMS_PAGE.read_text(encoding="utf-8")


def _copy_docs(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    for page in (CLI_PAGE, PARAMS_PAGE):
        (docs / page.name).write_text(page.read_text(encoding="utf-8"), encoding="utf-8")
    return docs


def test_a_stale_table_is_caught_and_regenerated(tmp_path: Path) -> None:
    docs = _copy_docs(tmp_path)
    page = docs / "params.md"
    text = PARAMS_PAGE.read_text(encoding="utf-8")
    stale = text.replace(f"| `epochs` | `{run_default('epochs')}` |", "| `epochs` | `3` |")
    assert stale != text
    page.write_text(stale, encoding="utf-8")
    assert params_block(page) != params_markdown().strip("\n")
    write_docs(docs)
    assert page.read_text(encoding="utf-8") == text


def test_a_stale_cli_reference_is_caught_and_regenerated_by_make_docs_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = _copy_docs(tmp_path)
    page = docs / "cli.md"
    text = CLI_PAGE.read_text(encoding="utf-8")
    stale = text.replace("$ routerlib synth --help", "$ routerlib synthesize --help")
    assert stale != text
    page.write_text(stale, encoding="utf-8")
    assert cli_block(page) != reference_markdown().strip("\n")
    assert main([str(docs)]) == 0  # what `make docs` runs, on this docs folder
    assert page.read_text(encoding="utf-8") == text
    assert str(page) in capsys.readouterr().out


@pytest.mark.parametrize(
    ("page", "remove", "problem"),
    [
        ("params.md", PARAMS_END, f"the marker {PARAMS_END} is missing"),
        ("cli.md", START, f"the marker {START} is missing"),
    ],
)
def test_a_page_without_its_markers_is_named_and_nothing_is_written(
    tmp_path: Path, page: str, remove: str, problem: str
) -> None:
    docs = _copy_docs(tmp_path)
    broken = docs / page
    broken.write_text(broken.read_text(encoding="utf-8").replace(remove, ""), encoding="utf-8")
    # the other page is stale, so a write to it would show
    other = docs / ("cli.md" if page == "params.md" else "params.md")
    text = other.read_text(encoding="utf-8")
    stale = text.replace("$ routerlib synth --help", "$ routerlib synthesize --help").replace(
        f"| `epochs` | `{run_default('epochs')}` |", "| `epochs` | `3` |"
    )
    assert stale != text
    other.write_text(stale, encoding="utf-8")
    before = {p.name: p.read_text(encoding="utf-8") for p in docs.iterdir()}
    with pytest.raises(InputError) as err:
        write_docs(docs)
    assert str(err.value) == f"{broken}: {problem}"
    assert {p.name: p.read_text(encoding="utf-8") for p in docs.iterdir()} == before


def test_markers_out_of_order_or_twice_are_refused(tmp_path: Path) -> None:
    page = tmp_path / "cli.md"
    page.write_text(f"{END}\nbody\n{START}\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"cli\.md: the marker .* comes before"):
        cli_block(page)
    page.write_text(f"{PARAMS_START}\n{PARAMS_START}\n{PARAMS_END}\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"appears more than once"):
        params_block(page)


def test_a_missing_docs_folder_exits_2_naming_the_page(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path / "nowhere")]) == 2
    assert f"{tmp_path / 'nowhere' / 'cli.md'}: no such page" in capsys.readouterr().err
