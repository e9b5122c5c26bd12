"""`routerlib report`: notebook pages without code, embedded images, an index linking every run,
and the secret scan that stops a report from being written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from routerlib import report
from routerlib.cli import main
from tests.support.report_runs import CODE_MARKER, add_notebooks, make_report_runs

TOKEN = "ya29.a0AfB_byC" + "x7Qk2mZpL9vN3rT8wYs1"  # shaped like an OAuth access token


@pytest.fixture()
def outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "outputs"
    make_report_runs(root)
    monkeypatch.setenv("ROUTERLIB_OUTPUTS", str(root))
    return root


def test_report_pages_and_index(
    outputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "site"
    assert main(["report", "--out", str(out_dir)]) == 0
    index = Path(capsys.readouterr().out.strip())
    assert index == out_dir / "index.html" and index.is_file()

    pages = sorted(out_dir.glob("runs/*/*.html"))
    assert len(pages) == 9  # 4 + 4 notebooks of the scored runs, 1 comparison notebook
    for page in pages:
        text = page.read_text()
        assert CODE_MARKER not in text  # code cells hidden
        assert "stage done" in text  # outputs kept
        assert "progress_bar_noise" not in text  # stderr streams left out
        assert re.search(r'<img[^>]+src="data:image/png;base64,', text)  # images embedded
        assert not re.search(r'<div class="[^"]*(InputPrompt|OutputPrompt)', text)  # no prompts

    html = index.read_text()
    for run in ("good-20260101-000000", "weak-20260101-000000", "local-20260101-000009"):
        assert run in html
    hrefs = re.findall(r'href="([^"]+)"', html)
    for page in pages:
        assert page.relative_to(out_dir).as_posix() in hrefs
    assert all((out_dir / h).is_file() for h in hrefs)  # every link opens from disk
    assert (
        'class="comparison-link" href="runs/local-20260101-000009/05_model_comparison.html"' in html
    )
    assert re.search(r'<table[^>]*class="dataframe leaderboard"[^>]*id="leaderboard"', html)
    # every comparison figure: the six of the first version plus quality vs serving cost
    assert html.count('<img class="plot"') == 7
    assert html.count('src="data:image/png;base64,') == 7
    assert "Ship <strong>good</strong>" in html
    assert "&lt;NA&gt;" not in html and ">nan<" not in html
    assert 'src="http' not in html and 'href="http' not in html  # nothing fetched from the web


def test_default_out_dir_and_given_runs(outputs: Path) -> None:
    good = outputs / "good-20260101-000000"
    index = report.render_report([good], None)
    assert index == outputs / "report" / "index.html"
    assert "weak-20260101-000000" not in index.read_text()
    # Rendering again replaces the report in one step.
    assert report.render_report([good], None) == index


def test_planted_token_in_a_notebook_refuses_the_report(
    outputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    add_notebooks(outputs / "weak-20260101-000000", ["04_deploy_eval"], extra_text=f"token {TOKEN}")
    out_dir = tmp_path / "site"
    assert main(["report", "--out", str(out_dir)]) == 2
    err = capsys.readouterr().err
    assert "04_deploy_eval.ipynb: cell 2: Google OAuth access token" in err
    assert "refusing to write a report" in err
    assert TOKEN not in err  # the finding never repeats the secret
    assert "Traceback" not in err
    assert not out_dir.exists()
    assert not list(tmp_path.glob(".site.*"))  # staging removed


def test_secret_reaching_a_page_refuses_the_report(outputs: Path, tmp_path: Path) -> None:
    metrics = outputs / "good-20260101-000000" / "metrics.json"
    data = json.loads(metrics.read_text())
    data["run"]["name"] = "AIzaSyD" + "4xY7qK2mZpL9vN3rT8wYs1bC6dE0fG5h"
    metrics.write_text(json.dumps(data))
    with pytest.raises(report.SecretFound, match="refusing"):
        report.render_report(None, tmp_path / "site")
    assert not (tmp_path / "site").exists()


@pytest.mark.parametrize(
    "text",
    [
        "-----BEGIN PRIVATE KEY-----\nMIIEv",
        '{"type": "service_account", "private_key": "-----BEGIN RSA PRIVATE KEY-----"}',
        TOKEN,
        "key=AIzaSyD4xY7qK2mZpL9vN3rT8wYs1bC6dE0fG5h",
        '"client_secret": "GOCSPX-abcdefghijklmnopqrstuv"',
        "Authorization: Bearer eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.abc",
        "password=hunter2hunter2",
        "AKIAIOSFODNN7EXAMPLE",
    ],
)
def test_scan_finds_credential_like_strings(text: str, tmp_path: Path) -> None:
    file = tmp_path / "page.html"
    file.write_text(f"<p>before</p>\n<p>{text}</p>\n")
    found = report.scan_for_secrets([file])
    assert found and found[0].startswith(f"{file}:2: ")


def test_scan_ignores_ordinary_report_content(tmp_path: Path) -> None:
    images = "".join(f"AIza{i:035d}" for i in range(3))  # key-shaped runs inside base64 data
    file = tmp_path / "page.html"
    file.write_text(
        f'<img src="data:image/png;base64,iVBORw0KGgo{images}=">\n'
        "<p>credentials: loopback stand-in uses Bearer test-token; password: ******</p>\n"
        "<td>0.925</td><td>route_plan_exact</td>\n"
    )
    assert report.scan_for_secrets([file]) == []


def test_index_escapes_what_it_did_not_write(tmp_path: Path) -> None:
    """Run names and notebook names reach the page as text (the templates escape every value),
    while the tables and the conclusion stay HTML."""
    root = tmp_path / "outputs"
    run = root / 'x<b>&"q"'
    add_notebooks(run, ["01_<i>prep"])
    index = report.render_report([run], tmp_path / "site").read_text(encoding="utf-8")
    assert "<b>" not in index and "<i>" not in index
    assert "<td>x&lt;b&gt;&amp;&#34;q&#34;</td>" in index
    assert ">01_&lt;i&gt;prep</a>" in index
    assert '<table class="leaderboard" id="leaderboard"><tr><td>no scored runs</td>' in index
    assert "<p>No paired per-sample records to test.</p>" in index
    assert '<div class="conclusion"><p>' in index  # markdown rendered, not escaped


def test_the_problems_list_names_twenty_and_counts_the_rest() -> None:
    html = report._render(
        "report_leaderboard.html",
        headline=None,
        csv="leaderboard.csv",
        problems=[f"run/eval/samples.jsonl:{n}: <not json>" for n in range(1, 26)],
    )
    assert "25 problem(s) reading the run folders" in html
    assert html.count("<li><code>") == 20 and "<li>… and 5 more</li>" in html
    assert "<code>run/eval/samples.jsonl:1: &lt;not json&gt;</code>" in html


def test_the_problems_list_names_each_problem_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run scored under two decodings shares its baselines with both, and its samples are read
    once per paired test: a broken file there is still listed once."""
    from tests.support.compare_runs import add_constrained, make_run, predictions

    root = tmp_path / "outputs"
    monkeypatch.setenv("ROUTERLIB_OUTPUTS", str(root))
    run = add_constrained(make_run(root, "two", "weak"), predictions("good"))
    (run / "eval" / "baselines" / "majority" / "report.json").write_text("{", encoding="utf-8")
    with (run / "eval" / "samples.jsonl").open("a", encoding="utf-8") as samples:
        samples.write("<not json>\n")
    index = report.render_report([run], tmp_path / "site").read_text(encoding="utf-8")
    listed = re.findall(r"<li><code>(.*?)</code></li>", index)
    assert len(listed) == len(set(listed)) == 2, listed
    assert any("majority/report.json" in line for line in listed)
    assert any("samples.jsonl:" in line for line in listed)
