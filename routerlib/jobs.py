"""The tuning job registry (``<outputs>/jobs.json``, one record per submission or refusal) and the
tuning API the notebooks and the CLI call (docs/vertex-tuning.md): ``tune`` checks, estimates,
re-attaches to a job of the same spec or submits once, records and waits; ``show``, ``wait`` and
``cancel`` re-attach by name from any process. It talks to ``tuning.base.TuningBackend`` only.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from routerlib import pricing, runfolder, storage
from routerlib.errors import InputError, RemoteError, RouterlibError
from routerlib.models import max_seq_len
from routerlib.paths import resolve
from routerlib.tuning import base, choose_backend, get_backend
from routerlib.tuning.base import DENIED, SUCCEEDED, UNKNOWN, Job, TuningBackend, TuningSpec

#: ``<outputs>/jobs.json``: one :class:`Job` record per submission or refusal, by its name.
REGISTRY = runfolder.Registry("jobs.json", "jobs", "name")
#: State of the Job that a dry run returns (never recorded).
DRY_RUN = "DRY_RUN"
#: Polls in a row the API may be unreachable before ``wait_for`` gives up (the job runs on).
MAX_UNREACHABLE = 5
#: The columns of ``routerlib jobs list``.
TABLE_HEADER = tuple(
    "Vertex Job ID|Base model|Tuning mode|Adapter size|Output URI|Status".split("|")
)

Out = Callable[[str], Any]


class WaitInterrupted(RouterlibError):
    """Ctrl-C while waiting: the job keeps running; the message says how to re-attach."""

    exit_code = 130


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """``rows`` as left-aligned columns two spaces apart, under ``header`` and a rule of dashes."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=True)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    body = [header, ["-" * w for w in widths], *rows]
    return "\n".join(line.format(*map(str, row)).rstrip() for row in body)


def _parse(records: list[dict[str, Any]] | None = None) -> list[Job]:
    """The jobs of ``records`` (default: the registry's); InputError when they are not such."""
    try:
        return [Job.model_validate(r) for r in (REGISTRY.read() if records is None else records)]
    except (InputError, ValueError) as exc:
        path = REGISTRY.path()
        text = str(exc).removeprefix(f"{path}: ")
        raise InputError(
            f"{path}: not a routerlib job registry ({text}); move it away to start anew"
        ) from None


def load_registry() -> list[Job]:
    """Every recorded job, in recording order ([] when there is no registry yet)."""
    return _parse()


@contextlib.contextmanager
def _editing() -> Iterator[list[Job]]:
    """The recorded jobs under the registry's lock; the list as the block leaves it is written."""
    with REGISTRY.edit() as records:
        jobs = _parse(records)
        yield jobs
        records[:] = [j.model_dump(mode="json") for j in jobs]


def record(job: Job) -> Job:
    """Insert or replace (by name) one job in the registry, atomically."""
    return replace(job.name, job)


def replace(old_name: str, job: Job) -> Job:
    """Put ``job`` where the record ``old_name`` was (or last), dropping any other of its name."""
    with _editing() as jobs:
        jobs[:] = [j for j in jobs if j.name != job.name or j.name == old_name]
        at = next((i for i, j in enumerate(jobs) if j.name == old_name), len(jobs))
        jobs[at : at + 1] = [job]
    return job


def find(name: str) -> Job:
    """The recorded job whose resource name is ``name`` or ends with ``/name`` (its id)."""
    jobs = load_registry()
    exact = [j for j in jobs if j.name == name]
    tail = [j for j in jobs if j.name.endswith("/" + name)]
    if exact or len(tail) == 1:
        return (exact or tail)[-1]
    if tail:
        raise InputError(f"job id {name!r} matches several jobs: give the full resource name")
    raise InputError(
        f"no job {name!r} in {REGISTRY.path()}: `routerlib jobs list` shows the recorded ones"
    )


def _backend_for(job: Job) -> TuningBackend:
    return get_backend(
        job.backend, project=job.project, location=job.location, api_endpoint=job.api_endpoint
    )


def _merge(recorded: Job, remote: Job) -> Job:
    """The recorded job updated with what the API says now (the recorded spec is kept)."""
    update: dict[str, Any] = dict(
        state=remote.state, error=remote.error, sub_state=remote.sub_state
    )
    for key in ("update_time", "tuning_data_stats", "checkpoints", "region", "tuned_model"):
        if getattr(remote, key):
            update[key] = getattr(remote, key)
    if remote.create_time and not recorded.create_time:
        update["create_time"] = remote.create_time
    if remote.state == SUCCEEDED:
        update["checkpoint_uri"] = remote.checkpoint_uri or recorded.spec.checkpoint_uri()
    return recorded.model_copy(update=update)


def _poll(job: Job, backend: TuningBackend | None = None) -> Job:
    """Ask the backend for ``job`` once and record what it says."""
    return record(_merge(job, (backend or _backend_for(job)).get(job.name)))


def short_id(name: str) -> str:
    """The last segment of a resource name (the job id)."""
    return name.rsplit("/", 1)[-1]


def _refresh(job: Job, out: Out, down: set[tuple[Any, ...]] | None = None) -> Job:
    """Ask the backend for the job's state (an UNKNOWN one: look for it by label) and record it;
    on failure keep the record and say why. Places whose API was unreachable go into ``down``."""
    where = (job.backend, job.project, job.location, job.api_endpoint)
    if down is not None and where in down:
        return job
    if job.state == UNKNOWN:
        return resolve_unknown(job, out)
    if job.ended:
        return job
    try:
        return _poll(job)
    except RemoteError as exc:
        if down is not None and isinstance(exc, base.ApiUnreachable):
            down.add(where)
            out(f"API unreachable, showing recorded states for {job.project}/{job.location}: {exc}")
        else:
            out(f"{short_id(job.name)}: showing the recorded state ({exc})")
    return job


def resolve_unknown(job: Job, out: Out) -> Job:
    """Look for an UNKNOWN submission's job by its spec label; found, it replaces the record."""
    try:
        found = _backend_for(job).find_submitted(job.spec)
    except RemoteError as exc:
        out(f"{job.name}: could not look for the job on the server ({exc})")
        return job
    if found is None:
        return job
    kept = ("project", "location", "api_endpoint", "create_time")
    update = {k: getattr(found, k) or getattr(job, k) for k in kept}
    found = found.model_copy(update={**update, "cost_estimate_usd": job.cost_estimate_usd})
    out(f"found {found.name} ({found.state}) for the unanswered submission {job.name}")
    return replace(job.name, found)


def _found(job: Job, out: Out, error: type[RouterlibError], problem: str) -> Job:
    """``job``, or for an UNKNOWN one the job found by its label; ``error`` when none is."""
    if job.state == UNKNOWN and (job := resolve_unknown(job, out)).state == UNKNOWN:
        raise error(f"{job.name}: no job with {problem}")
    return job


def ensure_success(job: Job) -> Job:
    """Return ``job`` when it succeeded; else RemoteError with its state and error message."""
    if job.state == SUCCEEDED:
        return job
    reason = f": {job.error}" if job.error else ""
    raise RemoteError(f"tuning job {job.name} ended {job.state}{reason}")


def _stats_text(job: Job) -> str:
    """The scalar statistics (example count, billable tokens, steps, ...) as k=v pairs."""
    stats = job.tuning_data_stats.items()
    return ", ".join(f"{k}={v}" for k, v in stats if not isinstance(v, (dict, list)))


def state_text(job: Job) -> str:
    """The state with its sub-state, e.g. ``RUNNING (waiting for capacity)``."""
    text = job.state.removeprefix("JOB_STATE_")
    if job.sub_state:
        sub = job.sub_state.removeprefix("TUNING_JOB_STATE_").replace("_", " ").lower()
        text += f" ({sub})"
    return text


def when(value: Any, template: str) -> str:
    """``template`` filled with ``value`` when there is one, else "" (optional parts of a line)."""
    return template.format(value) if value else ""


def describe(job: Job) -> str:
    """Several lines about one job: name, state, spec, statistics, checkpoints."""
    spec, usd = job.spec, job.cost_estimate_usd
    place = job.project and f"{job.project}/{job.location}"
    backend = job.backend + when(place, " · {}")
    backend += when(job.region != job.location and job.region, " (ran in {})")
    peft = spec.tuning_mode == "PEFT_ADAPTER"
    tuning = spec.tuning_mode + when(peft and spec.adapter_size, ", adapter {}")
    tuning += f", {spec.epochs} epoch(s)" + when(spec.learning_rate, ", learning rate {:g}")
    rows = [
        ("job", job.name),
        ("state", job.state + when(job.sub_state, " · {}") + when(job.error, " ({})")),
        ("backend", backend + when(job.api_endpoint, " · {}")),
        ("base model", spec.base_model + when(spec.custom_base_model, " (continuing from {})")),
        ("tuning", tuning + when(spec.learning_rate_multiplier, ", learning-rate multiplier {:g}")),
        ("training", spec.training_dataset_uri),
        ("validation", spec.validation_dataset_uri),
        ("output", spec.output_uri),
        ("created", job.create_time),
        ("estimate", None if usd is None else f"~${usd:,.2f}"),
        ("statistics", job.tuning_data_stats and _stats_text(job)),
        ("checkpoint", job.checkpoint_uri),
    ]
    lines = [f"{label + ':':<13}{value}" for label, value in rows if value]
    if job.checkpoints:
        lines.append("checkpoints: ID          EPOCH  STEP    URI")
        for c in job.checkpoints:
            epoch, step = ("-" if n is None else str(n) for n in (c.epoch, c.step))
            lines.append(f"             {c.checkpoint_id:<11} {epoch:<6} {step:<7} {c.uri or '-'}")
    return "\n".join(lines)


def _row(job: Job) -> tuple[str, ...]:
    """One row of the jobs table: the name (or why none), the spec, the status in words."""
    peft = job.spec.tuning_mode == "PEFT_ADAPTER"
    name, status = job.name, state_text(job).capitalize()
    if job.state == UNKNOWN:
        name, status = "*(unknown: create unanswered)*", "Unknown"
    if job.error and job.ended:
        status += f" – {job.error}"
    if job.state == DENIED:
        allowlist = "allowlist" in (job.error or "").lower()
        name = "*(pending allowlist)*" if allowlist else "*(refused)*"
        status = f"Denied – {job.error}" if job.error else "Denied"
    size = str(job.spec.adapter_size) if peft else "-"
    mode = "PEFT" if peft else job.spec.tuning_mode
    return (name, job.spec.base_model, mode, size, job.spec.output_uri, status)


def jobs_table(jobs: list[Job], fmt: str = "plain") -> str:
    """The "Active Tuning Jobs" table, ``plain`` (aligned) or ``markdown`` (ready to paste)."""
    rows = [_row(j) for j in jobs]
    if fmt == "markdown":
        lines = ["Active Tuning Jobs", "-" * 18, "| " + " | ".join(TABLE_HEADER) + " |"]
        lines.append("| " + " | ".join("---" for _ in TABLE_HEADER) + " |")
        for r in rows:
            job, model, mode, size, output, status = (c.replace("|", "\\|") for c in r)
            job = job if job.startswith("*") else f"`{job}`"
            lines.append(f"| {job} | `{model}` | {mode} | {size} | `{output}` | {status} |")
        return "\n".join(lines)
    if fmt != "plain":
        raise InputError(f"--format {fmt!r}: use plain or markdown")
    if not rows:
        return f"Active Tuning Jobs\n(no jobs recorded in {REGISTRY.path()})"
    return "Active Tuning Jobs\n" + text_table([h.upper() for h in TABLE_HEADER], rows)


def preflight(spec: TuningSpec, backend: TuningBackend, out: Out = print) -> None:
    """The backend's refusals found before sending: InputError (exit 2), one line; its
    ``tuning.base.Advice`` lines are printed."""
    lines = backend.preflight(spec)
    for line in lines:
        if isinstance(line, base.Advice):
            out(line)
    problems = [line for line in lines if not isinstance(line, base.Advice)]
    if problems:
        more = f" (+{len(problems) - 1} more: {'; '.join(problems[1:])})" if problems[1:] else ""
        raise InputError(f"preflight: {problems[0]}{more}; nothing was sent")


def _check_datasets(spec: TuningSpec) -> None:
    """The datasets must exist (and a gs:// output's bucket)."""
    problems = []
    for key in ("training_dataset_uri", "validation_dataset_uri"):
        uri = getattr(spec, key)
        if uri and not storage.exists(uri if storage.is_gcs_uri(uri) else resolve(uri)):
            problems.append(f"{key}: {uri} does not exist")
    if problems:
        raise InputError("dataset not found: run prepare (and upload) first", problems)
    if storage.is_gcs_uri(spec.output_uri):
        storage.bucket_info(spec.output_uri)


def _check_lengths(spec: TuningSpec, counts: Sequence[int], strict: bool, out: Out) -> None:
    """Examples over the model's sequence limit: an error under ``strict``, else a warning."""
    limit = max_seq_len(spec.base_model, spec.tuning_mode)
    over = sum(1 for c in counts if c > limit)
    if not over:
        return
    text = (
        f"{over} training example(s) exceed ~{limit} tokens, the limit of {spec.base_model} "
        f"under {spec.tuning_mode}"
    )
    if strict:
        raise InputError(f"preflight: {text} (strict); nothing was sent")
    out(f"warning: {text}; they may be truncated or dropped")


def _same_spec(job: Job, spec: TuningSpec, backend: TuningBackend) -> bool:
    """True for a record of ``spec`` submitted to the same backend at the same place."""
    return (
        job.backend == backend.name
        and job.spec.spec_hash() == spec.spec_hash()
        and all(getattr(job, key) == value for key, value in backend.where.items())
    )


def _find_reattachable(spec: TuningSpec, backend: TuningBackend, out: Out) -> Job | None:
    """A live or succeeded job of the same spec at the same place, recorded or on the server."""
    unknown_seen = False
    for job in reversed(load_registry()):
        if not _same_spec(job, spec, backend):
            continue
        if job.state == UNKNOWN:
            unknown_seen = True
        elif job.state not in base.REATTACH_STATES:
            continue
        job = _refresh(job, out)  # an UNKNOWN one is looked for on the server by its label
        if job.state not in base.REATTACH_STATES:
            continue
        local = job.checkpoint_uri and "://" not in job.checkpoint_uri
        if job.state == SUCCEEDED and local and not os.path.exists(str(job.checkpoint_uri)):
            continue  # the local checkpoint is gone: train again
        return job
    found = None if unknown_seen else backend.find_submitted(spec)  # unknown: already looked
    if found is not None:
        out(f"found {found.name} ({found.state}) on the server with this spec's label")
        return record(found)
    return None


def tune(
    spec: TuningSpec | dict[str, Any],
    *,
    backend: str | None = None,
    wait: bool = True,
    force: bool = False,
    dry_run: bool = False,
    strict: bool = False,
    wait_for_quota: bool = False,
    quota_interval: float = 300.0,
    poll_interval: float = 30.0,
    out: Out = print,
    **backend_options: Any,
) -> Job:
    """Submit ``spec`` (or re-attach to its job) and, with ``wait``, follow it to the end;
    ``backend_options`` go to ``tuning.get_backend``. InputError (exit 2) when preflight refuses;
    RemoteError when the server refuses (recorded DENIED), the create goes unanswered (recorded
    UNKNOWN), quota is exhausted (``wait_for_quota``: retried every ``quota_interval`` seconds) or
    the job fails; WaitInterrupted on Ctrl-C while waiting (docs/vertex-tuning.md)."""
    if not isinstance(spec, TuningSpec):
        spec = TuningSpec.build(**spec)
    name = choose_backend(spec.training_dataset_uri, backend)
    runner = get_backend(name, **backend_options)
    preflight(spec, runner, out)
    _check_datasets(spec)

    train = spec.training_dataset_uri
    train_file = train if "://" in train else resolve(train)
    estimate = pricing.estimate(
        spec.base_model, train_file, spec.epochs, tuning_mode=spec.tuning_mode
    )
    _check_lengths(spec, estimate.example_tokens, strict, out)
    out(estimate.line())
    if dry_run:
        out("dry run: nothing was sent. The request would be:")
        out(json.dumps(runner.preview(spec), indent=2))
        return _new_job("(dry run)", runner, DRY_RUN, spec, estimate.usd)

    if force:
        load_registry()  # a broken registry is named before a billed job is created, not after
    job = None if force else _find_reattachable(spec, runner, out)
    if job is not None:
        out(
            f"re-attaching to {job.name} ({job.state}), submitted earlier with the same "
            "spec; pass force=True (--force) to submit a new job"
        )
    else:
        job = _submit(runner, spec, estimate.usd, force, wait_for_quota, quota_interval, out)
    if wait:
        return wait_for(job, poll_interval=poll_interval, out=out)
    if not job.ended:
        out(f"follow it with: routerlib jobs wait {job.name}")
    return job


def _new_job(
    name: str, backend: TuningBackend, state: str, spec: TuningSpec, usd: Any, **fields: Any
) -> Job:
    """A Job record made here (a dry run, a refusal, an unanswered create) at ``backend``'s place."""
    fields = {**backend.where, **fields, "cost_estimate_usd": usd, "spec": spec}
    return Job.model_validate({"name": name, "backend": backend.name, "state": state, **fields})


def _record_attempt(
    spec: TuningSpec, backend: TuningBackend, state: str, error: str, usd: Any
) -> Job:
    stamp = f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"
    name = f"{'denied' if state == DENIED else 'unknown'}/{stamp}"
    spec = spec.labelled() if state == UNKNOWN else spec
    fields = {"create_time": runfolder.now(), "update_time": runfolder.now(), "error": error}
    return record(_new_job(name, backend, state, spec, usd, **fields))


def _submit(
    backend: TuningBackend,
    spec: TuningSpec,
    usd: Any,
    force: bool,
    wait_for_quota: bool,
    quota_interval: float,
    out: Out,
) -> Job:
    """One create (again after a 429 with ``wait_for_quota``), recorded with its estimate (then
    without ``force`` no UNKNOWN record of the spec is left); refusals and no answers recorded."""
    again = "Run the same tune again (or `routerlib jobs list`): routerlib first looks for the job by its label"
    while True:
        try:
            job = backend.submit(spec)
            break
        except base.SubmissionRefused as exc:
            _record_attempt(spec, backend, DENIED, exc.detail, usd)
            raise RemoteError(
                f"the server refused the tuning job (recorded as {DENIED}): {exc}"
            ) from None
        except base.SubmissionUnknown as exc:
            job = _record_attempt(spec, backend, UNKNOWN, str(exc), usd)
            raise RemoteError(
                f"the create request got no usable answer, so a job may exist (recorded as "
                f"{UNKNOWN}: {job.name}): {exc}. {again}; do not pass --force"
            ) from None
        except KeyboardInterrupt:
            if not backend.remote:
                raise
            job = _record_attempt(spec, backend, UNKNOWN, "interrupted during the create", usd)
            raise WaitInterrupted(
                f"interrupted while the create request was in flight: a job may exist (recorded "
                f"as {UNKNOWN}: {job.name}). {again}"
            ) from None
        except base.QuotaExhausted as exc:
            if not wait_for_quota:
                raise
            out(f"{exc}; trying again in {quota_interval:g}s (--wait-for-quota)")
            time.sleep(quota_interval)
    update = {k: getattr(job, k) or v for k, v in backend.where.items()}
    update |= {"cost_estimate_usd": usd, "create_time": job.create_time or runfolder.now()}
    job = record(job.model_copy(update=update))
    if not force:  # UNKNOWN records of this spec were looked for before and not found
        with _editing() as jobs:
            jobs[:] = [j for j in jobs if not (j.state == UNKNOWN and _same_spec(j, spec, backend))]
    out(f"{'submitted' if not job.ended else 'tuned'} {job.name} ({job.state})")
    return _with_checkpoints(job) if job.succeeded else job


def _with_checkpoints(job: Job) -> Job:
    """The job with the backend's checkpoint list recorded (kept as it was when unreachable)."""
    try:
        points = _backend_for(job).checkpoints(job)
    except RemoteError:
        return job
    return record(job.model_copy(update={"checkpoints": points})) if points else job


def wait_for(job: Job, *, poll_interval: float = 30.0, out: Out = print) -> Job:
    """Poll ``job`` until it ends, printing its state when it changes (and every five minutes).
    RemoteError when it did not succeed or the API stays unreachable ``MAX_UNREACHABLE`` polls;
    WaitInterrupted on Ctrl-C. The job keeps running either way."""
    hint = f"re-attach with: routerlib jobs wait {job.name}"
    job = _found(job, out, RemoteError, f"this spec's label was found yet; {hint}")
    if job.ended:
        return ensure_success(job)
    backend = _backend_for(job)
    start = time.monotonic()
    last = None
    failures = polls = 0
    heartbeat = max(1, int(300 / max(poll_interval, 1e-3)))
    try:
        while True:
            try:
                job = _poll(job, backend)
                failures = 0
            except base.ApiUnreachable as exc:
                failures += 1
                if failures >= MAX_UNREACHABLE:
                    raise RemoteError(f"{exc}; the job may still be running: {hint}") from None
                out(f"{exc} (retrying)")
            else:
                waited = datetime.timedelta(seconds=int(time.monotonic() - start))
                now = state_text(job)
                if now != last or polls % heartbeat == 0 or job.ended:
                    out(f"{short_id(job.name)}: {now} · waited {waited}")
                    last = now
                if job.ended:
                    break
            polls += 1
            time.sleep(poll_interval)
    except KeyboardInterrupt:
        raise WaitInterrupted(
            f"stopped waiting; tuning job {job.name} keeps running ({job.state}): {hint}"
        ) from None
    if job.state == SUCCEEDED:
        job = _with_checkpoints(job)
        out(f"succeeded · checkpoint {job.checkpoint_uri}")
        if job.tuning_data_stats:
            out(f"statistics: {_stats_text(job)}")
    return ensure_success(job)


def wait(name: str, *, poll_interval: float = 30.0, out: Out = print) -> Job:
    """Re-attach to a recorded job by name (or id) and wait for it; see ``wait_for``."""
    return wait_for(find(name), poll_interval=poll_interval, out=out)


def list_jobs(refresh: bool = True, out: Out = print) -> list[Job]:
    """Recorded jobs; with ``refresh`` asked for their state where reachable."""
    jobs = load_registry()
    if not refresh:
        return jobs
    down: set[tuple[Any, ...]] = set()
    return [_refresh(job, out, down) for job in jobs]


def show(name: str, *, out: Out = print) -> Job:
    """One recorded job, refreshed from its backend when it has not ended, with its checkpoints."""
    job = _refresh(find(name), out)  # an ended one stays as recorded
    if job.state != UNKNOWN and (job.succeeded or not job.ended):
        job = _with_checkpoints(job)
    return job


def deploy_region(job: Job, configured: str) -> str:
    """Where a tuned copy of ``job`` is deployed: the region a ``global`` job ran in (Vertex
    deploys need a real region), else ``configured``."""
    if job.location == "global" and job.region and job.region != "global":
        return job.region
    return configured


def select_checkpoint(job: Job, checkpoint: str = "final") -> str:
    """The URI of ``checkpoint`` (``final`` or ``epoch-N``, the config's ``checkpoint`` key)
    among the job's recorded checkpoints; ``final`` falls back to the job's checkpoint_uri."""
    for point in job.checkpoints:
        if point.checkpoint_id == checkpoint and point.uri:
            return point.uri
    if checkpoint == "final" and job.checkpoint_uri:
        return job.checkpoint_uri
    known = ", ".join(p.checkpoint_id for p in job.checkpoints) or "none recorded"
    raise InputError(
        f"checkpoint: {checkpoint!r} is not a checkpoint of {job.name} ({known}); "
        f"`routerlib jobs show {job.name}` lists them"
    )


def cancel(
    name: str, *, out: Out = print, wait_seconds: float = 60.0, poll_interval: float = 5.0
) -> Job:
    """Cancel a job and poll up to ``wait_seconds`` until it ended (else say it is CANCELLING)."""
    job = find(name)
    if job.state == DENIED:
        raise InputError(f"{job.name} was refused by the server: there is no job to cancel")
    job = _found(job, out, InputError, "its label was found on the server; nothing to cancel")
    if job.ended:
        out(f"{job.name} has already ended ({job.state}); nothing to cancel")
        return job
    backend = _backend_for(job)
    job = record(_merge(job, backend.cancel(job.name)))
    deadline = time.monotonic() + wait_seconds
    while not job.ended and time.monotonic() < deadline:
        time.sleep(poll_interval)
        try:
            job = _poll(job, backend)
        except base.ApiUnreachable as exc:
            out(f"{exc} (retrying)")
    if job.ended:
        out(f"cancel requested for {job.name}: it ended {job.state}")
    else:
        out(
            f"cancel requested for {job.name}: still {state_text(job)}; a cancelling job may still "
            f"end SUCCEEDED or FAILED; check with: routerlib jobs show {job.name}"
        )
    return job
