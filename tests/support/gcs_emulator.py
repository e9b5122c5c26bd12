"""A pytest fixture running gcp-storage-emulator (in-process, in memory) on a free 127.0.0.1 port.

Use it from any test module:

    from tests.support.gcs_emulator import gcs_emulator  # noqa: F401  (pytest fixture)

    def test_upload(gcs_emulator):
        gcs_emulator.make_bucket("my-bucket")
        client = gcs_emulator.client()

While the fixture is active STORAGE_EMULATOR_HOST points at the emulator (so
routerlib.storage.gcs_client() and any google-cloud-storage Client go there), GOOGLE_CLOUD_PROJECT
is the fixture's project and NO_GCE_CHECK=True. Each test gets an empty store.
"""

from __future__ import annotations

import atexit
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@dataclass
class GcsEmulator:
    """A running emulator: its endpoint, the project the clients use, and helpers."""

    host: str
    project: str
    server: Any = field(repr=False)

    def client(self) -> Any:
        """A google-cloud-storage Client bound to the emulator (anonymous credentials)."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage as gcs

        return gcs.Client(project=self.project, credentials=AnonymousCredentials())

    def make_bucket(self, name: str) -> Any:
        """Create bucket ``name`` in the emulator and return it."""
        return self.client().create_bucket(name)

    def place_bucket(self, name: str, location: str, location_type: str = "region") -> None:
        """Report bucket ``name`` at ``location`` (e.g. EUROPE-WEST4, region) as Cloud Storage
        does. The emulator creates every bucket in US (multi-region) and its bucket insert ignores
        ``location``, so the bucket's stored metadata is set directly."""
        bucket = self.server._storage.buckets[name]  # noqa: SLF001 - see the docstring
        bucket.update({"location": location.upper(), "locationType": location_type})

    def read(self, uri: str) -> bytes:
        """The bytes of a gs:// object in the emulator."""
        bucket, _, path = uri.removeprefix("gs://").partition("/")
        return bytes(self.client().bucket(bucket).blob(path).download_as_bytes())

    def wipe(self) -> None:
        """Delete every bucket and object."""
        self.server.wipe()


def start_emulator() -> tuple[Any, int]:
    """Start an in-memory emulator on a free loopback port; returns (server, port)."""
    from gcp_storage_emulator.server import create_server

    last: Exception | None = None
    for _ in range(5):
        port = _free_port()
        server = create_server("127.0.0.1", port, in_memory=True)
        # Daemon thread: the interpreter must not wait for the HTTP loop before atexit runs.
        api_thread = getattr(server, "_api", None)
        if api_thread is not None:
            api_thread.daemon = True
        try:
            server.start()
            _wait_listening(port)
            return server, port
        except OSError as exc:  # the port was taken between probing and binding
            last = exc
            try:
                server.stop()
            except Exception:
                pass
    raise RuntimeError(f"could not start gcp-storage-emulator: {last}")


_RUNNING: tuple[Any, int] | None = None


def _shared_server() -> tuple[Any, int]:
    """One emulator per test process, started on first use and stopped at exit."""
    global _RUNNING
    if _RUNNING is None:
        _RUNNING = start_emulator()
        atexit.register(_RUNNING[0].stop)
    return _RUNNING


@pytest.fixture
def gcs_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[GcsEmulator]:
    """A clean emulator for this test with the environment pointed at it.

    Self-contained: importing this one name into a test module is enough.
    """
    server, port = _shared_server()
    server.wipe()
    host = f"http://127.0.0.1:{port}"
    project = "routerlib-test"
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", host)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", project)
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    yield GcsEmulator(host=host, project=project, server=server)
    server.wipe()
