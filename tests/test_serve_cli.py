"""``routerlib deploy``, ``routerlib endpoints list|delete`` and ``routerlib serve``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from routerlib.cli import main
from routerlib.serving import vertex
from tests.support.fake_vertex_serving import ServingStandIn, ServingState
from tests.support.recording_server import RecordingServer
from tests.support.tiny_serving_model import tiny_checkpoint_fixture

ROOT = Path(__file__).resolve().parent.parent
CKPT = "gs://bucket/run/postprocess/node-0/checkpoints/final"

tiny_checkpoint = pytest.fixture(scope="session")(tiny_checkpoint_fixture)


@pytest.fixture(scope="module")
def _stand_in_server() -> Iterator[ServingStandIn]:
    with ServingStandIn() as stand_in:
        yield stand_in


@pytest.fixture
def stand_in(_stand_in_server: ServingStandIn) -> tuple[RecordingServer, ServingState]:
    return _stand_in_server.fresh()


@pytest.mark.wire
def test_deploy_list_delete(
    stand_in: tuple[RecordingServer, ServingState], capsys: pytest.CaptureFixture[str]
) -> None:
    server, state = stand_in
    code = main(
        [
            "deploy",
            "--checkpoint",
            CKPT,
            "--project",
            "proj-1",
            "--api-endpoint",
            server.url,
            "--accelerator-count",
            "2",
            "--endpoint-display-name",
            "cli-ep",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    (name,) = state.endpoints
    assert out.strip() == name
    (body,) = server.bodies("POST", r":deploy$")
    assert body["deployConfig"]["dedicatedResources"]["machineSpec"]["acceleratorCount"] == 2
    assert body["endpointConfig"]["endpointDisplayName"] == "cli-ep"

    assert main(["endpoints", "list"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert rows[0].split("\t")[0] == "endpoint"
    assert rows[1].split("\t")[:3] == [name, "cli-ep", "deployed"]
    assert rows[1].split("\t")[-1] == CKPT

    assert main(["endpoints", "list", "--project", "proj-1", "--api-endpoint", server.url]) == 0
    assert name in capsys.readouterr().out

    assert main(["endpoints", "delete", name]) == 0  # project and stand-in from the registry
    assert capsys.readouterr().out.startswith(f"deleted {name}")
    assert state.endpoints == {} and state.deleted == [name]
    assert vertex.REGISTRY.read()[0]["state"] == "deleted"


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["deploy", "--checkpoint", "/local/ckpt", "--project", "p"], "gs://"),
        (["deploy", "--checkpoint", CKPT, "--project", ""], "project"),
        (["endpoints", "delete", "12345", "--project", ""], "--project"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    argv: list[str],
    needle: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]
    assert "Traceback" not in err[0]


def test_list_options_without_a_project_is_refused_before_any_call(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    asked: list[dict] = []
    monkeypatch.setattr(vertex, "deploy_options", lambda *a, **kw: asked.append(kw) or [])
    assert main(["deploy", "--list-options", "--checkpoint", CKPT]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "no Google Cloud project" in line and "--project" in line
    assert "GOOGLE_CLOUD_PROJECT" in line and "--params" in line
    assert asked == []


@pytest.mark.wire
def test_remote_failure_is_exit_3(
    stand_in: tuple[RecordingServer, ServingState], capsys: pytest.CaptureFixture[str]
) -> None:
    server, state = stand_in
    state.deploy_error = "no L4 capacity"
    code = main(["deploy", "--checkpoint", CKPT, "--project", "p", "--api-endpoint", server.url])
    assert code == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert "no L4 capacity" in err[-1] and not any("Traceback" in line for line in err)


def test_serve_prints_the_url_answers_and_stops_on_ctrl_c(tiny_checkpoint: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "routerlib", "serve", "--checkpoint", str(tiny_checkpoint)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = process.stdout.readline().strip()  # type: ignore[union-attr]
        assert url.startswith("http://127.0.0.1:") and url.endswith(":predict"), url
        request = urllib.request.Request(
            url,
            data=json.dumps(
                {
                    "instances": [
                        {
                            "prompt": "hello",
                            "max_tokens": 3,
                            "temperature": 0,
                            "raw_response": True,
                        },
                    ]
                }
            ).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            body = json.loads(response.read())
        assert len(body["predictions"]) == 1 and isinstance(body["predictions"][0], str)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_unreachable_api_endpoint_is_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = main(
        [
            "deploy",
            "--checkpoint",
            CKPT,
            "--project",
            "p",
            "--api-endpoint",
            f"http://127.0.0.1:{port}",
        ]
    )
    assert code == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("routerlib deploy: deploy gs://")
    assert not any("Traceback" in line for line in err)


def test_serve_refuses_a_gcs_uri(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--checkpoint", CKPT]) == 2
    assert "local folder" in capsys.readouterr().err
