"""Dedicated endpoints, deploy records, cleanup, hardware fit and deploy options, on the wire:
the real google-cloud-aiplatform SDK against the serving stand-in, whose dedicated endpoints
answer over HTTPS on 127.0.0.1 with a certificate made here (REQUESTS_CA_BUNDLE trusts it)."""

from __future__ import annotations

import _thread
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from routerlib import evaluate as ev
from routerlib.cli import main
from routerlib.errors import InputError, RemoteError
from routerlib.serving import hardware, vertex
from routerlib.serving.cache import load_cache
from routerlib.serving.online import OnlinePredictor
from routerlib.serving.settings import VertexSettings
from routerlib.serving.transports import VertexEndpointClient
from tests.support import gcs_emulator as emulator_support
from tests.support.fake_vertex_serving import (
    CANNED_COMPLETION,
    ServingStandIn,
    self_signed_cert,
)
from tests.support.gcs_emulator import GcsEmulator
from tests.support.recording_server import RecordingServer

pytestmark = pytest.mark.wire

gcs_emulator = emulator_support.gcs_emulator  # the fixture

CKPT = "gs://tuning-bucket/runs/r1/postprocess/node-0/checkpoints/final"


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return self_signed_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def _stand_in_server(cert: tuple[str, str]) -> Iterator[ServingStandIn]:
    with ServingStandIn(cert=cert) as stand_in:
        yield stand_in


@pytest.fixture
def stand_in(
    _stand_in_server: ServingStandIn,
    gcs_emulator: GcsEmulator,
    cert: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> ServingStandIn:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", cert[0])
    gcs_emulator.make_bucket("tuning-bucket")
    _stand_in_server.fresh(dedicated=True)
    return _stand_in_server


def cloud(server: RecordingServer) -> dict[str, str]:
    return {"project": "proj-1", "location": "us-central1", "api_endpoint": server.url}


def _gold(real_data: Path, tmp_path: Path, n: int) -> Path:
    lines = (real_data / "deep_router_benchmark.jsonl").read_text(encoding="utf-8").splitlines()
    path = tmp_path / "gold.jsonl"
    path.write_text("\n".join(lines[:n]) + "\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------ the status helper


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'Failed to make prediction request. Status code:429, response: {"error": '
            '{"code": 429, "message": "Quota exceeded"}}.',
            (429, "Quota exceeded"),
        ),
        (
            "Failed to make prediction request. Status code:503, response: upstream.",
            (503, "upstream"),
        ),
        (
            "Dedicated endpoint DNS is empty. Please make sure endpointand model are ready",
            (None, "dedicated endpoint not ready yet (no DNS assigned)"),
        ),
        ("gcs_uri must be specified.", None),
    ],
)
def test_dedicated_error_reads_the_status_from_the_text(
    text: str, expected: tuple[int | None, str] | None
) -> None:
    assert vertex.dedicated_error(ValueError(text)) == expected


# ------------------------------------------------------------------ dedicated predict


def test_deploy_is_dedicated_and_predict_goes_over_https(stand_in: ServingStandIn) -> None:
    server, state, tls = stand_in.server, stand_in.state, stand_in.tls
    assert tls is not None
    deployment = vertex.deploy(CKPT, VertexSettings(**cloud(server)))
    assert deployment.dedicated_endpoint_dns == state.dedicated_dns
    assert state.endpoints[deployment.endpoint_name]["dedicatedEndpointEnabled"] is True

    got = vertex.predict(
        deployment.endpoint_name, [{"prompt": "p", "raw_response": True}], **cloud(server)
    )

    assert got == [CANNED_COMPLETION]
    (body,) = tls.bodies("POST", r":predict$")
    assert body == {"instances": [{"prompt": "p", "raw_response": True}]}
    assert [r.path for r in tls.requests] == [f"/v1/{deployment.endpoint_name}:predict"]
    assert not server.bodies("POST", r":predict$")  # nothing on the shared address


def test_429_503_and_not_ready_are_retried_then_answered(
    stand_in: ServingStandIn, real_data: Path, tmp_path: Path
) -> None:
    server, state = stand_in.server, stand_in.state
    deployment = vertex.deploy(CKPT, VertexSettings(**cloud(server)))
    vertex._endpoint_cache.clear()
    state.dns_not_ready_gets = 2  # the first GET and the SDK's own re-fetch see no DNS
    state.predict_faults = [429, 503]
    gold = _gold(real_data, tmp_path, 1)
    client = VertexEndpointClient(deployment.endpoint_name, **cloud(server))

    pred = ev.generate_predictions(
        gold,
        predictor=OnlinePredictor(client, retries=5, backoff_s=0.01),
        cache_path=tmp_path / "c.cache.jsonl",
        progress=False,
    )

    (record,) = load_cache(tmp_path / "c.cache.jsonl").values()
    assert record["attempts"] == 4  # not ready, 429, 503, answer
    assert json.loads(pred.read_text())["completion"].startswith('{"route_plan"')
    assert len(stand_in.tls.bodies("POST", r":predict$")) == 3  # type: ignore[union-attr]


@pytest.mark.parametrize("status", [400, 401, 403])
def test_client_errors_stop_with_one_line(
    stand_in: ServingStandIn,
    real_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    status: int,
) -> None:
    server, state = stand_in.server, stand_in.state
    deployment = vertex.deploy(CKPT, VertexSettings(**cloud(server)))
    state.predict_status = status
    gold = _gold(real_data, tmp_path, 2)
    argv = ["evaluate", "--gold", str(gold), "--endpoint", deployment.endpoint_name]
    argv += ["--out", str(tmp_path / "r.json"), "--api-endpoint", server.url, "--no-progress"]
    argv += ["--concurrency", "1"]

    code = main(argv)

    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 3 and len(lines) == 1 and "Traceback" not in err
    assert f"HTTP {status}" in lines[0]
    assert len(stand_in.tls.bodies("POST", r":predict$")) == 1  # type: ignore[union-attr]


def test_shared_endpoints_made_elsewhere_still_predict(stand_in: ServingStandIn) -> None:
    server, state = stand_in.server, stand_in.state
    endpoint = state.add_endpoint("proj-1", "us-central1", "made-elsewhere")
    got = vertex.predict(endpoint["name"], [{"prompt": "p", "raw_response": True}], **cloud(server))
    assert got == [CANNED_COMPLETION]
    assert server.bodies("POST", r":predict$") and not stand_in.tls.requests  # type: ignore[union-attr]


# ------------------------------------------------------------------ nothing leaks


def test_deploy_is_recorded_before_the_wait_and_a_timeout_names_cleanup(
    stand_in: ServingStandIn,
) -> None:
    server, state = stand_in.server, stand_in.state
    state.lro_polls = 10_000  # the deploy never finishes
    with pytest.raises(RemoteError, match="routerlib endpoints cleanup") as info:
        vertex.deploy(
            CKPT,
            VertexSettings(**cloud(server)),
            endpoint_display_name="slow-one",
            deploy_timeout=1.0,
        )
    (record,) = vertex.REGISTRY.read()
    assert record["state"] == "deploying"
    assert record["operation_name"] in state.operations
    ids = record["endpoint_name"].rsplit("/", 1)[1]
    assert ids.startswith("slow-one-") and record["endpoint_name"] in state.endpoints
    assert record["model_name"] == f"projects/proj-1/locations/us-central1/models/{ids}"
    assert record["endpoint_name"] in str(info.value)

    state.lro_polls = 0
    removed = vertex.cleanup()
    assert removed == [record["endpoint_name"]]
    assert state.endpoints == {} and state.models == {}
    (record,) = vertex.REGISTRY.read()
    assert (record["state"], record["model_state"]) == ("deleted", "deleted")


def test_losing_the_operation_does_not_delete_a_deploy_still_running(
    stand_in: ServingStandIn,
) -> None:
    server, state = stand_in.server, stand_in.state
    state.lro_polls = 10_000
    state.operation_status = 500
    with pytest.raises(RemoteError, match="lost track of the deploy") as info:
        vertex.deploy(CKPT, VertexSettings(**cloud(server)), deploy_timeout=30)
    assert "routerlib endpoints cleanup" in str(info.value)
    (record,) = vertex.REGISTRY.read()
    assert record["state"] == "deploying" and record["endpoint_name"] in state.endpoints
    assert not [r for r in server.requests if r.method == "DELETE"]


def test_ctrl_c_during_the_wait_leaves_the_record(
    stand_in: ServingStandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    server, state = stand_in.server, stand_in.state
    state.lro_polls = 10_000
    state.on_poll = _thread.interrupt_main  # Ctrl-C while it waits
    with pytest.raises(KeyboardInterrupt):
        vertex.deploy(CKPT, VertexSettings(**cloud(server)))
    (record,) = vertex.REGISTRY.read()
    assert record["state"] == "deploying" and record["endpoint_name"] in state.endpoints
    assert "routerlib endpoints cleanup" in capsys.readouterr().err


def test_a_refused_deploy_is_recorded_as_refused_and_left_alone(
    stand_in: ServingStandIn,
) -> None:
    server, state = stand_in.server, stand_in.state
    taken = "routerlib-20261201-000000-abcdef"  # an endpoint id someone else already uses
    state.add_endpoint("proj-1", "us-central1", "not ours", endpoint_id=taken)
    with pytest.raises(RemoteError, match="409"):
        vertex.deploy(CKPT, VertexSettings(**cloud(server)), endpoint_display_name=taken)
    (refused,) = vertex.REGISTRY.read()
    assert (refused["state"], refused["model_state"], refused["operation_name"]) == (
        "refused",
        "deleted",
        "",
    )
    assert vertex.cleanup() == []  # nothing of ours to remove; theirs stays
    assert f"projects/proj-1/locations/us-central1/endpoints/{taken}" in state.endpoints

    mine = vertex.deploy(CKPT, VertexSettings(**cloud(server)))
    with pytest.raises(InputError, match="already recorded"):
        vertex.deploy(
            CKPT, VertexSettings(**cloud(server)), endpoint_display_name=mine.endpoint_display_name
        )


def test_the_same_display_name_twice_makes_two_endpoints(stand_in: ServingStandIn) -> None:
    server, state = stand_in.server, stand_in.state
    first = vertex.deploy(
        CKPT, VertexSettings(**cloud(server)), endpoint_display_name="Router Eval!"
    )
    second = vertex.deploy(
        CKPT, VertexSettings(**cloud(server)), endpoint_display_name="Router Eval!"
    )
    assert first.endpoint_name != second.endpoint_name
    assert {e["displayName"] for e in state.endpoints.values()} == {"Router Eval!"}


def test_endpoints_cleanup_cli_removes_recorded_and_named_but_not_others(
    stand_in: ServingStandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    server, state = stand_in.server, stand_in.state
    recorded = vertex.deploy(CKPT, VertexSettings(**cloud(server)))
    assert state.endpoints[recorded.endpoint_name]["labels"] == {"routerlib": "deploy"}
    stray = state.add_endpoint("proj-1", "us-central1", "routerlib-20261130-000000-abcdef")
    labelled = vertex.deploy(CKPT, VertexSettings(**cloud(server)), endpoint_display_name="custom")
    vertex.REGISTRY.path().unlink()  # another machine: only the label and the name remain
    other = state.add_endpoint("proj-1", "us-central1", "someone-elses")

    code = main(["endpoints", "cleanup", "--project", "proj-1", "--api-endpoint", server.url])

    out = capsys.readouterr().out
    assert code == 0
    assert set(state.endpoints) == {other["name"]}
    assert {recorded.endpoint_name, stray["name"], labelled.endpoint_name} <= set(out.split())
    assert recorded.model_name not in state.models  # the uploaded models went too
    assert labelled.model_name not in state.models
    assert other["deployedModels"][0]["model"] in state.models


def test_routerlib_deploy_cli_cleans_up_a_failed_deploy(
    stand_in: ServingStandIn, gcs_emulator: GcsEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    server, state = stand_in.server, stand_in.state
    _index(gcs_emulator, 16 * 10**9)  # the tuned checkpoint is there (the CLI checks it first)
    state.deploy_error = "quota exceeded for NVIDIA_L4"
    argv = ["deploy", "--checkpoint", CKPT, "--project", "proj-1", "--api-endpoint", server.url]
    assert main(argv) == 3
    assert "quota exceeded" in capsys.readouterr().err
    assert state.endpoints == {} and state.models == {}


# ------------------------------------------------------------------ hardware that fits


def _index(gcs: GcsEmulator, total: int) -> None:
    bucket = gcs.client().bucket("tuning-bucket")
    path = CKPT.removeprefix("gs://tuning-bucket/")
    index = {"metadata": {"total_size": total}, "weight_map": {}}
    bucket.blob(f"{path}/model.safetensors.index.json").upload_from_string(json.dumps(index))
    bucket.blob(f"{path}/config.json").upload_from_string("{}")


def test_a_checkpoint_too_big_for_the_machine_is_refused_before_sending(
    stand_in: ServingStandIn, gcs_emulator: GcsEmulator
) -> None:
    server = stand_in.server
    _index(gcs_emulator, 54_000_000_000)  # a 27B model in bf16
    with pytest.raises(InputError, match="do not fit g2-standard-12 with 1 x NVIDIA_L4") as info:
        vertex.deploy(
            CKPT,
            VertexSettings(
                **cloud(server),
                machine_type="g2-standard-12",
                accelerator_type="NVIDIA_L4",
                accelerator_count=1,
            ),
        )
    assert "g2-standard-48 with 4 x NVIDIA_L4" in str(info.value)
    assert not server.requests

    deployment = vertex.deploy(
        CKPT, VertexSettings(**cloud(server)), base_model="google/gemma3@gemma-3-27b-it"
    )
    (body,) = server.bodies("POST", r":deploy$")
    spec = body["deployConfig"]["dedicatedResources"]["machineSpec"]
    assert (spec["machineType"], spec["acceleratorCount"]) == ("g2-standard-48", 4)
    assert deployment.machine_type == "g2-standard-48"


def test_checkpoint_size_from_blob_sizes(gcs_emulator: GcsEmulator) -> None:
    gcs_emulator.make_bucket("tuning-bucket")
    bucket = gcs_emulator.client().bucket("tuning-bucket")
    path = CKPT.removeprefix("gs://tuning-bucket/")
    bucket.blob(f"{path}/model-00001-of-00002.safetensors").upload_from_string(b"x" * 300)
    bucket.blob(f"{path}/model-00002-of-00002.safetensors").upload_from_string(b"x" * 200)
    bucket.blob(f"{path}/tokenizer.json").upload_from_string(b"x" * 999)
    assert hardware.checkpoint_bytes(CKPT) == 500


def test_list_options_prints_every_option_and_which_lack_quota(
    stand_in: ServingStandIn, gcs_emulator: GcsEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    server, state = stand_in.server, stand_in.state
    _index(gcs_emulator, 54_000_000_000)
    state.recommendations = [
        {
            "spec": {
                "machineSpec": {
                    "machineType": "g2-standard-48",
                    "acceleratorType": "NVIDIA_L4",
                    "acceleratorCount": 4,
                }
            },
            "region": "us-central1",
            "userQuotaState": "QUOTA_STATE_USER_HAS_QUOTA",
        },
        {
            "spec": {
                "machineSpec": {
                    "machineType": "a3-highgpu-1g",
                    "acceleratorType": "NVIDIA_H100_80GB",
                    "acceleratorCount": 1,
                }
            },
            "region": "us-central1",
            "userQuotaState": "QUOTA_STATE_NO_USER_QUOTA",
        },
        {
            "spec": {
                "machineSpec": {
                    "machineType": "g2-standard-12",
                    "acceleratorType": "NVIDIA_L4",
                    "acceleratorCount": 1,
                }
            },
            "region": "us-central1",
            "userQuotaState": "QUOTA_STATE_USER_HAS_QUOTA",
        },
    ]
    argv = ["deploy", "--list-options", "--checkpoint", CKPT, "--project", "proj-1"]
    code = main([*argv, "--api-endpoint", server.url])

    out, err = capsys.readouterr()
    assert code == 0
    rows = [line.split("\t") for line in out.splitlines()[1:]]
    assert rows == [
        ["g2-standard-48", "NVIDIA_L4", "4", "us-central1", "has quota", "fits"],
        ["a3-highgpu-1g", "NVIDIA_H100_80GB", "1", "us-central1", "NO QUOTA", "fits"],
        ["g2-standard-12", "NVIDIA_L4", "1", "us-central1", "has quota", "too small"],
    ]
    assert "1 option(s) lack quota" in err and "54.0 GB" in err
    (body,) = server.bodies("POST", r":recommendSpec$")
    assert body["gcsUri"] == CKPT and body["checkUserQuota"] is True
    assert not server.bodies("POST", r":deploy$")
