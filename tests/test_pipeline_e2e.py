"""The whole local pipeline, as `make run` drives it, on the smallest params: papermill runs the real
notebooks 01–04 into one run folder, then 05 and the report. Values recorded in the run folder are
checked against what they must be, worked out independently from the run's own files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from routerlib.config import load_config

ROOT = Path(__file__).resolve().parent.parent
PARAMS = "tests/data/e2e_tiny.yaml"


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    outputs = tmp_path_factory.mktemp("e2e-outputs")
    env = {**os.environ, "ROUTERLIB_OUTPUTS": str(outputs), "NO_GCE_CHECK": "True"}
    env.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "routerlib", "run", PARAMS, "--compare", "--report"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return outputs, proc


@pytest.mark.slow
def test_one_self_contained_run_folder(finished: tuple[Path, subprocess.CompletedProcess]) -> None:
    outputs, proc = finished
    runs = sorted(d for d in outputs.iterdir() if d.name.startswith("e2e_tiny-"))
    assert len(runs) == 1
    run = runs[0]
    state = json.loads((run / "pipeline.json").read_text())
    assert state["status"] == "finished"
    assert [s["stage"] for s in state["stages"]] == ["01", "02", "03", "04"]
    assert all(s["status"] == "ok" for s in state["stages"])
    for stage in ("01_prepare", "02_smoke_tune", "03_full_tune", "04_deploy_eval"):
        book = json.loads((run / "notebooks" / f"{stage}.ipynb").read_text())
        errors = [
            o for c in book["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"
        ]
        assert not errors, stage
        assert f"[e2e_tiny] {stage} ... ok" in proc.stdout
    for name in (
        "params.yaml",
        "run.log",
        "metrics.json",
        "data/train.jsonl",
        "eval/report.json",
        "eval/samples.jsonl",
        "tuning/full/job.json",
    ):
        assert (run / name).is_file(), name


@pytest.mark.slow
def test_recorded_values_agree_with_the_run_files(finished) -> None:
    outputs, _ = finished
    run = next(d for d in outputs.iterdir() if d.name.startswith("e2e_tiny-"))
    config = load_config(ROOT / PARAMS)
    rows, smoke = config.synth_rows, config.smoke_limit
    test_rows = _jsonl(run / "data" / "test.jsonl")
    assert len(test_rows) == int(rows * config.test_ratio)  # the original split arithmetic
    assert len(_jsonl(run / "data" / "validation.jsonl")) == int(rows * config.val_ratio)
    smoke_held_out = int(smoke * config.test_ratio) + int(smoke * config.val_ratio)
    assert len(_jsonl(run / "data" / "smoke" / "train.jsonl")) == smoke - smoke_held_out

    metrics = json.loads((run / "metrics.json").read_text())
    report = json.loads((run / "eval" / "report.json").read_text())
    assert report["config"]["total_samples"] == len(test_rows)
    overall = report["metrics"]["overall"]
    assert metrics["evaluation"]["headline"]["json_valid"] == overall["json_valid"]
    assert metrics["evaluation"]["gate_pass"] == report["threshold_results"]["overall_pass"]
    assert len(_jsonl(run / "eval" / "samples.jsonl")) == len(test_rows)

    # tuning really learned: validation loss after the epoch is below the untrained one
    curve = metrics["tuning"]["loss_curve"]
    val = [p["val_loss"] for p in curve if p.get("val_loss") is not None]
    assert len(val) >= 2 and val[-1] < val[0]
    assert metrics["tuning"]["state"] == "JOB_STATE_SUCCEEDED"
    assert (run / "tuning/full/postprocess/node-0/checkpoints/final").is_dir()

    # the majority-template baseline, checked from the gold rows by hand: its first tool is
    # always /general-search and its plan has three steps
    gold = [json.loads(r["completion"]) for r in test_rows]
    base = json.loads((run / "eval/baselines/majority/report.json").read_text())["metrics"][
        "overall"
    ]
    assert base["json_valid"] == 1.0
    first = sum(g["route_plan"][0].startswith("/general-search") for g in gold) / len(gold)
    assert base["route_first_tool_match"] == pytest.approx(first)
    three = sum(len(g["route_plan"]) == 3 for g in gold) / len(gold)
    assert base["route_length_match"] == pytest.approx(three)


@pytest.mark.slow
def test_comparison_and_report(finished) -> None:
    outputs, proc = finished
    run = next(d for d in outputs.iterdir() if d.name.startswith("e2e_tiny-"))
    comparisons = [d for d in outputs.iterdir() if d.name.startswith("comparison-")]
    assert len(comparisons) == 1
    board = (comparisons[0] / "leaderboard.csv").read_text()
    assert run.name in board
    assert "majority" in board
    assert list((comparisons[0] / "plots").glob("*.png"))
    index = outputs / "report" / "index.html"
    assert f"report: {index}" in proc.stdout
    html = index.read_text()
    assert 'id="leaderboard"' in html and run.name in html


@pytest.mark.slow
def test_comparison_alone_builds_the_run_it_needs(tuning_cache: str) -> None:
    """Notebook 05 run by itself on an empty outputs root makes one run (stages 01–04 in-process)
    instead of showing an empty leaderboard. (Its tuning re-attaches to the identical one the
    pipeline run above made, through the session's tuning cache.)"""
    from routerlib import compare, paths
    from routerlib.stages import compare as compare_stage
    from routerlib.stages import run as run_stage

    assert not list(paths.outputs_root().glob("*/metrics.json"))
    comparison = run_stage.open_run(PARAMS)
    found = compare_stage.runs_to_compare(comparison, [])
    # one run folder, scored with free and with constrained decoding (one summary each)
    assert len({Path(f.path) for f in found}) == 1
    assert sorted(f.decoding for f in found) == ["constrained", "free"]
    built = Path(found[0].path)
    assert built != comparison.path
    assert (built / "metrics.json").is_file() and (built / "eval/report.json").is_file()
    board = compare.leaderboard(found)
    assert {"e2e-tiny", "baseline:majority"} <= set(board["model"])
