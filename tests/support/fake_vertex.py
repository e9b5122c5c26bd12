"""A recording stand-in for the Vertex AI REST API on 127.0.0.1, built on RecordingServer.

``FakeVertex`` owns a RecordingServer and keeps all state in plain attributes, so other helpers can
add routes for more resources to the same server (``fake.server.route(...)`` or a function like
``add_tuning_routes`` in their own module, e.g. tests/support/fake_vertex_serving.py).

Tuning jobs (``add_tuning_routes``; v1 and v1beta1 paths):
- create: records the body; answers the new job in the first state of its progression, or an error
  when the base model is in ``refusals`` (e.g. Qwen 3: 400 FAILED_PRECONDITION with a message).
- get: each call advances the job one step along its progression (default PENDING -> RUNNING ->
  SUCCEEDED) and answers it; a FAILED job carries ``error``, a SUCCEEDED one ``tuningDataStats``.
- list (paged with pageSize/pageToken) and cancel (the next get says CANCELLED).
- ``get_failures``: HTTP codes (e.g. 503) answered by the next gets, to test riding out blips.
- every request must carry ``Authorization: Bearer <token>`` (the static test token), else 401.

Use the ``fake_vertex`` fixture (import it into a test module) or ``with FakeVertex() as fake:``.
"""

from __future__ import annotations

import copy
import itertools
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.recording_server import RecordingServer, Request

PENDING = "JOB_STATE_PENDING"
RUNNING = "JOB_STATE_RUNNING"
SUCCEEDED = "JOB_STATE_SUCCEEDED"
FAILED = "JOB_STATE_FAILED"
CANCELLED = "JOB_STATE_CANCELLED"
EXPIRED = "JOB_STATE_EXPIRED"
END_STATES = {SUCCEEDED, FAILED, CANCELLED, EXPIRED, "JOB_STATE_PARTIALLY_SUCCEEDED"}

#: Path prefix of a location: /v1beta1/projects/P/locations/L
LOCATION_RE = r"/v1(?:beta1)?/projects/([^/]+)/locations/([^/]+)"

QWEN_REFUSAL = (
    400,
    "FAILED_PRECONDITION",
    "Base model qwen/qwen3@qwen3-32b is not supported for managed tuning in this region.",
)


def error_body(code: int, status: str, message: str) -> dict[str, Any]:
    """Google's JSON error envelope."""
    return {"error": {"code": code, "message": message, "status": status}}


class FakeVertex:
    """The stand-in: server, tuning-job state and knobs that tests set before submitting."""

    def __init__(self, server: RecordingServer | None = None, token: str = "test-token") -> None:
        self.server = server or RecordingServer()
        self.token = token
        #: name -> {"resource": dict (what create stored), "progression": [...], "step": int}
        self.tuning_jobs: dict[str, dict[str, Any]] = {}
        #: States a new job walks through, one per get (the create answer shows the first).
        self.progression: list[str] = [PENDING, RUNNING, SUCCEEDED]
        #: Progressions for the next created jobs, used first-in first-out before ``progression``.
        self.next_progressions: list[list[str]] = []
        #: base model -> (HTTP code, status, message): create answers this error instead.
        self.refusals: dict[str, tuple[int, str, str]] = {"qwen/qwen3@qwen3-32b": QWEN_REFUSAL}
        self.failure = {
            "code": 3,
            "message": "Training failed: dataset row 17 exceeds 4096 tokens.",
        }
        self.stats = {
            "tuningDatasetExampleCount": "40",
            "totalBillableTokenCount": "61234",
            "tuningStepCount": "30",
            "totalTruncatedExampleCount": "0",
        }
        #: HTTP codes answered (instead of the job) by the next tuningJobs.get calls, in order.
        self.get_failures: list[int] = []
        self._ids = itertools.count(4000000000000000001)
        self._lock = threading.Lock()
        self._started = False
        self.add_tuning_routes()

    # --- lifecycle ---
    def __enter__(self) -> FakeVertex:
        self.server.__enter__()
        self._started = True
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._started:
            self.server.__exit__(*exc)
            self._started = False

    @property
    def url(self) -> str:
        return self.server.url

    # --- helpers for tests ---
    def requests(self, method: str, path_regex: str) -> list[Request]:
        """Recorded requests matching ``method`` and a path regex (searched)."""
        import re

        pattern = re.compile(path_regex)
        return [r for r in self.server.requests if r.method == method and pattern.search(r.path)]

    def create_bodies(self) -> list[Any]:
        """Bodies of every tuningJobs.create that arrived (refused ones included)."""
        return self.server.bodies("POST", r"/tuningJobs$")

    def authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.token}"

    # --- tuning jobs ---
    def _resource(self, name: str) -> dict[str, Any]:
        job = self.tuning_jobs[name]
        resource = copy.deepcopy(job["resource"])
        state = job["progression"][min(job["step"], len(job["progression"]) - 1)]
        if job.get("cancelled"):
            state = CANCELLED
        resource["state"] = state
        resource["updateTime"] = f"2026-11-25T10:{job['step']:02d}:00Z"
        if state in END_STATES:
            resource["endTime"] = resource["updateTime"]
        if state == FAILED:
            resource["error"] = dict(self.failure)
        if state == EXPIRED:
            resource["error"] = {
                "code": 4,
                "message": "Job expired: it waited too long for capacity.",
            }
        if state == SUCCEEDED:
            resource["tuningDataStats"] = {"supervisedTuningDataStats": dict(self.stats)}
        return resource

    def add_tuning_routes(self) -> None:
        """Register tuningJobs create/get/list/cancel on the server."""
        srv = self.server
        base = LOCATION_RE + "/tuningJobs"

        def guard(handler: Any) -> Any:
            def wrapped(request: Request, match: Any) -> tuple[int, Any]:
                if not self.authorized(request):
                    return 401, error_body(
                        401, "UNAUTHENTICATED", "Request had invalid authentication credentials."
                    )
                with self._lock:
                    return handler(request, match)  # type: ignore[no-any-return]

            return wrapped

        @srv.route("POST", base)
        @guard
        def create(request: Request, match: Any) -> tuple[int, Any]:
            body = request.json() or {}
            refusal = self.refusals.get(body.get("baseModel", ""))
            if refusal:
                return refusal[0], error_body(*refusal)
            name = f"projects/{match[1]}/locations/{match[2]}/tuningJobs/{next(self._ids)}"
            progression = (
                self.next_progressions.pop(0) if self.next_progressions else list(self.progression)
            )
            resource = dict(body, name=name, createTime="2026-11-25T10:00:00Z")
            self.tuning_jobs[name] = {"resource": resource, "progression": progression, "step": 0}
            return 200, self._resource(name)

        @srv.route("GET", base + r"/([^/:]+)")
        @guard
        def get(request: Request, match: Any) -> tuple[int, Any]:
            name = f"projects/{match[1]}/locations/{match[2]}/tuningJobs/{match[3]}"
            if self.get_failures:
                code = self.get_failures.pop(0)
                return code, error_body(
                    code, "UNAVAILABLE", "The service is currently unavailable."
                )
            if name not in self.tuning_jobs:
                return 404, error_body(404, "NOT_FOUND", f"TuningJob {name} not found.")
            self.tuning_jobs[name]["step"] += 1
            return 200, self._resource(name)

        @srv.route("GET", base)
        @guard
        def list_jobs(request: Request, match: Any) -> tuple[int, Any]:
            prefix = f"projects/{match[1]}/locations/{match[2]}/"
            names = [n for n in self.tuning_jobs if n.startswith(prefix)]
            size = int(request.query.get("pageSize", ["50"])[0])
            start = int(request.query.get("pageToken", ["0"])[0] or 0)
            page = names[start : start + size]
            out: dict[str, Any] = {"tuningJobs": [self._resource(n) for n in page]}
            if start + size < len(names):
                out["nextPageToken"] = str(start + size)
            return 200, out

        @srv.route("POST", base + r"/([^/:]+):cancel")
        @guard
        def cancel(request: Request, match: Any) -> tuple[int, Any]:
            name = f"projects/{match[1]}/locations/{match[2]}/tuningJobs/{match[3]}"
            if name not in self.tuning_jobs:
                return 404, error_body(404, "NOT_FOUND", f"TuningJob {name} not found.")
            if self._resource(name)["state"] in END_STATES:
                return 400, error_body(
                    400, "FAILED_PRECONDITION", f"TuningJob {name} is already in an end state."
                )
            self.tuning_jobs[name]["cancelled"] = True
            return 200, {}


@pytest.fixture
def fake_vertex() -> Iterator[FakeVertex]:
    """A running FakeVertex for one test."""
    with FakeVertex() as fake:
        yield fake
