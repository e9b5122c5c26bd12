"""A recording stand-in for the Vertex AI REST API on 127.0.0.1, built on RecordingServer.

``FakeVertex`` owns a RecordingServer and keeps all state in plain attributes, so other helpers can
add routes for more resources to the same server (``fake.server.route(...)`` or a function like
``add_tuning_routes`` in their own module, e.g. tests/support/fake_vertex_serving.py).

Tuning jobs (``add_tuning_routes``; v1 and v1beta1 paths) enforce routerlib's contract table
(routerlib/models.py), answering what Vertex answers, in Google's error envelope:
- create refuses with 400 INVALID_ARGUMENT a base model the table does not list, a tuning mode,
  adapter size or region the model is not offered in, ``learningRateMultiplier`` on an open model,
  learning rate together with the multiplier, and malformed label keys/values; with 403
  PERMISSION_DENIED when ``denied_permissions`` holds ``aiplatform.tuningJobs.create``; with 429
  RESOURCE_EXHAUSTED when ``concurrent_quota`` jobs are live already; ``refusals`` maps a base
  model to a canned error (e.g. an allowlist refusal).
- ``create_faults``: per create, ``"drop"`` creates the job and closes the connection without an
  answer, ``"500-created"`` creates it and answers 500, ``"503"`` answers 503 without creating,
  ``"429"`` answers RESOURCE_EXHAUSTED without creating, ``"hang"`` creates it and answers only
  after ``hang_s`` seconds (to interrupt the client mid-request).
- get: each call advances the job one step along its progression (default QUEUED -> RUNNING
  (sub-state TUNING) -> SUCCEEDED). A progression item is ``STATE`` or ``STATE/SUB_STATE`` (``tuningJobState``, e.g.
  ``JOB_STATE_RUNNING/TUNING_JOB_STATE_WAITING_FOR_CAPACITY``). A FAILED job carries ``error``; a
  SUCCEEDED one ``tuningDataStats`` and ``tunedModel.checkpoints`` (one per epoch).
- cancel is asynchronous: the next ``cancel_steps`` gets answer CANCELLING, then the job ends
  ``cancel_outcome`` (CANCELLED, or SUCCEEDED/FAILED when it finished first).
- list follows pageSize/pageToken and takes a ``labels.KEY="VALUE"`` filter (other filters: 400).
- ``get_failures``: HTTP codes (e.g. 503) answered by the next gets, to test riding out blips.
- every request must carry ``Authorization: Bearer <token>`` (the static test token), else 401.
- ``api_disabled``: every route answers 403 PERMISSION_DENIED with an ErrorInfo of reason
  SERVICE_DISABLED, as Google APIs do for a project that has not enabled aiplatform.googleapis.com.
- A job created in ``global`` runs in ``global_region`` (Vertex picks us-central1 or
  europe-west4): its name stays under ``locations/global``, its tuned model, endpoint and
  checkpoints carry the real region.
- ``dataset_reader`` (a function gs:// URI -> bytes, e.g. reading the Cloud Storage emulator):
  create refuses a validation file over 5,000 rows or over 25% of the training file's bytes
  (google/skills agent-platform-tuning references/data_prep.md).

Use the ``fake_vertex`` fixture (import it into a test module) or ``with FakeVertex() as fake:``.
"""

from __future__ import annotations

import copy
import itertools
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from routerlib import models
from tests.support.recording_server import RecordingServer, Request

QUEUED = "JOB_STATE_QUEUED"
PENDING = "JOB_STATE_PENDING"
RUNNING = "JOB_STATE_RUNNING"
SUCCEEDED = "JOB_STATE_SUCCEEDED"
FAILED = "JOB_STATE_FAILED"
CANCELLING = "JOB_STATE_CANCELLING"
CANCELLED = "JOB_STATE_CANCELLED"
EXPIRED = "JOB_STATE_EXPIRED"
#: The sub-state (tuningJobState) of a job that is training.
TUNING = "TUNING_JOB_STATE_TUNING"
END_STATES = {SUCCEEDED, FAILED, CANCELLED, EXPIRED, "JOB_STATE_PARTIALLY_SUCCEEDED"}

#: Path prefix of a location: /v1beta1/projects/P/locations/L
LOCATION_RE = r"/v1(?:beta1)?/projects/([^/]+)/locations/([^/]+)"

#: The seed's refusal of a model that needed allowlisting (what Vertex said then).
ALLOWLIST_MODEL = "qwen/qwen3@qwen3-30b-a3b-instruct-2507"
ALLOWLIST_REFUSAL = (
    400,
    "FAILED_PRECONDITION",
    f"Base model {ALLOWLIST_MODEL} is not yet eligible for managed tuning in this project "
    "(requires allowlist).",
)
MODES = {"TUNING_MODE_PEFT_ADAPTER": models.PEFT, "TUNING_MODE_FULL": models.FULL}
ADAPTER_ENUM = {
    "ADAPTER_SIZE_ONE": 1,
    "ADAPTER_SIZE_TWO": 2,
    "ADAPTER_SIZE_FOUR": 4,
    "ADAPTER_SIZE_EIGHT": 8,
    "ADAPTER_SIZE_SIXTEEN": 16,
    "ADAPTER_SIZE_THIRTY_TWO": 32,
}
_LABEL_KEY = re.compile(r"^[^\W\d_][\w-]{0,63}$")
_LABEL_VALUE = re.compile(r"^[\w-]{0,64}$")
_LABEL_FILTER = re.compile(r'^labels\.([a-z][a-z0-9_-]*)\s*=\s*"([^"]*)"$')


class DroppedAnswer(Exception):
    """Raised inside a handler: the server closes the socket without answering."""


def error_body(code: int, status: str, message: str) -> dict[str, Any]:
    """Google's JSON error envelope."""
    return {"error": {"code": code, "message": message, "status": status}}


def service_disabled(project: str, service: str = "aiplatform.googleapis.com") -> dict[str, Any]:
    """Google's 403 for a project that has not enabled ``service`` (an ErrorInfo detail with
    reason SERVICE_DISABLED, as every Google API answers it)."""
    return {
        "error": {
            "code": 403,
            "message": f"{service} has not been used in project {project} before or it is "
            f"disabled. Enable it by visiting https://console.developers.google.com/apis/api/"
            f"{service}/overview?project={project} then retry.",
            "status": "PERMISSION_DENIED",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "SERVICE_DISABLED",
                    "domain": "googleapis.com",
                    "metadata": {"service": service, "consumer": f"projects/{project}"},
                }
            ],
        }
    }


def invalid(message: str) -> tuple[int, dict[str, Any]]:
    return 400, error_body(400, "INVALID_ARGUMENT", message)


def contract_refusal(body: dict[str, Any], location: str) -> tuple[int, dict[str, Any]] | None:
    """What Vertex answers a create body that breaks the contract table, or None."""
    base = body.get("baseModel", "")
    row = models.contract(base)
    if row is None:
        return invalid(f"Base model {base} is not supported for tuning.")
    sft = body.get("supervisedTuningSpec") or {}
    hyper = sft.get("hyperParameters") or {}
    mode = MODES.get(sft.get("tuningMode", ""), "")
    if mode not in row.tuning_modes:
        return invalid(f"Tuning mode {sft.get('tuningMode')} is not supported for {base}.")
    if mode == models.PEFT:
        size = ADAPTER_ENUM.get(hyper.get("adapterSize", ""))
        if size not in row.adapter_sizes:
            return invalid(f"Adapter size {hyper.get('adapterSize')} is not supported for {base}.")
    if "learningRateMultiplier" in hyper:
        if "learningRate" in hyper:
            return invalid("learning_rate and learning_rate_multiplier are mutually exclusive.")
        if not row.takes("learning_rate_multiplier"):
            return invalid(
                f"learning_rate_multiplier is not supported for open model {base}; "
                "set learning_rate instead."
            )
    if location not in row.tuning_regions:
        return invalid(f"Tuning {base} is not supported in location {location}.")
    for key, value in (body.get("labels") or {}).items():
        lower = key == key.lower() and str(value) == str(value).lower()
        if not lower or not _LABEL_KEY.match(key) or not _LABEL_VALUE.match(str(value)):
            return invalid(f"Invalid label {key}={value!r}.")
    if not body.get("outputUri", "").startswith("gs://"):
        return invalid("output_uri is required for open models and must be a gs:// URI.")
    return None


class FakeVertex:
    """The stand-in: server, tuning-job state and knobs that tests set before submitting."""

    def __init__(self, server: RecordingServer | None = None, token: str = "test-token") -> None:
        self.server = server or RecordingServer()
        self.token = token
        #: name -> {"resource": dict (what create stored), "progression": [...], "step": int}
        self.tuning_jobs: dict[str, dict[str, Any]] = {}
        #: States a new job walks through, one per get (the create answer shows the first).
        self.progression: list[str] = [QUEUED, f"{RUNNING}/{TUNING}", SUCCEEDED]
        #: Progressions for the next created jobs, used first-in first-out before ``progression``.
        self.next_progressions: list[list[str]] = []
        #: base model -> (HTTP code, status, message): create answers this error instead.
        self.refusals: dict[str, tuple[int, str, str]] = {ALLOWLIST_MODEL: ALLOWLIST_REFUSAL}
        #: IAM permissions the caller lacks (e.g. "aiplatform.tuningJobs.create").
        self.denied_permissions: set[str] = set()
        #: Live jobs allowed at once (None = no limit); over it create answers 429.
        self.concurrent_quota: int | None = None
        #: Per create, in order: "drop", "500-created", "503", "429", "hang" (module docstring).
        self.create_faults: list[str] = []
        #: Seconds a "hang" create waits before answering.
        self.hang_s = 5.0
        #: False: the list filter is refused (400), as a server that does not take labels would;
        #: "empty": it is taken but matches nothing (a filter read differently).
        self.label_filter: bool | str = True
        #: Gets that answer CANCELLING after a cancel, and the state the job then ends in.
        self.cancel_steps = 1
        self.cancel_outcome = CANCELLED
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
        #: True: the project has not enabled the Vertex AI API (every route answers 403).
        self.api_disabled = False
        #: Where a ``global`` job really runs (its tuned model's resource names carry it).
        self.global_region = "us-central1"
        #: gs:// URI -> bytes; when set, create checks the validation file's limits.
        self.dataset_reader: Any = None
        self._ids = itertools.count(4000000000000000001)
        self._lock = threading.Lock()
        self._started = False
        self.add_tuning_routes()

    # --- lifecycle ---
    def __enter__(self) -> FakeVertex:
        self.server.__enter__()
        # keep deliberately dropped answers out of the test output
        self.server._httpd.quiet = (DroppedAnswer, ConnectionError)  # noqa: SLF001
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
        pattern = re.compile(path_regex)
        return [r for r in self.server.requests if r.method == method and pattern.search(r.path)]

    def create_bodies(self) -> list[Any]:
        """Bodies of every tuningJobs.create that arrived (refused ones included)."""
        return self.server.bodies("POST", r"/tuningJobs$")

    def authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.token}"

    # --- tuning jobs ---
    def _state(self, name: str) -> tuple[str, str | None]:
        job = self.tuning_jobs[name]
        if "cancelled_at" in job:
            since = job["step"] - job["cancelled_at"]
            if since <= self.cancel_steps:
                return CANCELLING, None
            return job["cancel_outcome"], None
        item = job["progression"][min(job["step"], len(job["progression"]) - 1)]
        state, _, sub = item.partition("/")
        return state, sub or None

    def _live(self) -> int:
        return sum(1 for n in self.tuning_jobs if self._state(n)[0] not in END_STATES)

    def _resource(self, name: str) -> dict[str, Any]:
        job = self.tuning_jobs[name]
        resource = copy.deepcopy(job["resource"])
        state, sub = self._state(name)
        resource["state"] = state
        if sub:
            resource["tuningJobState"] = sub
        resource["updateTime"] = f"2026-11-25T10:{job['step']:02d}:00Z"
        if state in END_STATES:
            resource["endTime"] = resource["updateTime"]
        if state == FAILED:
            resource["error"] = dict(self.failure)
        if state == CANCELLED:
            resource["error"] = {"code": 1, "message": "CANCELLED"}
        if state == EXPIRED:
            resource["error"] = {
                "code": 4,
                "message": "Job expired: it waited too long for capacity.",
            }
        if state == SUCCEEDED:
            resource["tuningDataStats"] = {"supervisedTuningDataStats": dict(self.stats)}
            epochs = int(
                body_get(resource, "supervisedTuningSpec", "hyperParameters", "epochCount") or 1
            )
            # a global job's sub-resources name the region it ran in, never "global"
            ran = name.replace("/locations/global/", f"/locations/{job['region']}/")
            endpoint = ran.split("/tuningJobs/")[0] + "/endpoints/" + name.rsplit("/", 1)[-1]
            resource["tunedModel"] = {
                "model": ran.replace("tuningJobs", "models") + "@1",
                "endpoint": endpoint,
                "checkpoints": [
                    {
                        "checkpointId": str(e),
                        "epoch": str(e),
                        "step": str(10 * e),
                        "endpoint": f"{endpoint}-{e}",
                    }
                    for e in range(1, epochs + 1)
                ],
            }
        return resource

    def _dataset_refusal(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        """Vertex's validation limits, checked on the files (when a reader is set)."""
        sft = body.get("supervisedTuningSpec") or {}
        validation = sft.get("validationDatasetUri")
        if self.dataset_reader is None or not validation:
            return None
        train_bytes = len(self.dataset_reader(sft["trainingDatasetUri"]))
        data = self.dataset_reader(validation)
        rows = sum(1 for line in data.splitlines() if line.strip())
        if rows > models.TABLE.max_validation_rows:
            return invalid(f"Validation dataset has {rows} rows; at most 5000 are allowed.")
        if len(data) > models.TABLE.max_validation_bytes_share * train_bytes:
            return invalid(
                "Validation dataset must be no more than 25% of the training dataset size."
            )
        return None

    def add_tuning_routes(self) -> None:
        """Register tuningJobs create/get/list/cancel on the server."""
        srv = self.server
        base = LOCATION_RE + "/tuningJobs"

        def guard(permission: str) -> Any:
            def decorate(handler: Any) -> Any:
                def wrapped(request: Request, match: Any) -> tuple[int, Any]:
                    if self.api_disabled:
                        return 403, service_disabled(match[1])
                    if not self.authorized(request):
                        return 401, error_body(
                            401,
                            "UNAUTHENTICATED",
                            "Request had invalid authentication credentials.",
                        )
                    if permission in self.denied_permissions:
                        return 403, error_body(
                            403,
                            "PERMISSION_DENIED",
                            f"Permission '{permission}' denied on resource "
                            f"'//aiplatform.googleapis.com/projects/{match[1]}/locations/"
                            f"{match[2]}' (or it may not exist).",
                        )
                    with self._lock:
                        return handler(request, match)  # type: ignore[no-any-return]

                return wrapped

            return decorate

        @srv.route("POST", base)
        @guard("aiplatform.tuningJobs.create")
        def create(request: Request, match: Any) -> tuple[int, Any]:
            body = request.json() or {}
            fault = self.create_faults.pop(0) if self.create_faults else None
            if fault == "429":
                return 429, error_body(429, "RESOURCE_EXHAUSTED", "Quota exceeded.")
            if fault == "503":
                return 503, error_body(503, "UNAVAILABLE", "The service is currently unavailable.")
            refusal = self.refusals.get(body.get("baseModel", ""))
            if refusal:
                return refusal[0], error_body(*refusal)
            problem = contract_refusal(body, match[2]) or self._dataset_refusal(body)
            if problem:
                return problem
            if self.concurrent_quota is not None and self._live() >= self.concurrent_quota:
                return 429, error_body(
                    429,
                    "RESOURCE_EXHAUSTED",
                    "Quota exceeded for aiplatform.googleapis.com/"
                    "global_concurrent_managed_oss_model_fine_tuning_jobs_per_project.",
                )
            name = f"projects/{match[1]}/locations/{match[2]}/tuningJobs/{next(self._ids)}"
            progression = (
                self.next_progressions.pop(0) if self.next_progressions else list(self.progression)
            )
            resource = dict(
                body, name=name, createTime=f"2026-11-25T10:00:{len(self.tuning_jobs):02d}Z"
            )
            region = self.global_region if match[2] == "global" else match[2]
            self.tuning_jobs[name] = {
                "resource": resource,
                "progression": progression,
                "step": 0,
                "region": region,
            }
            if fault == "drop":
                raise DroppedAnswer("job created; closing without an answer")
            if fault == "hang":  # created; the answer comes late (without holding the lock)
                self._lock.release()
                try:
                    time.sleep(self.hang_s)
                finally:
                    self._lock.acquire()
            if fault == "500-created":
                return 500, error_body(500, "INTERNAL", "Internal error encountered.")
            return 200, self._resource(name)

        @srv.route("GET", base + r"/([^/:]+)")
        @guard("aiplatform.tuningJobs.get")
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
        @guard("aiplatform.tuningJobs.list")
        def list_jobs(request: Request, match: Any) -> tuple[int, Any]:
            prefix = f"projects/{match[1]}/locations/{match[2]}/"
            names = [n for n in self.tuning_jobs if n.startswith(prefix)]
            text = request.query.get("filter", [""])[0]
            if text and self.label_filter == "empty":  # takes the filter, matches nothing
                names = []
            elif text:
                wanted = _LABEL_FILTER.match(text) if self.label_filter else None
                if not wanted:
                    return invalid(f"Unsupported filter: {text}")
                key, value = wanted[1], wanted[2]
                names = [
                    n
                    for n in names
                    if (self.tuning_jobs[n]["resource"].get("labels") or {}).get(key) == value
                ]
            size = int(request.query.get("pageSize", ["50"])[0])
            start = int(request.query.get("pageToken", ["0"])[0] or 0)
            page = names[start : start + size]
            out: dict[str, Any] = {"tuningJobs": [self._resource(n) for n in page]}
            if start + size < len(names):
                out["nextPageToken"] = str(start + size)
            return 200, out

        @srv.route("POST", base + r"/([^/:]+):cancel")
        @guard("aiplatform.tuningJobs.cancel")
        def cancel(request: Request, match: Any) -> tuple[int, Any]:
            name = f"projects/{match[1]}/locations/{match[2]}/tuningJobs/{match[3]}"
            if name not in self.tuning_jobs:
                return 404, error_body(404, "NOT_FOUND", f"TuningJob {name} not found.")
            if self._state(name)[0] in END_STATES:
                return 400, error_body(
                    400, "FAILED_PRECONDITION", f"TuningJob {name} is already in an end state."
                )
            job = self.tuning_jobs[name]
            job.setdefault("cancelled_at", job["step"])
            job.setdefault("cancel_outcome", self.cancel_outcome)
            return 200, {}


def body_get(data: dict[str, Any], *keys: str) -> Any:
    """A nested value of a JSON body, or None."""
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)  # type: ignore[assignment]
    return data


@pytest.fixture
def fake_vertex() -> Iterator[FakeVertex]:
    """A running FakeVertex for one test."""
    with FakeVertex() as fake:
        yield fake
