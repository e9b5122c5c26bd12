"""The notebook glue: run folders keep one config, and a Vertex run tunes from the uploaded splits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from routerlib.errors import InputError
from routerlib.stages import compare as compare_stage
from routerlib.stages import prepare as prepare_stage
from routerlib.stages import run as run_stage
from routerlib.stages import tune as tune_stage
from tests.support import gcs_emulator as emulator_support

gcs_emulator = emulator_support.gcs_emulator  # the fixture


def test_a_run_folder_keeps_its_params(tmp_path) -> None:
    run = run_stage.open_run("params/local.yaml", str(tmp_path / "run"))
    assert (run.path / "params.yaml").is_file()
    again = run_stage.open_run("params/local.yaml", str(run.path))
    assert again.config == run.config
    with pytest.raises(InputError, match="made with other params"):
        run_stage.open_run("params/local.yaml", str(run.path), {"epochs": 5})


def test_an_empty_params_file_is_routerlib_params_else_local(tmp_path, monkeypatch) -> None:
    """The notebooks' default ``params_file = ""``: $ROUTERLIB_PARAMS when set, else local.yaml."""
    monkeypatch.delenv("ROUTERLIB_PARAMS", raising=False)
    run = run_stage.open_run("", str(tmp_path / "a"))
    assert run.params_file == "params/local.yaml" and run.config.name == "local"
    monkeypatch.setenv("ROUTERLIB_PARAMS", "tests/data/e2e_tiny.yaml")
    run = run_stage.open_run("", str(tmp_path / "b"))
    assert run.params_file == "tests/data/e2e_tiny.yaml" and run.config.name == "e2e-tiny"
    # an explicit file (papermill -p params_file ...) wins over the variable
    assert (
        run_stage.open_run("params/local_full.yaml", str(tmp_path / "c")).config.name
        == "local-full"
    )
    monkeypatch.setenv("ROUTERLIB_PARAMS", "params/missing.yaml")
    with pytest.raises(InputError, match="missing.yaml"):
        run_stage.open_run("", str(tmp_path / "d"))


def test_vertex_run_tunes_from_the_uploaded_splits(gcs_emulator, tmp_path) -> None:
    gcs_emulator.make_bucket("router-data")
    run = run_stage.open_run(
        "params/llama31_8b.yaml",
        str(tmp_path / "run"),
        {"gcs_prefix": "gs://router-data/week2", "synth_rows": 40, "smoke_limit": 20},
    )
    result = prepare_stage.prepare(run)
    assert result.uris["train"] == "gs://router-data/week2/train.jsonl"
    blob = gcs_emulator.client().bucket("router-data").get_blob("week2/test.jsonl")
    assert blob.size == (run.path / "data" / "test.jsonl").stat().st_size

    spec = tune_stage.tuning_spec(run)
    assert spec.training_dataset_uri == "gs://router-data/week2/train.jsonl"
    assert spec.validation_dataset_uri == "gs://router-data/week2/validation.jsonl"
    assert spec.output_uri == f"gs://router-data/week2/{run.path.name}/tuning/full"
    assert spec.base_model == "meta/llama3_1@llama-3.1-8b-instruct"
    assert spec.checkpoint_uri().endswith("/tuning/full/postprocess/node-0/checkpoints/final")

    smoke = tune_stage.tuning_spec(run, smoke=True)
    assert smoke.training_dataset_uri == "gs://router-data/week2/smoke/train.jsonl"
    assert smoke.tuning_mode == "PEFT_ADAPTER" and smoke.epochs == 1
    assert smoke.output_uri.endswith("/tuning/smoke")


def test_comparison_with_nothing_to_compare_builds_a_run_in_process(tmp_path, monkeypatch) -> None:
    """Notebook 05 alone, with no finished run, makes one run of its own params in this process
    (``stages.evaluate.evaluate_run``) and never starts papermill."""
    import papermill

    def no_papermill(*args, **kwargs):
        raise AssertionError("the comparison stage started papermill")

    monkeypatch.setattr(papermill, "execute_notebook", no_papermill)
    monkeypatch.setenv("ROUTERLIB_OUTPUTS", str(tmp_path / "outputs"))
    built: list[Path] = []

    def fake_evaluate_run(run):  # what notebook 04 leaves behind, in a few lines
        built.append(run.path)
        (run.path / "eval").mkdir()
        (run.path / "eval" / "report.json").write_text("{}")
        record = {"run": {"name": run.config.name, "epochs": run.config.epochs}}
        (run.path / "metrics.json").write_text(json.dumps(record))
        return run.path / "metrics.json"

    monkeypatch.setattr(compare_stage, "evaluate_run", fake_evaluate_run)
    comparison = run_stage.open_run("params/local.yaml")
    found = compare_stage.runs_to_compare(comparison, [])
    assert len(built) == 1 and built[0] != comparison.path
    assert [Path(r.path) for r in found] == built
    assert run_stage.open_run("params/local.yaml", str(built[0])).config == comparison.config
