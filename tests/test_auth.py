"""routerlib.auth: which addresses get Google credentials; the token exchange on the wire (a
service-account key whose token_uri is a stand-in on 127.0.0.1)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from routerlib import auth
from routerlib.serving.transports import PredictClient
from tests.support.recording_server import RecordingServer

P = "/v1/projects/p/locations/us-central1/endpoints/123:predict"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (f"https://us-central1-aiplatform.googleapis.com{P}", True),
        (f"https://aiplatform.googleapis.com{P}", True),
        (f"https://123.us-central1-4567.prediction.vertexai.goog{P}", True),
        (f"https://us-central1-aiplatform.googleapis.com{P.replace('v1', 'v1beta1')}", True),
        (f"http://us-central1-aiplatform.googleapis.com{P}", False),  # never over plain http
        (f"https://example.com{P}", False),  # not a Vertex host
        ("https://evil-aiplatform.googleapis.com.example.com" + P, False),
        ("https://us-central1-aiplatform.googleapis.com/v1/models", False),  # not a predict path
        (f"http://127.0.0.1:8080{P}", False),  # loopback stand-in: anonymous
    ],
)
def test_the_rule(url: str, expected: bool) -> None:
    assert auth.needs_credentials(url) is expected


def test_loopback() -> None:
    assert auth.is_loopback("http://127.0.0.1:9")
    assert auth.is_loopback("http://localhost:9/v1")
    assert not auth.is_loopback("https://127.0.0.1:9")
    assert not auth.is_loopback("http://10.0.0.5:9")


def _service_account(tmp_path: Path, token_uri: str) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "proj-1",
        "private_key_id": "k1",
        "private_key": pem,
        "client_email": "router@proj-1.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": token_uri,
    }
    path = tmp_path / "sa.json"
    path.write_text(json.dumps(info))
    return path


def test_bearer_token_comes_from_application_default_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with RecordingServer() as server:

        @server.route("POST", "/token")
        def token(req, m):  # type: ignore[no-untyped-def]
            return 200, {"access_token": f"tok-{time.time_ns()}", "expires_in": 3600}

        monkeypatch.setenv(
            "GOOGLE_APPLICATION_CREDENTIALS", str(_service_account(tmp_path, f"{server.url}/token"))
        )
        source = auth.headers_for(f"https://us-central1-aiplatform.googleapis.com{P}")
        assert source is not None
        first = source.header()
        assert first["Authorization"].startswith("Bearer tok-")
        assert source.header() == first  # still valid: no second exchange
        (exchange,) = server.requests
        assert b"grant_type" in exchange.body and b"assertion=" in exchange.body


def test_loopback_predict_is_sent_without_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/never-read.json")
    with RecordingServer() as server:

        @server.route("POST", r"/v1/.*:predict")
        def predict(req, m):  # type: ignore[no-untyped-def]
            return 200, {"predictions": ["ok"]}

        client = PredictClient(f"{server.url}{P}")
        assert client.complete("p", 4).text == "ok"
        (request,) = server.requests
        assert "authorization" not in request.headers


def test_remote_error_caps_the_sdk_text() -> None:
    from google.api_core.exceptions import BadRequest, Forbidden

    error = auth.remote_error("create job j", BadRequest("x " * 400))
    text = str(error).removeprefix("create job j: 400 ")
    assert len(text) == auth.SDK_TEXT_LIMIT and text.endswith("…")
    denied = auth.remote_error("create job j", Forbidden("y" * 1000), "aiplatform.x.create")
    assert "y" * (auth.SDK_TEXT_LIMIT - 1) + "…)" in str(denied)
    assert "y" * auth.SDK_TEXT_LIMIT not in str(denied)
    short = auth.remote_error("get", BadRequest("no such job"))
    assert str(short) == "get: 400 no such job"
