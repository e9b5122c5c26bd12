"""The report as a reader meets it. A real `routerlib run` (stage 05 over two scored run folders,
then --report) renders the pages; the HTML must hold no raw Python (PosixPath, lists, dicts), no
NaN/<NA>, no pandas truncation, only images that load, a headline table of a stated width, the
embedded-model note, and the tie sentence when nothing separates the candidates."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from routerlib import display, report
from routerlib.cli import main
from tests.support.compare_runs import make_run
from tests.support.report_runs import add_notebooks

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
STAGES = ["01_prepare", "02_smoke_tune", "03_full_tune", "04_deploy_eval"]


def _problems(page: str) -> list[str]:
    """What a reader should never see on a page."""
    found = []
    checks = {
        "PosixPath": r"PosixPath",
        "NaN": r"\bNaN\b|>\s*nan\s*<",
        "<NA>": r"&lt;NA&gt;|<NA>",
        "None cell": r"<td[^>]*>\s*None\s*</td>",
        "pandas truncation": r"\d+ rows × \d+ columns|<t[dh][^>]*>\s*\.\.\.\s*</t[dh]>",
        "raw list/dict output": r"<pre>\s*(\[|\{|\()",
    }
    for name, pattern in checks.items():
        if re.search(pattern, page):
            found.append(name)
    for src in re.findall(r'<img[^>]*\ssrc="([^"]*)"', page):
        if not src.startswith("data:image/png;base64,"):
            found.append(f"image not embedded: {src[:40]}")
            continue
        data = base64.b64decode(src.split(",", 1)[1])
        if not data.startswith(PNG_MAGIC) or len(data) < 2000:
            found.append("image empty or not a PNG")
    return found


def _header(page: str, table_id: str) -> list[str]:
    table = re.search(rf'<table[^>]*id="{table_id}".*?</table>', page, re.S)
    assert table, f"no table #{table_id}"
    head = re.search(r"<thead>(.*?)</thead>", table.group(0), re.S)
    assert head
    return [re.sub(r"<[^>]+>", "", h).strip() for h in re.findall(r"<th.*?</th>", head.group(1))]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`routerlib run params/local.yaml --stages 05 --report` over two scored runs."""
    root = tmp_path_factory.mktemp("outputs")
    for run in (make_run(root, "good", "good"), make_run(root, "weak", "weak", cost=3.0)):
        add_notebooks(run, STAGES)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ROUTERLIB_OUTPUTS", str(root))
        code = main(["run", "params/local.yaml", "--stages", "05", "--report"])
    assert code == 0
    return root / "report"


def test_every_page_reads_cleanly(site: Path) -> None:
    pages = [site / "index.html", *sorted(site.glob("runs/*/*.html"))]
    comparison = [p for p in pages if p.name == "05_model_comparison.html"]
    assert len(comparison) == 1  # the notebook really ran
    for page in pages:
        assert _problems(page.read_text(encoding="utf-8")) == [], page.name
    text = comparison[0].read_text(encoding="utf-8")
    assert "plan exact" in text and "tool sequence exact" in text  # the compact table
    assert "Saved in" in text and "leaderboard.csv" in text


def test_index_leads_with_a_headline_table_that_fits(site: Path) -> None:
    index = (site / "index.html").read_text(encoding="utf-8")
    header = _header(index, "leaderboard")
    assert len(header) <= display.HEADLINE_MAX_COLUMNS == 9
    assert header[:3] == ["router", "run", "gate"]
    assert {"plan exact", "tool sequence exact", "tool recall", "tuning cost"} <= set(header)
    assert re.search(r"<td>0\.900 \[0\.\d\d, \d\.\d\d\]</td>", index)  # good, with its interval
    # The full table is one click away and the CSV beside the page.
    assert "Full leaderboard" in index and 'href="leaderboard.csv"' in index
    assert (site / "leaderboard.csv").read_text().count("\n") == 4  # header + 3 routers
    assert "What these numbers show" in index  # runs on the embedded model
    assert "Ship <strong>good</strong>" in index
    assert "ranks above" in index  # each pick explained with its numbers
    assert index.count('<img class="plot"') == 7  # every comparison figure


def test_tie_sentence_when_all_candidates_tie(tmp_path: Path) -> None:
    # A tuned model that answers exactly like the majority template: nothing separates them.
    root = tmp_path / "outputs"
    run = make_run(root, "copy", "majority")
    add_notebooks(run, ["04_deploy_eval"])
    index = report.render_report([run], tmp_path / "site").read_text(encoding="utf-8")
    assert _problems(index) == []
    assert "All 2 candidates tie on every headline metric" in index
    assert "these numbers do not separate them" in index
    assert "Keep the previous router <code>baseline:majority</code>" in index
    assert "tie on every headline metric (route_plan_exact 0.600" in index


def _html(obj: object) -> str:
    shown = getattr(obj, "_repr_html_", None)
    return shown() if shown else obj.to_html()  # type: ignore[attr-defined]


def test_stage_tables_read_cleanly(tmp_path: Path) -> None:
    import json

    from routerlib.config import load_config
    from routerlib.stages import evaluate as evaluate_stage
    from routerlib.stages import run as run_stage

    run_dir = make_run(tmp_path, "weak", "weak")
    run = run_stage.Run(run_dir, load_config("params/local_full.yaml"), "params/local_full.yaml")
    scored = json.loads((run_dir / "eval" / "report.json").read_text())
    tables = [
        evaluate_stage.headline_table({"tuned": scored}),
        evaluate_stage.gate_table(scored),
        evaluate_stage.worst_errors(run),
        run_stage.fields({"total": 300, "nested": {"mean": 196.49411764705883, "none": None}}),
    ]
    for table in tables:
        assert _problems(_html(table)) == []
    assert "196.494" in _html(tables[3]) and "196.4941176" not in _html(tables[3])
    # weak: 10 invalid rows (one kind of problem, whatever the character position) and 10
    # reversed plans (4-step plans also lose the first tool); exact rows are not listed.
    errors = evaluate_stage.worst_errors(run).frame
    assert list(errors["rows"]) == [10, 6, 4]
    assert errors["problem"].iloc[0].startswith("not valid JSON (Expecting property name")
    assert errors["problem"].iloc[1] == "missed route_plan_exact, route_first_tool_match"
    assert list(errors["checks met"]) == ["invalid", "3/5", "4/5"]
    assert "(+4)" in errors["test rows"].iloc[0]  # 1, 5, 9, 13, 17, 21 … and four more
    # The banner names both tunes, so 02's PEFT smoke spec never sits under "FULL · 2 epochs".
    banner = run._repr_markdown_()
    assert "smoke tune (02): PEFT_ADAPTER r=16, 1 epoch(s)" in banner
    assert "full tune (03): FULL, 2 epoch(s)" in banner


def test_unreadable_files_are_named_on_the_index(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    run = make_run(root, "good", "good")
    samples = run / "eval" / "samples.jsonl"
    samples.write_text("{not json\n" + samples.read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ROUTERLIB_OUTPUTS", str(root))
        index = report.render_report([run], tmp_path / "site").read_text(encoding="utf-8")
    assert _problems(index) == []
    assert "problem(s) reading the run folders" in index
    assert "good-20260101-000000/eval/samples.jsonl:1" in index
    assert str(root) not in index  # named from the outputs root, not by absolute path
