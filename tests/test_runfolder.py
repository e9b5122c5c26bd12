"""The run folder's contract: one name per file, records that name the file and the field of an
old or foreign file, one paired test behind notebooks 04 and 05, and error_samples as the original
evaluator chooses them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from routerlib import compare, display, metric_names, metrics, runfolder
from routerlib.config import RunConfig, load_config
from routerlib.runfolder import RunFolderError
from routerlib.stages import evaluate as evaluate_stage
from routerlib.stages import run as run_stage
from tests.support.compare_runs import gold_rows, make_run, predictions

PARAMS = Path(__file__).resolve().parent.parent / "params"


def _jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def good_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("runs"), "good", "good")


def test_foreign_metrics_json_names_file_and_field(tmp_path: Path) -> None:
    (tmp_path / "metrics.json").write_text(
        json.dumps({"run": {"name": "x", "epochs": "three"}, "evaluation": {"gate": True}})
    )
    with pytest.raises(RunFolderError) as info:
        runfolder.read_metrics(tmp_path)
    lines = info.value.lines()
    file = tmp_path / "metrics.json"
    assert any(line.startswith(f"{file}: run.epochs:") for line in lines), lines
    assert any(line.startswith(f"{file}: evaluation.gate:") for line in lines), lines
    (tmp_path / "metrics.json").write_text("[1, 2]")
    with pytest.raises(RunFolderError, match=r"metrics.json: \(file\): not a Metrics object"):
        runfolder.read_metrics(tmp_path)


def test_old_samples_file_names_line_and_field(good_run: Path) -> None:
    samples = good_run / "eval" / "samples.jsonl"
    lines = samples.read_text(encoding="utf-8").splitlines()
    assert all(runfolder.read_samples(samples))  # what the scorer writes reads back
    old = json.loads(lines[2])
    del old["gold_first_tool"]
    foreign = good_run / "old_samples.jsonl"
    foreign.write_text("\n".join([lines[0], lines[1], json.dumps(old)]) + "\n")
    with pytest.raises(RunFolderError) as info:
        runfolder.read_samples(foreign)
    assert str(info.value) == f"{foreign}:3: gold_first_tool: Field required"


def test_only_the_written_gate_shape_is_read(tmp_path: Path, good_run: Path) -> None:
    report = json.loads((good_run / "eval" / "report.json").read_text(encoding="utf-8"))
    report["threshold_results"] = [{"bucket": "overall", "metric": "json_valid", "pass": False}]
    bad = tmp_path / "eval" / "report.json"
    bad.parent.mkdir()
    bad.write_text(json.dumps(report))
    with pytest.raises(RunFolderError) as info:
        runfolder.read_report(bad)
    assert str(info.value).startswith(f"{bad}: threshold_results:")
    # The leaderboard still lists a run with a foreign report, and says why its numbers are NaN.
    (tmp_path / "metrics.json").write_text(json.dumps({"run": {"name": "odd"}}))
    run = compare.load_run(tmp_path)
    assert run.report is None and any("threshold_results" in p for p in run.problems)
    row = compare.leaderboard([run]).iloc[0]
    assert row["model"] == "odd" and math.isnan(row["route_plan_exact strict"])


def test_models_and_baselines_share_one_predictions_name(tmp_path: Path) -> None:
    run = run_stage.open_run(str(PARAMS / "local.yaml"), str(tmp_path / "run"), {"synth_rows": 40})
    reports = evaluate_stage.baselines(run)
    for kind, report in reports.items():
        folder = (run.path / runfolder.baseline_report_file(kind)).parent
        assert Path(report["config"]["pred_path"]) == folder / "report.predictions.jsonl"
        assert runfolder.predictions_path(folder / "report.json") == folder / (
            "report.predictions.jsonl"
        )
        assert not (folder / "predictions.jsonl").exists()
        assert (
            runfolder.read_report(folder / "report.json")["threshold_results"]["failed"]
            == (report["threshold_results"]["failed"])
        )
    model = run.path / runfolder.REPORT_FILE
    assert runfolder.predictions_path(model) == run.path / "eval" / "report.predictions.jsonl"


def test_job_json_has_one_writer(tmp_path: Path) -> None:
    from routerlib.tuning import local
    from routerlib.tuning.base import Job, TuningSpec

    # The local backend keeps its job's one record in its output folder, which is the run's
    # tuning/full: it is the run's job.json (stages.tune writes a copy only for a job whose
    # output is elsewhere), so the run holds no second copy under another name.
    assert local.JOB_FILE == runfolder.JOB_FILE
    spec = TuningSpec.build(training_dataset_uri="t.jsonl", output_uri=str(tmp_path / "o"))
    job = Job(name="local/x", backend="local", state="JOB_STATE_SUCCEEDED", spec=spec)
    target = tmp_path / runfolder.job_file()
    runfolder.write_record(target, job)
    assert runfolder.read_json(target, Job) == job
    data = json.loads(target.read_text())
    data["spec"]["epochs"] = 0
    target.write_text(json.dumps(data))
    with pytest.raises(RunFolderError, match=r"job.json: spec.epochs:"):
        runfolder.read_json(target, Job)


def test_notebooks_04_and_05_show_the_same_p_values(good_run: Path) -> None:
    """Notebook 04's comparison table (the report's comparison against the baseline) and notebook
    05's significance table (two run folders' samples) come from the same paired test."""
    eval_dir = good_run / "eval"
    report = metrics.score_files(
        good_run / "data" / "test.jsonl",
        eval_dir / "predictions.jsonl",
        compare_to=eval_dir / "baselines" / "majority" / "predictions.jsonl",
        bootstrap=0,
    )
    in_04 = evaluate_stage.comparison_table(report)
    sig = compare.significance_table([compare.load_run(good_run)])
    in_05 = sig[sig["reference"] == "baseline:majority"].set_index("metric")
    assert len(in_05) == len(compare.SIGNIFICANCE_METRICS)
    # notebook 04 shows its table rounded for reading (routerlib.display); the numbers behind
    # both tables are the same paired test's
    for metric, row in in_05.iterrows():
        assert in_04.loc[metric, "test"] == row["test"], metric
        assert in_04.loc[metric, "p_value"] == display.fmt(row["p_value"], 4), metric
        assert in_04.loc[metric, "delta"] == f"{row['delta']:+.3f}", metric
    assert in_05.loc["route_plan_exact", "p_value"] < 0.05


def test_a_null_completion_is_invalid_but_not_listed_as_the_original(tmp_path: Path) -> None:
    gold = _jsonl(tmp_path / "gold.jsonl", gold_rows())
    preds = predictions("good")
    preds[1] = {"completion": "null"}  # valid JSON, not an object: invalid, the original shows none
    preds[2] = {"completion": "{broken"}
    pred = _jsonl(tmp_path / "pred.jsonl", preds)
    report = metrics.score_files(gold, pred, out_path=tmp_path / "report.json", bootstrap=0)
    assert report["metrics"]["overall"]["json_valid"] == 38 / 40
    listed = [e["index"] for e in report["error_samples"]]
    fuller = [e["index"] for e in report["error_samples_all"]]
    assert 1 not in listed and 2 in listed
    assert fuller[:3] == [0, 1, 2] and listed[:2] == [0, 2]
    null = next(e for e in report["error_samples_all"] if e["index"] == 1)
    assert null["details"]["error"] == "Failed to parse prediction: JSON is null, not an object"
    assert list(report)[:3] == ["config", "metrics", "error_samples"]
    assert (
        runfolder.read_report(tmp_path / "report.json")["error_samples"]
        == (report["error_samples"])
    )


def test_runconfig_defaults_are_the_embedded_default_run() -> None:
    """params/local.yaml (make run) is RunConfig's defaults: it sets only name and backend."""
    assert load_config(PARAMS / "local.yaml") == RunConfig()
    defaults = RunConfig()
    assert (defaults.synth_rows, defaults.epochs, defaults.max_tokens) == (300, 2, 1280)
    from routerlib import synth

    assert synth.DEFAULT_ROWS == defaults.synth_rows and synth.DEFAULT_SEED == defaults.synth_seed


def test_write_metrics_is_what_the_comparison_reads(tmp_path: Path, good_run: Path) -> None:
    from routerlib.tuning.base import Job, TuningSpec

    run = run_stage.open_run(str(PARAMS / "local.yaml"), str(tmp_path / "run"))
    eval_dir = run.path / "eval"
    eval_dir.mkdir()
    report = metrics.score_files(
        good_run / "data" / "test.jsonl",
        good_run / "eval" / "predictions.jsonl",
        out_path=eval_dir / "report.json",
        thresholds={"overall": {"min": {"route_plan_exact": 0.8}}},
        bootstrap=0,
    )
    spec = TuningSpec.build(training_dataset_uri="t.jsonl", output_uri=str(tmp_path / "o"))
    curve = [{"epoch": 1, "step": 5, "train_loss": 1.5, "val_loss": 1.6}]
    job = Job(
        name="local/x",
        backend="local",
        state="JOB_STATE_SUCCEEDED",
        spec=spec,
        loss_curve=curve,
        train_seconds=12.5,
    )
    target = evaluate_stage.write_metrics(run, job, report, {})
    record = runfolder.read_metrics(run.path)
    assert target == run.path / "metrics.json"
    assert record.run.name == "local" and record.run.epochs == 2
    assert record.tuning is not None and record.tuning.loss_curve == curve
    assert record.evaluation is not None and record.evaluation.gate_pass is True
    assert list(record.evaluation.headline) == list(metric_names.HEADLINE)
    row = compare.leaderboard([compare.load_run(run.path)]).iloc[0]
    assert row["route_plan_exact strict"] == pytest.approx(36 / 40)
    assert row["train_seconds"] == 12.5 and row["epochs"] == 2


def test_loss_curve_file_is_read_through_its_record(tmp_path: Path) -> None:
    folder = tmp_path / runfolder.FULL_TUNING_DIR
    folder.mkdir(parents=True)
    curve = folder / runfolder.LOSS_CURVE_FILE
    curve.write_text(json.dumps([{"epoch": 0.5, "step": 3, "train_loss": 2.0, "val_loss": None}]))
    (tmp_path / "metrics.json").write_text(json.dumps({"run": {"name": "curve"}}))
    assert [p["step"] for p in compare.load_run(tmp_path).loss_curve()] == [3]
    curve.write_text(json.dumps([{"epoch": 1, "step": "late", "train_loss": 2.0}]))
    with pytest.raises(RunFolderError, match=r"loss_curve.json: \[0\]: step:"):
        runfolder.read_loss_curve(curve)
    run = compare.load_run(tmp_path)
    assert run.loss_curve() == [] and any("[0]: step:" in p for p in run.problems)


def test_pipeline_json_has_one_reader_that_names_a_foreign_field(tmp_path: Path) -> None:
    from routerlib import pipeline, report

    run = tmp_path / "local-20260101-000000"
    run.mkdir()
    assert report._run_status(run) == "unknown"  # neither pipeline.json nor metrics.json
    (run / runfolder.PIPELINE_FILE).write_text(
        json.dumps({"status": "running", "stages": [], "params_name": "local"})
    )
    assert runfolder.read_pipeline(run).status == "running"
    assert report._run_status(run) == "running"
    assert pipeline.find_unfinished_run("local", tmp_path) == run
    state = runfolder.read_pipeline(run).model_dump(exclude_unset=True)
    assert state == {"status": "running", "stages": [], "params_name": "local"}
    (run / runfolder.PIPELINE_FILE).write_text(json.dumps({"status": "done", "stages": []}))
    with pytest.raises(RunFolderError, match=r"pipeline\.json: status: "):
        runfolder.read_pipeline(run)
    assert report._run_status(run) == "unknown"  # a foreign state is not reported as a status
    assert pipeline.find_unfinished_run("local", tmp_path) is None


def test_the_significance_headline_is_the_deciding_metrics() -> None:
    from routerlib import report

    assert report.SIGNIFICANCE_HEADLINE == compare.DECIDING_METRICS
