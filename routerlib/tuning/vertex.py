"""Vertex AI managed tuning through google-genai's ``Client(vertexai=True).tunings``.

The only module that imports google-genai (inside functions, so importing it is cheap). Endpoint
and credential choices live here:

- no ``api_endpoint``: the SDK's regional endpoint with application-default credentials;
- an https:// (or bare host) ``api_endpoint``: that regional/private endpoint, same credentials;
- an http:// loopback address (a local stand-in): a static test token, never real credentials;
- any other http:// address is refused, so credentials never travel unencrypted.

Open models (Llama, Gemma, Qwen) are tuned by naming them as ``base_model``; the spec becomes a
``supervisedTuningSpec`` (datasets, ``tuningMode``, ``hyperParameters``) plus ``outputUri``,
``customBaseModel``, ``labels`` and ``tunedModelDisplayName`` at the top of the REST body.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from routerlib.errors import InputError, RemoteError
from routerlib.paths import FINAL_CHECKPOINT
from routerlib.tuning.base import SUCCEEDED, Job, TuningSpec

API_VERSION = "v1beta1"
DEFAULT_LOCATION = "us-central1"
TEST_TOKEN = "test-token"
#: Per-request HTTP timeout (milliseconds, as google-genai's HttpOptions counts it).
TIMEOUT_MS = 60_000
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}

TUNING_MODES = {"PEFT_ADAPTER": "TUNING_MODE_PEFT_ADAPTER", "FULL": "TUNING_MODE_FULL"}
ADAPTER_SIZE_ENUM = {
    1: "ADAPTER_SIZE_ONE",
    2: "ADAPTER_SIZE_TWO",
    4: "ADAPTER_SIZE_FOUR",
    8: "ADAPTER_SIZE_EIGHT",
    16: "ADAPTER_SIZE_SIXTEEN",
    32: "ADAPTER_SIZE_THIRTY_TWO",
}
#: Statistics kept from supervisedTuningDataStats (Vertex's names).
STAT_KEYS = (
    "tuning_dataset_example_count",
    "total_billable_token_count",
    "tuning_step_count",
    "total_truncated_example_count",
    "total_billable_character_count",
)


class ApiUnreachable(RemoteError):
    """The API could not be reached or cannot serve right now (connection refused, DNS, timeout,
    HTTP 429 or 5xx): worth retrying later; the job itself is unaffected."""


class SubmissionRefused(RemoteError):
    """The server answered the create request with a 4xx: the job was not created."""

    def __init__(self, message: str, *, code: int | None, status: str | None, detail: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.detail = detail


def resolve_project(project: str | None) -> str:
    """``project`` or $GOOGLE_CLOUD_PROJECT; InputError when neither is set."""
    value = (project or os.environ.get("GOOGLE_CLOUD_PROJECT") or "").strip()
    if not value:
        raise InputError(
            "no Google Cloud project: pass --project or set GOOGLE_CLOUD_PROJECT (params: project)"
        )
    return value


def resolve_location(location: str | None) -> str:
    """``location`` or $GOOGLE_CLOUD_REGION or us-central1."""
    return (location or os.environ.get("GOOGLE_CLOUD_REGION") or DEFAULT_LOCATION).strip()


def is_loopback(url: str | None) -> bool:
    """True for an http(s):// address on 127.0.0.1, localhost or ::1."""
    if not url:
        return False
    return (urlsplit(url).hostname or "") in _LOOPBACK


def normalize_endpoint(api_endpoint: str | None) -> str | None:
    """The base URL to give the SDK (None = its regional default).

    A bare host gets https://; http:// is accepted for loopback stand-ins only.
    """
    value = (api_endpoint or "").strip().rstrip("/")
    if not value:
        return None
    if "://" not in value:
        value = "https://" + value
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(
            f"api_endpoint {api_endpoint!r}: expected https://HOST[:PORT] or a host name"
        )
    if parts.scheme == "http" and not is_loopback(value):
        raise InputError(
            f"api_endpoint {api_endpoint!r}: plain http:// is allowed only for a loopback stand-in "
            "(127.0.0.1/localhost); use https:// for a real endpoint"
        )
    return value


def config_fields(spec: TuningSpec) -> dict[str, Any]:
    """Keyword arguments of google-genai's CreateTuningJobConfig for ``spec`` (unset ones left out)."""
    fields: dict[str, Any] = {
        "tuning_mode": TUNING_MODES[spec.tuning_mode],
        "epoch_count": spec.epochs,
        "output_uri": spec.output_uri,
    }
    if spec.tuning_mode == "PEFT_ADAPTER" and spec.adapter_size is not None:
        fields["adapter_size"] = ADAPTER_SIZE_ENUM[spec.adapter_size]
    optional = {
        "learning_rate": spec.learning_rate,
        "learning_rate_multiplier": spec.learning_rate_multiplier,
        "tuned_model_display_name": spec.tuned_model_display_name,
        "custom_base_model": spec.custom_base_model,
        "labels": dict(spec.labels) or None,
    }
    fields.update({k: v for k, v in optional.items() if v is not None})
    return fields


def request_body(spec: TuningSpec) -> dict[str, Any]:
    """The REST body of tuningJobs.create for ``spec``, as google-genai 2.x lays it out.

    Used for --dry-run; a wire test checks it equals what the SDK really sends.
    """
    hyper: dict[str, Any] = {"epochCount": spec.epochs}
    if spec.tuning_mode == "PEFT_ADAPTER" and spec.adapter_size is not None:
        hyper["adapterSize"] = ADAPTER_SIZE_ENUM[spec.adapter_size]
    if spec.learning_rate is not None:
        hyper["learningRate"] = spec.learning_rate
    if spec.learning_rate_multiplier is not None:
        hyper["learningRateMultiplier"] = spec.learning_rate_multiplier
    sft: dict[str, Any] = {"trainingDatasetUri": spec.training_dataset_uri}
    if spec.validation_dataset_uri:
        sft["validationDatasetUri"] = spec.validation_dataset_uri
    sft["hyperParameters"] = hyper
    sft["tuningMode"] = TUNING_MODES[spec.tuning_mode]
    body: dict[str, Any] = {"baseModel": spec.base_model, "supervisedTuningSpec": sft}
    if spec.tuned_model_display_name:
        body["tunedModelDisplayName"] = spec.tuned_model_display_name
    if spec.custom_base_model:
        body["customBaseModel"] = spec.custom_base_model
    if spec.labels:
        body["labels"] = dict(spec.labels)
    body["outputUri"] = spec.output_uri
    return body


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _state(value: Any) -> str:
    if value is None:
        return "JOB_STATE_UNSPECIFIED"
    return str(getattr(value, "value", value))


def data_stats(tuning_job: Any) -> dict[str, Any]:
    """Example count, billable tokens, steps (and truncation) from a job's tuning_data_stats."""
    stats = getattr(tuning_job, "tuning_data_stats", None)
    sft = getattr(stats, "supervised_tuning_data_stats", None) if stats is not None else None
    if sft is None:
        return {}
    return {k: getattr(sft, k) for k in STAT_KEYS if getattr(sft, k, None) is not None}


def spec_from_job(tuning_job: Any) -> TuningSpec:
    """Best-effort TuningSpec from a TuningJob the API returned (for jobs not in the registry)."""
    sft = getattr(tuning_job, "supervised_tuning_spec", None)
    hyper = getattr(sft, "hyper_parameters", None) if sft is not None else None
    mode = _state(getattr(sft, "tuning_mode", None)).removeprefix("TUNING_MODE_")
    sizes = {v: k for k, v in ADAPTER_SIZE_ENUM.items()}
    fields: dict[str, Any] = {
        "base_model": tuning_job.base_model or "",
        "training_dataset_uri": getattr(sft, "training_dataset_uri", None) or "",
        "validation_dataset_uri": getattr(sft, "validation_dataset_uri", None),
        "output_uri": tuning_job.output_uri or "",
        "tuning_mode": mode if mode in TUNING_MODES else "PEFT_ADAPTER",
        "adapter_size": sizes.get(_state(getattr(hyper, "adapter_size", None))),
        "epochs": getattr(hyper, "epoch_count", None) or 1,
        "learning_rate": getattr(hyper, "learning_rate", None),
        "learning_rate_multiplier": getattr(hyper, "learning_rate_multiplier", None),
        "tuned_model_display_name": tuning_job.tuned_model_display_name,
        "labels": dict(tuning_job.labels or {}),
        "custom_base_model": tuning_job.custom_base_model,
    }
    try:
        return TuningSpec(**fields)
    except Exception:  # an API job routerlib would not submit: keep what it says as is
        return TuningSpec.model_construct(**fields)


class VertexBackend:
    """Submit, get, list and cancel Vertex AI tuning jobs."""

    name = "vertex"

    def __init__(
        self,
        project: str | None = None,
        location: str | None = None,
        api_endpoint: str | None = None,
    ) -> None:
        self.project = resolve_project(project)
        self.location = resolve_location(location)
        self.api_endpoint = normalize_endpoint(api_endpoint)
        self._client: Any = None

    @property
    def base_url(self) -> str:
        """Where requests go (for messages and the registry)."""
        return self.api_endpoint or f"https://{self.location}-aiplatform.googleapis.com"

    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.location}"

    def _credentials(self) -> Any:
        if is_loopback(self.api_endpoint):
            from google.oauth2.credentials import Credentials

            return Credentials(token=TEST_TOKEN)
        import google.auth
        from google.auth.exceptions import DefaultCredentialsError

        try:
            credentials, _ = google.auth.default(
                scopes=["https://www.googleapis.com/auth/cloud-platform"]
            )
        except DefaultCredentialsError as exc:
            raise RemoteError(
                "no Google Cloud credentials: run `gcloud auth application-default login` "
                f"(or set GOOGLE_APPLICATION_CREDENTIALS): {str(exc).splitlines()[0]}"
            ) from None
        return credentials

    def client(self) -> Any:
        """The google-genai client, built on first use."""
        if self._client is None:
            from google import genai
            from google.genai import types

            options: dict[str, Any] = {"api_version": API_VERSION, "timeout": TIMEOUT_MS}
            if self.api_endpoint:
                options["base_url"] = self.api_endpoint
            self._client = genai.Client(
                vertexai=True,
                project=self.project,
                location=self.location,
                credentials=self._credentials(),
                http_options=types.HttpOptions(**options),
            )
        return self._client

    def request_preview(self, spec: TuningSpec) -> dict[str, Any]:
        """The request ``submit`` would send: method, URL and body (nothing is sent)."""
        return {
            "method": "POST",
            "url": f"{self.base_url}/{API_VERSION}/{self.parent()}/tuningJobs",
            "body": request_body(spec),
        }

    def _call(self, action: str, fn: Any, **kwargs: Any) -> Any:
        """Run one SDK call, turning its exceptions into RemoteError subclasses."""
        import httpx
        from google.genai import errors

        try:
            return fn(**kwargs)
        except errors.APIError as exc:
            detail = exc.message or str(exc)
            where = f"{action} at {self.base_url}"
            message = f"{where} failed: HTTP {exc.code} {exc.status or ''}".rstrip() + f": {detail}"
            if isinstance(exc, errors.ClientError) and action == "submit" and exc.code != 429:
                raise SubmissionRefused(
                    message, code=exc.code, status=exc.status, detail=detail
                ) from None
            if action != "submit" and (exc.code == 429 or (exc.code or 0) >= 500):
                raise ApiUnreachable(message) from None
            raise RemoteError(message) from None
        except (httpx.TransportError, OSError) as exc:
            raise ApiUnreachable(
                f"{action}: cannot reach Vertex AI at {self.base_url}: {exc or type(exc).__name__}"
            ) from None

    def to_job(self, tuning_job: Any, spec: TuningSpec | None = None) -> Job:
        """A registry Job from an SDK TuningJob (``spec`` wins over what the API echoes)."""
        spec = spec or spec_from_job(tuning_job)
        state = _state(tuning_job.state)
        error = getattr(tuning_job, "error", None)
        message = None
        if error is not None:
            message = error.message or (f"error code {error.code}" if error.code else None)
        checkpoint = None
        if state == SUCCEEDED:
            output = (tuning_job.output_uri or spec.output_uri or "").rstrip("/")
            checkpoint = f"{output}/{FINAL_CHECKPOINT}" if output else None
        return Job(
            name=tuning_job.name or "",
            backend="vertex",
            state=state,
            spec=spec,
            create_time=_iso(tuning_job.create_time),
            update_time=_iso(tuning_job.update_time or tuning_job.end_time),
            error=message,
            tuning_data_stats=data_stats(tuning_job),
            checkpoint_uri=checkpoint,
            project=self.project,
            location=self.location,
            api_endpoint=self.api_endpoint,
        )

    def submit(self, spec: TuningSpec) -> Job:
        """Create the tuning job; a 4xx answer raises SubmissionRefused with the server's message."""
        import warnings

        from google.genai import types

        fields = config_fields(spec)
        if spec.validation_dataset_uri:
            fields["validation_dataset"] = types.TuningValidationDataset(
                gcs_uri=spec.validation_dataset_uri
            )
        config = types.CreateTuningJobConfig(**fields)
        with warnings.catch_warnings():  # "tuning is experimental" on every call
            warnings.simplefilter("ignore")
            tuning_job = self._call(
                "submit",
                self.client().tunings.tune,
                base_model=spec.base_model,
                training_dataset=types.TuningDataset(gcs_uri=spec.training_dataset_uri),
                config=config,
            )
        return self.to_job(tuning_job, spec)

    def get(self, name: str) -> Job:
        """The job's current state from the API."""
        return self.to_job(self._call("get", self.client().tunings.get, name=name))

    def list(self) -> list[Job]:
        """Every tuning job of the project and location (all pages)."""

        def fetch_all() -> list[Any]:
            return list(self.client().tunings.list(config={"page_size": 100}))

        return [self.to_job(item) for item in self._call("list", fetch_all)]

    def cancel(self, name: str) -> Job:
        """Ask the API to cancel, then return the job as it stands."""
        self._call("cancel", self.client().tunings.cancel, name=name)
        return self.get(name)
