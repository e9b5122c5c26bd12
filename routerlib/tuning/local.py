"""The local tuning backend: runs a TuningSpec on this machine (routerlib.tuning.trainer) and keeps
the record of the job.

**One record per local job**: ``job.json`` in the job's output folder (``spec.output_uri``). It
is the Job every reader takes (tuning.base.Job: state, statistics, loss curve, checkpoints) plus,
under the key ``"local"``, this backend's bookkeeping (the run identity that resume checks, the pid
and host of the training process, the backend options, the cache entry a re-attached tuning came
from). Only this backend writes it. Everything else is read from it or derived:

- a local run's output folder is the run folder's ``tuning/full`` (``tuning/smoke``), so this
  file *is* the run's job.json (the tune stage writes its own copy only for a job whose output is
  elsewhere, such as a Vertex job's gs:// folder);
- ``<outputs>/jobs.json`` (routerlib.jobs) indexes the Job ``submit`` returns, and asks ``get``
  (which reads this file) for a job that has not ended;
- ``get``, ``list`` and ``cancel`` find jobs by scanning for these files under the outputs root;
- the tuning cache (routerlib.tuning.cache) keeps a copy of a finished one beside its checkpoints.

Output folder, in Vertex AI's layout::

    job.json                                   the job's one record (above)
    loss_curve.json                            [{"epoch", "step", "train_loss", "val_loss"}]
    CANCEL                                     present while a cancel is asked for
    postprocess/node-0/checkpoints/epoch-<n>/  one loadable checkpoint per finished epoch
    postprocess/node-0/checkpoints/final/      the last epoch's checkpoint

A run that stopped (killed, failed, interrupted) resumes from its last finished epoch when the
same spec is submitted again with the same output_uri; finished epochs are not redone, and the
result equals that of an uninterrupted run. A finished tuning is also kept in the tuning cache:
the same spec on the same data in another output folder copies it instead of training again.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from routerlib import paths, runfolder
from routerlib.atomic import write_json
from routerlib.checkpoint_names import CHECKPOINT_MARKER, CHECKPOINTS_DIR, FINAL_CHECKPOINT
from routerlib.config import run_default
from routerlib.errors import InputError
from routerlib.tuning import cache, trainer
from routerlib.tuning.base import (
    CANCELLED,
    FAILED,
    RUNNING,
    SUCCEEDED,
    Checkpoint,
    Job,
    TuningSpec,
)
from routerlib.tuning.examples import encode_prompt, read_prompt_completion
from routerlib.tuning.model_io import TRAINING_STATE, load_for_inference, plan_for

#: The job's one record in its output folder: the run folder's job.json for a local run.
JOB_FILE = runfolder.JOB_FILE
#: The key of this backend's bookkeeping (LocalRun) inside JOB_FILE.
LOCAL_KEY = "local"
LOSS_CURVE_FILE = runfolder.LOSS_CURVE_FILE
CANCEL_FILE = "CANCEL"

# Output folders trained by this process right now (a record saying RUNNING with our pid is only
# alive when its folder is in here).
_ACTIVE: set[str] = set()


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
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None, LocalRun()
    if not isinstance(data, dict):
        return None, LocalRun()
    try:
        job = Job.model_validate(data)
        run = LocalRun.model_validate(data.get(LOCAL_KEY) or {})
    except ValueError:
        return None, LocalRun()
    return job, run


def _write_record(out: Path, job: Job, run: LocalRun | None = None) -> None:
    """Write the record atomically; without ``run`` the bookkeeping on file is kept."""
    if run is None:
        run = read_record(out)[1]
    payload = job.model_dump(mode="json")
    payload[LOCAL_KEY] = run.model_dump(mode="json", exclude_none=True)
    write_json(out / JOB_FILE, payload)


def _is_local_record(out: Path) -> bool:
    """True when ``out`` holds a record this backend wrote (not a copy of some other job)."""
    try:
        data = json.loads((out / JOB_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    return isinstance(data, dict) and data.get("backend") == "local" and LOCAL_KEY in data


def _pid_alive(pid: int | None, host: str | None) -> bool:
    if not pid or host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _with_liveness(job: Job, run: LocalRun, out: Path) -> Job:
    """A job recorded as RUNNING whose process is gone is reported FAILED (resumable)."""
    if job.state != RUNNING or str(out) in _ACTIVE:
        return job
    if run.pid != os.getpid() and _pid_alive(run.pid, run.host):
        return job
    return job.model_copy(
        update={
            "state": FAILED,
            "error": "the tuning process ended before finishing; submit the same spec again "
            "to resume from the last finished epoch",
        }
    )


def _final_ok(out: Path) -> bool:
    return (out / FINAL_CHECKPOINT / CHECKPOINT_MARKER).is_file()


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


@dataclass
class LocalBackend:
    """Tune on this machine. ``submit`` trains synchronously and returns the finished Job.

    batch_size: examples per optimizer step; max_train_tokens: truncate longer examples (None =
    the model's context; truncating completions stops the model learning to close the JSON);
    seed: LoRA init and data order; bf16: bfloat16 autocast (None = when the device supports it);
    num_threads: torch threads (None = all cores); root: where ``get``/``list`` look for jobs
    (None = the outputs root); on_epoch_end: test hook called with the epoch after its checkpoint.
    Training runs on CUDA when a GPU is present, else on the CPU (trainer.choose_device).
    """

    batch_size: int = run_default("batch_size")
    max_train_tokens: int | None = run_default("max_train_tokens")
    seed: int = 0
    bf16: bool | None = None
    num_threads: int | None = None
    progress: bool = True
    root: Path | None = None
    on_epoch_end: Callable[[int], None] | None = None
    name: str = "local"
    remote: bool = False
    _known: dict[str, Path] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------ protocol

    @property
    def where(self) -> dict[str, str | None]:
        """Local jobs are found by name under the outputs root: nothing to keep."""
        return {}

    def preflight(self, spec: TuningSpec) -> list[str]:
        """Local runs read and write local paths only."""
        problems = []
        for key in (
            "training_dataset_uri",
            "validation_dataset_uri",
            "output_uri",
            "custom_base_model",
        ):
            value = getattr(spec, key)
            if value and value.startswith("gs:"):
                problems.append(
                    f"{key}: {value!r}: the local backend reads and writes local paths (download "
                    "it, or use --backend vertex)"
                )
        return problems

    def preview(self, spec: TuningSpec) -> dict[str, Any]:
        """What ``submit`` would train (for --dry-run)."""
        return {"backend": "local", "spec": spec.model_dump(mode="json")}

    def find_submitted(self, spec: TuningSpec) -> Job | None:
        """Local jobs are re-attached through the registry and their output folder."""
        return None

    def checkpoints(self, job: Job) -> list[Checkpoint]:
        """``epoch-<n>/`` folders (oldest first), then ``final/``, under the job's output."""
        root = self._output_dir(job.spec) / CHECKPOINTS_DIR
        found = []
        epochs = sorted(
            (int(p.name.split("-", 1)[1]), p)
            for p in root.glob("epoch-*")
            if p.is_dir() and p.name.split("-", 1)[1].isdigit()
        )
        steps = {  # the loss curve's epoch-end points (epoch is step / steps per epoch)
            int(e["epoch"]): e.get("step")
            for e in job.loss_curve
            if isinstance(e.get("epoch"), (int, float)) and float(e["epoch"]).is_integer()
        }
        for epoch, folder in epochs:
            found.append(
                Checkpoint(
                    checkpoint_id=f"epoch-{epoch}",
                    epoch=epoch,
                    step=_int_or_none(steps.get(epoch)),
                    uri=str(folder),
                )
            )
        final = root / "final"
        if final.is_dir():
            last = found[-1] if found else None
            found.append(
                Checkpoint(
                    checkpoint_id="final",
                    epoch=last.epoch if last else None,
                    step=last.step if last else None,
                    uri=str(final),
                )
            )
        return found

    def submit(self, spec: TuningSpec) -> Job:
        """Train ``spec`` (resuming a stopped run of the same spec) and return the ended Job."""
        out = self._output_dir(spec)
        identity = self._identity(spec)
        name = f"local-{identity[:12]}"
        previous, run = read_record(out)
        if previous is not None and run.identity not in (None, identity):
            raise InputError(
                f"output_uri: {out} already holds job {previous.name} of a different spec; "
                "choose a new output_uri"
            )
        if previous is not None and previous.state == SUCCEEDED and _final_ok(out):
            self._known[previous.name] = out
            return previous
        key = str(out)
        if key in _ACTIVE or (
            previous is not None
            and previous.state == RUNNING
            and run.pid != os.getpid()
            and _pid_alive(run.pid, run.host)
        ):
            raise InputError(f"output_uri: {out} is being tuned right now (job {name})")
        (out / CANCEL_FILE).unlink(missing_ok=True)
        plan = plan_for(spec)  # fails early on a bad custom base
        for key_name, uri in (
            ("training_dataset_uri", spec.training_dataset_uri),
            ("validation_dataset_uri", spec.validation_dataset_uri),
        ):
            if uri and not paths.resolve(uri).is_file():
                raise InputError(f"{key_name}: {uri} does not exist")
        cache_key, cache_inputs = None, None
        if cache.cache_dir() is not None:
            cache_inputs = cache.key_inputs(spec, self._options())
            cache_key = cache.cache_key(cache_inputs)
            entry = cache.lookup(cache_key)
            if entry is not None:
                return self._attach(spec, out, name, identity, entry, previous)
        job = self._open_job(spec, out, name, identity, previous, state=RUNNING)
        progress = trainer.Progress()

        def epoch_done(done: trainer.Progress) -> None:
            job.tuning_data_stats, job.loss_curve = done.stats, done.curve
            job.train_seconds, job.update_time = done.train_seconds, _now()
            _write_record(out, job)
            if self.on_epoch_end is not None:
                self.on_epoch_end(done.epoch)

        _ACTIVE.add(key)
        try:
            trainer.train(
                spec,
                plan,
                out,
                identity,
                self._settings(),
                marker={"job": name},
                progress=progress,
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
            _ACTIVE.discard(key)
            job.tuning_data_stats, job.loss_curve = progress.stats, progress.curve
            job.train_seconds = progress.train_seconds or job.train_seconds
            job.checkpoints = self.checkpoints(job)
            job.update_time = _now()
            if job.state != RUNNING:
                _write_record(out, job)
        if job.succeeded and cache_key is not None and cache_inputs is not None:
            cache.store(cache_key, cache_inputs, out, job.model_dump(mode="json"))
        return job

    def get(self, name: str) -> Job:
        """The job called ``name`` (or the job in output folder ``name``)."""
        out = self._find(name)
        job, run = read_record(out) if out else (None, LocalRun())
        if job is None or out is None:
            raise InputError(f"no local tuning job {name} (looked under {self._root()})")
        return _with_liveness(job, run, out)

    def list(self) -> list[Job]:
        """Every local job recorded under the root and submitted by this backend."""
        folders = {p.parent for p in self._root().rglob(JOB_FILE) if _is_local_record(p.parent)}
        jobs = []
        for out in sorted(folders | set(self._known.values())):
            job, run = read_record(out)
            if job is not None and job.backend == "local":
                jobs.append(_with_liveness(job, run, out))
        return jobs

    def cancel(self, name: str) -> Job:
        """Ask a running job to stop after its current step; a dead run is marked cancelled."""
        out = self._find(name)
        job = self.get(name)
        if job.ended or out is None:
            return job
        (out / CANCEL_FILE).write_text(_now() + "\n", encoding="utf-8")
        run = read_record(out)[1]
        if str(out) not in _ACTIVE and not _pid_alive(run.pid, run.host):
            job.state, job.error, job.update_time = CANCELLED, "cancelled", _now()
            _write_record(out, job, run)
        return job

    def default_learning_rate(self, spec: TuningSpec) -> float:
        """learning_rate, else the mode's default (tiny or pretrained model) × the multiplier."""
        return trainer.default_learning_rate(spec)

    # ------------------------------------------------------------ helpers

    def _attach(
        self,
        spec: TuningSpec,
        out: Path,
        name: str,
        identity: str,
        entry: Path,
        previous: Job | None,
    ) -> Job:
        """Finish ``spec`` from a cached tuning with the same key: its checkpoints and curve are
        copied into ``out``; the record's bookkeeping names the entry they came from."""
        cached = Job.model_validate(cache.restore(entry, out))
        job = self._open_job(
            spec,
            out,
            name,
            identity,
            previous,
            state=SUCCEEDED,
            from_cache={"entry": str(entry), "job": cached.name},
            checkpoint_uri=str(out / FINAL_CHECKPOINT),
            tuning_data_stats=cached.tuning_data_stats,
            loss_curve=cached.loss_curve,
            train_seconds=cached.train_seconds,
        )
        job.checkpoints = self.checkpoints(job)
        _write_record(out, job)
        if self.progress:
            print(f"tune (local): same spec and data as {cached.name}; re-attached from {entry}")
        return job

    def _open_job(
        self,
        spec: TuningSpec,
        out: Path,
        name: str,
        identity: str,
        previous: Job | None,
        *,
        state: str,
        from_cache: dict[str, str] | None = None,
        **fields: Any,
    ) -> Job:
        """Record a (re)started or re-attached job in ``out``: the Job (keeping the first
        submission's create_time) with the bookkeeping of which spec, process and options own
        the folder (and the cache entry it came from); the job is remembered by name."""
        job = Job(
            name=name,
            backend="local",
            state=state,
            spec=spec,
            create_time=previous.create_time if previous else _now(),
            update_time=_now(),
            **fields,
        )
        run = LocalRun(
            identity=identity,
            pid=os.getpid(),
            host=socket.gethostname(),
            options=self._options(),
            from_cache=from_cache,
        )
        _write_record(out, job, run)
        self._known[name] = out
        return job

    def _root(self) -> Path:
        return Path(self.root) if self.root else paths.outputs_root()

    def _find(self, name: str) -> Path | None:
        if name in self._known:
            return self._known[name]
        as_path = Path(name).expanduser()
        if _is_local_record(as_path):
            return as_path.resolve()
        root = self._root()
        if root.is_dir():
            for record in root.rglob(JOB_FILE):
                if not _is_local_record(record.parent):
                    continue
                job = read_record(record.parent)[0]
                if job is not None and job.name == name:
                    self._known[name] = record.parent
                    return record.parent
        return None

    def _device(self) -> trainer.Device:
        return trainer.training_device(self.bf16)

    def _settings(self) -> trainer.Settings:
        return trainer.Settings(
            batch_size=self.batch_size,
            max_train_tokens=self.max_train_tokens,
            seed=self.seed,
            device=self._device(),
            num_threads=self.num_threads,
            progress=self.progress,
        )

    def _options(self) -> dict[str, Any]:
        """What, besides the spec, decides the trained weights (the identity and cache key);
        the device is named only when it is not the CPU, so CPU keys stay as they were."""
        device = self._device()
        options: dict[str, Any] = {
            "batch_size": self.batch_size,
            "max_train_tokens": self.max_train_tokens,
            "seed": self.seed,
            "bf16": device.bf16,
        }
        if device.type != "cpu":
            options["device"] = device.type
        return options

    def _identity(self, spec: TuningSpec) -> str:
        """Hash of everything that changes the trained weights (not labels or display name)."""
        fields = spec.model_dump(exclude={"labels", "tuned_model_display_name"})
        blob = json.dumps({"spec": fields, "options": self._options()}, sort_keys=True)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    @staticmethod
    def _output_dir(spec: TuningSpec) -> Path:
        for key, uri in (
            ("output_uri", spec.output_uri),
            ("training_dataset_uri", spec.training_dataset_uri),
            ("validation_dataset_uri", spec.validation_dataset_uri or ""),
        ):
            if uri.startswith("gs://"):
                raise InputError(
                    f"{key}: {uri} is in Cloud Storage; the local backend reads and writes local "
                    "paths (use --backend vertex, or local files)"
                )
        out = paths.resolve(spec.output_uri)
        out.mkdir(parents=True, exist_ok=True)
        return out


__all__ = [
    "CHECKPOINTS_DIR",
    "CHECKPOINT_MARKER",
    "JOB_FILE",
    "LOCAL_KEY",
    "TRAINING_STATE",
    "LocalBackend",
    "LocalRun",
    "encode_prompt",
    "load_for_inference",
    "read_prompt_completion",
    "read_record",
]
