"""``routerlib doctor`` against stand-ins on 127.0.0.1, through the real SDKs: google-auth reads
the credentials file, google-genai lists tuning jobs on the Vertex stand-in, google-cloud-storage
reads bucket metadata and tests permissions on a strict Cloud Storage stand-in, the Vertex AI SDK
asks RecommendSpec. Each failing check is one clear line with its fix, the command exits 1, and
nothing is created."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from routerlib.cli import main
from tests.support.fake_vertex import FakeVertex
from tests.support.fake_vertex_serving import ServingState, add_serving_routes
from tests.support.gcs_stand_in import ALL_BUCKET_PERMISSIONS, GcsStandIn
from tests.support.recording_server import RecordingServer
from tests.support.vertex_params import EDITS

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "proj-doctor"
BUCKET = "doctor-bucket"
CHECKPOINT = f"gs://{BUCKET}/run/tuning/postprocess/node-0/checkpoints/final"
USER = "dev@example.com"


def _option(machine: str, accelerator: str, count: int, region: str, quota: str) -> dict:
    return {
        "spec": {
            "machineSpec": {
                "machineType": machine,
                "acceleratorType": accelerator,
                "acceleratorCount": count,
            }
        },
        "region": region,
        "userQuotaState": quota,
    }


@dataclass
class DoctorEnv:
    gcs: GcsStandIn
    fake: FakeVertex
    serving: ServingState
    capsys: pytest.CaptureFixture[str]
    #: params/llama31_8b.yaml with its input_path EDIT line edited (placeholders are refused)
    params: Path = ROOT / "params/llama31_8b.yaml"

    def run(self, *extra: str, checkpoint: str | None = CHECKPOINT) -> tuple[int, str]:
        argv = [
            "doctor",
            str(self.params),
            "--project",
            PROJECT,
            "--location",
            "us-central1",
            "--gcs-prefix",
            f"gs://{BUCKET}/run",
            "--api-endpoint",
            self.fake.url,
            *(("--checkpoint", checkpoint) if checkpoint else ()),
            *extra,
        ]
        code = main(argv)
        out, err = self.capsys.readouterr()
        return code, out + err

    def nothing_created(self) -> None:
        assert self.fake.tuning_jobs == {} and not self.fake.create_bodies()
        assert all(r.method == "GET" for r in self.gcs.server.requests)
        posts = [r.path for r in self.fake.server.requests if r.method != "GET"]
        assert all(p.endswith(":recommendSpec") for p in posts), posts


def _failures(out: str) -> list[str]:
    return [line for line in out.splitlines() if "  FAIL  " in line]


@pytest.fixture
def env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[DoctorEnv]:
    adc = tmp_path / "adc.json"
    adc.write_text(
        json.dumps(
            {
                "type": "authorized_user",
                "client_id": "id.apps.googleusercontent.com",
                "client_secret": "secret",
                "refresh_token": "refresh",
                "account": USER,
            }
        ),
        encoding="utf-8",
    )
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc))
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    server = RecordingServer()
    serving = add_serving_routes(server, ServingState())
    serving.recommendations = [
        _option("g2-standard-12", "NVIDIA_L4", 1, "us-central1", "QUOTA_STATE_USER_HAS_QUOTA")
    ]
    fake = FakeVertex(server=server)  # tuning routes on the same stand-in as RecommendSpec
    with GcsStandIn(caller=USER) as gcs, fake:
        gcs.add_bucket(BUCKET, "US-CENTRAL1", "region")
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs.url)
        params = tmp_path / "llama31_8b.yaml"
        shipped = yaml.safe_load((ROOT / "params/llama31_8b.yaml").read_text(encoding="utf-8"))
        params.write_text(yaml.safe_dump({**shipped, **EDITS}), encoding="utf-8")
        yield DoctorEnv(gcs, fake, serving, capsys, params)


def test_a_ready_project_passes_every_check_and_names_the_account(env: DoctorEnv) -> None:
    code, out = env.run()
    assert code == 0, out
    rows = {line.split("  ")[0]: line for line in out.splitlines()}
    assert f"application-default credentials of {USER}" in rows["credentials"]
    assert f"{PROJECT} (from params)" in rows["project"]
    assert "tuningJobs.list answered" in rows["Vertex AI API"]
    assert "US-CENTRAL1 (region) serves tuning in us-central1" in rows["bucket location"]
    assert f"{USER} holds storage.objects.create" in rows["bucket write access"]
    assert "g2-standard-12 with 1 x NVIDIA_L4 in us-central1 available, with quota" in out
    # the price table's date, and its age against Google's 90-day staleness line
    assert "price table" in rows and "dated 2026-12-07; oldest source 2026-07-08" in out
    assert _failures(out) == []
    # what went over the wire: the permissions asked for, one RecommendSpec with both checks
    (ask,) = [r for r in env.gcs.server.requests if r.path.endswith("/iam/testPermissions")]
    assert set(ask.query["permissions"]) == {
        "storage.objects.create",
        "storage.objects.get",
        "storage.objects.list",
    }
    (body,) = env.fake.server.bodies("POST", r":recommendSpec$")
    assert body["gcsUri"] == CHECKPOINT
    assert body["checkMachineAvailability"] is True and body["checkUserQuota"] is True
    env.nothing_created()


def test_a_missing_bucket_is_one_line_with_the_command_to_create_it(env: DoctorEnv) -> None:
    env.gcs.buckets.clear()
    code, out = env.run()
    assert code == 1
    (line,) = _failures(out)
    assert line.startswith("bucket exists") and f"gs://{BUCKET} does not exist" in line
    assert f"gcloud storage buckets create gs://{BUCKET} --location=us-central1" in line
    env.nothing_created()


def test_a_bucket_in_another_region_is_one_line(env: DoctorEnv) -> None:
    env.gcs.add_bucket(BUCKET, "europe-west4", "region")
    code, out = env.run()
    assert code == 1
    (line,) = _failures(out)
    assert line.startswith("bucket location")
    assert "is in EUROPE-WEST4 (region), not in us-central1 where the job tunes" in line


def test_a_global_job_wants_a_multi_region_bucket(env: DoctorEnv) -> None:
    code, out = env.run("--location", "global")  # the bucket is in US-CENTRAL1 only
    assert code == 1
    (line,) = _failures(out)
    assert "runs in us-central1 or europe-west4" in line and "multi-region" in line
    env.gcs.add_bucket(BUCKET, "US", "multi-region")
    code, out = env.run("--location", "global")
    assert code == 0 and _failures(out) == []
    # the global job's region list was listed on the global host path of the stand-in
    assert any("/locations/global/tuningJobs" in r.path for r in env.fake.server.requests)


def test_a_denied_permission_is_one_line_naming_it_and_the_account(env: DoctorEnv) -> None:
    env.gcs.add_bucket(
        BUCKET, "US-CENTRAL1", "region", granted=ALL_BUCKET_PERMISSIONS - {"storage.objects.create"}
    )
    code, out = env.run()
    assert code == 1
    (line,) = _failures(out)
    assert line.startswith("bucket write access")
    assert f"{USER} lacks storage.objects.create on gs://{BUCKET}" in line
    assert f"--member=user:{USER} --role=roles/storage.objectUser" in line


def test_no_quota_for_the_deploy_machine_is_one_line(env: DoctorEnv) -> None:
    env.serving.recommendations = [
        _option("g2-standard-12", "NVIDIA_L4", 1, "us-central1", "QUOTA_STATE_NO_USER_QUOTA"),
        _option(
            "a2-ultragpu-1g", "NVIDIA_A100_80GB", 1, "us-central1", "QUOTA_STATE_USER_HAS_QUOTA"
        ),
    ]
    code, out = env.run()
    assert code == 1
    (line,) = _failures(out)
    assert line.startswith("deploy machine")
    assert "no quota for g2-standard-12 with 1 x NVIDIA_L4 in us-central1" in line
    assert "request quota for 1 x NVIDIA_L4" in line
    env.nothing_created()


def test_a_machine_not_offered_in_the_region_is_one_line(env: DoctorEnv) -> None:
    env.serving.recommendations = [
        _option("g2-standard-12", "NVIDIA_L4", 1, "europe-west4", "QUOTA_STATE_USER_HAS_QUOTA")
    ]
    code, out = env.run()
    assert code == 1
    (line,) = _failures(out)
    assert "g2-standard-12 with 1 x NVIDIA_L4 in us-central1 is not available" in line
    assert "g2-standard-12 in europe-west4" in line


def test_missing_credentials_and_a_disabled_api_say_how_to_fix_them(
    env: DoctorEnv, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    env.fake.api_disabled = True
    code, out = env.run()
    assert code == 1
    credentials, api = _failures(out)
    assert credentials.startswith("credentials") and "application-default login" in credentials
    assert api.startswith("Vertex AI API")
    assert f"gcloud services enable aiplatform.googleapis.com --project={PROJECT}" in api


def test_an_untuned_run_skips_the_deploy_check_and_says_why(env: DoctorEnv) -> None:
    code, out = env.run(checkpoint=None)  # no checkpoint anywhere: no job, no custom base
    assert code == 0
    (line,) = [row for row in out.splitlines() if row.startswith("deploy machine")]
    assert "  skip  " in line and "RecommendSpec needs a checkpoint folder" in line
    assert not env.fake.server.bodies("POST", r":recommendSpec$")


def test_a_local_run_needs_no_cloud(env: DoctorEnv) -> None:
    code = main(["doctor", str(ROOT / "params/local.yaml")])
    out = env.capsys.readouterr().out
    assert code == 0
    assert "cloud checks" in out and "backend local: this run needs no cloud" in out
    assert env.fake.server.requests == [] and env.gcs.server.requests == []


def test_the_table_is_aligned_in_columns() -> None:
    from routerlib.doctor import FAIL, OK, SKIP, Check, render

    checks = [
        Check("credentials", OK, "application-default credentials of dev@example.com"),
        Check("bucket exists", FAIL, "gs://b does not exist", "gcloud storage buckets create"),
        Check("deploy machine", SKIP, "no project"),
    ]
    header, rule, *rows, summary = render(checks).splitlines()
    assert header.split() == ["CHECK", "STATUS", "FOUND", "FIX"]
    for column in ("STATUS", "FOUND", "FIX"):  # every cell starts under its heading
        at = header.index(column)
        assert all(row[at - 2 : at] == "  " and row[at] != " " for row in rows), column
    assert set(rule) <= {"-", " "} and len(rows) == 3
    assert rows[1].endswith("gcloud storage buckets create") and rows[0].endswith("-")
    assert summary == "(1 ok, 1 FAIL, 1 skip; nothing was created or billed)"
