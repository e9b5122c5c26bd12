"""The tuning interface shared by both backends: TuningSpec, Job, end states, the Backend protocol."""

from __future__ import annotations

from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from routerlib.errors import InputError
from routerlib.paths import FINAL_CHECKPOINT

ADAPTER_SIZES = (1, 4, 8, 16, 32)
DEFAULT_BASE_MODEL = "meta/llama3_1@llama-3.1-8b-instruct"

#: Job states (Vertex JobState names). DENIED is routerlib's own: the server refused the submission.
SUCCEEDED = "JOB_STATE_SUCCEEDED"
FAILED = "JOB_STATE_FAILED"
CANCELLED = "JOB_STATE_CANCELLED"
EXPIRED = "JOB_STATE_EXPIRED"
PARTIALLY_SUCCEEDED = "JOB_STATE_PARTIALLY_SUCCEEDED"
DENIED = "DENIED"
PENDING = "JOB_STATE_PENDING"
QUEUED = "JOB_STATE_QUEUED"
RUNNING = "JOB_STATE_RUNNING"

#: Our own list of end states (the SDK's misses EXPIRED and PARTIALLY_SUCCEEDED).
END_STATES = frozenset({SUCCEEDED, FAILED, CANCELLED, EXPIRED, PARTIALLY_SUCCEEDED, DENIED})
#: States in which re-submitting the same spec re-attaches instead of creating a duplicate.
REATTACH_STATES = frozenset({QUEUED, PENDING, RUNNING, SUCCEEDED, "JOB_STATE_UPDATING"})


class TuningSpec(BaseModel):
    """A supervised tuning request; field names follow google-genai's CreateTuningJobConfig."""

    model_config = ConfigDict(extra="forbid")

    base_model: str = DEFAULT_BASE_MODEL
    training_dataset_uri: str
    validation_dataset_uri: str | None = None
    output_uri: str
    tuning_mode: Literal["PEFT_ADAPTER", "FULL"] = "PEFT_ADAPTER"
    adapter_size: int | None = 16
    epochs: int = Field(3, ge=1)
    learning_rate: float | None = Field(None, gt=0)
    learning_rate_multiplier: float | None = Field(None, gt=0)
    tuned_model_display_name: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    custom_base_model: str | None = None

    @model_validator(mode="after")
    def _check(self) -> TuningSpec:
        problems = []
        if self.learning_rate is not None and self.learning_rate_multiplier is not None:
            problems.append(
                "learning_rate and learning_rate_multiplier are exclusive: drop one of them"
            )
        if self.tuning_mode == "PEFT_ADAPTER":
            if self.adapter_size not in ADAPTER_SIZES:
                problems.append(
                    f"adapter_size {self.adapter_size} is not allowed: use one of {ADAPTER_SIZES}"
                )
        elif self.adapter_size is not None:
            problems.append("adapter_size applies to PEFT_ADAPTER only: remove it for FULL tuning")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @classmethod
    def build(cls, **fields: Any) -> TuningSpec:
        """Construct and validate; invalid combinations raise InputError saying what to change."""
        try:
            return cls(**fields)
        except ValidationError as exc:
            lines = [
                f"{'.'.join(str(p) for p in e['loc']) or 'spec'}: {e['msg'].removeprefix('Value error, ')}"
                for e in exc.errors()
            ]
            raise InputError("invalid tuning spec", lines) from None

    def checkpoint_uri(self) -> str:
        """Where the final checkpoint lands: ``<output_uri>/postprocess/node-0/checkpoints/final``."""
        return self.output_uri.rstrip("/") + "/" + FINAL_CHECKPOINT


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
    project: str | None = None
    location: str | None = None
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


class TuningBackend(Protocol):
    """What a tuning backend provides. Local runs synchronously; vertex returns at once."""

    name: str

    def submit(self, spec: TuningSpec) -> Job:
        """Start a job for ``spec`` (refusals raise RemoteError)."""
        ...

    def get(self, name: str) -> Job:
        """The job's current state."""
        ...

    def list(self) -> list[Job]:
        """Jobs known to the backend."""
        ...

    def cancel(self, name: str) -> Job:
        """Ask the backend to cancel the job."""
        ...
