"""Evaluate through a Vertex AI batch prediction job: no endpoint, no 429s, one job per gold set.

The gold prompts become the same vLLM predict instances an endpoint gets
(``routerlib.evaluate.predict_instance``: a prompt instance for free decoding, a chatCompletions
instance with the generation schema in ``response_format`` for constrained decoding), written as
JSONL to Cloud Storage; a BatchPredictionJob on the Model Registry model a deploy uploaded runs
them. The job is recorded in ``<outputs>/batch_jobs.json`` the moment it exists, so the same
command re-attaches after Ctrl-C or a kill instead of paying for a second job. The output files
are read back by prefix (``prediction.results-*`` and ``prediction.errors_stats-*``) and matched
to gold rows by a row key (``routerlib_key``) in each JSONL line: the output order is not the
input order. The job names that field as ``instanceConfig.keyField``, so Vertex drops it from the
instance the container gets (Model Garden's vLLM handler passes a prompt instance's other fields
to ``SamplingParams``, which refuses unknown ones) and writes it back as each output line's
``key``; ``BatchPredictionJob.submit`` has no such argument, so the job is created through the
SDK's JobService client. Answers (plain text or a chat completion object) are read by the
endpoint path's reader, land in the same cache as endpoint predictions and are scored the same
way; rows the job failed are listed and re-run with ``rerun_failed``.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from routerlib import atomic, pricing
from routerlib.config import run_default
from routerlib.errors import InputError, RemoteError
from routerlib.paths import outputs_root

REGISTRY_FILE = "batch_jobs.json"
#: The key of the registry's list of jobs.
REGISTRY_KEY = "jobs"
KEY_FIELD = "routerlib_key"
RESULT_PREFIXES = ("prediction.results-", "prediction.errors_stats-")
_TERMINAL = {
    "JOB_STATE_SUCCEEDED",
    "JOB_STATE_FAILED",
    "JOB_STATE_CANCELLED",
    "JOB_STATE_EXPIRED",
    "JOB_STATE_PARTIALLY_SUCCEEDED",
}


@dataclass
class BatchOutcome:
    """What a batch evaluation produced: the job, and the rows it answered and failed."""

    job_name: str = ""
    state: str = ""
    output_dir: str = ""
    answered: int = 0
    failed_rows: dict[int, str] = field(default_factory=dict)
    unmatched_lines: int = 0
    reattached: bool = False
    submitted: bool = False


# ------------------------------------------------------------------------------ registry


def registry_path() -> Path:
    """``<outputs>/batch_jobs.json``."""
    return outputs_root() / REGISTRY_FILE


def read_registry() -> list[dict[str, Any]]:
    """Every recorded batch job (newest last)."""
    return atomic.read_registry(registry_path(), REGISTRY_KEY)


def _save(record: dict[str, Any]) -> None:
    with atomic.update_registry(registry_path(), REGISTRY_KEY) as jobs:
        jobs[:] = [j for j in jobs if j.get("key") != record["key"]]
        jobs.append(record)


def cancel_running() -> list[str]:
    """Cancel every recorded batch job that is still running (what ``routerlib endpoints
    cleanup`` does for batch jobs); returns the jobs cancelled."""
    from routerlib.serving import vertex

    cancelled = []
    for record in read_registry():
        if record.get("state") in _TERMINAL:
            continue
        vertex.init_vertex(
            record.get("project", ""), record.get("location", ""), record.get("api_endpoint", "")
        )
        from google.api_core import exceptions as gexc
        from google.cloud import aiplatform

        try:
            job = aiplatform.BatchPredictionJob(record["job_name"])
            state = _state_name(job)
            if state not in _TERMINAL:
                job.cancel()
                state = "JOB_STATE_CANCELLING"
                cancelled.append(record["job_name"])
        except gexc.NotFound:
            state = "JOB_STATE_CANCELLED"
        except vertex._sdk_errors() as exc:
            raise vertex._remote_error(f"cancel {record['job_name']}", exc) from None
        record["state"] = state
        _save(record)
    return cancelled


# ------------------------------------------------------------------------------ helpers


def _sha(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def row_key(index: int, prompt: str) -> str:
    """The key carried in a row's instance: its gold index and a hash of its prompt."""
    return f"{index}-{_sha(prompt)}"


def _parse_key(value: Any) -> tuple[int, str] | None:
    if not isinstance(value, str) or "-" not in value:
        return None
    index, _, sha = value.partition("-")
    return (int(index), sha) if index.isdigit() else None


def resolve_model(
    model: str, project: str | None, location: str | None
) -> tuple[str, str, str, str]:
    """Model resource name, project, location and API endpoint for ``--batch MODEL``: a full
    ``projects/…/models/ID``, an id with ``project``, or an endpoint routerlib recorded (then the
    model its deploy uploaded)."""
    import re

    from routerlib.serving import vertex

    for record in reversed(vertex.read_registry()):
        names = (record.get("endpoint_name", ""), record.get("model_name", ""))
        if model in names or any(n.rsplit("/", 1)[-1] == model for n in names if n):
            if record.get("model_state") == "deleted":
                raise InputError(
                    f"--batch {model}: the model {record.get('model_name')} was deleted by a "
                    "cleanup; deploy the checkpoint again (`routerlib deploy`) to upload one"
                )
            return (
                record["model_name"],
                record.get("project", ""),
                record.get("location", ""),
                record.get("api_endpoint", ""),
            )
    match = re.fullmatch(r"projects/([^/]+)/locations/([^/]+)/models/[^/]+", model)
    if match:
        return model, match.group(1), match.group(2), ""
    if project and re.fullmatch(r"[A-Za-z0-9_-]+", model):
        loc = location or vertex.DEFAULT_LOCATION
        return f"projects/{project}/locations/{loc}/models/{model}", project, loc, ""
    raise InputError(
        f"--batch {model}: not a Model Registry model (projects/P/locations/L/models/ID, an id "
        "with --project, or an endpoint/model recorded in endpoints.json)"
    )


def _gcs_write(uri: str, text: str) -> None:
    from routerlib import storage

    bucket, path = storage.parse_gcs_uri(uri, allow_empty_path=False)
    try:
        storage.gcs_client().bucket(bucket).blob(path).upload_from_string(
            text, content_type="application/jsonl"
        )
    except Exception as exc:
        raise RemoteError(f"writing {uri} failed: {str(exc).splitlines()[0]}") from exc


def output_lines(output_dir: str) -> Iterator[dict[str, Any]]:
    """Every JSON line of the job's ``prediction.results-*`` and ``prediction.errors_stats-*``
    files (whatever their shard numbers). A line that is not a JSON object is skipped."""
    from routerlib import storage

    bucket, path = storage.parse_gcs_uri(output_dir)
    prefix = path.rstrip("/") + "/" if path else ""
    client = storage.gcs_client()
    try:
        blobs = [
            b
            for b in client.list_blobs(bucket, prefix=prefix)
            if b.name[len(prefix) :].startswith(RESULT_PREFIXES)
        ]
        for blob in sorted(blobs, key=lambda b: b.name):
            for line in blob.download_as_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                if isinstance(row, dict):
                    yield row
    except RemoteError:
        raise
    except Exception as exc:
        raise RemoteError(f"reading {output_dir} failed: {str(exc).splitlines()[0]}") from exc


def _state_name(job: Any) -> str:
    return str(getattr(job.state, "name", job.state))


def _wait(job: Any, rows: int, poll_s: float, progress: bool) -> str:
    """Poll the job until it ends, printing one progress line (redrawn on a terminal; elsewhere a
    whole line each time the state or the row count changes); returns the final state."""
    from routerlib.progress import is_terminal

    start = time.monotonic()
    live, last = is_terminal(sys.stderr), ""
    while True:
        job._sync_gca_resource()
        state = _state_name(job)
        stats = job.gca_resource.completion_stats
        done = int(stats.successful_count) + int(stats.failed_count) if stats else 0
        failed = int(stats.failed_count) if stats else 0
        what = f"batch {job.resource_name.rsplit('/', 1)[-1]}: {state} {done}/{rows} rows"
        line = f"{what} ({failed} failed), {time.monotonic() - start:.0f} s"
        if progress and live:
            end = "\n" if state in _TERMINAL else ""
            print("\r" + line, end=end, file=sys.stderr, flush=True)
        elif progress and what != last:
            print(line, file=sys.stderr, flush=True)
        last = what
        if state in _TERMINAL:
            return state
        time.sleep(poll_s)


# ------------------------------------------------------------------------------ the run


def batch_predict(
    gold_path: str | Path,
    *,
    model: str,
    gcs_prefix: str,
    cache_path: str | Path,
    pred_path: str | Path,
    max_tokens: int = run_default("max_tokens"),
    limit: int | None = None,
    machine_type: str | None = None,
    accelerator_type: str | None = None,
    accelerator_count: int | None = None,
    project: str | None = None,
    location: str | None = None,
    api_endpoint: str | None = None,
    extra: dict[str, Any] | None = None,
    schema: dict[str, Any] | None = None,
    rerun_failed: bool = False,
    progress: bool = True,
    poll_s: float = 30.0,
) -> tuple[Path, BatchOutcome]:
    """Predict every gold row not yet cached with one batch job; write the prediction file.

    ``schema``: constrained decoding, each instance a chatCompletions instance carrying it (the
    endpoint path's instance); its cache records and jobs are kept apart from free ones. Rows
    the job failed get an invalid prediction (scored as such) and are listed in the outcome;
    ``rerun_failed`` submits a job for just those rows. Returns the prediction file and outcome.
    """
    from routerlib import evaluate as ev
    from routerlib import storage
    from routerlib.serving import vertex

    if not storage.is_gcs_uri(gcs_prefix):
        raise InputError(f"--gcs-prefix {gcs_prefix!r}: must be gs://BUCKET/PREFIX")
    prompts = ev.read_gold_prompts(gold_path, limit)
    model_name, project_r, location_r, api_r = resolve_model(model, project, location)
    project = project or project_r
    location = location or location_r or vertex.DEFAULT_LOCATION
    api = api_endpoint if api_endpoint is not None else api_r
    if not project:
        raise InputError(f"--batch {model}: give --project (or a full model resource name)")
    decoding = "constrained" if schema is not None else "free"
    target = f"batch:{model_name}" + ev._extra_tag(dict(extra or {}))
    target += ev.CONSTRAINED_SUFFIX if schema is not None else ""
    cache = Path(cache_path)
    cache.parent.mkdir(parents=True, exist_ok=True)
    records = {
        i: r
        for i, r in ev.load_cache(cache).items()
        if i < len(prompts) and r.get("prompt_sha") == ev._sha(prompts[i])
    }
    for rec in records.values():
        if rec.get("target") != target or rec.get("max_tokens") != max_tokens:
            raise InputError(
                f"{cache}: cached predictions come from {rec.get('target')} with max_tokens="
                f"{rec.get('max_tokens')}, not {target} with max_tokens={max_tokens}; "
                "delete the cache or write the report elsewhere"
            )
    pending = [i for i in range(len(prompts)) if i not in records]
    outcome = BatchOutcome()
    gold_id = _sha("\n".join(prompts))
    known_failed: dict[int, str] = {}
    this_run = (gold_id, model_name, decoding)
    for rec in read_registry():
        if (rec.get("gold"), rec.get("model"), rec.get("decoding", "free")) == this_run:
            known_failed.update({int(k): v for k, v in (rec.get("failed_rows") or {}).items()})
    if pending:
        parts: list[Any] = [model_name, gold_id, max_tokens, extra or {}, pending]
        if schema is not None:  # a free job keeps the key it always had
            parts.append({"schema": _sha(json.dumps(schema, sort_keys=True))})
        key = _sha(json.dumps(parts))
        existing = next((r for r in read_registry() if r.get("key") == key), None)
        only_failed = bool(known_failed) and set(pending) <= set(known_failed)
        if existing is None and only_failed and not rerun_failed:
            outcome.failed_rows = {i: known_failed[i] for i in pending}
        else:
            vertex.init_vertex(project, location, api)
            from google.cloud import aiplatform

            base = f"{gcs_prefix.rstrip('/')}/batch/{key}"
            if existing is None:
                existing = _submitted_unrecorded(
                    key,
                    project,
                    location,
                    api,
                    {"model": model_name, "gold": gold_id, "decoding": decoding},
                )
            if existing is not None:
                outcome.reattached = True
                record = existing
                if progress:
                    print(f"re-attached to {existing['job_name']}", file=sys.stderr)
            else:
                shape = _batch_hardware(
                    model_name, machine_type, accelerator_type, accelerator_count
                )
                lines = [
                    json.dumps(
                        {
                            **ev.predict_instance(prompts[i], max_tokens, extra, schema),
                            KEY_FIELD: row_key(i, prompts[i]),
                        },
                        ensure_ascii=False,
                    )
                    + "\n"
                    for i in pending
                ]
                _gcs_write(f"{base}/instances.jsonl", "".join(lines))
                estimate = pricing.batch_estimate(shape.machine_type, len(pending), read_registry())
                print(estimate.line(), file=sys.stderr)
                try:
                    job_name = _create_job(key, model_name, base, shape, project, location)
                except vertex._sdk_errors() as exc:
                    raise vertex._remote_error(f"submit batch job on {model_name}", exc) from None
                record = {
                    "key": key,
                    "job_name": job_name,
                    "model": model_name,
                    "gold": gold_id,
                    "decoding": decoding,
                    "rows": len(pending),
                    "input_uri": f"{base}/instances.jsonl",
                    "state": "JOB_STATE_PENDING",
                    "project": project,
                    "location": location,
                    "api_endpoint": api,
                    "submitted_at": vertex._now(),
                    **estimate.record(),
                }
                _save(record)
                outcome.submitted = True
            outcome.job_name = record["job_name"]
            try:
                job = aiplatform.BatchPredictionJob(record["job_name"])
                state = _wait(job, len(pending), poll_s, progress)
            except KeyboardInterrupt:
                print(
                    f"\nbatch job {record['job_name']} keeps running on Vertex; run the same "
                    "command again to re-attach, or `routerlib endpoints cleanup` to cancel it",
                    file=sys.stderr,
                )
                raise
            except vertex._sdk_errors() as exc:
                raise vertex._remote_error(f"poll {record['job_name']}", exc) from None
            outcome.state = state
            record["state"] = state
            if state not in ("JOB_STATE_SUCCEEDED", "JOB_STATE_PARTIALLY_SUCCEEDED"):
                _save(record)
                error = job.gca_resource.error.message or "no message"
                raise RemoteError(f"batch job {record['job_name']} ended {state}: {error}")
            info = job.output_info
            outcome.output_dir = info.gcs_output_directory if info is not None else ""
            answered, failed, unmatched = _read_back(outcome.output_dir, prompts, set(pending))
            with open(cache, "a", encoding="utf-8") as handle:
                for index, text in sorted(answered.items()):
                    rec = _cache_record(index, prompts[index], text, target, max_tokens)
                    rec["batch_job"] = record["job_name"]
                    records[index] = rec
                    handle.write(json.dumps(rec, ensure_ascii=False) + "\n")
            missing = {i: "no output line for this row" for i in pending if i not in answered}
            missing.update(failed)
            outcome.answered = len(answered)
            outcome.failed_rows = dict(sorted(missing.items()))
            outcome.unmatched_lines = unmatched
            record["failed_rows"] = {str(k): v for k, v in outcome.failed_rows.items()}
            record["output_dir"] = outcome.output_dir
            done = job.gca_resource  # billed: node hours of its machine x the machine's rate
            spent = pricing.batch_cost(
                done.dedicated_resources.machine_spec.machine_type,
                int(record.get("rows") or 0),
                done.resources_consumed.replica_hours or None,
            )
            record.update(spent.record())
            print(spent.line(), file=sys.stderr)
            _save(record)

    from routerlib.runfolder import PredictionRecord, write_predictions

    predictions: list[PredictionRecord] = []
    for index in range(len(prompts)):
        if index in records:
            predictions.append(PredictionRecord(**ev.prediction_record(index, records[index])))
        else:
            message = outcome.failed_rows.get(index) or known_failed.get(index, "not predicted")
            predictions.append(
                PredictionRecord(
                    index=index,
                    completion=None,
                    raw=None,
                    extraction=f"batch error: {message}",
                    batch_error=message,
                )
            )
    out = write_predictions(pred_path, predictions)
    return out, outcome


def _create_job(
    key: str, model_name: str, base: str, shape: Any, project: str, location: str
) -> str:
    """Create the batch prediction job for ``key``; returns its resource name.

    The request ``BatchPredictionJob.submit`` sends (JSONL in and out, the machine, one replica,
    the ``routerlib`` label) plus ``instanceConfig.keyField``, which ``submit`` does not offer:
    created through the JobService client the SDK itself uses, with the SDK's settings."""
    from google.cloud.aiplatform import initializer, utils
    from google.cloud.aiplatform_v1 import types

    job = types.BatchPredictionJob(
        display_name=f"routerlib-batch-{key}",
        model=model_name,
        input_config=types.BatchPredictionJob.InputConfig(
            instances_format="jsonl",
            gcs_source=types.GcsSource(uris=[f"{base}/instances.jsonl"]),
        ),
        output_config=types.BatchPredictionJob.OutputConfig(
            predictions_format="jsonl",
            gcs_destination=types.GcsDestination(output_uri_prefix=f"{base}/output"),
        ),
        instance_config=types.BatchPredictionJob.InstanceConfig(key_field=KEY_FIELD),
        dedicated_resources=types.BatchDedicatedResources(
            machine_spec=types.MachineSpec(
                machine_type=shape.machine_type,
                accelerator_type=shape.accelerator_type,
                accelerator_count=shape.accelerator_count,
            ),
            starting_replica_count=1,
            max_replica_count=1,
        ),
        labels={"routerlib": "batch"},
    )
    client = initializer.global_config.create_client(
        client_class=utils.JobClientWithOverride, location_override=location
    )
    created = client.create_batch_prediction_job(
        parent=f"projects/{project}/locations/{location}", batch_prediction_job=job
    )
    return str(created.name)


def _submitted_unrecorded(
    key: str, project: str, location: str, api: str, what: dict[str, Any]
) -> dict[str, Any] | None:
    """A job for ``key`` that Vertex has but the registry lacks (killed between submit and the
    record): found by its display name, recorded now (with ``what``: model, gold, decoding), so
    it is re-attached, not paid twice."""
    from google.cloud import aiplatform

    from routerlib.serving import vertex

    name = f"routerlib-batch-{key}"
    try:
        found = aiplatform.BatchPredictionJob.list(
            filter=f'display_name="{name}"', project=project, location=location
        )
    except vertex._sdk_errors() as exc:
        raise vertex._remote_error(f"list batch jobs of {project}/{location}", exc) from None
    alive = [
        j
        for j in found
        if j.display_name == name
        and _state_name(j) not in ("JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED")
    ]
    if not alive:
        return None
    record = {
        "key": key,
        "job_name": alive[0].resource_name,
        **what,
        "state": _state_name(alive[0]),
        "project": project,
        "location": location,
        "api_endpoint": api,
        "submitted_at": "",
    }
    _save(record)
    return record


def _batch_hardware(
    model_name: str,
    machine_type: str | None,
    accelerator_type: str | None,
    accelerator_count: int | None,
) -> Any:
    """The batch job's machine: what is given, else what the model's deploy ran on (as
    recorded), checked against the checkpoint's size like a deploy."""
    from routerlib.serving import hardware as hw
    from routerlib.serving import vertex

    record: dict[str, Any] = next(
        (r for r in reversed(vertex.read_registry()) if r.get("model_name") == model_name), {}
    )
    shape = hw.choose(
        "",
        machine_type or record.get("machine_type"),
        accelerator_type or record.get("accelerator_type"),
        accelerator_count or record.get("accelerator_count"),
    )
    if record.get("checkpoint_uri"):
        hw.check_fit(record["checkpoint_uri"], shape)
    return shape


def _cache_record(
    index: int, prompt: str, text: str, target: str, max_tokens: int
) -> dict[str, Any]:
    from routerlib.models import estimate_tokens

    return {
        "index": index,
        "prompt_sha": _sha(prompt),
        "target": target,
        "max_tokens": max_tokens,
        "attempts": 1,
        "text": text,
        "latency_s": None,
        "prompt_tokens": estimate_tokens(prompt),
        "completion_tokens": estimate_tokens(text),
        "tokens_estimated": True,
    }


def _read_back(
    output_dir: str, prompts: list[str], wanted: set[int]
) -> tuple[dict[int, str], dict[int, str], int]:
    """Answers and failures by gold index out of the job's output files; also the number of
    lines whose key matched no wanted row."""
    from routerlib import evaluate as ev

    answered: dict[int, str] = {}
    failed: dict[int, str] = {}
    unmatched = 0
    for row in output_lines(output_dir):
        found = row.get("instance")
        instance: dict[str, Any] = found if isinstance(found, dict) else {}
        parsed = _parse_key(row.get("key") or instance.get(KEY_FIELD))
        if parsed is None or parsed[0] not in wanted or parsed[1] != _sha(prompts[parsed[0]]):
            unmatched += 1
            continue
        index = parsed[0]
        if "prediction" in row:
            try:
                answered[index] = ev.prediction_text(row["prediction"], output_dir)
            except RemoteError as exc:
                failed[index] = str(exc)
            failed.pop(index, None) if index in answered else None
        elif "error" in row and index not in answered:
            error = row["error"]
            message = error.get("message", "") if isinstance(error, dict) else str(error)
            status = error.get("status", error.get("code", "")) if isinstance(error, dict) else ""
            failed[index] = " ".join(f"{status} {message}".split()) or "failed"
    return answered, failed, unmatched
