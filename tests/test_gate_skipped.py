"""A gate bucket the test split has no rows of is skipped, not failed, everywhere the gate shows:
``metrics.apply_gate`` (threshold_results), ``routerlib evaluate``, notebook 04's table and
verdict, metrics.json's gate_pass, the comparison's conclusion and the headline board."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from routerlib import compare, dataset, display, metrics, runfolder
from routerlib.cli import main
from routerlib.stages import evaluate as evaluate_stage
from routerlib.stages import run as run_stage
from routerlib.tuning.base import SUCCEEDED, Job


@pytest.fixture(scope="module")
def small_split(tmp_path_factory: pytest.TempPathFactory, real_data: Path) -> Path:
    """The test split routerlib prepares from the team's 291 real Week-2 rows (14 rows, none of
    them in has_computation or math_first), and predictions equal to its gold completions."""
    folder = tmp_path_factory.mktemp("split")
    dataset.prepare(real_data / "week2_rows_sample.jsonl", folder, progress=False)
    rows = [json.loads(line) for line in (folder / "test.jsonl").read_text("utf-8").splitlines()]
    (folder / "perfect.jsonl").write_text(
        "".join(json.dumps({"completion": r["completion"]}) + "\n" for r in rows), "utf-8"
    )
    return folder


def _report(split: Path, pred: str = "perfect.jsonl") -> dict:
    return metrics.score_files(
        split / "test.jsonl", split / pred, thresholds="default", bootstrap=0
    )


def test_empty_buckets_are_skipped_and_the_gate_passes(small_split: Path) -> None:
    report = _report(small_split)
    assert "has_computation" not in report["metrics"]  # the case: no row of it
    results = report["threshold_results"]
    assert results["overall_pass"] is True and results["failed"] == []
    assert metrics.skipped_buckets(results) == {"math_first": (0, 5), "has_computation": (0, 2)}
    check = results["has_computation"]["primary_computation_retained"]
    assert check == {
        "value": None,
        "threshold": check["threshold"],
        "kind": "min",
        "passed": None,
        "skipped": True,
        "samples": 0,
    }
    # the record readers take it through
    gate = runfolder.validate(results, runfolder.GateResults, "threshold_results")
    assert gate.skipped_buckets() == {"math_first": 0, "has_computation": 0}
    assert gate.checks()["has_computation"]["primary_computation_retained"].skipped is True
    assert metrics.gate_line(results).startswith("gate: PASS (")
    assert "has_computation (0 test rows, 2 checks)" in metrics.gate_line(results)


def test_a_real_value_that_fails_still_fails(small_split: Path, tmp_path: Path) -> None:
    rows = (small_split / "perfect.jsonl").read_text("utf-8").splitlines()
    rows[0] = json.dumps({"completion": "not json"})
    (small_split / "broken.jsonl").write_text("\n".join(rows) + "\n", "utf-8")
    results = _report(small_split, "broken.jsonl")["threshold_results"]
    assert results["overall_pass"] is False
    assert "overall.json_valid" in results["failed"]
    assert results["overall"]["json_valid"]["passed"] is False
    assert set(metrics.skipped_buckets(results)) == {"math_first", "has_computation"}
    # a bucket that has rows but no value (every prediction invalid in it) fails, as before
    report = {"metrics": {"overall": {"samples": 3}, "advanced": {"samples": 1}}}
    gate = {"advanced": {"min": {"route_plan_exact": 0.5}}, "overall": {"min": {"json_valid": 1}}}
    results = metrics.apply_gate(report, gate)["threshold_results"]
    assert results["failed"] == ["advanced.route_plan_exact", "overall.json_valid"]
    assert metrics.skipped_buckets(results) == {}


def test_evaluate_prints_pass_with_the_skipped_buckets(
    small_split: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "eval" / "report.json"
    argv = ["evaluate", "--gold", str(small_split / "test.jsonl")]
    argv += ["--pred", str(small_split / "perfect.jsonl"), "--out", str(out)]
    assert main([*argv, "--thresholds", "default"]) == 0
    stdout = capsys.readouterr().out
    line = next(x for x in stdout.splitlines() if x.startswith("gate:"))
    assert line.startswith("gate: PASS")
    assert "skipped: math_first (0 test rows, 5 checks), has_computation (0 test rows" in line
    saved = json.loads(out.read_text("utf-8"))
    assert saved["threshold_results"]["has_computation"]["primary_computation_retained"]["skipped"]


def test_notebook_table_metrics_json_and_comparison(small_split: Path, tmp_path: Path) -> None:
    report = _report(small_split)
    table = evaluate_stage.gate_table(report)
    assert table.loc["has_computation", "passed"] == "skipped"
    assert table.loc["has_computation", "value"] == "no test rows (0)"
    assert set(table["passed"]) == {"pass", "skipped"}
    verdict = evaluate_stage.gate_verdict(report).data
    assert "gate: PASS" in verdict and "has_computation (0 test rows" in verdict

    # metrics.json: the run's gate_pass is the gate's verdict with the empty buckets skipped
    run = run_stage.open_run("params/local.yaml", str(tmp_path / "perfect-20260101-000000"))
    (run.path / "data").mkdir()
    (run.path / "data" / "test.jsonl").write_bytes((small_split / "test.jsonl").read_bytes())
    scored = metrics.score_files(
        run.path / "data" / "test.jsonl",
        small_split / "perfect.jsonl",
        thresholds="default",
        bootstrap=0,
        out_path=evaluate_stage.report_path(run),
    )
    spec = {"training_dataset_uri": "train.jsonl", "output_uri": str(run.path / "tuning")}
    job = Job(name="local/perfect", backend="local", state=SUCCEEDED, spec=spec)
    evaluate_stage.write_metrics(run, job, scored, {})
    record = runfolder.read_metrics(run.path)
    assert record.evaluation is not None and record.evaluation.gate_pass is True

    # the comparison ships it and says which bucket was not judged
    board = compare.leaderboard(compare.load_runs([run.path]))
    assert board.loc[0, "gate_pass"] is True or board.loc[0, "gate_pass"] == True  # noqa: E712
    assert "has_computation (0 test rows)" in board.loc[0, "skipped_checks"]
    text = compare.conclusion(board, None)
    assert "No tuned model passes the gate" not in text
    assert text.startswith("Ship **local**")
    assert "The gate skipped `math_first (0 test rows)`, `has_computation (0 test rows)`" in text
    cell = display.headline_board(board).loc[0, "gate"]
    assert cell == "pass · math_first skipped (0 rows) · has_computation skipped (0 rows)"
