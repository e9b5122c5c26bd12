"""Evaluate through a Vertex AI batch prediction job: no endpoint, no 429s, one job per gold set,
recorded in ``<outputs>/batch_jobs.json`` the moment it exists (the same command re-attaches
after Ctrl-C); output lines are matched to gold rows by their key. See docs/serving.md, "Batch
prediction".
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from routerlib import auth, pricing, storage
from routerlib.errors import InputError, RemoteError
from routerlib.progress import is_terminal
from routerlib.runfolder import Registry, now
from routerlib.schema import completion_json_schema
from routerlib.serving import hardware as hw
from routerlib.serving import vertex
from routerlib.serving.base import Completion, Failed, Result
from routerlib.serving.cache import prompt_sha as _sha
from routerlib.serving.settings import DEFAULT_LOCATION, MACHINE, PLACE, VertexSettings
from routerlib.serving.wire import extra_tag, predict_instance, prediction_text

#: ``<outputs>/batch_jobs.json``: every batch job, known by the key of its model and rows.
REGISTRY = Registry("batch_jobs.json", "jobs", "key")
KEY_FIELD = "routerlib_key"
RESULT_PREFIXES = ("prediction.results-", "prediction.errors_stats-")
_SUCCEEDED = ("JOB_STATE_SUCCEEDED", "JOB_STATE_PARTIALLY_SUCCEEDED")
_DEAD = ("JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED")
_TERMINAL = frozenset(_SUCCEEDED + _DEAD)


@dataclass
class BatchOutcome:
    """What a batch evaluation produced: the job, and the rows it failed (by gold index); the
    fields are the keys ``describe`` reports."""

    batch_job: str = ""
    batch_state: str = ""
    batch_output_dir: str = ""
    batch_reattached: bool = False
    failed_rows: dict[int, str] = field(default_factory=dict)


def cancel_running() -> list[str]:
    """Cancel every recorded batch job that is still running (what ``routerlib endpoints
    cleanup`` does for batch jobs); returns the jobs cancelled."""
    cancelled = []
    for record in REGISTRY.read():
        if record.get("state") in _TERMINAL:
            continue
        auth.init_vertex(*(record.get(k, "") for k in PLACE))
        from google.api_core import exceptions as gexc
        from google.cloud import aiplatform

        with auth.sdk_call(f"cancel {record['job_name']}"):
            try:
                job = aiplatform.BatchPredictionJob(record["job_name"])
                state = _state_name(job)
                if state not in _TERMINAL:
                    job.cancel()
                    state = "JOB_STATE_CANCELLING"
                    cancelled.append(record["job_name"])
            except gexc.NotFound:
                state = "JOB_STATE_CANCELLED"
        REGISTRY.save(record | {"state": state})
    return cancelled


def row_key(index: int, prompt: str) -> str:
    """The key carried in a row's instance: its gold index and a hash of its prompt."""
    return f"{index}-{_sha(prompt)}"


def resolve_model(model: str, settings: VertexSettings) -> tuple[str, VertexSettings]:
    """The model resource name for ``--batch MODEL`` and ``settings`` with where it lives filled
    in (what ``settings`` give wins): a full ``projects/…/models/ID``, an id with a project, an
    endpoint routerlib recorded (then the model its deploy uploaded) or a checkpoint's ``gs://``
    URI (the model its latest deploy uploaded, as ``eval_mode: batch`` asks)."""

    def at(project: str, location: str, api_endpoint: str = "") -> VertexSettings:
        found = {"project": project, "location": location, "api_endpoint": api_endpoint}
        given: dict[str, Any] = {k: getattr(settings, k) or v for k, v in found.items()}
        return replace(settings, **given)

    if storage.is_gcs_uri(model):  # the latest deploy of it whose model still exists
        kept = [r for r in vertex.REGISTRY.read() if r.get("model_state") != "deleted"]
        record = next((r for r in reversed(kept) if r.get("checkpoint_uri") == model), None)
        if record is None or not record.get("model_name"):
            raise InputError(
                f"eval_mode batch: no Model Registry model recorded for {model}; run "
                f"`routerlib deploy --checkpoint {model}` then `routerlib endpoints delete "
                "NAME` (keeps the model), or use eval_mode: endpoint"
            )
    else:
        record = vertex.REGISTRY.find(model, "endpoint_name", "model_name")
        if record is not None and record.get("model_state") == "deleted":
            raise InputError(
                f"--batch {model}: the model {record['model_name']} was deleted by a cleanup; "
                "deploy the checkpoint again (`routerlib deploy`) to upload one"
            )
    if record is not None:
        project, location, api = (str(record.get(k, "")) for k in PLACE)
        return record["model_name"], at(project, location or DEFAULT_LOCATION, api)
    match = re.fullmatch(r"projects/([^/]+)/locations/([^/]+)/models/[^/]+", model)
    if match:
        return model, at(match.group(1), match.group(2))
    if settings.project and re.fullmatch(r"[A-Za-z0-9_-]+", model):
        where = at(settings.project, DEFAULT_LOCATION)
        return f"projects/{where.project}/locations/{where.location}/models/{model}", where
    raise InputError(
        f"--batch {model}: not a Model Registry model (projects/P/locations/L/models/ID, an id "
        "with --project, or an endpoint/model recorded in endpoints.json)"
    )


def output_lines(output_dir: str) -> Iterator[dict[str, Any]]:
    """Every JSON line of the job's ``prediction.results-*`` and ``prediction.errors_stats-*``
    files (whatever their shard numbers). A line that is not a JSON object is skipped."""
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
    except Exception as exc:
        raise RemoteError(f"reading {output_dir} failed: {str(exc).splitlines()[0]}") from exc


def _state_name(job: Any) -> str:
    return str(getattr(job.state, "name", job.state))


def _wait(job: Any, rows: int, poll_s: float, progress: bool) -> str:
    """Poll the job until it ends, printing one progress line (redrawn on a terminal; elsewhere a
    whole line each time the state or the row count changes); returns the final state."""
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


class BatchPredictor:
    """Kind ``batch``: one Vertex batch prediction job per call on ``model`` (as
    :func:`resolve_model` takes it); ``settings``' machine unset: what its deploy ran on. Rows a
    job failed come back as :class:`Failed`, submitted again only with ``rerun_failed``."""

    kind = "batch"
    mode = "batch"

    def __init__(
        self,
        model: str,
        *,
        gcs_prefix: str,
        settings: VertexSettings | None = None,
        extra: dict[str, Any] | None = None,
        rerun_failed: bool = False,
        poll_s: float = 30.0,
    ) -> None:
        if not gcs_prefix:
            raise InputError(
                "--batch needs --gcs-prefix gs://BUCKET/PREFIX (instances and outputs)"
            )
        if not storage.is_gcs_uri(gcs_prefix):
            raise InputError(f"--gcs-prefix {gcs_prefix!r}: must be gs://BUCKET/PREFIX")
        self.model, self.settings = resolve_model(model, settings or VertexSettings())
        self.gcs_prefix = gcs_prefix
        if not self.settings.project:
            raise InputError(f"--batch {model}: give --project (or a full model resource name)")
        self.extra = dict(extra or {})
        self.rerun_failed = rerun_failed
        self.poll_s = poll_s
        self.name = f"batch:{self.model}" + extra_tag(self.extra)
        self.outcome: BatchOutcome | None = None

    def predict(
        self,
        prompts: Mapping[int, str],
        *,
        max_tokens: int,
        constrained: bool = False,
        progress: bool = False,
    ) -> Iterator[dict[int, Result]]:
        """One job for every prompt (none when each is a row a recorded job failed and
        ``rerun_failed`` is off); yields all answers when the job has ended."""
        schema = completion_json_schema(generation=True) if constrained else None
        self.outcome = outcome = BatchOutcome()
        if not prompts:
            return
        keys = {i: row_key(i, p) for i, p in prompts.items()}
        decoding = "constrained" if schema is not None else "free"
        known_failed = self._known_failures(keys, decoding)
        parts: list[Any] = [self.model, sorted(keys.values()), max_tokens, self.extra]
        if schema is not None:  # a free job keeps the key it always had
            parts.append({"schema": _sha(json.dumps(schema, sort_keys=True))})
        key = _sha(json.dumps(parts))
        existing = REGISTRY.find(key)
        if existing is None and set(prompts) <= set(known_failed) and not self.rerun_failed:
            outcome.failed_rows = {i: known_failed[i] for i in sorted(prompts)}
            yield {i: Failed(known_failed[i]) for i in prompts}
            return
        rows_id = _sha("\n".join(sorted(keys.values())))
        where = {k: getattr(self.settings, k) for k in PLACE}
        what = {"model": self.model, "gold": rows_id, "decoding": decoding, **where}
        auth.init_vertex(*where.values())
        record = existing or self._lost_job(key, what)
        outcome.batch_reattached = record is not None
        if record is None:
            instances = (
                {**predict_instance(prompt, max_tokens, self.extra, schema), KEY_FIELD: keys[i]}
                for i, prompt in sorted(prompts.items())
            )
            record = self._submit(key, what, instances)
        elif progress:
            print(f"re-attached to {record['job_name']}", file=sys.stderr)
        answered, failed = self._run(record, prompts, progress)
        meta = {"batch_job": record["job_name"]}
        yield {i: Failed(message) for i, message in failed.items()} | {
            i: Completion(text, None, meta=dict(meta)) for i, text in answered.items()
        }

    def _known_failures(self, keys: dict[int, str], decoding: str) -> dict[int, str]:
        """Rows (by index) a recorded job on this model and decoding failed, by their row key."""
        by_key: dict[str, str] = {}
        for rec in REGISTRY.read():
            if (rec.get("model"), rec.get("decoding", "free")) == (self.model, decoding):
                by_key.update(rec.get("failed_keys") or {})
        return {i: by_key[k] for i, k in keys.items() if k in by_key}

    def _lost_job(self, key: str, what: dict[str, Any]) -> dict[str, Any] | None:
        """A live job Vertex has under ``key``'s display name that the registry lacks (killed
        between create and record): recorded now (with ``what``), so it is not paid twice."""
        from google.cloud import aiplatform

        s, name = self.settings, f"routerlib-batch-{key}"
        with auth.sdk_call(f"list batch jobs of {s.project}/{s.location}"):
            found = aiplatform.BatchPredictionJob.list(
                filter=f'display_name="{name}"', project=s.project, location=s.location
            )
        for job in found:
            if job.display_name == name and _state_name(job) not in _DEAD:
                record = {"key": key, "job_name": job.resource_name, **what}
                return REGISTRY.save(record | {"state": _state_name(job), "submitted_at": ""})
        return None

    def _submit(
        self, key: str, what: dict[str, Any], instances: Iterator[dict[str, Any]]
    ) -> dict[str, Any]:
        """A new job for ``instances``, recorded (with ``what``) the moment it exists."""
        base = f"{self.gcs_prefix.rstrip('/')}/batch/{key}"
        shape = _batch_hardware(self.model, self.settings)
        lines = [json.dumps(x, ensure_ascii=False) + "\n" for x in instances]
        with tempfile.TemporaryDirectory() as folder:  # uploaded with a checksum, then verified
            local = Path(folder, "instances.jsonl")
            local.write_text("".join(lines), encoding="utf-8")
            storage.upload_file(local, f"{base}/instances.jsonl")
        estimate = pricing.batch_estimate(shape.machine_type, len(lines), REGISTRY.read())
        print(estimate.line(), file=sys.stderr)
        with auth.sdk_call(f"submit batch job on {self.model}"):
            job_name = _create_job(key, self.model, base, shape, self.settings)
        record = {"key": key, "job_name": job_name, **what, "state": "JOB_STATE_PENDING"}
        record.update(rows=len(lines), input_uri=f"{base}/instances.jsonl")
        return REGISTRY.save(record | {"submitted_at": now(), **estimate.record()})

    def _run(
        self, record: dict[str, Any], prompts: Mapping[int, str], progress: bool
    ) -> tuple[dict[int, str], dict[int, str]]:
        """Wait for the job, read its output back; the answers and the failures by row."""
        from google.cloud import aiplatform

        outcome = self.outcome
        assert outcome is not None
        outcome.batch_job = record["job_name"]
        try:
            with auth.sdk_call(f"poll {record['job_name']}"):
                job = aiplatform.BatchPredictionJob(record["job_name"])
                state = _wait(job, len(prompts), self.poll_s, progress)
        except KeyboardInterrupt:
            print(
                f"\nbatch job {record['job_name']} keeps running on Vertex; run the same "
                "command again to re-attach, or `routerlib endpoints cleanup` to cancel it",
                file=sys.stderr,
            )
            raise
        outcome.batch_state = record["state"] = state
        if state not in _SUCCEEDED:
            REGISTRY.save(record)
            error = job.gca_resource.error.message or "no message"
            raise RemoteError(f"batch job {record['job_name']} ended {state}: {error}")
        info = job.output_info
        outcome.batch_output_dir = info.gcs_output_directory if info is not None else ""
        answered, failed = _read_back(outcome.batch_output_dir, prompts)
        missing = {i: "no output line for this row" for i in prompts if i not in answered}
        outcome.failed_rows = dict(sorted({**missing, **failed}.items()))
        record["failed_rows"] = {str(k): v for k, v in outcome.failed_rows.items()}
        record["failed_keys"] = {row_key(i, prompts[i]): v for i, v in outcome.failed_rows.items()}
        record["output_dir"] = outcome.batch_output_dir
        done = job.gca_resource  # billed: node hours of its machine x the machine's rate
        spent = pricing.batch_cost(
            done.dedicated_resources.machine_spec.machine_type,
            int(record.get("rows") or 0),
            done.resources_consumed.replica_hours or None,
        )
        record.update(spent.record())
        print(spent.line(), file=sys.stderr)
        REGISTRY.save(record)
        return answered, outcome.failed_rows

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"mode": self.mode, "kind": self.kind}
        if self.outcome is None:
            return info
        failed = self.outcome.failed_rows
        info |= asdict(self.outcome) | {"failed_rows": sorted(failed)}
        return info | {"failed_reasons": {str(k): v for k, v in failed.items()}}

    def close(self) -> None:
        """Nothing to release: a finished job holds no machine."""


def _create_job(key: str, model_name: str, base: str, shape: Any, at: VertexSettings) -> str:
    """Create the batch prediction job for ``key`` with ``instanceConfig.keyField`` (which
    ``BatchPredictionJob.submit`` does not offer: docs/serving.md); returns its resource name."""
    from google.cloud.aiplatform import initializer, utils
    from google.cloud.aiplatform_v1 import types

    job = types.BatchPredictionJob(
        display_name=f"routerlib-batch-{key}",
        model=model_name,
        input_config=types.BatchPredictionJob.InputConfig(
            instances_format="jsonl", gcs_source=types.GcsSource(uris=[f"{base}/instances.jsonl"])
        ),
        output_config=types.BatchPredictionJob.OutputConfig(
            predictions_format="jsonl",
            gcs_destination=types.GcsDestination(output_uri_prefix=f"{base}/output"),
        ),
        instance_config=types.BatchPredictionJob.InstanceConfig(key_field=KEY_FIELD),
        dedicated_resources=types.BatchDedicatedResources(
            machine_spec=types.MachineSpec(**asdict(shape)),
            starting_replica_count=1,
            max_replica_count=1,
        ),
        labels={"routerlib": "batch"},
    )
    client = initializer.global_config.create_client(
        client_class=utils.JobClientWithOverride, location_override=at.location
    )
    created = client.create_batch_prediction_job(
        parent=f"projects/{at.project}/locations/{at.location}", batch_prediction_job=job
    )
    return str(created.name)


def _batch_hardware(model_name: str, settings: VertexSettings) -> hw.Hardware:
    """The batch job's machine: what ``settings`` give, else what the model's deploy ran on (as
    recorded), checked against the checkpoint's size like a deploy."""
    record = vertex.REGISTRY.find(model_name, "model_name") or {}
    shape = hw.choose("", **{k: getattr(settings, k) or record.get(k) for k in MACHINE})
    if record.get("checkpoint_uri"):
        hw.check_fit(record["checkpoint_uri"], shape)
    return shape


def _read_back(
    output_dir: str, prompts: Mapping[int, str]
) -> tuple[dict[int, str], dict[int, str]]:
    """Answers and failures by gold index out of the job's output files (a line whose key
    matches no wanted row is skipped)."""
    answered: dict[int, str] = {}
    failed: dict[int, str] = {}
    wanted = {row_key(i, prompt): i for i, prompt in prompts.items()}
    for row in output_lines(output_dir):
        found = row.get("instance")
        instance: dict[str, Any] = found if isinstance(found, dict) else {}
        index = wanted.get(str(row.get("key") or instance.get(KEY_FIELD)))
        if index is None:
            continue
        if "prediction" in row:
            try:
                answered[index] = prediction_text(row["prediction"], output_dir)
                failed.pop(index, None)
            except RemoteError as exc:
                if index not in answered:
                    failed[index] = str(exc)
        elif "error" in row and index not in answered:
            error = row["error"]
            message = error.get("message", "") if isinstance(error, dict) else str(error)
            status = error.get("status", error.get("code", "")) if isinstance(error, dict) else ""
            failed[index] = " ".join(f"{status} {message}".split()) or "failed"
    return answered, failed
