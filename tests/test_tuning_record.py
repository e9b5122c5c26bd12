"""One record of a local job: the tuning folder's job.json, written by the local backend alone.

A local run's tuning folder is the backend's output folder, so the run's job.json is the
backend's record (no second copy beside it); the job registry, notebook 02/03's table, notebook
04's re-read, ``jobs list/show``, a re-attach and the tuning cache all work from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from routerlib import jobs, runfolder
from routerlib.stages import tune as stages
from routerlib.tuning import cache, local
from routerlib.tuning.base import SUCCEEDED

pytestmark = pytest.mark.slow

PARAMS = str(Path(__file__).parent / "data" / "e2e_tiny.yaml")


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Own outputs root (job registry) and tuning cache."""
    monkeypatch.setenv("ROUTERLIB_OUTPUTS", str(tmp_path / "outputs"))
    monkeypatch.setenv(cache.ENV, str(tmp_path / "tuning-cache"))
    return tmp_path


def test_a_local_run_keeps_one_record_that_every_reader_uses(
    isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    overrides = {"max_train_tokens": 64}
    run = stages.open_run(PARAMS, str(isolated / "run"), overrides)
    stages.prepare(run, smoke=True)
    job = stages.tune(run, smoke=True)
    assert job.state == SUCCEEDED

    folder = run.sub(runfolder.tuning_dir(smoke=True))
    record_file = run.sub(runfolder.job_file(smoke=True))
    assert sorted(p.name for p in folder.iterdir() if p.is_file()) == [
        runfolder.JOB_FILE,
        runfolder.LOSS_CURVE_FILE,
    ]
    record = json.loads(record_file.read_text())
    assert record["name"] == job.name and record["backend"] == "local"
    assert record[local.LOCAL_KEY]["identity"]  # the bookkeeping lives in the same file
    assert [c["checkpoint_id"] for c in record["checkpoints"]] == ["epoch-1", "final"]

    # notebook 04 reads the same record back; the registry indexes the same job
    again = stages.tuned_job(run, smoke=True)
    assert again.name == job.name and again.checkpoints == job.checkpoints
    assert again.loss_curve == job.loss_curve and again.tuning_data_stats == job.tuning_data_stats
    assert jobs.select_checkpoint(again, "epoch-1").endswith("checkpoints/epoch-1")
    assert stages.job_table(again).loc["state"].iloc[0] == SUCCEEDED
    assert [j.name for j in jobs.list_jobs(refresh=False)] == [job.name]
    shown = jobs.show(job.name, out=print)
    assert shown.checkpoint_uri == record["checkpoint_uri"]
    assert f"checkpoint:  {record['checkpoint_uri']}" in jobs.describe(shown)
    assert local.LocalBackend(root=run.path).get(job.name).model_dump() == again.model_dump()

    # tuning again re-attaches (nothing trained, the record left as it is)
    before = record_file.read_bytes()
    capsys.readouterr()
    assert stages.tune(run, smoke=True).name == job.name
    assert "re-attaching to " + job.name in capsys.readouterr().out
    assert record_file.read_bytes() == before

    # another run folder with the same params: the tuning cache fills its one record
    other = stages.open_run(PARAMS, str(isolated / "other"), overrides)
    stages.prepare(other, smoke=True)
    copied = stages.tune(other, smoke=True)
    other_record = json.loads(other.sub(runfolder.job_file(smoke=True)).read_text())
    assert other_record[local.LOCAL_KEY]["from_cache"]["job"] == job.name
    assert copied.loss_curve == job.loss_curve
    assert not (other.sub(runfolder.tuning_dir(smoke=True)) / "local_job.json").exists()
