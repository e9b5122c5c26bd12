"""The notebook glue: run folders keep one config, and a Vertex run tunes from the uploaded splits."""

from __future__ import annotations

import pytest

from routerlib import stages
from routerlib.errors import InputError
from tests.support import gcs_emulator as emulator_support

gcs_emulator = emulator_support.gcs_emulator  # the fixture


def test_a_run_folder_keeps_its_params(tmp_path) -> None:
    run = stages.open_run("params/local.yaml", str(tmp_path / "run"))
    assert (run.path / "params.yaml").is_file()
    again = stages.open_run("params/local.yaml", str(run.path))
    assert again.config == run.config
    with pytest.raises(InputError, match="made with other params"):
        stages.open_run("params/local.yaml", str(run.path), {"epochs": 5})


def test_an_empty_params_file_is_routerlib_params_else_local(tmp_path, monkeypatch) -> None:
    """The notebooks' default ``params_file = ""``: $ROUTERLIB_PARAMS when set, else local.yaml."""
    monkeypatch.delenv("ROUTERLIB_PARAMS", raising=False)
    run = stages.open_run("", str(tmp_path / "a"))
    assert run.params_file == "params/local.yaml" and run.config.name == "local"
    monkeypatch.setenv("ROUTERLIB_PARAMS", "tests/data/e2e_tiny.yaml")
    run = stages.open_run("", str(tmp_path / "b"))
    assert run.params_file == "tests/data/e2e_tiny.yaml" and run.config.name == "e2e-tiny"
    # an explicit file (papermill -p params_file ...) wins over the variable
    assert (
        stages.open_run("params/local_full.yaml", str(tmp_path / "c")).config.name == "local-full"
    )
    monkeypatch.setenv("ROUTERLIB_PARAMS", "params/missing.yaml")
    with pytest.raises(InputError, match="missing.yaml"):
        stages.open_run("", str(tmp_path / "d"))


def test_vertex_run_tunes_from_the_uploaded_splits(gcs_emulator, tmp_path) -> None:
    gcs_emulator.make_bucket("router-data")
    run = stages.open_run(
        "params/llama31_8b.yaml",
        str(tmp_path / "run"),
        {"gcs_prefix": "gs://router-data/week2", "synth_rows": 40, "smoke_limit": 20},
    )
    result = stages.prepare(run)
    assert result.uris["train"] == "gs://router-data/week2/train.jsonl"
    blob = gcs_emulator.client().bucket("router-data").get_blob("week2/test.jsonl")
    assert blob.size == (run.path / "data" / "test.jsonl").stat().st_size

    spec = stages.tuning_spec(run)
    assert spec.training_dataset_uri == "gs://router-data/week2/train.jsonl"
    assert spec.validation_dataset_uri == "gs://router-data/week2/validation.jsonl"
    assert spec.output_uri == f"gs://router-data/week2/{run.path.name}/tuning/full"
    assert spec.base_model == "meta/llama3_1@llama-3.1-8b-instruct"
    assert spec.checkpoint_uri().endswith("/tuning/full/postprocess/node-0/checkpoints/final")

    smoke = stages.tuning_spec(run, smoke=True)
    assert smoke.training_dataset_uri == "gs://router-data/week2/smoke/train.jsonl"
    assert smoke.tuning_mode == "PEFT_ADAPTER" and smoke.epochs == 1
    assert smoke.output_uri.endswith("/tuning/smoke")


def test_comparison_with_nothing_to_compare_runs_the_pipeline(tmp_path, monkeypatch) -> None:
    """Notebook 05 alone makes its run through the one pipeline (stages 01, 03, 04; the smoke
    tune is skipped), in toy notebooks here: 02 would fail, 04 writes the run's metrics.json."""
    import nbformat

    from routerlib import runfolder
    from tests.support.toy_project import _notebook, make_project

    root = make_project(tmp_path / "project")
    nbformat.write(
        _notebook("raise ValueError('the smoke stage must not run')", title="02 smoke"),
        root / "notebooks" / "02_check.ipynb",
    )
    nbformat.write(_notebook("print('tune')", title="03 tune"), root / "notebooks" / "03_t.ipynb")
    nbformat.write(
        _notebook(
            "import json\n(run / 'metrics.json').write_text(json.dumps({'run': {'name': "
            "cfg['name'], 'epochs': cfg['epochs']}}))",
            title="04 evaluate",
        ),
        root / "notebooks" / "04_e.ipynb",
    )
    outputs = tmp_path / "outputs"
    monkeypatch.setenv("ROUTERLIB_ROOT", str(root))
    monkeypatch.setenv("ROUTERLIB_OUTPUTS", str(outputs))
    comparison = stages.open_run(str(root / "params" / "ok.yaml"))
    found = stages.runs_to_compare(comparison, [])
    assert [r.name for r in found] == ["ok"]
    built = found[0].path
    assert built != comparison.path and built.name.startswith("ok-")
    state = runfolder.read_json(built / "pipeline.json", runfolder.PipelineRecord)
    assert [s.stage for s in state.stages] == ["01", "03", "04"] and state.status == "finished"
    assert (built / "stage01.txt").is_file()
