"""The tuning interface shared by both backends: TuningSpec, Job, end states, the Backend protocol."""

from __future__ import annotations

import builtins
import hashlib
import json
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from routerlib import models
from routerlib.checkpoint_names import FINAL_CHECKPOINT
from routerlib.config import run_default
from routerlib.errors import InputError, RemoteError, problem_lines

DEFAULT_BASE_MODEL = "meta/llama3_1@llama-3.1-8b-instruct"

#: Job states: every name of google-genai's JobState (2.34.0), plus two of routerlib's own:
#: DENIED (the server refused the submission: no job exists) and UNKNOWN (the create request
#: timed out or answered 5xx: a job may exist; the next tune or jobs list looks for it by label).
UNSPECIFIED = "JOB_STATE_UNSPECIFIED"
QUEUED = "JOB_STATE_QUEUED"
PENDING = "JOB_STATE_PENDING"
RUNNING = "JOB_STATE_RUNNING"
SUCCEEDED = "JOB_STATE_SUCCEEDED"
FAILED = "JOB_STATE_FAILED"
CANCELLING = "JOB_STATE_CANCELLING"
CANCELLED = "JOB_STATE_CANCELLED"
PAUSED = "JOB_STATE_PAUSED"
EXPIRED = "JOB_STATE_EXPIRED"
UPDATING = "JOB_STATE_UPDATING"
PARTIALLY_SUCCEEDED = "JOB_STATE_PARTIALLY_SUCCEEDED"
DENIED = "DENIED"
UNKNOWN = "UNKNOWN"

#: Every JobState of the SDK (a test checks this against google.genai.types.JobState).
JOB_STATES: tuple[str, ...] = (UNSPECIFIED, QUEUED, PENDING, RUNNING, SUCCEEDED, FAILED)
JOB_STATES += (CANCELLING, CANCELLED, PAUSED, EXPIRED, UPDATING, PARTIALLY_SUCCEEDED)
#: Our own list of end states (the SDK's misses EXPIRED and PARTIALLY_SUCCEEDED). CANCELLING is
#: not one: a cancelling job may still end SUCCEEDED or FAILED. PAUSED can be resumed.
END_STATES = frozenset({SUCCEEDED, FAILED, CANCELLED, EXPIRED, PARTIALLY_SUCCEEDED, DENIED})
#: States in which re-submitting the same spec re-attaches instead of creating a duplicate.
REATTACH_STATES = frozenset({QUEUED, PENDING, RUNNING, SUCCEEDED, UPDATING, PAUSED, CANCELLING})
#: The label every submission carries: a hash of its spec (see ``TuningSpec.spec_hash``).
SPEC_LABEL = "routerlib-spec"
#: The spec fields that name files: data, output, then the custom base model.
URI_FIELDS = ("training_dataset_uri", "validation_dataset_uri", "output_uri", "custom_base_model")


class Advice(str):
    """A preflight line that is printed before submission, not a refusal (e.g. an id the table
    does not know, a bucket in another region than the tuning job)."""

    __slots__ = ()


class ApiUnreachable(RemoteError):
    """The API could not be reached or cannot serve right now (connection refused, DNS, timeout,
    HTTP 429 or 5xx on a read): worth retrying later; the job itself is unaffected."""


class SubmissionRefused(RemoteError):
    """The server refused the create request (a 4xx other than 401/403/429): no job exists.
    routerlib records the refusal as DENIED."""

    def __init__(self, message: str, *, code: int | None, status: str | None, detail: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.detail = detail


class CredentialsProblem(RemoteError):
    """401/403: the credentials are missing, expired or lack a permission (``permission`` names
    it when the server did). Nothing was created and nothing is recorded."""

    def __init__(self, message: str, *, permission: str | None = None) -> None:
        super().__init__(message)
        self.permission = permission


class QuotaExhausted(RemoteError):
    """429 RESOURCE_EXHAUSTED on create: no job was created (retried only when asked)."""


class SubmissionUnknown(RemoteError):
    """The create request timed out, lost its answer or answered 5xx: a job may exist.
    routerlib records the submission as UNKNOWN and looks for it by label before creating again."""


class TuningSpec(BaseModel):
    """A supervised tuning request; field names follow google-genai's CreateTuningJobConfig."""

    model_config = ConfigDict(extra="forbid")

    base_model: str = DEFAULT_BASE_MODEL
    training_dataset_uri: str
    validation_dataset_uri: str | None = None
    output_uri: str
    tuning_mode: Literal["PEFT_ADAPTER", "FULL"] = run_default("tuning_mode")
    adapter_size: int | None = run_default("adapter_size")
    epochs: int = Field(run_default("epochs"), ge=1)
    learning_rate: float | None = Field(None, gt=0)
    learning_rate_multiplier: float | None = Field(None, gt=0)
    tuned_model_display_name: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    custom_base_model: str | None = None

    @model_validator(mode="after")
    def _check(self) -> TuningSpec:
        problems = models.tuning_problems(dict(self))
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @classmethod
    def build(cls, **fields: Any) -> TuningSpec:
        """Construct and validate; invalid combinations raise InputError saying what to change."""
        try:
            return cls(**fields)
        except ValidationError as exc:
            raise InputError("invalid tuning spec", problem_lines(exc, "spec")) from None

    def checkpoint_uri(self) -> str:
        """Where the final checkpoint lands: ``<output_uri>/postprocess/node-0/checkpoints/final``."""
        return self.output_uri.rstrip("/") + "/" + FINAL_CHECKPOINT

    def spec_hash(self) -> str:
        """A short hash of the spec without its routerlib label: equal specs, equal hashes
        (lowercase hex, so a valid Vertex label value)."""
        data = self.model_dump(mode="json")
        data["labels"] = {k: v for k, v in self.labels.items() if k != SPEC_LABEL}
        text = json.dumps(data, sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]

    def labelled(self) -> TuningSpec:
        """This spec with its hash label added (what is sent)."""
        return self.model_copy(update={"labels": {**self.labels, SPEC_LABEL: self.spec_hash()}})


class Checkpoint(BaseModel):
    """One saved checkpoint of a tuning job: ``final`` or one epoch's."""

    model_config = ConfigDict(extra="ignore")

    checkpoint_id: str
    epoch: int | None = None
    step: int | None = None
    uri: str


def with_final(points: list[Checkpoint], uri: str | None) -> list[Checkpoint]:
    """``points`` followed by ``final`` at ``uri`` (the last point's epoch and step); ``points``
    alone when there is no final checkpoint (``uri`` None)."""
    if uri is None:
        return points
    last = points[-1] if points else Checkpoint(checkpoint_id="", uri="")
    final = Checkpoint(checkpoint_id="final", epoch=last.epoch, step=last.step, uri=uri)
    return [*points, final]


class Job(BaseModel):
    """One tuning job as the registry records it."""

    model_config = ConfigDict(extra="ignore")

    name: str  # resource name (vertex) or local job id
    backend: Literal["local", "vertex"]
    state: str
    spec: TuningSpec
    create_time: str | None = None
    update_time: str | None = None
    error: str | None = None
    tuning_data_stats: dict[str, Any] = Field(default_factory=dict)
    checkpoint_uri: str | None = None
    checkpoints: list[Checkpoint] = Field(default_factory=list)
    sub_state: str | None = None  # Vertex tuning_job_state, e.g. waiting for quota
    project: str | None = None
    location: str | None = None
    #: The region the job ran in: its location, or for a ``global`` job the region its tuned
    #: model's resource names carry (None until the API shows it).
    region: str | None = None
    #: The tuned model's Model Registry resource name, when the API gives it.
    tuned_model: str | None = None
    api_endpoint: str | None = None
    loss_curve: list[dict[str, Any]] = Field(default_factory=list)
    train_seconds: float | None = None
    cost_estimate_usd: float | None = None

    @property
    def ended(self) -> bool:
        """True in any end state (ours, which includes EXPIRED and PARTIALLY_SUCCEEDED)."""
        return self.state in END_STATES

    @property
    def succeeded(self) -> bool:
        return self.state == SUCCEEDED

    def epoch_ends(self) -> dict[int, dict[str, Any]]:
        """The loss curve's points at the end of a whole epoch (epoch = step / steps per epoch),
        by epoch."""
        return {
            int(p["epoch"]): p
            for p in self.loss_curve
            if isinstance(p.get("epoch"), int | float) and float(p["epoch"]).is_integer()
        }


class TuningBackend(Protocol):
    """What a tuning backend provides (local runs synchronously; vertex returns at once). jobs.py
    talks to this interface only: it never branches on the backend's name."""

    name: str
    #: True when ``submit`` creates a job elsewhere that outlives this process (Vertex): an
    #: interrupted submission is then recorded as UNKNOWN, since a job may exist.
    remote: bool

    @property
    def where(self) -> dict[str, str | None]:
        """Where jobs are recorded as submitted to (vertex: project, location, endpoint)."""

    def preflight(self, spec: TuningSpec) -> list[str]:
        """What the backend would refuse, found without sending anything (one line each); an
        ``Advice`` line is printed, not refused."""

    def preview(self, spec: TuningSpec) -> dict[str, Any]:
        """What ``submit`` would send (for --dry-run); nothing is sent."""

    def find_submitted(self, spec: TuningSpec) -> Job | None:
        """A job the backend already has for ``spec`` (by its hash label), or None."""

    def submit(self, spec: TuningSpec) -> Job:
        """Start a job for ``spec`` (refusals raise RemoteError)."""

    def get(self, name: str) -> Job:
        """The job's current state."""

    def list(self) -> list[Job]:
        """Jobs known to the backend."""

    def cancel(self, name: str) -> Job:
        """Ask the backend to cancel the job (asynchronous on Vertex: may answer CANCELLING)."""

    def checkpoints(self, job: Job) -> builtins.list[Checkpoint]:
        """The job's saved checkpoints (final and per epoch), oldest first."""
