"""Submit a compiled routerlib pipeline to Vertex AI Pipelines (a PipelineJob, or a schedule),
and the registry of submissions that ``routerlib pipeline list / show / cancel`` read.

The real aiplatform SDK sends the requests: ``PipelineJob(...).submit()`` posts
``.../pipelineJobs?pipelineJobId=ID`` (after the SDK's own check of the output bucket), and
``create_schedule`` posts ``.../schedules`` with the cron and the ``createPipelineJobRequest``.
Before anything is sent routerlib checks the file (a pipeline it compiled, its image in a
registry Vertex can pull from, a five-field cron) and the output bucket (so the SDK never
creates a bucket of its own).

Every submission is recorded in ``<outputs root>/pipelines.json`` before its create request
leaves (state ``UNKNOWN``), under an id made from the submission's hash: the job id
``routerlib-<hash>-<attempt>`` (a schedule's display name likewise), and the label
``routerlib-pipeline=<hash>``. A create whose answer is lost is looked for under that id; the
same command run again re-attaches to the job (or schedule) instead of making a second one, as
``routerlib tune`` does; only a job that ended unsuccessfully is submitted again (a new attempt).
A 403 is a :class:`~routerlib.errors.PermissionDenied` naming the permission.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from routerlib import atomic, auth, runfolder, storage
from routerlib.errors import InputError, PermissionDenied, RemoteError
from routerlib.paths import outputs_root, resolve
from routerlib.serving.settings import DEFAULT_LOCATION
from routerlib.vertex_pipelines import (
    compiled_defaults,
    compiled_images,
    read_compiled,
    run_folder_name,
)

REGISTRY_KEY = "pipelines"
JOB, SCHEDULE = "job", "schedule"
#: A create was sent and no answer seen: the same command looks for it before sending again.
UNKNOWN = "UNKNOWN"
#: The label every routerlib submission carries (its value: the submission's hash).
LABEL = "routerlib-pipeline"
SUCCEEDED = "PIPELINE_STATE_SUCCEEDED"
ENDED = {SUCCEEDED, "PIPELINE_STATE_FAILED", "PIPELINE_STATE_CANCELLED"}
#: Schedule states that still start runs (ACTIVE) or can again (PAUSED).
SCHEDULE_LIVE = {"ACTIVE", "PAUSED"}
#: An image Vertex can pull: a registry host with a dot (Artifact Registry, gcr.io, ...).
_REGISTRY_IMAGE = re.compile(r"^[a-z0-9-]+(\.[a-z0-9-]+)+(:\d+)?/[^\s]+$")
_CRON_PREFIX = re.compile(r"^(CRON_TZ|TZ)=\S+\s+")

Out = Callable[[str], Any]


# --------------------------------------------------------------------------- registry


def registry_path() -> Path:
    """``<outputs root>/pipelines.json`` (beside jobs.json)."""
    return outputs_root() / runfolder.PIPELINES_FILE


def read_registry() -> list[dict[str, Any]]:
    """Every recorded submission (newest last)."""
    return atomic.read_registry(registry_path(), REGISTRY_KEY)


def _save(record: dict[str, Any]) -> dict[str, Any]:
    with atomic.update_registry(registry_path(), REGISTRY_KEY) as records:
        records[:] = [r for r in records if r.get("ref") != record["ref"]]
        records.append(record)
    return record


def _drop(record: dict[str, Any]) -> None:
    with atomic.update_registry(registry_path(), REGISTRY_KEY) as records:
        records[:] = [r for r in records if r.get("ref") != record["ref"]]


def find(ref: str) -> dict[str, Any]:
    """The record whose job id, schedule id, display name or resource name is ``ref``."""
    hits = [
        r
        for r in read_registry()
        if ref in (r.get("ref"), r.get("name"), (r.get("name") or "").rsplit("/", 1)[-1])
    ]
    if not hits:
        raise InputError(
            f"no pipeline {ref!r} in {registry_path()}: `routerlib pipeline list` shows them"
        )
    return hits[-1]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# --------------------------------------------------------------------------- checks


def check_cron(cron: str) -> str:
    """A cron Vertex reads: five fields, optionally after ``TZ=...`` or ``CRON_TZ=...``."""
    text = " ".join(str(cron).split())
    fields = _CRON_PREFIX.sub("", text).split(" ")
    if len(fields) != 5:
        raise InputError(
            f"--schedule {cron!r}: a cron has five fields (minute hour day month weekday), "
            "e.g. '0 3 * * *' for 03:00 every night; prefix TZ=Area/City for a time zone"
        )
    return text


def submission_key(spec: dict[str, Any], **place: Any) -> str:
    """The hash of a submission: the compiled pipeline and where and how it runs."""
    text = json.dumps({"spec": spec, **place}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def preflight(template: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The compiled pipeline and its parameter defaults; InputError naming what Vertex would
    refuse or could not run (nothing is sent)."""
    spec = read_compiled(template)
    defaults = compiled_defaults(spec)
    outputs = str(defaults.get("outputs") or "")
    problems = []
    if not storage.is_gcs_uri(outputs):
        problems.append(f"{template}: outputs {outputs!r} is no gs:// prefix; compile again")
    for image in compiled_images(spec):
        if not _REGISTRY_IMAGE.match(image):
            problems.append(
                f"{template}: image {image!r} is in no registry Vertex can pull from; build and "
                "push it (docs/pipelines.md), then compile with --image "
                "REGION-docker.pkg.dev/PROJECT/REPO/routerlib:TAG"
            )
    if problems:
        raise InputError("the pipeline cannot run on Vertex; nothing was sent", problems)
    return spec, defaults


# --------------------------------------------------------------------------- SDK calls


def _failure(action: str, exc: BaseException, needs: str) -> RemoteError:
    """RemoteError for a failed call; a 403 is a PermissionDenied naming the permission."""
    code = getattr(exc, "code", None)
    message = " ".join(str(getattr(exc, "message", None) or exc).split())[:300]
    if code == 403:
        return PermissionDenied(
            f"{action}: permission denied ({message}); the credentials need {needs} "
            "(role roles/aiplatform.user), and running as a service account needs "
            "iam.serviceAccounts.actAs on it"
        )
    return RemoteError(f"{action}: {code} {message}" if code else f"{action}: {message}")


def _is_lost_answer(exc: BaseException) -> bool:
    """No answer, or a server error: the create may have happened."""
    code = getattr(exc, "code", None)
    return not isinstance(code, int) or code >= 500


def _job_fields(resource: Any) -> dict[str, Any]:
    error = getattr(resource, "error", None)
    return {
        "name": resource.name,
        "state": resource.state.name,
        "error": error.message if error is not None and error.message else "",
        "updated": _now(),
    }


def _schedule_fields(resource: Any) -> dict[str, Any]:
    return {
        "name": resource.name,
        "state": resource.state.name,
        "next_run": str(resource.next_run_time or ""),
        "updated": _now(),
    }


def _get(record: dict[str, Any]) -> Any | None:
    """The job or schedule resource of ``record`` from the server; None when it does not exist."""
    from google.api_core.exceptions import NotFound
    from google.cloud import aiplatform

    auth.init_vertex(record["project"], record["location"], record.get("api_endpoint", ""))
    try:
        if record["kind"] == JOB:
            name = record.get("name") or _job_name(record)
            return aiplatform.PipelineJob.get(name).gca_resource
        if record.get("name"):
            return aiplatform.PipelineJobSchedule.get(record["name"]).gca_resource
        found = aiplatform.PipelineJobSchedule.list(filter=f'display_name="{record["ref"]}"')
        return found[0].gca_resource if found else None
    except NotFound:
        return None


def _job_name(record: dict[str, Any]) -> str:
    return (
        f"projects/{record['project']}/locations/{record['location']}/pipelineJobs/{record['ref']}"
    )


def refresh(record: dict[str, Any], out: Out | None = None) -> dict[str, Any]:
    """Ask Vertex for the state of ``record`` and record it (on failure keep the record)."""
    try:
        resource = _get(record)
    except auth.sdk_errors() as exc:
        if out is not None:
            out(f"{record['ref']}: showing the recorded state ({_failure('get', exc, '')})")
        return record
    if resource is None:
        if record.get("state") == UNKNOWN:
            return record
        record = {**record, "state": "NOT_FOUND", "updated": _now()}
    else:
        fields = _job_fields(resource) if record["kind"] == JOB else _schedule_fields(resource)
        record = {**record, **fields}
    return _save(record)


def _live(record: dict[str, Any]) -> bool:
    """A job that runs or succeeded, or a schedule that still starts runs: re-attach to it."""
    if record["kind"] == SCHEDULE:
        return record.get("state") in SCHEDULE_LIVE
    return record.get("state") not in ENDED - {SUCCEEDED} and record.get("state") != "NOT_FOUND"


# --------------------------------------------------------------------------- submit


def submit(
    template: str | os.PathLike[str],
    *,
    project: str,
    location: str = DEFAULT_LOCATION,
    api_endpoint: str = "",
    service_account: str = "",
    schedule: str = "",
    out: Out = print,
) -> dict[str, Any]:
    """Create the PipelineJob (or, with ``schedule``, a schedule running it by that cron) of a
    compiled pipeline, or re-attach to the one this same submission made; return its record."""
    if not project:
        raise InputError("a Google Cloud project is required: pass --project")
    spec, defaults = preflight(template)
    cron = check_cron(schedule) if schedule else ""
    storage.check_bucket(str(defaults["outputs"]))  # the SDK would create a missing bucket
    kind = SCHEDULE if cron else JOB
    place = {"project": project, "location": location, "api_endpoint": api_endpoint}
    key = submission_key(spec, service_account=service_account, cron=cron, **place)
    auth.init_vertex(project, location, api_endpoint)
    found, attempt = _reattach(kind, key, place, out)
    if found is not None:
        return found
    record = {
        "ref": f"routerlib-{key}-{attempt}",
        "kind": kind,
        "key": key,
        "attempt": attempt,
        "name": "",
        "state": UNKNOWN,
        **place,
        "template": str(resolve(template)),
        "outputs": str(defaults["outputs"]),
        "service_account": service_account,
        "cron": cron,
        "created": _now(),
    }
    _save(record)  # before the request leaves: a lost answer is looked for under this id
    return _create(record, spec, defaults, out)


def _reattach(
    kind: str, key: str, place: dict[str, str], out: Out
) -> tuple[dict[str, Any] | None, int]:
    """The record to re-attach to (or None) and the attempt number a new submission takes."""
    mine = [
        r
        for r in read_registry()
        if r.get("key") == key
        and r.get("kind") == kind
        and all(r.get(k) == v for k, v in place.items())
    ]
    if not mine:
        return None, 1
    record = mine[-1]
    state = record.get("state")
    if state == UNKNOWN:
        fresh = refresh(record, out)
        if fresh.get("state") == UNKNOWN:
            out(
                f"{record['ref']}: the last create got no answer and Vertex has none: sending it again"
            )
            return None, int(record["attempt"])  # the same id: Vertex refuses a duplicate
        out(f"found {fresh['name']} ({fresh['state']}) for the unanswered submission")
        return fresh, 0
    fresh = refresh(record, out)
    if _live(fresh):
        out(
            f"already submitted: {fresh['name'] or fresh['ref']} ({fresh['state']}); "
            "not submitted again (`routerlib pipeline cancel` stops it)"
        )
        return fresh, 0
    return None, int(record["attempt"]) + 1


def _create(
    record: dict[str, Any], spec: dict[str, Any], defaults: dict[str, Any], out: Out
) -> dict[str, Any]:
    from google.api_core.exceptions import Conflict
    from google.cloud import aiplatform

    kind, ref = record["kind"], record["ref"]
    needs = (
        "aiplatform.schedules.create and aiplatform.pipelineJobs.create"
        if kind == SCHEDULE
        else "aiplatform.pipelineJobs.create"
    )
    try:
        job = aiplatform.PipelineJob(
            display_name=ref,
            template_path=record["template"],
            job_id=ref,
            pipeline_root=spec.get("defaultPipelineRoot"),
            parameter_values=defaults,
            labels={LABEL: record["key"]},
            project=record["project"],
            location=record["location"],
        )
    except ValueError as exc:
        _drop(record)
        raise InputError(f"{record['template']}: {exc}") from None
    account = record["service_account"] or None
    try:
        if kind == SCHEDULE:
            made = job.create_schedule(
                cron=record["cron"],
                display_name=ref,
                max_concurrent_run_count=1,
                service_account=account,
            )
            resource = made.gca_resource
        else:
            job.submit(service_account=account)
            resource = job.gca_resource
    except Conflict:  # the same id exists already: this submission made it
        resource = _get(record)
    except auth.sdk_errors() as exc:
        if not _is_lost_answer(exc):
            _drop(record)
            raise _failure(f"create {kind} {ref}", exc, needs) from None
        try:
            resource = _get(record)
        except auth.sdk_errors():
            resource = None
        if resource is None:
            raise RemoteError(
                f"create {kind} {ref}: no answer ({_failure('create', exc, needs)}); it is "
                f"recorded as {UNKNOWN} in {registry_path()}: run the same command again, it "
                "re-attaches if Vertex made it and sends it again under the same id if not"
            ) from None
        out(f"the create answer was lost; found {resource.name} on Vertex")
    fields = _job_fields(resource) if kind == JOB else _schedule_fields(resource)
    saved = _save({**record, **fields})
    out(f"submitted {saved['name']} ({saved['state']})")
    return saved


# --------------------------------------------------------------------------- list / show / cancel


def list_pipelines(refresh_states: bool = True, out: Out | None = None) -> list[dict[str, Any]]:
    """Every recorded submission; live ones asked for their state first."""
    records = read_registry()
    if not refresh_states:
        return records
    return [refresh(r, out) if _live(r) or r.get("state") == UNKNOWN else r for r in records]


def table(records: list[dict[str, Any]]) -> str:
    """The submissions as aligned columns."""
    if not records:
        return f"no pipelines recorded in {registry_path()}"
    header = ("ID", "KIND", "STATE", "OUTPUTS", "CREATED")
    rows = [
        (
            (r.get("name") or r["ref"]).rsplit("/", 1)[-1],
            r["kind"] + (f" ({r['cron']})" if r.get("cron") else ""),
            str(r.get("state", "")).removeprefix("PIPELINE_STATE_"),
            r.get("outputs", ""),
            r.get("created", ""),
        )
        for r in records
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(line.format(*row).rstrip() for row in (header, *rows))


def describe(record: dict[str, Any]) -> str:
    """Several lines about one submission, and its points when the fan-in has written them."""
    lines = [
        f"{record['kind']}: {record.get('name') or record['ref'] + ' (create unanswered)'}",
        f"state:    {record.get('state')}"
        + (f" ({record['error']})" if record.get("error") else ""),
        f"where:    {record['project']}/{record['location']}"
        + (f" · {record['api_endpoint']}" if record.get("api_endpoint") else ""),
        f"pipeline: {record.get('template')}",
        f"outputs:  {record.get('outputs')}",
    ]
    if record.get("cron"):
        lines.append(
            f"cron:     {record['cron']}"
            + (f" (next run {record['next_run']})" if record.get("next_run") else "")
        )
    if record.get("service_account"):
        lines.append(f"runs as:  {record['service_account']}")
    if record["kind"] == JOB:
        folder = storage.join_uri(record["outputs"], run_folder_name(record["ref"]))
        lines.append(f"folder:   {folder} (run folders, comparison, report/index.html)")
        lines.extend(_points(folder))
    return "\n".join(lines)


def _points(folder: str) -> list[str]:
    """The points' states from ``<folder>/sweep.json`` once the fan-in wrote it ([] before)."""
    try:
        text = storage.read_text(storage.join_uri(folder, runfolder.SWEEP_FILE))
        record = runfolder.SweepRecord.model_validate_json(text)
    except (RemoteError, InputError, ValueError):
        return []
    return [
        f"point:    {p.name}: {p.status}" + (f": {p.message}" if p.message else "")
        for p in record.points
    ]


def cancel(ref: str, out: Out = print) -> dict[str, Any]:
    """Cancel a running pipeline job, or pause a schedule (no more runs start; ``gcloud`` or the
    console resumes or deletes it)."""
    from google.cloud import aiplatform

    record = refresh(find(ref), out)
    if record.get("state") == UNKNOWN:
        raise InputError(
            f"{ref}: its create got no answer; `routerlib pipeline submit` again first"
        )
    if record["kind"] == JOB and record.get("state") in ENDED:
        raise InputError(f"{record['name']}: already ended ({record['state']}); nothing to cancel")
    if record["kind"] == SCHEDULE and record.get("state") != "ACTIVE":
        raise InputError(f"{record['name']}: schedule is {record.get('state')}; nothing to pause")
    auth.init_vertex(record["project"], record["location"], record.get("api_endpoint", ""))
    action = "cancel" if record["kind"] == JOB else "pause"
    try:
        if record["kind"] == JOB:
            aiplatform.PipelineJob.get(record["name"]).cancel()
        else:
            aiplatform.PipelineJobSchedule.get(record["name"]).pause()
    except auth.sdk_errors() as exc:
        needs = (
            "aiplatform.pipelineJobs.cancel"
            if action == "cancel"
            else "aiplatform.schedules.update"
        )
        raise _failure(f"{action} {record['name']}", exc, needs) from None
    record = refresh(record, out)
    out(f"{action} requested: {record['name']} ({record['state']})")
    return record


__all__ = [
    "cancel",
    "check_cron",
    "describe",
    "find",
    "list_pipelines",
    "preflight",
    "read_registry",
    "refresh",
    "submit",
    "table",
]
