"""The local HTTP server tried as a new user would, with raw sockets: a malformed request gets a
400 with a JSON error, a body over ``MAX_BODY_BYTES`` a 413, never a traceback; the server keeps
serving after each."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from routerlib.serving.local import MAX_BODY_BYTES, LocalPredictor, LocalServer
from tests.support.tiny_serving_model import load_plain, tiny_checkpoint_fixture

tiny_checkpoint = pytest.fixture(scope="session")(tiny_checkpoint_fixture)
PATH = "/v1/projects/p/locations/l/endpoints/1:predict"
GOOD = json.dumps(
    {"instances": [{"prompt": "hi", "max_tokens": 2, "temperature": 0, "raw_response": True}]}
).encode()


@pytest.fixture(scope="module")
def server(tiny_checkpoint: Path) -> Iterator[LocalServer]:
    with LocalServer(predictor=LocalPredictor(tiny_checkpoint, loader=load_plain)) as running:
        yield running


def _exchange(
    server: LocalServer, raw: bytes, *, half_close: bool = False, closes: bool = True
) -> tuple[str, Any, bool]:
    """Send ``raw`` on a new connection; return the status line, the JSON body and whether the
    server closed the connection after answering (looked at only when ``closes``)."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(raw)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed without an answer: {data!r}"
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers["content-length"])
        while len(rest) < length:
            chunk = sock.recv(65536)
            assert chunk, "connection closed mid-body"
            rest += chunk
        closed = False
        if closes:
            sock.settimeout(5)
            try:
                closed = sock.recv(1) == b""
            except (TimeoutError, ConnectionResetError):
                pass
    assert headers["content-type"] == "application/json"
    return lines[0], json.loads(rest[:length]), closed


def _post(headers: str, body: bytes = b"") -> bytes:
    return f"POST {PATH} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode() + body


@pytest.mark.parametrize(
    ("raw", "status", "needle"),
    [
        (_post("Content-Length: abc\r\n", GOOD), "400", "Content-Length: 'abc'"),
        (_post("Content-Length: -5\r\n", GOOD), "400", "Content-Length: '-5'"),
        (
            _post(f"Content-Length: {len(GOOD)}\r\nContent-Length: 3\r\n", GOOD),
            "400",
            "Content-Length",
        ),
        (_post("Content-Length: 100000000000\r\n"), "413", f"limit of {MAX_BODY_BYTES} bytes"),
        (_post(f"Content-Length: {MAX_BODY_BYTES + 1}\r\n"), "413", "MAX_BODY_BYTES"),
        (_post("Transfer-Encoding: chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n"), "411", "chunked"),
        (b"GARBAGE\r\n\r\n", "400", "Bad request"),
        (b"PUT / HTTP/1.1\r\nHost: x\r\n\r\n", "501", "PUT"),
    ],
    ids=["not-a-number", "negative", "twice", "100GB", "one-over", "chunked", "garbage", "put"],
)
def test_malformed_requests_get_a_json_error_and_no_traceback(
    server: LocalServer,
    capfd: pytest.CaptureFixture[str],
    raw: bytes,
    status: str,
    needle: str,
) -> None:
    line, body, closed = _exchange(server, raw)
    assert line.startswith(f"HTTP/1.1 {status} ") or line.startswith(f"HTTP/1.0 {status} ")
    assert body["error"]["code"] == int(status) and needle in body["error"]["message"]
    assert closed  # what follows on this connection cannot be trusted: it is closed
    err = capfd.readouterr().err
    assert "Traceback" not in err and "MemoryError" not in err
    # the server is still serving
    line, body, _ = _exchange(server, _post(f"Content-Length: {len(GOOD)}\r\n", GOOD), closes=False)
    assert line.startswith("HTTP/1.1 200") and len(body["predictions"]) == 1


def test_a_body_shorter_than_announced_is_refused(
    server: LocalServer, capfd: pytest.CaptureFixture[str]
) -> None:
    line, body, closed = _exchange(server, _post("Content-Length: 500\r\n", GOOD), half_close=True)
    assert line.startswith("HTTP/1.1 400")
    assert f"ended after {len(GOOD)} of 500 bytes" in body["error"]["message"] and closed
    assert "Traceback" not in capfd.readouterr().err


def test_a_body_at_the_limit_is_read_and_parsed(server: LocalServer) -> None:
    padding = MAX_BODY_BYTES - len(GOOD) - len(b', "pad": ""')
    body = GOOD[:-1] + b', "pad": "' + b"x" * padding + b'"}'
    assert len(body) == MAX_BODY_BYTES
    line, answer, _ = _exchange(
        server, _post(f"Content-Length: {len(body)}\r\n", body), closes=False
    )
    assert line.startswith("HTTP/1.1 200") and len(answer["predictions"]) == 1


def test_no_content_length_is_an_empty_body(server: LocalServer) -> None:
    line, body, _ = _exchange(server, _post(""), closes=False)
    assert line.startswith("HTTP/1.1 400") and body["error"]["message"] == "body: not valid JSON"
