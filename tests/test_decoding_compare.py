"""Free and constrained decoding of one run: both rows on the leaderboard, the paired test of
constrained against free on the same rows, the RunConfig keys that choose them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from routerlib import compare
from routerlib.config import load_config
from routerlib.errors import InputError
from tests.support import compare_runs


def _two_decoding_run(root: Path) -> Path:
    """compare_runs' ``weak`` router as the free decoding, its ``good`` one as constrained."""
    run = compare_runs.make_run(root, "two", "weak")
    return compare_runs.add_constrained(run, compare_runs.predictions("good"))


def test_leaderboard_has_a_free_and_a_constrained_row(tmp_path: Path) -> None:
    runs = compare.load_runs([_two_decoding_run(tmp_path)])
    board = compare.leaderboard(runs)
    models = board[board["kind"] == "model"].set_index("decoding")
    assert set(models.index) == {"free", "constrained"}
    assert models.loc["constrained", "model"] == "two [constrained]"
    assert models.loc["constrained", "route_plan_exact strict"] == pytest.approx(36 / 40)
    assert models.loc["free", "route_plan_exact strict"] == pytest.approx(20 / 40)
    assert models.loc["free", "json_valid"] == pytest.approx(30 / 40)
    assert "s_per_token" in board.columns


def test_constrained_is_tested_against_free_on_the_same_rows(tmp_path: Path) -> None:
    table = compare.significance_table(compare.load_runs([_two_decoding_run(tmp_path)]))
    pair = table[(table["reference"] == "two") & (table["model"] == "two [constrained]")]
    exact = pair.set_index("metric").loc["route_plan_exact"]
    assert exact["n"] == 40 and exact["test"] == "mcnemar"
    assert exact["delta"] == pytest.approx(16 / 40)
    # fixed: the 20 odd rows minus the 4 rows (i % 10 == 0 are even) ... all odd rows become exact
    # except none; broken: rows i % 10 == 0 (exact under free, reversed under constrained)
    assert (exact["b01"], exact["b10"]) == (20, 4)
    assert exact["significant"]


def test_paired_reports_reads_two_reports(tmp_path: Path) -> None:
    run = _two_decoding_run(tmp_path)
    free = json.loads((run / "eval" / "report.json").read_text())
    constrained = json.loads((run / "eval" / "constrained" / "report.json").read_text())
    tests = compare.paired_reports(constrained, free)
    assert tests["json_valid"]["delta"] == pytest.approx(10 / 40)


def _problems(overrides: dict) -> str:
    with pytest.raises(InputError) as caught:
        load_config(None, overrides)
    return "\n".join(caught.value.lines())


def test_decoding_keys_in_run_config() -> None:
    assert load_config(None).decoding == ["free", "constrained"]
    assert load_config(None, {"constrained": True}).constrained is True
    assert "decoding: give free and/or constrained" in _problems({"decoding": ["free", "free"]})
    assert "constrained: True contradicts" in _problems({"constrained": True, "decoding": ["free"]})
    assert "decoding.0" in _problems({"decoding": ["beam"]})


def test_a_run_scores_both_decodings_end_to_end(tmp_path: Path) -> None:
    """stages: evaluate_all through one local server, the decoding table, the diagnostics
    figures, metrics.json with both decodings, and the leaderboard reading them back."""
    from routerlib.serving.local import LocalPredictor, LocalServer
    from routerlib.stages import evaluate as evaluate_stage
    from routerlib.stages import prepare as prepare_stage
    from routerlib.stages import run as run_stage
    from routerlib.stages import tune as tune_stage
    from routerlib.tuning.base import Job
    from tests.support.tiny_serving_model import load_plain, make_checkpoint

    overrides = {"name": "both", "synth_rows": 40, "eval_limit": 2, "max_tokens": 24}
    run = run_stage.open_run("tests/data/e2e_tiny.yaml", str(tmp_path / "run"), overrides)
    prepare_stage.prepare(run)
    job = Job(
        name="local/both",
        backend="local",
        state="JOB_STATE_SUCCEEDED",
        spec=tune_stage.tuning_spec(run),
    )
    previous = evaluate_stage.baselines(run)
    predictor = LocalPredictor(make_checkpoint(tmp_path / "ckpt"), loader=load_plain)
    with LocalServer(predictor=predictor) as server:
        reports = evaluate_stage.evaluate_all(run, server.endpoint_url)
    assert list(reports) == ["free", "constrained"]
    assert (run.path / "eval" / "constrained" / "samples.jsonl").is_file()
    assert reports["constrained"]["generation"]["decoding"] == "constrained"
    table = evaluate_stage.decoding_table(reports)
    assert {"free", "constrained", "Δ constrained−free"} <= set(table.index)
    assert evaluate_stage.confusion_figure(reports["free"]) is not None
    assert evaluate_stage.tool_figure(reports) is not None
    evaluate_stage.write_metrics(
        run, job, evaluate_stage.headline_report(reports), previous, reports
    )
    record = json.loads((run.path / "metrics.json").read_text())
    assert record["evaluation"]["decoding"] == "free"
    assert record["decodings"]["constrained"]["report"] == "eval/constrained/report.json"
    board = compare.leaderboard(compare.load_runs([run.path]))
    assert sorted(board[board["kind"] == "model"]["decoding"]) == ["constrained", "free"]
