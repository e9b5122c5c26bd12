"""The local tuning backend: runs a TuningSpec on this machine (routerlib.tuning.trainer) and keeps
the job's one record, ``job.json`` in its output folder (the Job, plus this backend's bookkeeping
under ``"local"``). The folder has Vertex AI's checkpoint layout and a ``CANCEL`` file while a
cancel is asked for; submitting the same spec to the same output_uri resumes a stopped run
(docs/architecture.md, "The local tuning backend"; docs/outputs.md).
"""

from __future__ import annotations

import itertools
import json
import os
import socket
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from routerlib import paths, runfolder
from routerlib.atomic import write_json
from routerlib.checkpoint_names import CHECKPOINT_MARKER, CHECKPOINTS_DIR, FINAL_CHECKPOINT
from routerlib.errors import InputError
from routerlib.tuning import cache, trainer
from routerlib.tuning.base import (
    CANCELLED,
    FAILED,
    RUNNING,
    SUCCEEDED,
    URI_FIELDS,
    Checkpoint,
    Job,
    TuningSpec,
    with_final,
)
from routerlib.tuning.model_io import Plan, epoch_folders, plan_for

#: The job's one record in its output folder: the run folder's job.json for a local run.
JOB_FILE = runfolder.JOB_FILE
#: The key of this backend's bookkeeping (LocalRun) inside JOB_FILE.
LOCAL_KEY = "local"
CANCEL_FILE = "CANCEL"

#: Output folders this process trains right now (a RUNNING record with our pid is alive only then).
_ACTIVE: set[str] = set()

#: Said when a submission waits for the identical tuning another run is making (runs side by side).
WAITING = "another run is making the same tuning; waiting to re-attach to it (tuning cache)"


class LocalRun(BaseModel):
    """The backend's bookkeeping in a job record: which spec and options own the folder (for
    resume), which process trains it (for liveness), which cache entry it was copied from."""

    model_config = ConfigDict(extra="ignore")

    identity: str | None = None
    pid: int | None = None
    host: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    from_cache: dict[str, str] | None = None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def read_record(out: Path) -> tuple[Job | None, LocalRun]:
    """The Job recorded in output folder ``out`` and the backend's bookkeeping beside it
    ((None, empty bookkeeping) when there is no readable record)."""
    try:
        data = json.loads((out / JOB_FILE).read_text(encoding="utf-8"))
        return Job.model_validate(data), LocalRun.model_validate(data.get(LOCAL_KEY) or {})
    except (OSError, ValueError, AttributeError):  # missing, not JSON, not a job, not an object
        return None, LocalRun()


def _write_record(out: Path, job: Job, run: LocalRun | None = None) -> None:
    """Write the record atomically; without ``run`` the bookkeeping on file is kept."""
    payload = job.model_dump(mode="json")
    payload[LOCAL_KEY] = (run or read_record(out)[1]).model_dump(mode="json", exclude_none=True)
    write_json(out / JOB_FILE, payload)


def _local_records(folders: Iterable[Path]) -> Iterator[tuple[Path, Job, LocalRun]]:
    """(folder, Job, bookkeeping) of each of ``folders`` that holds a record this backend wrote
    (not a copy of some other job)."""
    for out in folders:
        job, run = read_record(out)
        if job is not None and job.backend == "local" and run.identity is not None:
            yield out, job, run


def _alive(out: Path, run: LocalRun) -> bool:
    """True while ``out`` is trained by this process, or by another live process on this host."""
    if str(out) in _ACTIVE:
        return True
    if not run.pid or run.pid == os.getpid() or run.host != socket.gethostname():
        return False
    try:
        os.kill(run.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    return True


def _with_liveness(job: Job, run: LocalRun, out: Path) -> Job:
    """A job recorded as RUNNING whose process is gone is reported FAILED (resumable)."""
    if job.state != RUNNING or _alive(out, run):
        return job
    error = "the tuning process ended before finishing; submit the same spec again to resume "
    return job.model_copy(update={"state": FAILED, "error": error + "from the last finished epoch"})


@dataclass
class LocalBackend(trainer.Settings):
    """Tune on this machine (CUDA when present, else the CPU): ``submit`` trains synchronously
    with these settings (see trainer.Settings). root: where ``get``/``list`` look (None = the
    outputs root); on_epoch_end: test hook called after each epoch's checkpoint."""

    root: Path | None = None
    on_epoch_end: Callable[[int], None] | None = None
    name: str = "local"
    remote: bool = False
    _known: dict[str, Path] = field(default_factory=dict, repr=False)

    @property
    def where(self) -> dict[str, str | None]:
        """Local jobs are found by name under the outputs root: nothing to keep."""
        return {}

    def preflight(self, spec: TuningSpec) -> list[str]:
        """Local runs read and write local paths only."""
        return [
            f"{key}: {value!r}: the local backend reads and writes local paths, not Cloud Storage "
            "(download it, or use --backend vertex)"
            for key in URI_FIELDS
            if (value := getattr(spec, key)) and value.startswith("gs:")
        ]

    def preview(self, spec: TuningSpec) -> dict[str, Any]:
        """What ``submit`` would train (for --dry-run)."""
        return {"backend": "local", "spec": spec.model_dump(mode="json")}

    def find_submitted(self, spec: TuningSpec) -> Job | None:
        """Local jobs are re-attached through the registry and their output folder."""
        return None

    def checkpoints(self, job: Job) -> list[Checkpoint]:
        """``epoch-<n>/`` folders (oldest first), then ``final/``, under the job's output."""
        root, ends = self._output_dir(job.spec) / CHECKPOINTS_DIR, job.epoch_ends()
        found = [
            Checkpoint(
                checkpoint_id=f"epoch-{epoch}",
                epoch=epoch,
                step=ends.get(epoch, {}).get("step"),
                uri=str(folder),
            )
            for epoch, folder in epoch_folders(root)
        ]
        return with_final(found, str(root / "final") if (root / "final").is_dir() else None)

    def submit(self, spec: TuningSpec) -> Job:
        """Train ``spec`` (resuming a stopped run of the same spec) and return the ended Job."""
        out = self._output_dir(spec)
        identity = self._identity(spec)
        name = f"local-{identity[:12]}"
        previous, run = read_record(out)
        if previous is not None and run.identity not in (None, identity):
            was = {**previous.spec.model_dump(exclude=cache.NOT_LEARNED), **run.options}
            wants = {**spec.model_dump(exclude=cache.NOT_LEARNED), **self.options()}
            changed = [
                f"{k} {was.get(k)} -> {wants.get(k)}"
                for k in {**was, **wants}
                if was.get(k) != wants.get(k)
            ]
            raise InputError(
                f"output_uri: {out} already holds job {previous.name} of a different spec "
                f"({', '.join(changed) or 'the identity rule changed'}); choose a new output_uri"
            )
        if (
            previous is not None
            and previous.state == SUCCEEDED
            and (out / FINAL_CHECKPOINT / CHECKPOINT_MARKER).is_file()
        ):
            self._known[previous.name] = out
            return previous
        if str(out) in _ACTIVE or (previous and previous.state == RUNNING and _alive(out, run)):
            raise InputError(f"output_uri: {out} is being tuned right now (job {name})")
        (out / CANCEL_FILE).unlink(missing_ok=True)
        plan = plan_for(spec)  # fails early on a bad custom base
        for field_name in ("training_dataset_uri", "validation_dataset_uri"):
            uri = getattr(spec, field_name)
            if uri and not paths.resolve(uri).is_file():
                raise InputError(f"{field_name}: {uri} does not exist")
        inputs = cache.key_inputs(spec, self.options()) if cache.cache_dir() else None
        key = cache.cache_key(inputs) if inputs is not None else None
        # the first submission's create_time is kept when a stopped run is resumed
        created = previous.create_time if previous else _now()
        job = Job(name=name, backend="local", state=RUNNING, spec=spec, create_time=created)
        with cache.claimed(key, lambda: self._say(f"tune (local): {name}: {WAITING}")):
            if key is not None and (entry := cache.lookup(key)) is not None:
                return self._attach(job, out, identity, entry)
            return self._train(job, plan, out, identity, inputs)

    def _train(
        self, job: Job, plan: Plan, out: Path, identity: str, cache_inputs: dict[str, Any] | None
    ) -> Job:
        """Train ``job``'s spec into ``out``; a finished tuning goes into the cache under the key
        of ``cache_inputs`` (None: the cache is off)."""
        self._open(job, out, identity)

        def epoch_done(epoch: int) -> None:
            job.update_time = _now()
            _write_record(out, job)
            if self.on_epoch_end is not None:
                self.on_epoch_end(epoch)

        _ACTIVE.add(str(out))
        try:
            trainer.train(
                plan,
                out,
                identity,
                self,
                job=job,
                on_epoch_end=epoch_done,
                stop_requested=(out / CANCEL_FILE).exists,
            )
            job.state, job.error = SUCCEEDED, None
            job.checkpoint_uri = str(out / FINAL_CHECKPOINT)
        except trainer.Cancelled:
            job.state, job.error = CANCELLED, "cancelled; submit the same spec again to resume"
        except KeyboardInterrupt:
            job.state = CANCELLED
            job.error = "interrupted; submit the same spec again to resume from the last epoch"
            raise
        except InputError as exc:
            job.state, job.error = FAILED, "; ".join(exc.lines()[-4:])
            raise
        except Exception as exc:  # noqa: BLE001 - recorded as the job's error
            job.state, job.error = FAILED, f"{type(exc).__name__}: {exc}"
        finally:
            _ACTIVE.discard(str(out))
            job.checkpoints = self.checkpoints(job)
            job.update_time = _now()
            if job.state != RUNNING:
                _write_record(out, job)
        if job.succeeded and cache_inputs is not None:
            cache.store(cache_inputs, out, job.model_dump(mode="json"))
        return job

    def _record(self, name: str) -> tuple[Path, Job, LocalRun]:
        """The output folder, Job (liveness applied) and bookkeeping of the job called ``name``
        (or of the job in output folder ``name``)."""
        named = self._known.get(name) or Path(name).expanduser().resolve()
        for out, job, run in _local_records(itertools.chain([named], self._folders())):
            if out == named or job.name == name:
                self._known[job.name] = out
                return out, _with_liveness(job, run, out), run
        raise InputError(f"no local tuning job {name} (looked under {self._root()})")

    def get(self, name: str) -> Job:
        """The job called ``name`` (or the job in output folder ``name``)."""
        return self._record(name)[1]

    def list(self) -> list[Job]:
        """Every local job recorded under the root and submitted by this backend."""
        found = _local_records(sorted({*self._folders(), *self._known.values()}))
        return [_with_liveness(job, run, out) for out, job, run in found]

    def cancel(self, name: str) -> Job:
        """Ask a running job to stop after its current step; a dead run is marked cancelled."""
        out, job, run = self._record(name)
        if job.ended:
            return job
        (out / CANCEL_FILE).write_text(_now() + "\n", encoding="utf-8")
        if not _alive(out, run):
            job.state, job.error, job.update_time = CANCELLED, "cancelled", _now()
            _write_record(out, job, run)
        return job

    def _attach(self, job: Job, out: Path, identity: str, entry: Path) -> Job:
        """Finish ``job`` from a cached tuning with the same key: its checkpoints and curve are
        copied into ``out``; the record's bookkeeping names the entry they came from."""
        cached = Job.model_validate(cache.restore(entry, out))
        job.state, job.checkpoint_uri = SUCCEEDED, str(out / FINAL_CHECKPOINT)
        for key in ("tuning_data_stats", "loss_curve", "train_seconds"):
            setattr(job, key, getattr(cached, key))
        job.checkpoints = self.checkpoints(job)
        self._open(job, out, identity, {"entry": str(entry), "job": cached.name})
        self._say(f"tune (local): same spec and data as {cached.name}; re-attached from {entry}")
        return job

    def _say(self, line: str) -> None:
        if self.progress:
            print(line, flush=True)

    def _open(
        self, job: Job, out: Path, identity: str, from_cache: dict[str, str] | None = None
    ) -> None:
        """Record a (re)started or re-attached job in ``out`` with the bookkeeping of which spec,
        process and options own the folder."""
        job.update_time = _now()
        run = LocalRun(
            identity=identity,
            pid=os.getpid(),
            host=socket.gethostname(),
            options=self.options(),
            from_cache=from_cache,
        )
        _write_record(out, job, run)
        self._known[job.name] = out

    def _root(self) -> Path:
        return Path(self.root) if self.root else paths.outputs_root()

    def _folders(self) -> Iterator[Path]:
        """The folders under the root that hold a job record (this backend's or not)."""
        return (record.parent for record in self._root().rglob(JOB_FILE))

    def _identity(self, spec: TuningSpec) -> str:
        """Hash of everything that changes the trained weights (not labels or display name)."""
        fields = spec.model_dump(exclude=cache.NOT_LEARNED)
        return cache.cache_key({"spec": fields, "options": self.options()})

    def _output_dir(self, spec: TuningSpec) -> Path:
        if problems := self.preflight(spec):
            raise InputError(problems[0])
        out = paths.resolve(spec.output_uri)
        out.mkdir(parents=True, exist_ok=True)
        return out
