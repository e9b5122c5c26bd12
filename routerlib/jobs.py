"""The job registry and the high-level tuning API the notebooks and the CLI call.

Every submission and every refusal is one record in ``<outputs root>/jobs.json`` (a JSON object
``{"version": 1, "jobs": [...]}``). Updates take a file lock, re-read the file, change one record
and replace the file atomically (temp file + fsync + rename), so a crash mid-write leaves the
previous registry intact. Each record keeps the project, location and endpoint it was submitted
to, so ``show``/``wait``/``cancel`` re-attach by name from any process.

``tune`` is the whole submission path: validate the spec, check the datasets exist, print a cost
estimate, (dry run: print the request and stop), re-attach to a live job of the same spec, submit,
record, wait.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from routerlib import atomic
from routerlib.errors import InputError, RemoteError, RouterlibError
from routerlib.models import EMBEDDED_MODEL, max_seq_len, model_info
from routerlib.paths import outputs_root, resolve
from routerlib.tuning import choose_backend, get_backend
from routerlib.tuning.base import DENIED, REATTACH_STATES, SUCCEEDED, Job, TuningSpec

REGISTRY_FILE = "jobs.json"
REGISTRY_VERSION = 1
#: State of the Job that a dry run returns (never recorded).
DRY_RUN = "DRY_RUN"

Out = Callable[[str], Any]


class WaitInterrupted(RouterlibError):
    """Ctrl-C while waiting: the job keeps running; the message says how to re-attach."""

    exit_code = 130


# --------------------------------------------------------------------------- registry file


def registry_path() -> Path:
    """``<outputs root>/jobs.json`` (ROUTERLIB_OUTPUTS, default outputs/)."""
    return outputs_root() / REGISTRY_FILE


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """An exclusive lock beside the registry, held for one read-modify-write."""
    import fcntl

    path = registry_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(REGISTRY_FILE + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def load_registry() -> list[Job]:
    """Every recorded job, in recording order ([] when there is no registry yet)."""
    path = registry_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    try:
        data = json.loads(text)
        records = data["jobs"]
        if not isinstance(records, list):
            raise TypeError("jobs is not a list")
        return [Job.model_validate(r) for r in records]
    except Exception as exc:
        raise InputError(
            f"{path}: not a routerlib job registry ({type(exc).__name__}: {exc}); "
            "move it away to start a new one"
        ) from None


def _write(jobs: list[Job]) -> None:
    payload = {"version": REGISTRY_VERSION, "jobs": [j.model_dump(mode="json") for j in jobs]}
    atomic.write_json(registry_path(), payload)


def record(job: Job) -> Job:
    """Insert or replace (by name) one job in the registry, atomically."""
    with _locked():
        jobs = load_registry()
        for i, existing in enumerate(jobs):
            if existing.name == job.name:
                jobs[i] = job
                break
        else:
            jobs.append(job)
        _write(jobs)
    return job


def find(name: str) -> Job:
    """The recorded job whose resource name is ``name`` or ends with ``/name`` (its id)."""
    jobs = load_registry()
    exact = [j for j in jobs if j.name == name]
    if exact:
        return exact[-1]
    tail = [j for j in jobs if j.name.endswith("/" + name)]
    if len(tail) == 1:
        return tail[0]
    if len(tail) > 1:
        raise InputError(f"job id {name!r} matches several jobs: give the full resource name")
    raise InputError(
        f"no job {name!r} in {registry_path()}: `routerlib jobs list` shows the recorded ones"
    )


def spec_key(spec: TuningSpec) -> str:
    """A canonical text of the spec, equal for equal specs."""
    return json.dumps(spec.model_dump(mode="json"), sort_keys=True)


# --------------------------------------------------------------------------- helpers


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _backend_for(job: Job) -> Any:
    return get_backend(
        job.backend, project=job.project, location=job.location, api_endpoint=job.api_endpoint
    )


def _merge(recorded: Job, remote: Job) -> Job:
    """The recorded job updated with what the API says now (the recorded spec is kept)."""
    update: dict[str, Any] = {"state": remote.state, "error": remote.error}
    if remote.update_time:
        update["update_time"] = remote.update_time
    if remote.create_time and not recorded.create_time:
        update["create_time"] = remote.create_time
    if remote.tuning_data_stats:
        update["tuning_data_stats"] = remote.tuning_data_stats
    if remote.state == SUCCEEDED:
        update["checkpoint_uri"] = remote.checkpoint_uri or recorded.spec.checkpoint_uri()
    return recorded.model_copy(update=update)


def short_id(name: str) -> str:
    """The last segment of a resource name (the job id)."""
    return name.rsplit("/", 1)[-1]


def _unreachable_error() -> type[RemoteError]:
    from routerlib.tuning.vertex import ApiUnreachable

    return ApiUnreachable


def refresh(job: Job, out: Out | None = None) -> Job:
    """Ask the API for the job's state and record it; on failure keep the record and say why."""
    if job.backend != "vertex" or job.state == DENIED:
        return job
    try:
        remote = _backend_for(job).get(job.name)
    except RemoteError as exc:
        if out is not None:
            out(f"{short_id(job.name)}: showing the recorded state ({exc})")
        return job
    return record(_merge(job, remote))


def ensure_success(job: Job) -> Job:
    """Return ``job`` when it succeeded; else RemoteError with its state and error message."""
    if job.state == SUCCEEDED:
        return job
    reason = f": {job.error}" if job.error else ""
    raise RemoteError(f"tuning job {job.name} ended {job.state}{reason}")


def _stats_text(job: Job) -> str:
    """The scalar statistics (example count, billable tokens, steps, ...) as k=v pairs."""
    return ", ".join(
        f"{k}={v}" for k, v in job.tuning_data_stats.items() if not isinstance(v, (dict, list))
    )


def describe(job: Job) -> str:
    """Several lines about one job: name, state, spec, statistics, checkpoint."""
    spec = job.spec
    lines = [
        f"job:         {job.name}",
        f"state:       {job.state}" + (f" ({job.error})" if job.error else ""),
        f"backend:     {job.backend}"
        + (f" · {job.project}/{job.location}" if job.project else "")
        + (f" · {job.api_endpoint}" if job.api_endpoint else ""),
        f"base model:  {spec.base_model}"
        + (f" (continuing from {spec.custom_base_model})" if spec.custom_base_model else ""),
        f"tuning:      {spec.tuning_mode}"
        + (f", adapter {spec.adapter_size}" if spec.tuning_mode == "PEFT_ADAPTER" else "")
        + f", {spec.epochs} epoch(s)"
        + (f", learning rate {spec.learning_rate:g}" if spec.learning_rate else "")
        + (
            f", learning-rate multiplier {spec.learning_rate_multiplier:g}"
            if spec.learning_rate_multiplier
            else ""
        ),
        f"training:    {spec.training_dataset_uri}",
    ]
    if spec.validation_dataset_uri:
        lines.append(f"validation:  {spec.validation_dataset_uri}")
    lines.append(f"output:      {spec.output_uri}")
    if job.create_time:
        lines.append(f"created:     {job.create_time}")
    if job.cost_estimate_usd is not None:
        lines.append(f"estimate:    ~${job.cost_estimate_usd:,.2f}")
    if job.tuning_data_stats:
        lines.append(f"statistics:  {_stats_text(job)}")
    if job.checkpoint_uri:
        lines.append(f"checkpoint:  {job.checkpoint_uri}")
    return "\n".join(lines)


def jobs_table(jobs: list[Job]) -> str:
    """The "Active Tuning Jobs" table: job id, base model, tuning mode, adapter size, output, status."""
    header = ("JOB ID", "BASE MODEL", "TUNING MODE", "ADAPTER", "OUTPUT URI", "STATUS")
    rows = [
        (
            short_id(j.name),
            j.spec.base_model,
            j.spec.tuning_mode,
            str(j.spec.adapter_size) if j.spec.tuning_mode == "PEFT_ADAPTER" else "-",
            j.spec.output_uri,
            j.state.removeprefix("JOB_STATE_"),
        )
        for j in jobs
    ]
    if not rows:
        return f"Active Tuning Jobs\n(no jobs recorded in {registry_path()})"
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [
        "Active Tuning Jobs",
        fmt.format(*header).rstrip(),
        fmt.format(*("-" * w for w in widths)),
    ]
    lines += [fmt.format(*r).rstrip() for r in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------- checks before submit


def _check_spec_for_backend(spec: TuningSpec, backend: str) -> None:
    """Backend-specific rules; InputError lists every problem with what to change."""
    problems = []
    gs = {
        "training_dataset_uri": spec.training_dataset_uri,
        "validation_dataset_uri": spec.validation_dataset_uri,
        "output_uri": spec.output_uri,
        "custom_base_model": spec.custom_base_model,
    }
    if backend == "vertex":
        for key, value in gs.items():
            if value and not value.startswith("gs://"):
                problems.append(
                    f"{key}: {value!r} must be a gs:// URI for Vertex AI (upload it, or use "
                    "--backend local)"
                )
        if spec.base_model == EMBEDDED_MODEL:
            problems.append(
                f"base_model: {EMBEDDED_MODEL} is the embedded local model: use --backend local or "
                "a Vertex model id such as meta/llama3_1@llama-3.1-8b-instruct"
            )
    else:
        for key, value in gs.items():
            if value and value.startswith("gs:"):
                problems.append(
                    f"{key}: {value!r}: the local backend reads and writes local paths (download "
                    "it, or use --backend vertex)"
                )
    if problems:
        raise InputError("tuning spec does not fit the backend", problems)


def _check_datasets(spec: TuningSpec, backend: str) -> None:
    """The datasets must exist (and, for vertex, the output bucket)."""
    from routerlib import storage

    problems = []
    for key in ("training_dataset_uri", "validation_dataset_uri"):
        uri = getattr(spec, key)
        if uri and not storage.exists(uri if storage.is_gcs_uri(uri) else resolve(uri)):
            problems.append(f"{key}: {uri} does not exist")
    if problems:
        raise InputError("dataset not found: run prepare (and upload) first", problems)
    if backend == "vertex":
        storage.check_bucket(spec.output_uri)


def _find_reattachable(
    spec: TuningSpec, backend: str, project: str | None, location: str | None, out: Out
) -> Job | None:
    """A recorded job of the same spec (backend, project, location) that is live or succeeded."""
    key = spec_key(spec)
    for job in reversed(load_registry()):
        if job.backend != backend or spec_key(job.spec) != key or job.state not in REATTACH_STATES:
            continue
        if backend == "vertex" and (job.project, job.location) != (project, location):
            continue
        if backend == "vertex":
            job = refresh(job, out)
            if job.state not in REATTACH_STATES:
                continue
        elif job.state == SUCCEEDED and not (
            job.checkpoint_uri and os.path.exists(job.checkpoint_uri)
        ):
            continue  # the local checkpoint is gone: train again
        return job
    return None


# --------------------------------------------------------------------------- the high-level API


def tune(
    spec: TuningSpec | dict[str, Any],
    *,
    backend: str | None = None,
    wait: bool = True,
    force: bool = False,
    dry_run: bool = False,
    project: str | None = None,
    location: str | None = None,
    api_endpoint: str | None = None,
    poll_interval: float = 30.0,
    out: Out = print,
    local_options: dict[str, Any] | None = None,
) -> Job:
    """Submit ``spec`` (or re-attach to its live job) and, with ``wait``, follow it to the end.

    Raises InputError before anything is sent when the spec or its datasets are wrong,
    RemoteError when the server refuses (recorded as DENIED) or the job ends unsuccessfully,
    WaitInterrupted on Ctrl-C while waiting (the job keeps running). ``local_options`` go to
    LocalBackend (batch_size, max_train_tokens, seed, ...); the local backend trains in the
    foreground, so ``wait`` does not apply to it.
    """
    from routerlib import pricing

    if not isinstance(spec, TuningSpec):
        spec = TuningSpec.build(**spec)
    name = choose_backend(spec.training_dataset_uri, backend)
    _check_spec_for_backend(spec, name)
    if name == "vertex":
        from routerlib.tuning.vertex import normalize_endpoint, resolve_location, resolve_project

        project = resolve_project(project)
        location = resolve_location(location)
        api_endpoint = normalize_endpoint(api_endpoint)
    else:
        project = location = api_endpoint = None
    _check_datasets(spec, name)

    train = spec.training_dataset_uri
    counts = pricing.example_tokens(train if name == "vertex" else resolve(train))
    estimate = pricing.estimate(
        spec.base_model, spec.training_dataset_uri, spec.epochs, token_counts=counts
    )
    out(estimate.line())
    limit = max_seq_len(spec.base_model, spec.tuning_mode)
    over = sum(1 for c in counts if c > limit)
    if over:
        out(
            f"warning: {over} training example(s) exceed ~{limit} tokens, the limit of "
            f"{spec.base_model} under {spec.tuning_mode}; they may be truncated or dropped"
        )
    if name == "vertex" and model_info(spec.base_model) is None:
        out(f"note: {spec.base_model} is not in routerlib's model table; the server decides")

    if dry_run:
        if name == "vertex":
            preview: dict[str, Any] = get_backend(
                name, project=project, location=location, api_endpoint=api_endpoint
            ).request_preview(spec)  # type: ignore[attr-defined]
        else:
            preview = {"backend": "local", "spec": spec.model_dump(mode="json")}
        out("dry run: nothing was sent. The request would be:")
        out(json.dumps(preview, indent=2))
        return Job(
            name="(dry run)",
            backend=name,  # type: ignore[arg-type]
            state=DRY_RUN,
            spec=spec,
            project=project,
            location=location,
            api_endpoint=api_endpoint,
            cost_estimate_usd=estimate.usd,
        )

    if not force:
        existing = _find_reattachable(spec, name, project, location, out)
        if existing is not None:
            out(
                f"re-attaching to {existing.name} ({existing.state}), submitted earlier with the same "
                "spec; pass force=True (--force) to submit a new job"
            )
            if wait and not existing.ended:
                return wait_for(existing, poll_interval=poll_interval, out=out)
            return existing

    tuning_backend = get_backend(
        name,
        project=project,
        location=location,
        api_endpoint=api_endpoint,
        local_options=local_options,
    )
    from routerlib.tuning.vertex import SubmissionRefused

    try:
        job = tuning_backend.submit(spec)
    except SubmissionRefused as exc:
        record(
            Job(
                name=f"denied/{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}",
                backend=name,  # type: ignore[arg-type]
                state=DENIED,
                spec=spec,
                create_time=_now(),
                update_time=_now(),
                error=exc.detail,
                project=project,
                location=location,
                api_endpoint=api_endpoint,
                cost_estimate_usd=estimate.usd,
            )
        )
        raise RemoteError(
            f"the server refused the tuning job (recorded as {DENIED}): {exc}"
        ) from None
    job = record(
        job.model_copy(
            update={
                "cost_estimate_usd": estimate.usd,
                "project": job.project or project,
                "location": job.location or location,
                "api_endpoint": job.api_endpoint or api_endpoint,
                "create_time": job.create_time or _now(),
            }
        )
    )
    out(f"{'submitted' if name == 'vertex' else 'tuned'} {job.name} ({job.state})")
    if not wait:
        if not job.ended:
            out(f"follow it with: routerlib jobs wait {job.name}")
        return job
    return wait_for(job, poll_interval=poll_interval, out=out)


def wait_for(
    job: Job,
    *,
    poll_interval: float = 30.0,
    out: Out = print,
    check: bool = True,
    max_unreachable: int = 5,
) -> Job:
    """Poll ``job`` until one of our end states, printing a progress line (state, time waited).

    With ``check`` a job that did not succeed raises RemoteError with its state and message.
    The API being unreachable ``max_unreachable`` polls in a row raises RemoteError; Ctrl-C raises
    WaitInterrupted. Either way the job keeps running and can be re-attached.
    """
    hint = f"re-attach with: routerlib jobs wait {job.name}"
    if job.backend != "vertex" or job.ended:
        return ensure_success(job) if check else job
    backend = _backend_for(job)
    unreachable = _unreachable_error()
    start = time.monotonic()
    last_state = None
    failures = polls = 0
    heartbeat = max(1, int(300 / max(poll_interval, 1e-3)))
    try:
        while True:
            try:
                job = record(_merge(job, backend.get(job.name)))
                failures = 0
            except unreachable as exc:
                failures += 1
                if failures >= max_unreachable:
                    raise RemoteError(f"{exc}; the job may still be running: {hint}") from None
                out(f"{exc} (retrying)")
            else:
                waited = int(time.monotonic() - start)
                if job.state != last_state or polls % heartbeat == 0 or job.ended:
                    out(
                        f"{short_id(job.name)}: {job.state.removeprefix('JOB_STATE_')} · waited "
                        f"{waited // 3600}:{waited % 3600 // 60:02d}:{waited % 60:02d}"
                    )
                    last_state = job.state
                if job.ended:
                    break
            polls += 1
            time.sleep(poll_interval)
    except KeyboardInterrupt:
        raise WaitInterrupted(
            f"stopped waiting; tuning job {job.name} keeps running ({job.state}): {hint}"
        ) from None
    if job.state == SUCCEEDED:
        out(f"succeeded · checkpoint {job.checkpoint_uri}")
        if job.tuning_data_stats:
            out(f"statistics: {_stats_text(job)}")
    return ensure_success(job) if check else job


def wait(name: str, *, poll_interval: float = 30.0, out: Out = print, check: bool = True) -> Job:
    """Re-attach to a recorded job by name (or id) and wait for it; see ``wait_for``."""
    return wait_for(find(name), poll_interval=poll_interval, out=out, check=check)


def list_jobs(refresh: bool = True, out: Out = print) -> list[Job]:
    """Recorded jobs; with ``refresh`` the live vertex ones are updated from the API where it can
    be reached (otherwise their recorded states are kept and ``out`` says so)."""
    jobs = load_registry()
    if not refresh:
        return jobs
    unreachable = _unreachable_error()
    down: set[tuple[Any, ...]] = set()
    result = []
    for job in jobs:
        where = (job.project, job.location, job.api_endpoint)
        if job.backend == "vertex" and not job.ended and where not in down:
            try:
                job = record(_merge(job, _backend_for(job).get(job.name)))
            except unreachable as exc:
                down.add(where)
                out(
                    f"API unreachable, showing recorded states for {job.project}/{job.location}: {exc}"
                )
            except RemoteError as exc:
                out(f"{short_id(job.name)}: showing the recorded state ({exc})")
        result.append(job)
    return result


def show(name: str, *, refresh_state: bool = True, out: Out = print) -> Job:
    """One recorded job, refreshed from the API when it has not ended."""
    job = find(name)
    if refresh_state and not job.ended:
        job = refresh(job, out)
    return job


def cancel(name: str, *, out: Out = print) -> Job:
    """Cancel a running vertex job and record the state the API reports."""
    job = find(name)
    if job.state == DENIED:
        raise InputError(f"{job.name} was refused by the server: there is no job to cancel")
    if job.backend != "vertex":
        raise InputError(
            f"{job.name} is a local job: it runs in the foreground (stop it with Ctrl-C)"
        )
    if job.ended:
        out(f"{job.name} has already ended ({job.state}); nothing to cancel")
        return job
    job = record(_merge(job, _backend_for(job).cancel(job.name)))
    out(f"cancel requested for {job.name}: now {job.state}")
    return job
