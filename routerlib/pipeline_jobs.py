"""Submit a compiled routerlib pipeline to Vertex AI Pipelines (a PipelineJob, or a schedule), and
the registry ``<outputs>/pipelines.json`` that ``routerlib pipeline list / show / cancel`` read;
how a submission is recorded and re-attached to: docs/pipelines.md."""

from __future__ import annotations

import hashlib
import json
import os
import re
from typing import Any

from routerlib import auth, runfolder, storage, vertex_pipelines
from routerlib.errors import InputError, RemoteError
from routerlib.jobs import Out, text_table, when
from routerlib.paths import resolve
from routerlib.serving.settings import DEFAULT_LOCATION

#: ``<outputs>/pipelines.json`` (beside jobs.json): every submission, known by its ``ref``.
REGISTRY = runfolder.Registry(runfolder.PIPELINES_FILE, "pipelines", "ref")
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
#: The permissions each call needs, named when Vertex answers 403.
NEEDS = {
    ("create", JOB): "aiplatform.pipelineJobs.create",
    ("create", SCHEDULE): "aiplatform.schedules.create and aiplatform.pipelineJobs.create",
    ("cancel", JOB): "aiplatform.pipelineJobs.cancel",
    ("pause", SCHEDULE): "aiplatform.schedules.update",
}


def find(ref: str) -> dict[str, Any]:
    """The record whose job id, schedule id, display name or resource name is ``ref``."""
    found = REGISTRY.find(ref, "ref", "name")
    if found is None:
        raise InputError(
            f"no pipeline {ref!r} in {REGISTRY.path()}: `routerlib pipeline list` shows them"
        )
    return found


def check_cron(cron: str) -> str:
    """A cron Vertex reads: five fields, optionally after ``TZ=...`` or ``CRON_TZ=...``."""
    text = " ".join(str(cron).split())
    if len(_CRON_PREFIX.sub("", text).split(" ")) != 5:
        raise InputError(
            f"--schedule {cron!r}: a cron has five fields (minute hour day month weekday), "
            "e.g. '0 3 * * *' for 03:00 every night; prefix TZ=Area/City for a time zone"
        )
    return text


def preflight(template: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The compiled pipeline and its parameter defaults; InputError naming what Vertex would
    refuse or could not run (nothing is sent)."""
    spec = vertex_pipelines.read_compiled(template)
    params = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    defaults = {name: param.get("defaultValue") for name, param in params.items()}
    executors = spec.get("deploymentSpec", {}).get("executors", {}).values()
    outputs = str(defaults.get("outputs") or "")
    problems = []
    if not storage.is_gcs_uri(outputs):
        problems.append(f"{template}: outputs {outputs!r} is no gs:// prefix; compile again")
    problems += [
        f"{template}: image {image!r} is in no registry Vertex can pull from; build and push it "
        "(docs/pipelines.md), then compile with --image "
        "REGION-docker.pkg.dev/PROJECT/REPO/routerlib:TAG"
        for image in sorted({e.get("container", {}).get("image", "") for e in executors})
        if not _REGISTRY_IMAGE.match(image)
    ]
    if problems:
        raise InputError("the pipeline cannot run on Vertex; nothing was sent", problems)
    return spec, defaults


def _fields(kind: str, resource: Any) -> dict[str, Any]:
    """What a record keeps of a job or schedule resource."""
    fields = {"name": resource.name, "state": resource.state.name, "updated": runfolder.now()}
    if kind == SCHEDULE:
        return {**fields, "next_run": str(resource.next_run_time or "")}
    error = getattr(resource, "error", None)
    return {**fields, "error": error.message if error is not None and error.message else ""}


def _get(record: dict[str, Any]) -> Any | None:
    """The job or schedule resource of ``record`` from the server; None when it does not exist."""
    from google.api_core.exceptions import NotFound
    from google.cloud import aiplatform

    auth.init_vertex(record["project"], record["location"], record.get("api_endpoint", ""))
    try:
        if record["kind"] == JOB:  # an id is read in the project and location just set
            return aiplatform.PipelineJob.get(record.get("name") or record["ref"]).gca_resource
        if record.get("name"):
            return aiplatform.PipelineJobSchedule.get(record["name"]).gca_resource
        found = aiplatform.PipelineJobSchedule.list(filter=f'display_name="{record["ref"]}"')
        return found[0].gca_resource if found else None
    except NotFound:
        return None


def refresh(record: dict[str, Any], out: Out) -> dict[str, Any]:
    """Ask Vertex for the state of ``record`` and record it (on failure keep the record)."""
    try:
        resource = _get(record)
    except auth.sdk_errors() as exc:
        out(f"{record['ref']}: showing the recorded state ({auth.remote_error('get', exc)})")
        return record
    if resource is None and record.get("state") == UNKNOWN:
        return record
    found = _fields(record["kind"], resource) if resource is not None else {"state": "NOT_FOUND"}
    return REGISTRY.save({**record, "updated": runfolder.now(), **found})


def _live(record: dict[str, Any]) -> bool:
    """A job that runs or succeeded, or a schedule that still starts runs: re-attach to it."""
    if record["kind"] == SCHEDULE:
        return record.get("state") in SCHEDULE_LIVE
    return record.get("state") not in ENDED - {SUCCEEDED} | {"NOT_FOUND"}


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
    if not project:  # the local checks come before credentials are loaded
        raise InputError("a Google Cloud project is required: pass --project")
    spec, defaults = preflight(template)
    cron = check_cron(schedule) if schedule else ""
    storage.bucket_info(str(defaults["outputs"]))  # the SDK would create a missing bucket
    kind = SCHEDULE if cron else JOB
    place = {"project": project, "location": location, "api_endpoint": api_endpoint}
    # the submission's hash: the compiled pipeline and where and how it runs
    what = {"spec": spec, "service_account": service_account, "cron": cron, **place}
    key = hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:12]
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
        "created": runfolder.now(),
    }
    REGISTRY.save(record)  # before the request leaves: a lost answer is looked for under this id
    return _create(record, spec, defaults, out)


def _reattach(
    kind: str, key: str, place: dict[str, str], out: Out
) -> tuple[dict[str, Any] | None, int]:
    """The record to re-attach to (or None) and the attempt number a new submission takes."""
    same = {"key": key, "kind": kind, **place}.items()
    mine = [r for r in REGISTRY.read() if same <= r.items()]
    if not mine:
        return None, 1
    record = mine[-1]
    fresh = refresh(record, out)
    if record.get("state") == UNKNOWN:
        if fresh.get("state") == UNKNOWN:
            out(
                f"{record['ref']}: the last create got no answer and Vertex has none: sending it again"
            )
            return None, int(record["attempt"])  # the same id: Vertex refuses a duplicate
        out(f"found {fresh['name']} ({fresh['state']}) for the unanswered submission")
        return fresh, 0
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
    needs = NEEDS[("create", kind)]
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
        REGISTRY.save(record, keep=False)
        raise InputError(f"{record['template']}: {exc}") from None
    account = record["service_account"] or None
    try:
        if kind == SCHEDULE:
            resource = job.create_schedule(
                cron=record["cron"],
                display_name=ref,
                max_concurrent_run_count=1,
                service_account=account,
            ).gca_resource
        else:
            job.submit(service_account=account)
            resource = job.gca_resource
    except Conflict:  # the same id exists already: this submission made it
        resource = _get(record)
    except auth.sdk_errors() as exc:
        code = getattr(exc, "code", None)
        if isinstance(code, int) and code < 500:  # an answer: the create did not happen
            REGISTRY.save(record, keep=False)
            raise auth.remote_error(f"create {kind} {ref}", exc, needs) from None
        try:
            resource = _get(record)
        except auth.sdk_errors():
            resource = None
        if resource is None:
            raise RemoteError(
                f"create {kind} {ref}: no answer ({auth.remote_error('create', exc, needs)}); it is "
                f"recorded as {UNKNOWN} in {REGISTRY.path()}: run the same command again, it "
                "re-attaches if Vertex made it and sends it again under the same id if not"
            ) from None
        out(f"the create answer was lost; found {resource.name} on Vertex")
    saved = REGISTRY.save({**record, **_fields(kind, resource)})
    out(f"submitted {saved['name']} ({saved['state']})")
    return saved


def list_pipelines(refresh_states: bool = True, out: Out = print) -> list[dict[str, Any]]:
    """Every recorded submission; live ones asked for their state first."""
    records = REGISTRY.read()
    if not refresh_states:
        return records
    return [refresh(r, out) if _live(r) or r.get("state") == UNKNOWN else r for r in records]


def table(records: list[dict[str, Any]]) -> str:
    """The submissions as aligned columns."""
    if not records:
        return f"no pipelines recorded in {REGISTRY.path()}"
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
    return text_table(("ID", "KIND", "STATE", "OUTPUTS", "CREATED"), rows)


def describe(record: dict[str, Any]) -> str:
    """Several lines about one submission, and its points when the fan-in has written them."""
    get = record.get
    rows = [
        ("state", f"{get('state')}" + when(get("error"), " ({})")),
        ("where", f"{get('project')}/{get('location')}" + when(get("api_endpoint"), " · {}")),
        ("pipeline", get("template")),
        ("outputs", get("outputs")),
        ("cron", get("cron") and f"{get('cron')}" + when(get("next_run"), " (next run {})")),
        ("runs as", get("service_account")),
    ]
    lines = [f"{record['kind']}: {get('name') or record['ref'] + ' (create unanswered)'}"]
    lines += [f"{label + ':':<10}{value}" for label, value in rows if value]
    if record["kind"] == JOB:
        name = vertex_pipelines.run_folder_name(record["ref"])
        folder = storage.join_uri(record["outputs"], name)
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
    return [f"point:    {p.name}: {p.status}" + when(p.message, ": {}") for p in record.points]


def cancel(ref: str, out: Out = print) -> dict[str, Any]:
    """Cancel a running pipeline job, or pause a schedule (no more runs start; ``gcloud`` or the
    console resumes or deletes it)."""
    from google.cloud import aiplatform

    record = refresh(find(ref), out)
    kind, state, name = record["kind"], record.get("state"), str(record.get("name"))
    if state == UNKNOWN:
        raise InputError(
            f"{ref}: its create got no answer; `routerlib pipeline submit` again first"
        )
    if kind == JOB and state in ENDED:
        raise InputError(f"{name}: already ended ({state}); nothing to cancel")
    if kind == SCHEDULE and state != "ACTIVE":
        raise InputError(f"{name}: schedule is {state}; nothing to pause")
    auth.init_vertex(record["project"], record["location"], record.get("api_endpoint", ""))
    action = "cancel" if kind == JOB else "pause"
    with auth.sdk_call(f"{action} {name}", NEEDS[(action, kind)]):
        if kind == JOB:
            aiplatform.PipelineJob.get(name).cancel()
        else:
            aiplatform.PipelineJobSchedule.get(name).pause()
    record = refresh(record, out)
    out(f"{action} requested: {record['name']} ({record['state']})")
    return record
