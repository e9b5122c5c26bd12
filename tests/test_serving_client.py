"""The HTTP client and the one retry policy (routerlib.serving.client): which statuses are
retried (one rule, shared with the Vertex SDK path), Retry-After honoured, stops cut waits."""

from __future__ import annotations

import email.utils
import json
import threading
import time
from pathlib import Path

import pytest

from routerlib import evaluate as ev
from routerlib.errors import InputError, RemoteError
from routerlib.serving import client, vertex
from routerlib.serving.client import JsonClient, TransientError
from routerlib.serving.online import OnlinePredictor
from routerlib.serving.transports import PredictClient
from tests.support.fault_server import FaultServer, gold_answers, schedule
from tests.support.recording_server import RecordingServer


def _gold(real_data: Path, tmp_path: Path, n: int) -> Path:
    lines = (real_data / "deep_router_benchmark.jsonl").read_text(encoding="utf-8").splitlines()
    path = tmp_path / "gold.jsonl"
    path.write_text("\n".join(lines[:n]) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("status", "retried"),
    [(None, True), (408, True), (429, True), (500, True), (503, True), (599, True)]
    + [(400, False), (401, False), (403, False), (404, False), (409, False), (200, False)],
)
def test_one_rule_decides_which_status_is_retried(status: int | None, retried: bool) -> None:
    assert client.is_retryable(status) is retried
    # the Vertex SDK path asks the same rule (no second list in serving/vertex.py)
    assert vertex.is_retryable is client.is_retryable


@pytest.mark.parametrize("status", [429, 503, 400])
def test_the_http_client_classifies_a_status_by_that_rule(status: int) -> None:
    with RecordingServer() as server:

        @server.route("POST", "/x")
        def answer(req, m):  # type: ignore[no-untyped-def]
            return status, {"error": {"message": "nope"}}, {"Retry-After": "7"}

        http = JsonClient(server.url, timeout=5)
        error = TransientError if client.is_retryable(status) else RemoteError
        with pytest.raises(error, match=f"HTTP {status}: nope") as caught:
            http.request("POST", "/x", {})
        http.close()
    if isinstance(caught.value, TransientError):
        assert caught.value.retry_after == 7.0


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert client.retry_after_seconds("3") == 3.0
    assert client.retry_after_seconds("-1") == 0.0
    assert client.retry_after_seconds(None) is None
    assert client.retry_after_seconds("soon") is None
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= (client.retry_after_seconds(later) or 0) <= 31


def test_retry_after_is_honoured_between_attempts(real_data: Path, tmp_path: Path) -> None:
    """A 429 saying Retry-After: 1 is asked again no sooner, however short the backoff."""
    gold = _gold(real_data, tmp_path, 1)
    prompts = [json.loads(gold.read_text().splitlines()[0])["prompt"]]
    with FaultServer(
        gold_answers(gold), plan=schedule({0: ["429"]}, prompts), retry_after="1"
    ) as srv:
        predictor = OnlinePredictor(PredictClient(srv.predict_url), backoff_s=0.001)
        start = time.monotonic()
        ev.generate_predictions(
            gold, predictor=predictor, cache_path=tmp_path / "c.jsonl", progress=False
        )
        elapsed = time.monotonic() - start
        assert srv.attempts[prompts[0]] == 2
    assert elapsed >= 1.0


def test_backoff_grows_and_is_capped() -> None:
    policy = client.retry_policy(3, backoff_s=0.25)
    wait = policy.wait
    state = type("S", (), {"attempt_number": 1, "outcome": None})()
    first = wait(state)  # type: ignore[arg-type]
    state.attempt_number = 3
    third = wait(state)  # type: ignore[arg-type]
    assert 0.25 <= first <= 0.5 and 1.0 <= third <= 1.25
    state.attempt_number = 40
    assert wait(state) == client.MAX_BACKOFF_S  # type: ignore[arg-type]
    with pytest.raises(InputError, match="retries must be >= 0"):
        client.retry_policy(-1)


def test_a_stop_cuts_a_wait_short() -> None:
    stop = threading.Event()
    calls: list[float] = []

    def always_busy() -> None:
        calls.append(time.monotonic())
        threading.Timer(0.1, stop.set).start()
        raise TransientError("HTTP 503: busy", retry_after=20)

    start = time.monotonic()
    with pytest.raises(client.Stopped):
        client.call_with_retries(always_busy, client.retry_policy(5, 0.01, stop))
    assert len(calls) == 1 and time.monotonic() - start < 5


def test_giving_up_names_the_attempts() -> None:
    def busy() -> None:
        raise TransientError("HTTP 503: busy")

    with pytest.raises(RemoteError, match=r"gave up after 3 attempts \(retries=2\): HTTP 503"):
        client.call_with_retries(busy, client.retry_policy(2, 0.001))


def test_secrets_stay_out_of_labels() -> None:
    http = JsonClient("https://user:secret@h.example:8443/v1?key=abc", timeout=1)
    assert http.label == "https://h.example:8443/v1"
    http.close()
    with pytest.raises(InputError, match="not an http"):
        JsonClient("ftp://h.example/x", timeout=1)
