# ruff: noqa: F811  (pytest fixtures imported from tests/support are redefined as arguments)
"""VertexBackend drives the real google-genai SDK against the Vertex REST stand-in on 127.0.0.1;
the assertions are on the requests that arrive."""

from __future__ import annotations

import socket

import pytest

from routerlib.config import run_default
from routerlib.errors import InputError
from routerlib.tuning import base, choose_backend, get_backend
from routerlib.tuning.base import (
    CANCELLED,
    CANCELLING,
    EXPIRED,
    FAILED,
    JOB_STATES,
    PENDING,
    QUEUED,
    RUNNING,
    SPEC_LABEL,
    SUCCEEDED,
    TuningSpec,
)
from routerlib.tuning.vertex import (
    ApiUnreachable,
    CredentialsProblem,
    QuotaExhausted,
    SubmissionRefused,
    SubmissionUnknown,
    VertexBackend,
    normalize_endpoint,
    request_body,
)
from tests.support.fake_vertex import ALLOWLIST_MODEL, FakeVertex, fake_vertex  # noqa: F401
from tests.support.tuning_env import gcs_emulator, tuning_env  # noqa: F401

PROJECT = "wire-project"
LOCATION = "europe-west4"
CREATE_PATH = f"/v1beta1/projects/{PROJECT}/locations/{LOCATION}/tuningJobs"


def _spec(**overrides: object) -> TuningSpec:
    fields: dict[str, object] = {
        "training_dataset_uri": "gs://bkt/data/train.jsonl",
        "validation_dataset_uri": "gs://bkt/data/validation.jsonl",
        "output_uri": "gs://bkt/tuning/full",
    }
    fields.update(overrides)
    return TuningSpec.build(**fields)


def _backend(fake: FakeVertex) -> VertexBackend:
    backend = get_backend("vertex", project=PROJECT, location=LOCATION, api_endpoint=fake.url)
    assert isinstance(backend, VertexBackend)
    return backend


def test_peft_spec_arrives_with_every_field(fake_vertex: FakeVertex) -> None:
    spec = _spec(
        adapter_size=8,
        epochs=5,
        learning_rate=2e-4,
        tuned_model_display_name="router-llama",
        labels={"team": "router", "stage": "full"},
        custom_base_model="gs://bkt/tuning/smoke/postprocess/node-0/checkpoints/final",
    )
    job = _backend(fake_vertex).submit(spec)

    (request,) = [r for r in fake_vertex.server.requests if r.method == "POST"]
    assert request.path == CREATE_PATH
    assert request.headers["authorization"] == "Bearer test-token"
    assert request.json() == {
        "baseModel": "meta/llama3_1@llama-3.1-8b-instruct",
        "supervisedTuningSpec": {
            "trainingDatasetUri": "gs://bkt/data/train.jsonl",
            "validationDatasetUri": "gs://bkt/data/validation.jsonl",
            "hyperParameters": {
                "epochCount": 5,
                "adapterSize": "ADAPTER_SIZE_EIGHT",
                "learningRate": 0.0002,
            },
            "tuningMode": "TUNING_MODE_PEFT_ADAPTER",
        },
        "tunedModelDisplayName": "router-llama",
        "customBaseModel": "gs://bkt/tuning/smoke/postprocess/node-0/checkpoints/final",
        "labels": {"team": "router", "stage": "full", SPEC_LABEL: spec.spec_hash()},
        "outputUri": "gs://bkt/tuning/full",
    }
    assert job.name.startswith(f"projects/{PROJECT}/locations/{LOCATION}/tuningJobs/")
    assert job.state == QUEUED
    assert (job.project, job.location, job.api_endpoint) == (PROJECT, LOCATION, fake_vertex.url)


def test_full_gemma_sends_learning_rate_never_the_multiplier(fake_vertex: FakeVertex) -> None:
    # This test used to assert that learningRateMultiplier is sent for Gemma: that encoded the
    # bug. google-genai documents the multiplier for Google's own models only ("1P models only")
    # and learning_rate for open ones ("OSS models only"); the stand-in refuses it as Vertex does.
    spec = _spec(
        base_model="google/gemma3@gemma-3-27b-it",
        tuning_mode="FULL",
        adapter_size=None,
        validation_dataset_uri=None,
        learning_rate=5e-5,
    )
    backend = _backend(fake_vertex)
    assert backend.preflight(spec) == []
    backend.submit(spec)
    (body,) = fake_vertex.create_bodies()
    assert body["baseModel"] == "google/gemma3@gemma-3-27b-it"
    sft = body["supervisedTuningSpec"]
    assert sft["tuningMode"] == "TUNING_MODE_FULL"
    assert sft["hyperParameters"] == {"epochCount": run_default("epochs"), "learningRate": 5e-5}
    assert "validationDatasetUri" not in sft
    assert "customBaseModel" not in body
    assert body["labels"] == {SPEC_LABEL: spec.spec_hash()}


def test_multiplier_on_an_open_model_is_refused_by_preflight_and_by_the_server(
    fake_vertex: FakeVertex,
) -> None:
    spec = _spec(base_model="google/gemma3@gemma-3-27b-it", learning_rate_multiplier=0.5)
    backend = _backend(fake_vertex)
    (problem,) = backend.preflight(spec)
    assert problem.startswith("learning_rate_multiplier:") and "use learning_rate" in problem
    assert fake_vertex.server.requests == []
    with pytest.raises(SubmissionRefused) as info:  # sent anyway: Vertex-shaped 400
        backend.submit(spec)
    assert (info.value.code, info.value.status) == (400, "INVALID_ARGUMENT")
    assert "set learning_rate instead" in info.value.detail
    assert fake_vertex.tuning_jobs == {}


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"tuning_mode": "FULL", "adapter_size": None, "learning_rate": 1e-5},
        {"adapter_size": 1, "labels": {"a": "b"}, "custom_base_model": "gs://bkt/ckpt"},
    ],
)
def test_dry_run_body_is_what_the_sdk_sends(fake_vertex: FakeVertex, overrides: dict) -> None:
    spec = _spec(**overrides)
    backend = _backend(fake_vertex)
    preview = backend.preview(spec)
    assert fake_vertex.server.requests == []  # building the preview sends nothing
    backend.submit(spec)
    (request,) = fake_vertex.server.requests
    assert preview["body"] == request.json() == request_body(spec.labelled())
    assert preview["url"] == fake_vertex.url + request.path


def test_states_progress_and_success_carries_stats_and_checkpoint(fake_vertex: FakeVertex) -> None:
    backend = _backend(fake_vertex)
    job = backend.submit(_spec())
    assert job.state == QUEUED and job.checkpoint_uri is None
    assert backend.get(job.name).state == RUNNING
    done = backend.get(job.name)
    assert done.state == SUCCEEDED and done.ended
    assert done.tuning_data_stats == {
        "tuning_dataset_example_count": 40,
        "total_billable_token_count": 61234,
        "tuning_step_count": 30,
        "total_truncated_example_count": 0,
    }
    assert done.checkpoint_uri == "gs://bkt/tuning/full/postprocess/node-0/checkpoints/final"
    # the spec is rebuilt from what the API echoes for a job fetched by name
    assert done.spec.adapter_size == 16 and done.spec.epochs == run_default("epochs")
    assert done.spec.training_dataset_uri == "gs://bkt/data/train.jsonl"
    gets = [r for r in fake_vertex.server.requests if r.method == "GET"]
    assert [r.path for r in gets] == [f"/v1beta1/{job.name}"] * 2


@pytest.mark.parametrize(
    ("progression", "state", "message"),
    [
        ([QUEUED, FAILED], FAILED, "dataset row 17 exceeds 4096 tokens"),
        ([PENDING, EXPIRED], EXPIRED, "waited too long for capacity"),
    ],
)
def test_failed_and_expired_are_end_states_with_messages(
    fake_vertex: FakeVertex, progression: list[str], state: str, message: str
) -> None:
    fake_vertex.progression = progression
    backend = _backend(fake_vertex)
    job = backend.get(backend.submit(_spec()).name)
    assert job.state == state
    assert job.ended and not job.succeeded
    assert message in (job.error or "")
    assert job.checkpoint_uri is None


def test_refused_base_model_raises_with_the_server_message(fake_vertex: FakeVertex) -> None:
    with pytest.raises(SubmissionRefused) as info:
        _backend(fake_vertex).submit(_spec(base_model=ALLOWLIST_MODEL))
    assert info.value.code == 400
    assert "requires allowlist" in info.value.detail
    assert "requires allowlist" in str(info.value)
    assert fake_vertex.tuning_jobs == {}


def test_qwen3_32b_is_tunable_peft_and_full(fake_vertex: FakeVertex) -> None:
    backend = _backend(fake_vertex)
    peft = backend.submit(_spec(base_model="qwen/qwen3@qwen3-32b"))
    full = backend.submit(
        _spec(base_model="qwen/qwen3@qwen3-32b", tuning_mode="FULL", adapter_size=None)
    )
    assert peft.state == full.state == QUEUED
    assert len(fake_vertex.tuning_jobs) == 2


def test_list_and_asynchronous_cancel(fake_vertex: FakeVertex) -> None:
    fake_vertex.progression = [QUEUED, RUNNING, RUNNING, RUNNING]
    backend = _backend(fake_vertex)
    first = backend.submit(_spec())
    second = backend.submit(_spec(epochs=1))
    listed = backend.list()
    assert [j.name for j in listed] == [first.name, second.name]
    assert listed[1].spec.epochs == 1
    cancelling = backend.cancel(first.name)
    assert cancelling.state == CANCELLING and not cancelling.ended
    assert any(r.path == f"/v1beta1/{first.name}:cancel" for r in fake_vertex.server.requests)
    done = backend.get(first.name)
    assert done.state == CANCELLED and done.ended


def test_unreachable_endpoint_is_a_remote_error() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backend = VertexBackend(PROJECT, LOCATION, f"http://127.0.0.1:{port}")
    with pytest.raises(ApiUnreachable, match="cannot reach Vertex AI"):
        backend.get(f"projects/{PROJECT}/locations/{LOCATION}/tuningJobs/1")


def test_endpoint_and_project_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    assert normalize_endpoint(None) is None
    assert normalize_endpoint("us-central1-aiplatform.googleapis.com") == (
        "https://us-central1-aiplatform.googleapis.com"
    )
    assert normalize_endpoint("http://localhost:8080/") == "http://localhost:8080"
    with pytest.raises(InputError, match="loopback"):
        normalize_endpoint("http://vertex.example.com")
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    with pytest.raises(InputError, match="GOOGLE_CLOUD_PROJECT"):
        VertexBackend()
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "env-project")
    monkeypatch.setenv("GOOGLE_CLOUD_REGION", "europe-west4")
    backend = VertexBackend()
    assert (backend.project, backend.location) == ("env-project", "europe-west4")
    assert backend.base_url == "https://europe-west4-aiplatform.googleapis.com"


def test_choose_backend() -> None:
    assert choose_backend("gs://b/train.jsonl") == "vertex"
    assert choose_backend("outputs/run/data/train.jsonl") == "local"
    assert choose_backend("gs://b/train.jsonl", "local") == "local"
    with pytest.raises(InputError, match="unknown tuning backend"):
        choose_backend("x", "sagemaker")


def test_every_sdk_job_state_is_known() -> None:
    from google.genai import types

    assert set(JOB_STATES) == {state.value for state in types.JobState}
    assert CANCELLING not in base.END_STATES  # a cancelling job may still end SUCCEEDED


def test_sub_states_are_reported(fake_vertex: FakeVertex) -> None:
    fake_vertex.progression = [
        f"{QUEUED}/TUNING_JOB_STATE_WAITING_FOR_QUOTA",
        f"{RUNNING}/TUNING_JOB_STATE_WAITING_FOR_CAPACITY",
        f"{RUNNING}/TUNING_JOB_STATE_TUNING",
        SUCCEEDED,
    ]
    backend = _backend(fake_vertex)
    job = backend.submit(_spec())
    seen = [(job.state, job.sub_state)]
    for _ in range(3):
        got = backend.get(job.name)
        seen.append((got.state, got.sub_state))
    assert seen == [
        (QUEUED, "TUNING_JOB_STATE_WAITING_FOR_QUOTA"),
        (RUNNING, "TUNING_JOB_STATE_WAITING_FOR_CAPACITY"),
        (RUNNING, "TUNING_JOB_STATE_TUNING"),
        (SUCCEEDED, None),
    ]


@pytest.mark.parametrize("fault", ["503", "500-created", "drop"])
def test_create_is_sent_once_and_an_unanswered_create_is_unknown(
    fake_vertex: FakeVertex, fault: str
) -> None:
    fake_vertex.create_faults = [fault]
    with pytest.raises(SubmissionUnknown):
        _backend(fake_vertex).submit(_spec())
    # the SDK's transport did not re-send it: a second POST would be a second billed job
    assert len(fake_vertex.create_bodies()) == 1
    assert len(fake_vertex.tuning_jobs) == (0 if fault == "503" else 1)


def test_credentials_problems_name_the_permission(fake_vertex: FakeVertex) -> None:
    fake_vertex.denied_permissions = {"aiplatform.tuningJobs.create"}
    with pytest.raises(CredentialsProblem) as info:
        _backend(fake_vertex).submit(_spec())
    assert info.value.permission == "aiplatform.tuningJobs.create"
    assert "lack the IAM permission aiplatform.tuningJobs.create" in str(info.value)
    assert not isinstance(info.value, SubmissionRefused)
    fake_vertex.denied_permissions = set()
    fake_vertex.token = "another-token"  # our static token is now rejected: 401
    with pytest.raises(CredentialsProblem, match="HTTP 401"):
        _backend(fake_vertex).submit(_spec())
    assert fake_vertex.tuning_jobs == {}


def test_quota_exhausted_is_its_own_error(fake_vertex: FakeVertex) -> None:
    fake_vertex.concurrent_quota = 1
    fake_vertex.progression = [QUEUED, RUNNING]
    backend = _backend(fake_vertex)
    backend.submit(_spec())
    with pytest.raises(QuotaExhausted, match="one concurrent open-model tuning job"):
        backend.submit(_spec(epochs=1))
    assert len(fake_vertex.tuning_jobs) == 1


def test_global_location_uses_the_global_endpoint(fake_vertex: FakeVertex) -> None:
    backend = VertexBackend(PROJECT, "global", fake_vertex.url)
    job = backend.submit(_spec())
    assert job.name.startswith(f"projects/{PROJECT}/locations/global/tuningJobs/")
    (request,) = fake_vertex.server.requests
    assert request.path == f"/v1beta1/projects/{PROJECT}/locations/global/tuningJobs"
    assert VertexBackend(PROJECT, "global").base_url == "https://aiplatform.googleapis.com"
    assert (
        VertexBackend(PROJECT, "us-east5").base_url == "https://us-east5-aiplatform.googleapis.com"
    )
    # a region the table does not list for tuning is refused before sending, and by the server
    elsewhere = VertexBackend(PROJECT, "asia-east1", fake_vertex.url)
    (problem,) = elsewhere.preflight(_spec())
    assert problem.startswith("location:") and "global" in problem
    with pytest.raises(SubmissionRefused, match="not supported in location asia-east1"):
        elsewhere.submit(_spec())


@pytest.mark.parametrize("label_filter", [True, False, "empty"])
def test_find_submitted_follows_every_page_and_matches_labels(
    fake_vertex: FakeVertex, label_filter: bool | str
) -> None:
    fake_vertex.progression = [QUEUED, RUNNING]
    fake_vertex.label_filter = label_filter  # False: refused (400); "empty": matches nothing
    backend = _backend(fake_vertex)
    backend.page_size = 2
    for epochs in (1, 2, 4, 5):  # other specs: other labels
        backend.submit(_spec(epochs=epochs))
    mine = backend.submit(_spec(epochs=3))
    assert backend.find_submitted(_spec(epochs=6)) is None
    found = backend.find_submitted(_spec(epochs=3))
    assert found is not None and found.name == mine.name
    lists = fake_vertex.requests("GET", r"/tuningJobs$")
    tokens = {r.query.get("pageToken", [""])[0] for r in lists}
    assert {"2", "4"} <= tokens  # all five jobs, two per page, every page read (for epochs=6)
    unfiltered = [r for r in lists if "filter" not in r.query]
    assert unfiltered  # a search without a match always ends with a full listing


def test_checkpoints_pair_the_api_with_the_bucket(tuning_env) -> None:  # type: ignore[no-untyped-def]
    from routerlib import storage

    fake = tuning_env.fake
    backend = VertexBackend(**tuning_env.backend_kwargs())
    job = backend.submit(tuning_env.spec(epochs=2))
    backend.get(job.name)
    done = backend.get(job.name)
    assert done.state == SUCCEEDED
    base = tuning_env.output_uri + "/postprocess/node-0/checkpoints"
    client = storage.gcs_client()
    bucket, prefix = storage.parse_gcs_uri(base)
    for folder in ("checkpoint-20", "checkpoint-10", "final"):
        client.bucket(bucket).blob(f"{prefix}/{folder}/model.safetensors").upload_from_string("w")
    points = backend.checkpoints(done)
    assert [(c.checkpoint_id, c.epoch, c.step, c.uri) for c in points] == [
        ("epoch-1", 1, 10, f"{base}/checkpoint-10"),
        ("epoch-2", 2, 20, f"{base}/checkpoint-20"),
        ("final", 2, 20, f"{base}/final"),
    ]
    assert fake.tuning_jobs[job.name]["resource"]["outputUri"] == tuning_env.output_uri
