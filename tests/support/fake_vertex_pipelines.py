"""A strict stand-in for the Vertex AI Pipelines REST routes (v1) and the Cloud Storage bucket
check, on a FakeVertex server (127.0.0.1), for the real aiplatform SDK.

It answers what Vertex answers, in Google's error envelope, and records every request:
- ``POST .../pipelineJobs?pipelineJobId=ID`` refuses (400 INVALID_ARGUMENT) an id outside
  ``[a-z][-a-z0-9]{0,127}``, a body without ``pipelineSpec`` (or one without pipelineInfo.name,
  root, deploymentSpec), no ``runtimeConfig.gcsOutputDirectory`` on gs://, a parameter value the
  spec does not declare, a display name over 128 characters, malformed labels, a service account
  that is no e-mail; 403 PERMISSION_DENIED when ``denied`` holds
  ``aiplatform.pipelineJobs.create``; 409 ALREADY_EXISTS for an id it has.
- ``create_faults`` per create: ``"drop"`` creates the job and closes the connection without an
  answer; ``"503"`` answers 503 UNAVAILABLE without creating it.
- ``GET .../pipelineJobs/ID`` advances the job one step along ``progression`` (PENDING, RUNNING,
  SUCCEEDED); ``POST ...:cancel`` makes the next get CANCELLING, then CANCELLED.
- ``POST .../schedules`` refuses a missing display name, a cron that is not five valid fields
  (minute 0-59, hour 0-23, day 1-31, month 1-12, weekday 0-6; ``*``, ``*/n``, ``a-b``, lists,
  an optional ``TZ=``/``CRON_TZ=`` prefix), ``maxConcurrentRunCount`` below 1, a
  ``createPipelineJobRequest`` without ``pipelineSpec`` or whose parent is not the location;
  403 when ``denied`` holds ``aiplatform.schedules.create``; schedules get numeric ids. ``GET``
  lists them (only a ``display_name="X"`` filter is taken), gets one; ``:pause`` pauses it.
- ``GET /storage/v1/b/BUCKET`` answers the buckets in ``buckets`` (404 otherwise), owned by
  project number ``PROJECT_NUMBER``: point STORAGE_EMULATOR_HOST here and the SDK's bucket check
  (and routerlib's) land on this server. The SDK then asks Resource Manager (gRPC, a fixed Google
  host, no loopback override) for the project's number: :func:`project_number_here` answers
  that one call in-process (the ``fake`` fixtures patch it in), so no test leaves the machine.
"""

from __future__ import annotations

import copy
import itertools
import re
import threading
from typing import Any

from tests.support.fake_vertex import (
    _LABEL_KEY,
    _LABEL_VALUE,
    LOCATION_RE,
    DroppedAnswer,
    FakeVertex,
    error_body,
    invalid,
)
from tests.support.recording_server import Request

PENDING = "PIPELINE_STATE_PENDING"
RUNNING = "PIPELINE_STATE_RUNNING"
SUCCEEDED = "PIPELINE_STATE_SUCCEEDED"
CANCELLING = "PIPELINE_STATE_CANCELLING"
CANCELLED = "PIPELINE_STATE_CANCELLED"
_JOB_ID = re.compile(r"^[a-z][-a-z0-9]{0,127}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]+$")
_CRON_PREFIX = re.compile(r"^(CRON_TZ|TZ)=[A-Za-z_]+(/[A-Za-z_]+)*\s+")
_CRON_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))
_FILTER = re.compile(r'^display_name="([^"]*)"$')
#: The project number every bucket here belongs to (the SDK checks a bucket's owner).
PROJECT_NUMBER = "123456789012"
V1_LOCATION = LOCATION_RE.replace("/v1(?:beta1)?", "/v1")


def _denied(permission: str) -> tuple[int, dict[str, Any]]:
    return 403, error_body(
        403,
        "PERMISSION_DENIED",
        f"Permission '{permission}' denied on resource (or it may not exist).",
    )


def _cron_field_ok(field: str, low: int, high: int) -> bool:
    for part in field.split(","):
        base, _, step = part.partition("/")
        if step and (not step.isdigit() or int(step) < 1):
            return False
        if base == "*":
            continue
        first, _, last = base.partition("-")
        numbers = [first, last] if last else [first]
        if not all(n.isdigit() and low <= int(n) <= high for n in numbers):
            return False
        if last and int(first) > int(last):
            return False
    return True


def cron_problem(cron: str) -> str | None:
    """Why Vertex would refuse ``cron`` (None when it is valid)."""
    fields = _CRON_PREFIX.sub("", cron.strip()).split()
    if len(fields) != 5:
        return f"Invalid cron {cron!r}: expected 5 fields."
    for field, (low, high) in zip(fields, _CRON_RANGES, strict=True):
        if not _cron_field_ok(field, low, high):
            return f"Invalid cron {cron!r}: bad field {field!r}."
    return None


def spec_problem(spec: Any) -> str | None:
    """Why Vertex would refuse a pipelineSpec (None when it has what a run needs)."""
    if not isinstance(spec, dict) or not spec:
        return "pipeline_spec is required."
    if not (spec.get("pipelineInfo") or {}).get("name"):
        return "pipeline_spec.pipelineInfo.name is required."
    for key in ("root", "deploymentSpec", "components", "schemaVersion"):
        if key not in spec:
            return f"pipeline_spec.{key} is required."
    return None


def _labels_problem(labels: Any) -> str | None:
    for key, value in (labels or {}).items():
        if not _LABEL_KEY.match(key) or not _LABEL_VALUE.match(str(value)) or key != key.lower():
            return f"Invalid label {key}={value!r}."
    return None


def project_number_here(project_id: str, credentials: Any = None) -> str:
    """What Resource Manager answers for the stand-in's projects (the SDK's bucket-owner check)."""
    return PROJECT_NUMBER


class PipelinesStandIn(FakeVertex):
    """FakeVertex plus the pipeline-job, schedule and bucket routes (module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.pipeline_jobs: dict[str, dict[str, Any]] = {}
        self.schedules: dict[str, dict[str, Any]] = {}
        self.buckets: set[str] = set()
        #: IAM permissions the caller lacks.
        self.denied: set[str] = set()
        self.progression = [PENDING, RUNNING, SUCCEEDED]
        self._schedule_ids = itertools.count(1001)
        self._plock = threading.Lock()
        self._add_pipeline_routes()

    # --- helpers for tests ---
    def pipeline_creates(self) -> list[Request]:
        return self.requests("POST", r"/pipelineJobs$")

    def schedule_creates(self) -> list[Request]:
        return self.requests("POST", r"/schedules$")

    def _job(self, job_id: str) -> dict[str, Any]:
        job = self.pipeline_jobs[job_id]
        resource = copy.deepcopy(job["resource"])
        if "cancelled_at" in job:
            state = CANCELLING if job["step"] - job["cancelled_at"] <= 1 else CANCELLED
        else:
            state = self.progression[min(job["step"], len(self.progression) - 1)]
        resource["state"] = state
        resource["updateTime"] = f"2026-12-07T03:{job['step']:02d}:00Z"
        if state == CANCELLED:
            resource["error"] = {"code": 1, "message": "CANCELLED"}
        return resource

    # --- routes ---
    def _add_pipeline_routes(self) -> None:
        server = self.server
        loc = V1_LOCATION

        @server.route("POST", loc + r"/pipelineJobs")
        def create_job(req: Request, m: Any) -> tuple[int, Any]:
            project, location = m.group(1), m.group(2)
            job_id = (req.query.get("pipelineJobId") or [""])[0]
            body = req.json() or {}
            if "aiplatform.pipelineJobs.create" in self.denied:
                return _denied("aiplatform.pipelineJobs.create")
            if not _JOB_ID.match(job_id):
                return invalid(f"Invalid pipeline job id {job_id!r}.")
            problem = spec_problem(body.get("pipelineSpec"))
            runtime = body.get("runtimeConfig") or {}
            declared = (
                (body.get("pipelineSpec") or {})
                .get("root", {})
                .get("inputDefinitions", {})
                .get("parameters", {})
            )
            unknown = [k for k in runtime.get("parameterValues") or {} if k not in declared]
            if problem:
                return invalid(problem)
            if not str(runtime.get("gcsOutputDirectory", "")).startswith("gs://"):
                return invalid("runtime_config.gcs_output_directory must be a gs:// URI.")
            if unknown:
                return invalid(f"Unknown pipeline parameter(s): {', '.join(unknown)}.")
            if len(body.get("displayName", "")) > 128:
                return invalid("display_name is longer than 128 characters.")
            if _labels_problem(body.get("labels")):
                return invalid(str(_labels_problem(body.get("labels"))))
            account = body.get("serviceAccount")
            if account is not None and not _EMAIL.match(account):
                return invalid(f"Invalid service account {account!r}.")
            fault = self.create_faults.pop(0) if self.create_faults else None
            if fault == "503":
                return 503, error_body(503, "UNAVAILABLE", "The service is currently unavailable.")
            with self._plock:
                if job_id in self.pipeline_jobs:
                    return 409, error_body(
                        409, "ALREADY_EXISTS", f"PipelineJob {job_id} already exists."
                    )
                name = f"projects/{project}/locations/{location}/pipelineJobs/{job_id}"
                resource = {
                    **body,
                    "name": name,
                    "createTime": "2026-12-07T03:00:00Z",
                }
                self.pipeline_jobs[job_id] = {"resource": resource, "step": 0}
            if fault == "drop":
                raise DroppedAnswer
            return 200, self._job(job_id)

        @server.route("GET", loc + r"/pipelineJobs/([^/:]+)")
        def get_job(req: Request, m: Any) -> tuple[int, Any]:
            job_id = m.group(3)
            with self._plock:
                if job_id not in self.pipeline_jobs:
                    return 404, error_body(404, "NOT_FOUND", f"PipelineJob {job_id} not found.")
                self.pipeline_jobs[job_id]["step"] += 1
                return 200, self._job(job_id)

        @server.route("POST", loc + r"/pipelineJobs/([^/:]+):cancel")
        def cancel_job(req: Request, m: Any) -> tuple[int, Any]:
            job_id = m.group(3)
            with self._plock:
                job = self.pipeline_jobs.get(job_id)
                if job is None:
                    return 404, error_body(404, "NOT_FOUND", f"PipelineJob {job_id} not found.")
                if self._job(job_id)["state"] in (SUCCEEDED, CANCELLED):
                    return 400, error_body(
                        400, "FAILED_PRECONDITION", "The pipeline job has already ended."
                    )
                job["cancelled_at"] = job["step"]
            return 200, {}

        @server.route("POST", loc + r"/schedules")
        def create_schedule(req: Request, m: Any) -> tuple[int, Any]:
            project, location = m.group(1), m.group(2)
            body = req.json() or {}
            if "aiplatform.schedules.create" in self.denied:
                return _denied("aiplatform.schedules.create")
            if not body.get("displayName"):
                return invalid("display_name is required.")
            problem = cron_problem(str(body.get("cron", "")))
            if problem:
                return invalid(problem)
            if int(body.get("maxConcurrentRunCount") or 0) < 1:
                return invalid("max_concurrent_run_count must be positive.")
            request = body.get("createPipelineJobRequest") or {}
            parent = f"projects/{project}/locations/{location}"
            if request.get("parent") != parent:
                return invalid(f"create_pipeline_job_request.parent must be {parent}.")
            job = request.get("pipelineJob") or {}
            problem = spec_problem(job.get("pipelineSpec"))
            if problem:
                return invalid(f"create_pipeline_job_request.pipeline_job: {problem}")
            if _labels_problem(job.get("labels")):
                return invalid(str(_labels_problem(job.get("labels"))))
            fault = self.create_faults.pop(0) if self.create_faults else None
            if fault == "503":
                return 503, error_body(503, "UNAVAILABLE", "The service is currently unavailable.")
            with self._plock:
                sid = str(next(self._schedule_ids))
                self.schedules[sid] = {
                    **body,
                    "name": f"{parent}/schedules/{sid}",
                    "state": "ACTIVE",
                    "createTime": "2026-12-07T03:00:00Z",
                    "nextRunTime": "2026-12-08T03:00:00Z",
                }
            if fault == "drop":
                raise DroppedAnswer
            return 200, self.schedules[sid]

        @server.route("GET", loc + r"/schedules")
        def list_schedules(req: Request, m: Any) -> tuple[int, Any]:
            text = (req.query.get("filter") or [""])[0]
            match = _FILTER.match(text)
            if text and not match:
                return invalid(f"Unsupported filter {text!r}.")
            found = [
                s for s in self.schedules.values() if not match or s["displayName"] == match[1]
            ]
            return 200, {"schedules": found}

        @server.route("GET", loc + r"/schedules/([^/:]+)")
        def get_schedule(req: Request, m: Any) -> tuple[int, Any]:
            found = self.schedules.get(m.group(3))
            if found is None:
                return 404, error_body(404, "NOT_FOUND", "Schedule not found.")
            return 200, found

        @server.route("POST", loc + r"/schedules/([^/:]+):pause")
        def pause_schedule(req: Request, m: Any) -> tuple[int, Any]:
            found = self.schedules.get(m.group(3))
            if found is None:
                return 404, error_body(404, "NOT_FOUND", "Schedule not found.")
            if found["state"] != "ACTIVE":
                return 400, error_body(400, "FAILED_PRECONDITION", "Schedule is not active.")
            found["state"] = "PAUSED"
            return 200, {}

        @server.route("GET", r"/storage/v1/b/([^/]+)")
        def get_bucket(req: Request, m: Any) -> tuple[int, Any]:
            if m.group(1) not in self.buckets:
                return 404, error_body(404, "NOT_FOUND", "The specified bucket does not exist.")
            return 200, {
                "kind": "storage#bucket",
                "name": m.group(1),
                "id": m.group(1),
                "projectNumber": PROJECT_NUMBER,
            }
