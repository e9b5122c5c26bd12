"""`routerlib pipeline submit / list / show / cancel` on the wire: the real aiplatform SDK against
the Vertex AI Pipelines stand-in (tests/support/fake_vertex_pipelines.py) on 127.0.0.1, and the
bucket check on the same server (STORAGE_EMULATOR_HOST). What reaches the wire is asserted field by
field; a lost create answer leaves one job; a 403 is a permission problem; a bad cron, a missing
bucket or an image in no registry are refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from routerlib import pipeline_jobs
from routerlib.cli import main
from routerlib.errors import InputError
from tests.support.fake_vertex_pipelines import (
    RUNNING,
    PipelinesStandIn,
    cron_problem,
    project_number_here,
)
from tests.support.vertex_params import edited_copy

pytest.importorskip("kfp", reason="the pipelines extra (kfp) compiles the pipeline under test")
pytestmark = pytest.mark.wire

BUCKET = "pipes-bucket"
OUTPUTS = f"gs://{BUCKET}/routerlib"
IMAGE = "us-central1-docker.pkg.dev/proj-1/routerlib/routerlib:test"
ACCOUNT = "runner@proj-1.iam.gserviceaccount.com"
LOCATION_PATH = "/v1/projects/proj-1/locations/us-central1"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("compiled") / "pipeline.yaml"
    llama = edited_copy("params/llama31_8b.yaml", out.parent / "params")  # EDIT lines edited
    code = main(
        ["pipeline", "compile", str(llama), "--grid", "adapter_size=8,16"]
        + ["--outputs", OUTPUTS, "--image", IMAGE, "--max-concurrent", "2", "--out", str(out)]
    )
    assert code == 0
    return out


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PipelinesStandIn]:
    with PipelinesStandIn() as stand_in:
        stand_in.buckets.add(BUCKET)
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", stand_in.url)
        monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "proj-1")
        monkeypatch.setenv("NO_GCE_CHECK", "True")
        monkeypatch.setenv("ROUTERLIB_OUTPUTS", str(tmp_path / "outputs"))
        from google.cloud.aiplatform.utils import resource_manager_utils

        monkeypatch.setattr(resource_manager_utils, "get_project_number", project_number_here)
        yield stand_in


def _submit(fake: PipelinesStandIn, compiled: Path, *extra: str) -> int:
    return main(
        ["pipeline", "submit", str(compiled), "--project", "proj-1", "--location", "us-central1"]
        + ["--api-endpoint", fake.url, *extra]
    )


def _spec(compiled: Path) -> dict[str, Any]:
    return yaml.safe_load(compiled.read_text(encoding="utf-8"))


def test_submit_sends_the_pipeline_job_field_by_field(
    fake: PipelinesStandIn, compiled: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _submit(fake, compiled, "--service-account", ACCOUNT) == 0
    records = pipeline_jobs.REGISTRY.read()
    assert len(records) == 1
    record = records[0]
    job_id = record["ref"]
    assert job_id == f"routerlib-{record['key']}-1"

    # The bucket is checked (by routerlib, then by the SDK) before the one create.
    calls = [(r.method, r.path) for r in fake.server.requests]
    create_at = calls.index(("POST", f"{LOCATION_PATH}/pipelineJobs"))
    bucket_gets = [
        r for r in fake.server.requests[:create_at] if r.path == f"/storage/v1/b/{BUCKET}"
    ]
    assert len(bucket_gets) >= 2  # routerlib's check, then the SDK's (exists, then its owner)
    [create] = fake.pipeline_creates()
    assert create.query["pipelineJobId"] == [job_id]
    assert "authorization" not in create.headers  # a loopback stand-in gets no token
    body = create.json()
    assert set(body) == {"displayName", "labels", "pipelineSpec", "runtimeConfig", "serviceAccount"}
    assert body["displayName"] == job_id
    assert body["labels"] == {"routerlib-pipeline": record["key"]}
    assert body["pipelineSpec"] == _spec(compiled)
    assert body["runtimeConfig"] == {
        "gcsOutputDirectory": f"{OUTPUTS}/pipeline-root",
        "parameterValues": {"outputs": OUTPUTS, "stages": "01,02,03,04"},
    }
    assert body["serviceAccount"] == ACCOUNT
    assert record["name"] == f"projects/proj-1/locations/us-central1/pipelineJobs/{job_id}"
    assert record["state"] == "PIPELINE_STATE_PENDING"
    out = capsys.readouterr().out
    assert f"folder:   {OUTPUTS}/{job_id}" in out

    # The same file again re-attaches: polled, never created twice.
    assert _submit(fake, compiled, "--service-account", ACCOUNT) == 0
    assert len(fake.pipeline_creates()) == 1
    assert fake.requests("GET", rf"/pipelineJobs/{job_id}$")
    assert "already submitted" in capsys.readouterr().out
    assert len(pipeline_jobs.REGISTRY.read()) == 1


def test_a_lost_create_answer_leaves_one_job(
    fake: PipelinesStandIn, compiled: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.create_faults = ["drop"]  # the job is made, the answer never arrives
    assert _submit(fake, compiled) == 0
    assert len(fake.pipeline_jobs) == 1 and len(fake.pipeline_creates()) == 1
    [record] = pipeline_jobs.REGISTRY.read()
    assert record["name"].endswith("/pipelineJobs/" + record["ref"])
    assert "answer was lost" in capsys.readouterr().out
    assert _submit(fake, compiled) == 0  # and again: re-attached
    assert len(fake.pipeline_jobs) == 1 and len(fake.pipeline_creates()) == 1


def test_an_unanswered_create_that_made_nothing_is_sent_again_under_its_id(
    fake: PipelinesStandIn, compiled: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.create_faults = ["503"]
    assert _submit(fake, compiled) == 3
    assert "recorded as UNKNOWN" in capsys.readouterr().err
    [record] = pipeline_jobs.REGISTRY.read()
    assert record["state"] == "UNKNOWN" and not fake.pipeline_jobs
    assert _submit(fake, compiled) == 0
    first, second = fake.pipeline_creates()
    assert first.query["pipelineJobId"] == second.query["pipelineJobId"] == [record["ref"]]
    assert list(fake.pipeline_jobs) == [record["ref"]]
    assert pipeline_jobs.REGISTRY.read()[0]["state"] == "PIPELINE_STATE_PENDING"


def test_a_403_is_a_permission_problem_and_records_nothing(
    fake: PipelinesStandIn, compiled: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.denied.add("aiplatform.pipelineJobs.create")
    assert _submit(fake, compiled) == 3
    err = capsys.readouterr().err
    assert "permission denied" in err and "aiplatform.pipelineJobs.create" in err
    assert "roles/aiplatform.user" in err
    assert pipeline_jobs.REGISTRY.read() == []


def test_schedule_posts_the_cron_and_the_create_request(
    fake: PipelinesStandIn, compiled: Path
) -> None:
    assert _submit(fake, compiled, "--schedule", "0 3 * * *", "--service-account", ACCOUNT) == 0
    assert fake.pipeline_creates() == []  # a schedule starts the runs, not the submit
    [create] = fake.schedule_creates()
    body = create.json()
    [record] = pipeline_jobs.REGISTRY.read()
    assert set(body) == {"displayName", "cron", "maxConcurrentRunCount", "createPipelineJobRequest"}
    assert body["displayName"] == record["ref"]
    assert body["cron"] == "0 3 * * *"
    assert int(body["maxConcurrentRunCount"]) == 1
    request = body["createPipelineJobRequest"]
    assert request["parent"] == "projects/proj-1/locations/us-central1"
    job = request["pipelineJob"]
    assert set(job) == {"pipelineSpec", "runtimeConfig", "labels", "serviceAccount"}
    assert job["pipelineSpec"] == _spec(compiled)
    assert job["runtimeConfig"]["gcsOutputDirectory"] == f"{OUTPUTS}/pipeline-root"
    assert job["runtimeConfig"]["parameterValues"]["outputs"] == OUTPUTS
    assert job["labels"] == {"routerlib-pipeline": record["key"]}
    assert job["serviceAccount"] == ACCOUNT
    assert record["kind"] == "schedule" and record["state"] == "ACTIVE"
    assert record["name"] == "projects/proj-1/locations/us-central1/schedules/1001"

    # Again: re-attached; cancel pauses it.
    assert _submit(fake, compiled, "--schedule", "0 3 * * *", "--service-account", ACCOUNT) == 0
    assert len(fake.schedule_creates()) == 1
    assert main(["pipeline", "cancel", "1001"]) == 0
    assert fake.requests("POST", r"/schedules/1001:pause$")
    assert fake.schedules["1001"]["state"] == "PAUSED"
    assert pipeline_jobs.REGISTRY.read()[0]["state"] == "PAUSED"


def test_a_lost_schedule_answer_is_found_by_its_display_name(
    fake: PipelinesStandIn, compiled: Path
) -> None:
    fake.create_faults = ["drop"]
    assert _submit(fake, compiled, "--schedule", "0 3 * * *") == 0
    [record] = pipeline_jobs.REGISTRY.read()
    assert fake.requests("GET", r"/schedules$")[0].query["filter"] == [
        f'display_name="{record["ref"]}"'
    ]
    assert len(fake.schedules) == 1 and record["name"].endswith("/schedules/1001")


def test_bad_cron_is_refused_before_or_by_vertex(
    fake: PipelinesStandIn, compiled: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _submit(fake, compiled, "--schedule", "every night") == 2  # not five fields
    assert "five fields" in capsys.readouterr().err
    assert fake.server.requests == []
    assert _submit(fake, compiled, "--schedule", "61 3 * * *") == 3  # Vertex's refusal
    err = capsys.readouterr().err
    assert "400" in err and "Invalid cron" in err
    assert fake.schedules == {} and pipeline_jobs.REGISTRY.read() == []


def test_missing_bucket_and_unpullable_image_send_nothing(
    fake: PipelinesStandIn, compiled: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.buckets.clear()
    assert _submit(fake, compiled) == 3
    assert f"bucket gs://{BUCKET} does not exist" in capsys.readouterr().err
    assert fake.pipeline_creates() == [] and pipeline_jobs.REGISTRY.read() == []

    local = tmp_path / "local-image.yaml"
    local.write_text(compiled.read_text().replace(IMAGE, "routerlib:latest"))
    fake.server.requests.clear()
    assert _submit(fake, local) == 2
    assert "in no registry Vertex can pull from" in capsys.readouterr().err
    assert fake.server.requests == []


def test_list_show_cancel_a_job(
    fake: PipelinesStandIn, compiled: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.progression = ["PIPELINE_STATE_PENDING", RUNNING]  # it keeps running
    assert _submit(fake, compiled) == 0
    [record] = pipeline_jobs.REGISTRY.read()
    capsys.readouterr()
    assert main(["pipeline", "list"]) == 0
    listed = capsys.readouterr().out
    assert record["ref"] in listed and "RUNNING" in listed
    assert main(["pipeline", "show", record["ref"]]) == 0
    shown = capsys.readouterr().out
    assert f"job: {record['name']}" in shown and "state:    PIPELINE_STATE_RUNNING" in shown
    assert main(["pipeline", "cancel", record["ref"]]) == 0
    assert fake.requests("POST", rf"/pipelineJobs/{record['ref']}:cancel$")
    assert pipeline_jobs.REGISTRY.read()[0]["state"] == "PIPELINE_STATE_CANCELLING"
    assert main(["pipeline", "show", record["ref"]]) == 0
    assert "PIPELINE_STATE_CANCELLED" in capsys.readouterr().out
    assert main(["pipeline", "cancel", record["ref"]]) == 2  # ended: nothing to cancel


def test_show_reads_the_points_from_the_prefix(
    fake: PipelinesStandIn, compiled: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _submit(fake, compiled) == 0
    [record] = pipeline_jobs.REGISTRY.read()
    sweep = {
        "sweep": record["ref"],
        "params_file": "params/llama31_8b.yaml",
        "grid": {"adapter_size": [8, 16]},
        "stages": ["01", "02", "03", "04"],
        "backend": "vertex",
        "points": [
            {
                "index": 0,
                "values": {"adapter_size": 8},
                "name": "a8",
                "params": "p",
                "status": "finished",
            },
            {
                "index": 1,
                "values": {"adapter_size": 16},
                "name": "a16",
                "params": "p",
                "status": "failed",
                "message": "HTTP 429 RESOURCE_EXHAUSTED",
            },
        ],
    }
    path = f"/download/storage/v1/b/{BUCKET}/o/routerlib%2F{record['ref']}%2Fsweep.json"
    fake.server.route("GET", path)(lambda req, m: (200, json.dumps(sweep).encode()))
    assert main(["pipeline", "show", record["ref"]]) == 0
    shown = capsys.readouterr().out
    assert "point:    a8: finished" in shown
    assert "point:    a16: failed: HTTP 429 RESOURCE_EXHAUSTED" in shown


def test_the_stand_in_refuses_what_vertex_refuses(fake: PipelinesStandIn, compiled: Path) -> None:
    spec = _spec(compiled)
    runtime = {"gcsOutputDirectory": f"{OUTPUTS}/root", "parameterValues": {}}
    url = f"{fake.url}{LOCATION_PATH}/pipelineJobs"

    def create(job_id: str, body: dict[str, Any]) -> requests.Response:
        return requests.post(url, params={"pipelineJobId": job_id}, json=body, timeout=10)

    assert create("Bad_ID", {"pipelineSpec": spec, "runtimeConfig": runtime}).status_code == 400
    no_spec = create("ok-id", {"runtimeConfig": runtime})
    assert no_spec.status_code == 400 and "pipeline_spec" in no_spec.text
    no_root = create("ok-id", {"pipelineSpec": spec, "runtimeConfig": {}})
    assert no_root.status_code == 400
    unknown = {**runtime, "parameterValues": {"nope": 1}}
    assert create("ok-id", {"pipelineSpec": spec, "runtimeConfig": unknown}).status_code == 400
    assert create("ok-id", {"pipelineSpec": spec, "runtimeConfig": runtime}).status_code == 200
    again = create("ok-id", {"pipelineSpec": spec, "runtimeConfig": runtime})
    assert again.status_code == 409
    assert (
        cron_problem("0 3 * * *") is None
        and cron_problem("TZ=Europe/Paris */15 1-5 * * 1,3") is None
    )
    assert cron_problem("0 24 * * *") and cron_problem("0 3 * *") and cron_problem("5-1 * * * *")


def test_a_bad_template_is_refused_before_credentials_are_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The local checks (template, cron) run before the SDK looks for credentials, so a typo is
    named at once, also on a machine without application-default credentials."""

    def no_credentials(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("credentials were loaded before the template was checked")

    monkeypatch.setattr(pipeline_jobs.auth, "init_vertex", no_credentials)
    with pytest.raises(InputError, match="not found"):
        pipeline_jobs.submit(tmp_path / "missing.yaml", project="my-project")
    with pytest.raises(InputError, match="project is required"):
        pipeline_jobs.submit(tmp_path / "missing.yaml", project="")
