"""`routerlib pipeline compile` and `routerlib pipeline run --local`: the KFP pipeline of the
notebook chain. Compiling a 2-point grid is offline and its IR holds the points, the parallelism
and the fan-in; points are refused exactly as `routerlib run --grid` refuses them; the local
runner (kfp.local, SubprocessRunner, no Docker) runs the real notebooks for two points, one of them
made to fail, and the pipeline still ends with its comparison and report; a copy of the pipeline
run's folder is an outputs root `routerlib report` and notebook 05 read."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from routerlib import pipeline, runfolder, vertex_pipelines
from routerlib.cli import main
from routerlib.config import load_config
from tests.support.vertex_params import edited_copy

pytest.importorskip("kfp", reason="the pipelines extra (kfp)")

ROOT = Path(__file__).resolve().parent.parent
IMAGE = "us-central1-docker.pkg.dev/proj-1/routerlib/routerlib:test"


def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection attempt fails the test: compiling must need no network."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"network used: {args[:2]}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_compile_a_two_point_grid_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_network(monkeypatch)
    out = tmp_path / "pipeline.yaml"
    llama = edited_copy("params/llama31_8b.yaml", tmp_path / "params")  # EDIT lines edited
    code = main(
        ["pipeline", "compile", str(llama), "--grid", "adapter_size=8,16"]
        + ["--outputs", "gs://team-bucket/nightly", "--image", IMAGE]
        + ["--max-concurrent", "2", "--out", str(out)]
    )
    assert code == 0
    spec = yaml.safe_load(out.read_text(encoding="utf-8"))
    assert spec["pipelineInfo"]["name"] == "routerlib-chain"
    assert spec["defaultPipelineRoot"] == "gs://team-bucket/nightly/pipeline-root"
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["outputs"]["defaultValue"] == "gs://team-bucket/nightly"
    assert params["stages"]["defaultValue"] == "01,02,03,04"

    tasks = spec["root"]["dag"]["tasks"]
    assert set(tasks) == {"for-loop-2", "report-task"}
    loop = tasks["for-loop-2"]
    assert loop["iteratorPolicy"]["parallelismLimit"] == 2
    items = json.loads(loop["parameterIterator"]["items"]["raw"])
    assert [i["index"] for i in items] == ["00", "01"]
    assert [i["label"] for i in items] == ["llama31-8b-adapter_size8", "llama31-8b-adapter_size16"]
    for item, size in zip(items, (8, 16), strict=True):
        point = tmp_path / f"{item['index']}.yaml"
        point.write_text(item["params"], encoding="utf-8")
        config = load_config(point)  # each point's params are valid params on their own
        expected = load_config(llama, {"adapter_size": size})
        assert config == expected.model_copy(update={"name": item["label"]})

    body = spec["components"]["comp-for-loop-2"]["dag"]["tasks"]["point-task"]
    assert body["cachingOptions"] == {}  # caching off: every task has side effects
    assert body["inputs"]["parameters"]["job"]["runtimeValue"]["constant"] == (
        "{{$.pipeline_job_name}}"
    )
    fan_in = tasks["report-task"]
    assert fan_in["dependentTasks"] == ["for-loop-2"]
    assert fan_in["cachingOptions"] == {}
    outcomes = fan_in["inputs"]["parameters"]["outcomes"]["taskOutputParameter"]
    assert outcomes == {
        "outputParameterKey": "pipelinechannel--point-task-outcome",
        "producerTask": "for-loop-2",
    }
    plan = json.loads(fan_in["inputs"]["parameters"]["plan"]["runtimeValue"]["constant"])
    assert plan["grid"] == {"adapter_size": [8, 16]} and plan["backend"] == "vertex"
    executors = spec["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {IMAGE}
    # the tasks run the code in the image (no pip install of kfp at start)
    assert all("pip install" not in " ".join(e["container"]["command"]) for e in executors.values())


def test_compile_refuses_points_exactly_as_run_grid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "pipeline.yaml"
    grid = ["--grid", "adapter_size=4,3", "--grid", "epochs=1,0"]
    assert main(["run", "params/local.yaml", *grid, "--outputs", str(tmp_path / "o")]) == 2
    run_lines = capsys.readouterr().err.splitlines()
    compile_args = ["--outputs", "gs://team-bucket/p", "--out", str(out)]
    assert main(["pipeline", "compile", "params/local.yaml", *grid, *compile_args]) == 2
    compile_lines = capsys.readouterr().err.splitlines()
    assert len(run_lines) > 2
    assert run_lines[:-1] == compile_lines[:-1]  # the same problems, word for word
    assert run_lines[-1].removeprefix("routerlib run: ") == compile_lines[-1].removeprefix(
        "routerlib pipeline: "
    )
    assert not out.exists() and not (tmp_path / "o").exists()

    assert (
        main(
            ["pipeline", "compile", "params/local.yaml", "--outputs", "/tmp/x"]
            + ["--out", str(out)]
        )
        == 2
    )
    assert "must start with gs://" in capsys.readouterr().err and not out.exists()
    assert (
        main(["pipeline", "compile", "params/local.yaml", "--stages", "01,07"] + compile_args) == 2
    )
    assert "stage 07: no notebook" in capsys.readouterr().err and not out.exists()


def test_without_kfp_everything_else_works_and_pipeline_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code = (
        "import sys; sys.modules['kfp'] = None\n"
        "import routerlib.vertex_pipelines, routerlib.pipeline_jobs\n"
        "from routerlib.cli import build_parser, main\n"
        "build_parser()\n"
        "sys.exit(main(['pipeline', 'compile', 'params/local.yaml', '--outputs', 'gs://b-1/p',"
        " '--out', sys.argv[1]]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "p.yaml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_GCE_CHECK": "True"},
    )
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'routerlib[pipelines]'" in proc.stderr
    assert not (tmp_path / "p.yaml").exists()


def test_paths_a_task_sees() -> None:
    assert vertex_pipelines.fuse_path("gs://team-bucket/nightly/x") == Path(
        "/gcs/team-bucket/nightly/x"
    )
    assert vertex_pipelines.fuse_path("gs://team-bucket") == Path("/gcs/team-bucket")
    assert vertex_pipelines.run_folder_name("routerlib-chain-2026/for-loop-2-iteration-0") == (
        "routerlib-chain-2026"
    )
    assert vertex_pipelines.run_folder_name("routerlib-abc-1") == "routerlib-abc-1"
    name = "projects/p/locations/us-central1/pipelineJobs/routerlib-abc-1"
    assert vertex_pipelines.run_folder_name(name) == "routerlib-abc-1"


def test_a_point_never_raises(tmp_path: Path) -> None:
    bad = vertex_pipelines.run_point("00", "p", "epochs: 0\n", "01", str(tmp_path), "job-1")
    assert bad.status == "failed" and bad.run_dir == ""
    outcome = json.loads(bad.outcome)
    assert outcome["status"] == "failed" and "epochs" in outcome["message"]
    assert (tmp_path / "job-1" / "points" / "00" / "params.yaml").read_text() == "epochs: 0\n"
    missing = vertex_pipelines.run_point("01", "q", "name: q\n", "42", str(tmp_path), "job-1")
    assert missing.status == "failed" and "stage 42" in json.loads(missing.outcome)["message"]


TINY = {
    "name": "kfp-tiny",
    "backend": "local",
    "synth_rows": 40,
    "synth_seed": 11,
    "test_ratio": 0.1,
    "smoke_limit": 20,
    "adapter_size": 8,
    "epochs": 1,
    "batch_size": 8,
    "max_tokens": 48,
    "max_train_tokens": 256,
    "concurrency": 4,
}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_local_runner_two_points_one_failing_ends_with_comparison_and_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Stages 01, 03 and 04 of the smallest local run (the smoke tune 02 adds nothing the
    comparison needs): about 45 s on two busy cores. The second point's base model does not
    exist: it passes validation and fails in 03 when the tuning loads it."""
    params = tmp_path / "tiny.yaml"
    params.write_text(yaml.safe_dump(TINY), encoding="utf-8")
    outputs = tmp_path / "outputs"
    monkeypatch.setenv("ROUTERLIB_OUTPUTS", str(outputs))
    code = main(
        ["pipeline", "run", "--local", str(params)]
        + ["--grid", "base_model=routerlib/tiny-router-lm,/no/such/model"]
        + ["--stages", "01,03,04", "--max-concurrent", "2", "--outputs", str(outputs)]
    )
    assert code == 1  # a point failed
    [folder] = runfolder.find_folders(runfolder.SWEEP_FILE, root=outputs)
    record = runfolder.read_sweep(folder)
    good, bad = record.points
    assert (good.name, good.status) == ("kfp-tiny-base_modelrouterlib-tiny-router-lm", "finished")
    assert (bad.name, bad.status) == ("kfp-tiny-base_model-no-such-model", "failed")
    assert bad.message.startswith("notebooks/03_full_tune.ipynb: cell ")
    assert "/no/such/model" in bad.message
    assert record.grid == {"base_model": ["routerlib/tiny-router-lm", "/no/such/model"]}
    assert record.status == "failed"

    good_run, bad_run = Path(str(good.run_dir)), Path(str(bad.run_dir))
    assert good_run.parent == bad_run.parent == folder
    assert runfolder.has_evaluation(good_run) and not runfolder.has_evaluation(bad_run)
    assert [s.status for s in runfolder.read_pipeline(bad_run).stages] == [
        "ok",
        "failed",
        "pending",
    ]
    for index, run in (("00", good_run), ("01", bad_run)):
        # each point's own outputs root holds its params and its registries
        assert (
            load_config(folder / "points" / index / "params.yaml").name
            == run.name.rsplit("-", 2)[0]
        )
    assert (folder / "points" / "00" / "jobs.json").is_file()
    assert not (outputs / "jobs.json").exists()

    [comparison] = [p for p in folder.iterdir() if p.name.startswith("comparison-")]
    assert runfolder.read_pipeline(comparison).status == "finished"
    compared = json.loads((comparison / runfolder.COMPARISON_FILE).read_text())
    runs = {row["run"] for row in compared["leaderboard"].values() if row["kind"] == "model"}
    assert runs == {good_run.name}
    notebook = (comparison / "notebooks" / "05_model_comparison.ipynb").read_text()
    assert (
        f"Not compared (no finished evaluation, or this comparison's own folder): {bad_run.name}"
        in notebook
    )

    index = (folder / "report" / "index.html").read_text(encoding="utf-8")
    assert good_run.name in index and bad_run.name in index and comparison.name in index
    assert "failed: notebooks/03_full_tune.ipynb" in index and "/no/such/model" in index
    out = capsys.readouterr().out
    assert "1 of 2 point(s) finished" in out and f"pipeline run folder: {folder}" in out

    # A local copy of the pipeline run's folder (what `gcloud storage cp -r` brings back) is an
    # outputs root: `routerlib report` and notebook 05 read it.
    copy = tmp_path / "copy" / folder.name
    shutil.copytree(folder, copy)
    shutil.rmtree(copy / "report")
    shutil.move(str(folder), str(tmp_path / "moved-away"))  # the paths recorded inside are gone
    monkeypatch.setenv("ROUTERLIB_OUTPUTS", str(copy))
    assert main(["report"]) == 0
    copied_index = (copy / "report" / "index.html").read_text(encoding="utf-8")
    assert good_run.name in copied_index and "/no/such/model" in copied_index
    again = pipeline.run_comparison(str(copy / "points" / "00" / "params.yaml"), outputs=copy)
    assert again.ok, again.message
    compared = json.loads((again.run_dir / runfolder.COMPARISON_FILE).read_text())
    runs = {row["run"] for row in compared["leaderboard"].values() if row["kind"] == "model"}
    assert runs == {good_run.name}
