"""Vertex AI managed tuning through google-genai's ``Client(vertexai=True).tunings``, the only
module that imports google-genai (inside functions, so importing it is cheap). Credentials go to
https:// endpoints only; an http:// loopback stand-in gets a test token (docs/vertex-tuning.md).
"""

from __future__ import annotations

import builtins
import contextlib
import os
import re
import warnings
from typing import Any
from urllib.parse import urlsplit

from pydantic.alias_generators import to_camel

from routerlib import auth, models, storage
from routerlib.checkpoint_names import CHECKPOINTS_DIR, FINAL_CHECKPOINT
from routerlib.config import default_project, run_default
from routerlib.errors import InputError, RemoteError
from routerlib.tuning.base import (
    REATTACH_STATES,
    SPEC_LABEL,
    SUCCEEDED,
    URI_FIELDS,
    Advice,
    ApiUnreachable,
    Checkpoint,
    CredentialsProblem,
    Job,
    QuotaExhausted,
    SubmissionRefused,
    SubmissionUnknown,
    TuningSpec,
    with_final,
)

API_VERSION = "v1beta1"
#: Where tuning runs when neither the call nor GOOGLE_CLOUD_REGION says (RunConfig ``location``).
DEFAULT_LOCATION: str = run_default("location")
TEST_TOKEN = "test-token"
#: Per-request HTTP timeout (milliseconds, as google-genai's HttpOptions counts it).
TIMEOUT_MS = 60_000
#: The SDK's endpoint for location ``global`` (google-genai _api_client: no region prefix).
GLOBAL_HOST = "https://aiplatform.googleapis.com"

_SIZE_WORDS = {1: "ONE", 2: "TWO", 4: "FOUR", 8: "EIGHT", 16: "SIXTEEN", 32: "THIRTY_TWO"}
ADAPTER_SIZE_ENUM = {size: f"ADAPTER_SIZE_{word}" for size, word in _SIZE_WORDS.items()}
#: CreateTuningJobConfig keys that go into the REST body's ``hyperParameters``; the other
#: optional keys sit at the top of the body (both camelCased).
HYPER_PARAMETERS = ("epoch_count", "adapter_size", "learning_rate", "learning_rate_multiplier")
TOP_LEVEL = ("tuned_model_display_name", "custom_base_model", "labels")
#: Statistics kept from supervisedTuningDataStats (Vertex's names).
STAT_KEYS = tuple(
    "tuning_dataset_example_count total_billable_token_count tuning_step_count "
    "total_truncated_example_count total_billable_character_count".split()
)
#: The region in a resource name, e.g. projects/P/locations/europe-west4/models/M.
_LOCATION = re.compile(r"/locations/([^/]+)/")
#: A permission named in a 403 message, e.g. "Permission 'aiplatform.tuningJobs.create' denied".
_PERMISSION = re.compile(r"\b([a-z]+\.[a-zA-Z]+\.[a-zA-Z]+)\b")
#: Vertex label keys and values (google-genai's CreateTuningJobConfig.labels: no longer than 64
#: characters; lowercase letters, numeric characters, underscores and dashes; international
#: characters allowed); a key starts with a letter.
_LABEL_KEY, _LABEL_VALUE = re.compile(r"[^\W\d_][\w-]{0,63}"), re.compile(r"[\w-]{0,64}")


def ran_in(tuning_job: Any) -> str | None:
    """The real region a job's resources name (its tuned model, endpoint or checkpoints): for a
    ``global`` job Vertex picks the region, and these carry it, not ``global``."""
    tuned = getattr(tuning_job, "tuned_model", None)
    names = [getattr(tuned, "model", None), getattr(tuned, "endpoint", None)]
    names += [getattr(c, "endpoint", None) for c in getattr(tuned, "checkpoints", None) or []]
    for name in names:
        match = _LOCATION.search(f"{name or ''}/")
        if match and match[1] != "global":
            return match[1]
    return None


def normalize_endpoint(api_endpoint: str | None) -> str | None:
    """The base URL to give the SDK (None = its regional default): a bare host gets https://;
    http:// is accepted for loopback stand-ins only."""
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
    if parts.scheme == "http" and not auth.is_loopback(value):
        raise InputError(
            f"api_endpoint {api_endpoint!r}: plain http:// is allowed only for a loopback stand-in "
            "(127.0.0.1/localhost); use https:// for a real endpoint"
        )
    return value


def config_fields(spec: TuningSpec) -> dict[str, Any]:
    """Keyword arguments of google-genai's CreateTuningJobConfig for ``spec`` (unset ones left out)."""
    fields = {
        "tuning_mode": f"TUNING_MODE_{spec.tuning_mode}",
        "epoch_count": spec.epochs,
        "output_uri": spec.output_uri,
        "adapter_size": ADAPTER_SIZE_ENUM[spec.adapter_size]
        if spec.tuning_mode == "PEFT_ADAPTER" and spec.adapter_size is not None
        else None,
        "learning_rate": spec.learning_rate,
        "learning_rate_multiplier": spec.learning_rate_multiplier,
        "tuned_model_display_name": spec.tuned_model_display_name,
        "custom_base_model": spec.custom_base_model,
        "labels": dict(spec.labels) or None,
    }
    return {key: value for key, value in fields.items() if value is not None}


def request_body(spec: TuningSpec) -> dict[str, Any]:
    """The REST body of tuningJobs.create for ``spec``, as google-genai 2.x lays it out (for
    --dry-run; a wire test checks it equals what the SDK really sends)."""
    fields = config_fields(spec)
    sft: dict[str, Any] = {"trainingDatasetUri": spec.training_dataset_uri}
    if spec.validation_dataset_uri:
        sft["validationDatasetUri"] = spec.validation_dataset_uri
    sft["hyperParameters"] = {to_camel(k): fields[k] for k in HYPER_PARAMETERS if k in fields}
    sft["tuningMode"] = fields["tuning_mode"]
    body: dict[str, Any] = {"baseModel": spec.base_model, "supervisedTuningSpec": sft}
    body.update({to_camel(k): fields[k] for k in TOP_LEVEL if k in fields})
    return body | {"outputUri": spec.output_uri}


def _enum(value: Any, unset: str = "JOB_STATE_UNSPECIFIED") -> str:
    return unset if value is None else str(getattr(value, "value", value))


def spec_from_job(tuning_job: Any) -> TuningSpec:
    """Best-effort TuningSpec from a TuningJob the API returned (for jobs not in the registry)."""
    sft = getattr(tuning_job, "supervised_tuning_spec", None)
    hyper = getattr(sft, "hyper_parameters", None)
    mode = _enum(getattr(sft, "tuning_mode", None)).removeprefix("TUNING_MODE_")
    sizes = {v: k for k, v in ADAPTER_SIZE_ENUM.items()}
    fields: dict[str, Any] = {
        "base_model": tuning_job.base_model or "",
        "training_dataset_uri": getattr(sft, "training_dataset_uri", None) or "",
        "validation_dataset_uri": getattr(sft, "validation_dataset_uri", None),
        "output_uri": tuning_job.output_uri or "",
        "tuning_mode": mode if mode == models.FULL else models.PEFT,
        "adapter_size": sizes.get(_enum(getattr(hyper, "adapter_size", None))),
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


def _dir_order(name: str) -> tuple[int, str]:
    digits = re.findall(r"\d+", name)
    return (int(digits[-1]) if digits else 0, name)


class VertexBackend:
    """Preflight, preview, submit, get, list, cancel and checkpoints of Vertex AI tuning jobs."""

    name = "vertex"
    remote = True
    #: Jobs per list page (every page is followed).
    page_size = 100

    def __init__(
        self,
        project: str | None = None,
        location: str | None = None,
        api_endpoint: str | None = None,
    ) -> None:
        self.project = default_project(project)
        if not self.project:
            raise InputError(
                "no Google Cloud project: pass --project or set GOOGLE_CLOUD_PROJECT (params: project)"
            )
        self.location = (
            location or os.environ.get("GOOGLE_CLOUD_REGION") or DEFAULT_LOCATION
        ).strip()
        self.api_endpoint = normalize_endpoint(api_endpoint)
        self._client: Any = None

    @property
    def where(self) -> dict[str, str | None]:
        """What the registry keeps to re-attach to this backend's jobs."""
        return dict(project=self.project, location=self.location, api_endpoint=self.api_endpoint)

    @property
    def base_url(self) -> str:
        """Where requests go: the endpoint given, the global host for ``global``, else regional."""
        if self.api_endpoint:
            return self.api_endpoint
        if self.location == "global":
            return GLOBAL_HOST
        return f"https://{self.location}-aiplatform.googleapis.com"

    def client(self) -> Any:
        """The google-genai client, built on first use. No client-level retry options are set,
        so the SDK sends each request once (its default when retry_options is None). A loopback
        stand-in gets a placeholder token (genai wants one; the stand-in ignores it)."""
        if self._client is None:
            from google import genai
            from google.genai import types
            from google.oauth2.credentials import Credentials

            if self.api_endpoint and auth.is_loopback(self.api_endpoint):
                credentials = Credentials(token=TEST_TOKEN)
            else:
                try:
                    credentials = auth.application_default()[0]
                except InputError as exc:
                    raise CredentialsProblem(str(exc)) from None
            options: dict[str, Any] = {"api_version": API_VERSION, "timeout": TIMEOUT_MS}
            if self.api_endpoint:
                options["base_url"] = self.api_endpoint
            self._client = genai.Client(
                vertexai=True,
                project=self.project,
                location=self.location,
                credentials=credentials,
                http_options=types.HttpOptions(**options),
            )
        return self._client

    def preflight(self, spec: TuningSpec) -> list[str]:
        """What Vertex would refuse, from routerlib's contract table; nothing is sent."""
        problems = [
            f"{key}: {value!r} must be a gs:// URI for Vertex AI (upload it, or use "
            "--backend local)"
            for key in URI_FIELDS
            if (value := getattr(spec, key)) and not value.startswith("gs://")
        ]
        if spec.base_model == models.EMBEDDED_MODEL:
            problems.append(
                f"base_model: {models.EMBEDDED_MODEL} is the embedded local model: use --backend "
                "local or a Vertex model id such as meta/llama3_1@llama-3.1-8b-instruct"
            )
        problems += [
            f"labels: {key}={value!r}: Vertex label keys and values are up to 64 lowercase "
            "letters, digits, underscores or dashes (keys start with a letter)"
            for key, value in spec.labels.items()
            if not (_LABEL_KEY.fullmatch(key) and _LABEL_VALUE.fullmatch(value))
            or f"{key}{value}" != f"{key}{value}".lower()
        ]
        problems += models.contract_problems({**dict(spec), "location": self.location})
        known = models.contract(spec.base_model) or models.short_id(spec.base_model) in (
            *models.TABLE.renamed,
            models.EMBEDDED_MODEL,
        )
        if not known:
            problems.append(Advice(models.unchecked_line(spec.base_model)))
        return problems + self.storage_problems(spec)

    def storage_problems(self, spec: TuningSpec) -> list[str]:
        """The validation file against Vertex's limits (rows, share of the training file's bytes),
        and a warning per bucket (datasets, output) whose location may not serve the tuning
        location; what cannot be read here is left to the dataset check that follows."""
        try:
            client = storage.gcs_client(self.project)
        except RemoteError:  # no credentials: nothing to read here
            return []
        problems: list[str] = []
        if spec.validation_dataset_uri and spec.training_dataset_uri.startswith("gs://"):
            with contextlib.suppress(RemoteError, OSError):
                train = storage.size(spec.training_dataset_uri, client)
                validation = storage.size(spec.validation_dataset_uri, client)
                lines = storage.open_text(spec.validation_dataset_uri, client)
                rows = sum(1 for line in lines if line.strip())
                problems += models.validation_problems(train, validation, rows)
        seen: set[str] = set()
        for key in URI_FIELDS[:3]:
            uri = getattr(spec, key) or ""
            bucket = storage.parse_gcs_uri(uri)[0] if uri.startswith("gs://") else ""
            if not bucket or bucket in seen:
                continue
            seen.add(bucket)
            try:
                info = storage.bucket_info(uri, client)
            except RemoteError:
                continue
            problem = models.bucket_problem(
                self.location, bucket, info.location, info.location_type, info.data_locations
            )
            if problem:
                problems.append(Advice(f"warning: {key}: {problem}"))
        return problems

    def probe(self) -> str:
        """One cheap read (the first page of at most one tuning job): raises the classified
        RemoteError when Vertex AI does not answer; returns what was read. Nothing is created."""

        def first_page() -> int:
            pager = self.client().tunings.list(config={"page_size": 1})
            return len(getattr(pager, "page", None) or [])

        count = self._call("list", first_page)
        return f"{self.base_url}: tuningJobs.list answered ({count} job(s) on the first page)"

    def preview(self, spec: TuningSpec) -> dict[str, Any]:
        """The request ``submit`` would send: method, URL and body (nothing is sent)."""
        parent = f"projects/{self.project}/locations/{self.location}"
        return {
            "method": "POST",
            "url": f"{self.base_url}/{API_VERSION}/{parent}/tuningJobs",
            "body": request_body(spec.labelled()),
        }

    def _call(self, action: str, fn: Any, **kwargs: Any) -> Any:
        """Run one SDK call, its exceptions turned into RemoteError subclasses: 401/403
        CredentialsProblem; on ``submit`` 429 QuotaExhausted, other 4xx SubmissionRefused, 5xx or
        a lost answer SubmissionUnknown; refused connections and failed reads ApiUnreachable."""
        import httpx
        from google.genai import errors

        where = f"{action} at {self.base_url}"
        try:
            return fn(**kwargs)
        except errors.APIError as exc:
            detail, code, status = exc.message or str(exc), exc.code or 0, exc.status or ""
            message = f"{where} failed: HTTP {exc.code} {status}".rstrip() + f": {detail}"
            if code in (401, 403):
                match = _PERMISSION.search(detail)
                permission = match.group(1) if match else None
                hint = (
                    f"the credentials lack the IAM permission {permission}"
                    if permission
                    else "the credentials are missing, expired or lack a permission"
                )
                raise CredentialsProblem(
                    f"{where}: {hint} (HTTP {code} {status}): {detail}; grant it (e.g. "
                    "roles/aiplatform.user) or run `gcloud auth application-default login`",
                    permission=permission,
                ) from None
            if action != "submit":
                raise (ApiUnreachable if code == 429 or code >= 500 else RemoteError)(
                    message
                ) from None
            if code == 429:
                raise QuotaExhausted(
                    f"{where}: quota exhausted (HTTP 429 {status}): {detail}; the default quota is "
                    "one concurrent open-model tuning job per project: wait for the running one, "
                    "or pass --wait-for-quota"
                ) from None
            if code >= 500:
                raise SubmissionUnknown(message) from None
            raise SubmissionRefused(
                message, code=exc.code, status=exc.status, detail=detail
            ) from None
        except httpx.ConnectError as exc:
            raise ApiUnreachable(
                f"{action}: cannot reach Vertex AI at {self.base_url}: {exc or type(exc).__name__}"
            ) from None
        except (httpx.TransportError, OSError) as exc:
            text = f"{action}: no answer from Vertex AI at {self.base_url}: {exc or type(exc).__name__}"
            raise (SubmissionUnknown if action == "submit" else ApiUnreachable)(text) from None

    def to_job(self, tuning_job: Any, spec: TuningSpec | None = None) -> Job:
        """A registry Job from an SDK TuningJob (``spec`` wins over what the API echoes)."""
        spec = spec or spec_from_job(tuning_job)
        state = _enum(tuning_job.state)
        error = getattr(tuning_job, "error", None)
        message = None
        if error is not None:
            message = error.message or (f"error code {error.code}" if error.code else None)
        output = (tuning_job.output_uri or spec.output_uri or "").rstrip("/")
        sub_state = _enum(getattr(tuning_job, "tuning_job_state", None), "")
        tuned = getattr(tuning_job, "tuned_model", None)
        stats = getattr(tuning_job.tuning_data_stats, "supervised_tuning_data_stats", None)
        times = (tuning_job.create_time, tuning_job.update_time or tuning_job.end_time)
        return Job(
            name=tuning_job.name or "",
            backend="vertex",
            state=state,
            spec=spec,
            region=self.location if self.location != "global" else ran_in(tuning_job),
            tuned_model=getattr(tuned, "model", None) or None,
            create_time=times[0].isoformat() if times[0] else None,
            update_time=times[1].isoformat() if times[1] else None,
            error=message,
            tuning_data_stats={
                k: v for k in STAT_KEYS if (v := getattr(stats, k, None)) is not None
            },
            checkpoint_uri=f"{output}/{FINAL_CHECKPOINT}"
            if state == SUCCEEDED and output
            else None,
            sub_state=None if sub_state in ("", "TUNING_JOB_STATE_UNSPECIFIED") else sub_state,
            project=self.project,
            location=self.location,
            api_endpoint=self.api_endpoint,
        )

    def submit(self, spec: TuningSpec) -> Job:
        """Create the tuning job, labelled with the spec's hash, sent exactly once
        (HttpRetryOptions(attempts=1): a re-sent create is a second billed job)."""
        from google.genai import types

        spec = spec.labelled()
        fields = config_fields(spec)
        if spec.validation_dataset_uri:
            fields["validation_dataset"] = types.TuningValidationDataset(
                gcs_uri=spec.validation_dataset_uri
            )
        fields["http_options"] = types.HttpOptions(retry_options=types.HttpRetryOptions(attempts=1))
        with warnings.catch_warnings():  # "tuning is experimental" on every call
            warnings.simplefilter("ignore")
            tuning_job = self._call(
                "submit",
                self.client().tunings.tune,
                base_model=spec.base_model,
                training_dataset=types.TuningDataset(gcs_uri=spec.training_dataset_uri),
                config=types.CreateTuningJobConfig(**fields),
            )
        return self.to_job(tuning_job, spec)

    def get(self, name: str) -> Job:
        """The job's current state from the API."""
        return self.to_job(self._raw(name))

    def _raw(self, name: str) -> Any:
        return self._call("get", self.client().tunings.get, name=name)

    def list(self, label: tuple[str, str] | None = None) -> list[Job]:
        """Every tuning job of the project and location (all pages); with ``label`` (key, value)
        only the jobs carrying it, matched here too, and against every job when the filtered
        list has no match (a filter the server reads differently can neither add nor hide one)."""

        def fetch_all(**filters: str) -> builtins.list[Any]:
            return list(self.client().tunings.list(config={"page_size": self.page_size, **filters}))

        def matching(found: builtins.list[Any]) -> builtins.list[Any]:
            return [i for i in found if label is None or (i.labels or {}).get(label[0]) == label[1]]

        items: builtins.list[Any] = []
        if label is not None:
            with contextlib.suppress(Exception):  # filter refused or a blip: list all, match here
                items = matching(fetch_all(filter=f'labels.{label[0]}="{label[1]}"'))
        if not items:
            items = matching(self._call("list", fetch_all))
        return [self.to_job(item) for item in items]

    def find_submitted(self, spec: TuningSpec) -> Job | None:
        """The newest live or succeeded job labelled with ``spec``'s hash, or None."""
        found = [
            j for j in self.list(label=(SPEC_LABEL, spec.spec_hash())) if j.state in REATTACH_STATES
        ]
        if not found:
            return None
        newest = max(found, key=lambda j: j.create_time or "")
        return newest.model_copy(update={"spec": spec.labelled()})

    def cancel(self, name: str) -> Job:
        """Ask the API to cancel (the job may stay CANCELLING, then end SUCCEEDED or FAILED)."""
        self._call("cancel", self.client().tunings.cancel, name=name)
        return self.get(name)

    def checkpoints(self, job: Job) -> builtins.list[Checkpoint]:
        """The job's checkpoints: the API's ``tuned_model.checkpoints`` (id, epoch, step) paired in
        order with the checkpoint folders under ``<output>/postprocess/node-0/checkpoints/``, then
        ``final`` once the job succeeded. A folder the bucket does not show leaves ``uri`` empty."""
        raw = self._raw(job.name)
        tuned = getattr(raw, "tuned_model", None)
        api = sorted(
            getattr(tuned, "checkpoints", None) or [], key=lambda c: (c.step or 0, c.epoch or 0)
        )
        output = (raw.output_uri or job.spec.output_uri or "").rstrip("/")
        base = f"{output}/{CHECKPOINTS_DIR}" if output else ""
        folders = [d for d in self._folders(base) if d != "final"]
        result = [
            Checkpoint(
                checkpoint_id=f"epoch-{point.epoch}"
                if point.epoch
                else str(point.checkpoint_id or i + 1),
                epoch=point.epoch,
                step=point.step,
                uri=f"{base}/{folders[i]}" if i < len(folders) else "",
            )
            for i, point in enumerate(api)
        ]
        if not api:
            result = [Checkpoint(checkpoint_id=d, uri=f"{base}/{d}") for d in folders]
        return with_final(result, self.to_job(raw, job.spec).checkpoint_uri)

    def _folders(self, base: str) -> builtins.list[str]:
        """Sub-folder names under a gs:// prefix, in checkpoint order ([] when not readable)."""
        if not base.startswith("gs://"):
            return []
        try:
            bucket, prefix = storage.parse_gcs_uri(base)
            blobs = storage.gcs_client(self.project).list_blobs(bucket, prefix=prefix + "/")
            names = {
                rest.split("/", 1)[0] for b in blobs if "/" in (rest := b.name[len(prefix) + 1 :])
            }
        except Exception:  # noqa: BLE001 - URIs are best effort; the API's list stands
            return []
        return sorted(names, key=_dir_order)
