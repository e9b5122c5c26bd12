"""Vertex deploy / predict / cleanup with the real google-cloud-aiplatform SDK, checked on the
wire against the serving stand-in (tests/support/fake_vertex_serving.py) on 127.0.0.1."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from routerlib import auth
from routerlib.errors import RemoteError
from routerlib.serving import vertex
from routerlib.serving.local import LocalPredictor
from routerlib.serving.settings import VertexSettings
from tests.support import gcs_emulator as emulator_support
from tests.support.fake_vertex_serving import (
    CANNED_COMPLETION,
    ServingStandIn,
    ServingState,
    predictor_predict,
)
from tests.support.gcs_emulator import GcsEmulator
from tests.support.recording_server import RecordingServer
from tests.support.tiny_serving_model import load_plain, tiny_checkpoint_fixture

pytestmark = pytest.mark.wire

gcs_emulator = emulator_support.gcs_emulator  # the fixture

tiny_checkpoint = pytest.fixture(scope="session")(tiny_checkpoint_fixture)

CKPT = "gs://tuning-bucket/runs/r1/postprocess/node-0/checkpoints/final"


@pytest.fixture(scope="module")
def _stand_in_server() -> Iterator[ServingStandIn]:
    with ServingStandIn() as stand_in:
        yield stand_in


@pytest.fixture
def stand_in(
    _stand_in_server: ServingStandIn, gcs_emulator: GcsEmulator
) -> tuple[RecordingServer, ServingState]:
    gcs_emulator.make_bucket("tuning-bucket")  # the checkpoint's bucket (its size is read)
    return _stand_in_server.fresh()


def cloud(server: RecordingServer) -> dict[str, str]:
    return {"project": "proj-1", "location": "us-central1", "api_endpoint": server.url}


def test_deploy_request_body_and_registry(stand_in: tuple[RecordingServer, ServingState]) -> None:
    from google.cloud.aiplatform_v1beta1.types import AcceleratorType

    server, state = stand_in
    state.lro_polls = 1  # the SDK must poll the deploy operation once
    deployment = vertex.deploy(
        CKPT,
        VertexSettings(**cloud(server), machine_type="g2-standard-24", accelerator_count=2),
        endpoint_display_name="router-eval",
    )

    (body,) = server.bodies("POST", r"^/v1beta1/projects/proj-1/locations/us-central1:deploy$")
    assert body["customModel"] == {"gcsUri": CKPT}
    ids = body["endpointConfig"]["endpointUserId"]
    assert re.fullmatch(r"router-eval-[0-9a-f]{6}", ids)  # a caller's name gets a unique suffix
    assert body["endpointConfig"] == {"endpointDisplayName": "router-eval", "endpointUserId": ids}
    assert body["modelConfig"] == {"modelDisplayName": "router-eval", "modelUserId": ids}
    resources = body["deployConfig"]["dedicatedResources"]
    spec = resources["machineSpec"]
    assert spec["machineType"] == "g2-standard-24"
    assert AcceleratorType(spec["acceleratorType"]).name == "NVIDIA_L4"
    assert spec["acceleratorCount"] == 2
    assert (resources["minReplicaCount"], resources["maxReplicaCount"]) == (1, 1)
    polls = [r for r in server.requests if "/operations/" in r.path]
    assert len(polls) >= 1

    assert deployment.endpoint_name == f"projects/proj-1/locations/us-central1/endpoints/{ids}"
    assert deployment.model_name == f"projects/proj-1/locations/us-central1/models/{ids}"
    assert deployment.endpoint_name in state.endpoints
    endpoint = state.endpoints[deployment.endpoint_name]
    assert deployment.model_name == endpoint["deployedModels"][0]["model"]
    assert deployment.deployed_model_ids == [endpoint["deployedModels"][0]["id"]]
    assert state.models[deployment.model_name]["artifactUri"] == CKPT

    registry = json.loads(vertex.REGISTRY.path().read_text())["endpoints"]
    assert len(registry) == 1
    assert registry[0]["endpoint_name"] == deployment.endpoint_name
    assert registry[0]["checkpoint_uri"] == CKPT
    assert (registry[0]["project"], registry[0]["location"], registry[0]["api_endpoint"]) == (
        "proj-1",
        "us-central1",
        server.url,
    )
    assert registry[0]["state"] == "deployed"


def test_default_deploy_uses_l4_and_a_unique_display_name(
    stand_in: tuple[RecordingServer, ServingState],
) -> None:
    server, _ = stand_in
    first = vertex.deploy(CKPT, VertexSettings(**cloud(server)))
    second = vertex.deploy(CKPT, VertexSettings(**cloud(server)))
    bodies = server.bodies("POST", r":deploy$")
    spec = bodies[0]["deployConfig"]["dedicatedResources"]["machineSpec"]
    assert spec["machineType"] == "g2-standard-12" and spec["acceleratorCount"] == 1
    assert first.endpoint_display_name.startswith("routerlib-")
    assert first.endpoint_display_name != second.endpoint_display_name
    assert first.endpoint_name.endswith("/endpoints/" + first.endpoint_display_name)
    assert len(vertex.REGISTRY.read()) == 2


def test_non_gcs_checkpoint_is_refused_before_any_request(
    stand_in: tuple[RecordingServer, ServingState],
) -> None:
    server, _ = stand_in
    with pytest.raises(vertex.InputError, match="gs://"):
        vertex.deploy("/tmp/ckpt", VertexSettings(**cloud(server)))
    assert server.requests == []


def test_predict_instances_reach_the_endpoint(
    stand_in: tuple[RecordingServer, ServingState], tiny_checkpoint: Path
) -> None:
    server, state = stand_in
    predictor = LocalPredictor(tiny_checkpoint, loader=load_plain)
    state.predict_fn = predictor_predict(predictor)
    deployment = vertex.deploy(CKPT, VertexSettings(**cloud(server)))
    instances = [
        {"prompt": "Route this request", "max_tokens": 8, "temperature": 0, "raw_response": True},
        {"prompt": "x", "max_tokens": 5, "temperature": 0, "raw_response": True},
    ]
    got = vertex.predict(deployment.endpoint_name, instances, **cloud(server))

    assert got == [r.text for r in predictor.generate(["Route this request", "x"], [8, 5])]
    (body,) = server.bodies("POST", r"/endpoints/[^/]+:predict$")
    assert body["instances"] == instances  # numbers travel as protobuf Values (8 == 8.0)
    assert all(inst["raw_response"] is True for inst in body["instances"])


def test_predict_by_id_uses_the_registry(stand_in: tuple[RecordingServer, ServingState]) -> None:
    server, _ = stand_in
    deployment = vertex.deploy(CKPT, VertexSettings(**cloud(server)))
    endpoint_id = deployment.endpoint_name.rsplit("/", 1)[1]
    got = vertex.predict(endpoint_id, [{"prompt": "p", "max_tokens": 4, "raw_response": True}])
    assert got == [CANNED_COMPLETION]


@pytest.mark.parametrize(("status", "retryable"), [(429, True), (503, True), (400, False)])
def test_predict_errors_carry_status(
    stand_in: tuple[RecordingServer, ServingState], status: int, retryable: bool
) -> None:
    server, state = stand_in
    deployment = vertex.deploy(CKPT, VertexSettings(**cloud(server)))
    state.predict_status = status
    with pytest.raises(vertex.PredictError) as info:
        vertex.predict(deployment.endpoint_name, [{"prompt": "p"}], **cloud(server))
    assert info.value.status_code == status
    assert info.value.retryable is retryable
    assert info.value.exit_code == 3


def test_list_endpoints_live_and_recorded(stand_in: tuple[RecordingServer, ServingState]) -> None:
    server, state = stand_in
    deployment = vertex.deploy(CKPT, VertexSettings(**cloud(server)))
    other = state.add_endpoint("proj-1", "us-central1", "made-elsewhere", models=2)
    state.add_endpoint("proj-2", "us-central1", "another-project")

    live = {e.endpoint_name: e for e in vertex.list_endpoints(**cloud(server))}
    assert set(live) == {deployment.endpoint_name, other["name"]}
    assert live[deployment.endpoint_name].checkpoint_uri == CKPT
    assert live[other["name"]].deployed_model_ids == [d["id"] for d in other["deployedModels"]]
    assert live[other["name"]].checkpoint_uri == ""
    assert server.bodies("GET", r"^/v1/projects/proj-1/locations/us-central1/endpoints$")

    recorded = vertex.list_endpoints()
    assert [e.endpoint_name for e in recorded] == [deployment.endpoint_name]


def test_delete_undeploys_every_model_then_deletes(
    stand_in: tuple[RecordingServer, ServingState],
) -> None:
    server, state = stand_in
    endpoint = state.add_endpoint("proj-1", "us-central1", "three-models", models=3)
    ids = [d["id"] for d in endpoint["deployedModels"]]
    name = endpoint["name"]

    undeployed = vertex.delete_endpoint(name, **cloud(server))

    assert sorted(undeployed) == sorted(ids)
    calls = [(r.method, r.path) for r in server.requests if r.method in ("POST", "DELETE")]
    assert calls[-1] == ("DELETE", f"/v1/{name}")
    undeploys = server.bodies("POST", r":undeployModel$")
    assert sorted(b["deployedModelId"] for b in undeploys) == sorted(ids)
    assert [m for m, _ in calls[:-1]] == ["POST"] * 3
    assert name not in state.endpoints and state.deleted == [name]


def test_delete_by_name_alone_finds_the_recorded_stand_in(
    stand_in: tuple[RecordingServer, ServingState],
) -> None:
    server, state = stand_in
    deployment = vertex.deploy(CKPT, VertexSettings(**cloud(server)))
    assert vertex.delete_endpoint(deployment.endpoint_name) == deployment.deployed_model_ids
    assert state.endpoints == {}
    (record,) = vertex.REGISTRY.read()
    assert record["state"] == "deleted" and record["deleted_at"]
    # Deleting again is not an error: the endpoint is already gone.
    assert vertex.delete_endpoint(deployment.endpoint_name) == []


def test_deployed_cleans_up_when_the_body_raises(
    stand_in: tuple[RecordingServer, ServingState],
) -> None:
    server, state = stand_in
    with pytest.raises(RuntimeError, match="cell failed"):
        with vertex.deployed(CKPT, VertexSettings(**cloud(server))) as deployment:
            assert deployment.endpoint_name in state.endpoints
            raise RuntimeError("cell failed")
    assert state.endpoints == {} and state.models == {}
    assert state.deleted == [deployment.endpoint_name, deployment.model_name]
    assert server.bodies("POST", r":undeployModel$") == [
        {"deployedModelId": deployment.deployed_model_ids[0]}
    ]


def test_deployed_cleans_up_on_success(stand_in: tuple[RecordingServer, ServingState]) -> None:
    server, state = stand_in
    with vertex.deployed(CKPT, VertexSettings(**cloud(server))) as deployment:
        got = vertex.predict(
            deployment.endpoint_name, [{"prompt": "p", "raw_response": True}], **cloud(server)
        )
        assert got == [CANNED_COMPLETION]
    assert state.endpoints == {}


def test_failed_deploy_removes_the_endpoint_vertex_created(
    stand_in: tuple[RecordingServer, ServingState],
) -> None:
    server, state = stand_in
    state.deploy_error = "quota exceeded for NVIDIA_L4"
    with pytest.raises(RemoteError, match="quota exceeded"):
        with vertex.deployed(CKPT, VertexSettings(**cloud(server))):
            pytest.fail("the body must not run when deploy fails")
    assert state.endpoints == {}
    assert len(state.deleted) == 2  # the endpoint and the model it uploaded
    (record,) = vertex.REGISTRY.read()
    assert record["state"] == "deleted" and record["model_state"] == "deleted"


def test_failed_cleanup_names_the_endpoint_to_delete(
    stand_in: tuple[RecordingServer, ServingState],
) -> None:
    server, state = stand_in
    with pytest.raises(RemoteError, match="routerlib endpoints delete projects/proj-1/") as info:
        with vertex.deployed(CKPT, VertexSettings(**cloud(server))) as deployment:
            state.delete_status = 500
    assert deployment.endpoint_name in str(info.value)
    (record,) = vertex.REGISTRY.read()
    assert record["state"] == "deployed"  # still listed by `routerlib endpoints list`


def test_real_service_without_credentials_is_a_clear_input_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))  # no gcloud ADC file here
    with pytest.raises(vertex.InputError, match="application-default credentials"):
        auth.init_vertex("proj-1", "us-central1", "")
