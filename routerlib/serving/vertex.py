"""Deploy a tuned checkpoint to a Vertex AI endpoint, predict on it, and clean it up.

The only module that imports google-cloud-aiplatform (lazily, inside functions). Every
deployment is recorded in ``<outputs>/endpoints.json`` with the project, location and API
endpoint used, so ``routerlib endpoints delete NAME`` finds it again. ``deployed(...)`` is the
safe form notebooks use: whatever it deployed is deleted when the block ends, also on error.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from routerlib.atomic import write_json
from routerlib.errors import InputError, RemoteError
from routerlib.paths import outputs_root

REGISTRY_FILE = "endpoints.json"
DEFAULT_LOCATION = "us-central1"
ENDPOINT_NAME = re.compile(
    r"projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)/endpoints/(?P<id>[^/:]+)"
)


@dataclass
class Deployment:
    """One deployed checkpoint: the endpoint and model Vertex created and how."""

    endpoint_name: str
    model_name: str
    deployed_model_ids: list[str]
    checkpoint_uri: str
    endpoint_display_name: str
    machine_type: str
    accelerator_type: str
    accelerator_count: int
    project: str
    location: str
    api_endpoint: str = ""
    deployed_at: str = ""
    state: str = "deployed"  # deployed | deleted
    deleted_at: str = ""


@dataclass
class EndpointInfo:
    """An endpoint as listed: remote facts plus what the registry knows about it."""

    endpoint_name: str
    display_name: str
    deployed_model_ids: list[str] = field(default_factory=list)
    model_names: list[str] = field(default_factory=list)
    checkpoint_uri: str = ""
    state: str = "deployed"


class PredictError(RemoteError):
    """A predict call failed. ``status_code`` is the HTTP status (None for a timeout or a lost
    connection); ``retryable`` says whether trying again may help (429, 5xx, timeouts)."""

    def __init__(self, message: str, status_code: int | None, retryable: bool) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = status_code  # the attribute google.api_core errors carry
        self.retryable = retryable


# --------------------------------------------------------------------------- SDK setup


def _is_loopback(api_endpoint: str) -> bool:
    return urlsplit(api_endpoint).scheme == "http"


def _default_api_endpoint(location: str) -> str:
    from google.cloud.aiplatform import utils

    if location == "global":
        return "aiplatform.googleapis.com"
    if utils.is_mrep_location(location):
        return utils.mrep_endpoint("aiplatform.googleapis.com", location)
    return f"{location}-aiplatform.googleapis.com"


_init_lock = threading.Lock()
_current: tuple[str, str, str] | None = None


def init_vertex(project: str, location: str = DEFAULT_LOCATION, api_endpoint: str = "") -> None:
    """Point the aiplatform SDK (REST transport) at ``api_endpoint`` for ``project``/``location``.

    An ``http://`` endpoint is a local stand-in and gets anonymous credentials (aiplatform's
    REST transport keeps the ``http://`` scheme it is given); anything else uses the
    application-default credentials. Without ``api_endpoint`` the regional Google endpoint is
    set explicitly, so an earlier stand-in address never lingers in the SDK's global config.
    """
    global _current
    if not project:
        raise InputError("a Google Cloud project is required: pass --project (or set `project`)")
    key = (project, location, api_endpoint)
    with _init_lock:
        if _current == key:
            return
    import vertexai

    if api_endpoint and _is_loopback(api_endpoint):
        from google.auth.credentials import AnonymousCredentials

        credentials: Any = AnonymousCredentials()
    else:
        import google.auth
        from google.auth.exceptions import DefaultCredentialsError

        try:
            credentials, _ = google.auth.default(
                scopes=["https://www.googleapis.com/auth/cloud-platform"]
            )
        except DefaultCredentialsError:
            raise InputError(
                "no Google application-default credentials: run "
                "`gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS"
            ) from None
    with _init_lock:
        vertexai.init(
            project=project,
            location=location,
            api_transport="rest",
            api_endpoint=api_endpoint or _default_api_endpoint(location),
            credentials=credentials,
        )
        _current = key


def _sdk_errors() -> tuple[type[BaseException], ...]:
    """What a failed call to the SDK raises: API errors, transport errors, auth errors."""
    import requests
    from google.api_core.exceptions import GoogleAPIError
    from google.auth.exceptions import GoogleAuthError

    return (GoogleAPIError, requests.exceptions.RequestException, GoogleAuthError)


def _remote_error(action: str, exc: BaseException) -> RemoteError:
    code = getattr(exc, "code", None)
    message = getattr(exc, "message", None) or str(exc)
    message = " ".join(str(message).split())
    return RemoteError(f"{action}: {code} {message}" if code else f"{action}: {message}")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


# --------------------------------------------------------------------------- registry


def registry_path() -> Path:
    """``<outputs>/endpoints.json``."""
    return outputs_root() / REGISTRY_FILE


@contextlib.contextmanager
def _registry_locked() -> Iterator[list[dict[str, Any]]]:
    """Read-modify-write the registry under a file lock; the list is written back atomically."""
    path = registry_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            records = read_registry()
            yield records
            write_json(path, {"endpoints": records})
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read_registry() -> list[dict[str, Any]]:
    """Every recorded deployment (newest last); [] when none was recorded."""
    path = registry_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except ValueError as exc:
        raise InputError(f"{path}: not valid JSON: {exc}") from None
    records = data.get("endpoints") if isinstance(data, dict) else None
    if not isinstance(records, list):
        raise InputError(f"{path}: endpoints: must be a list")
    return records


def _record(deployment: Deployment) -> None:
    with _registry_locked() as records:
        records[:] = [r for r in records if r.get("endpoint_name") != deployment.endpoint_name]
        records.append(asdict(deployment))


def _mark_deleted(endpoint_name: str) -> None:
    with _registry_locked() as records:
        for record in records:
            if record.get("endpoint_name") == endpoint_name:
                record["state"] = "deleted"
                record["deleted_at"] = _now()


def _registry_entry(endpoint_name: str) -> dict[str, Any] | None:
    for record in reversed(read_registry()):
        name = record.get("endpoint_name", "")
        if name == endpoint_name or name.rsplit("/", 1)[-1] == endpoint_name:
            return record
    return None


def _resolve(
    endpoint_name: str, project: str | None, location: str | None, api_endpoint: str | None
) -> tuple[str, str, str, str]:
    """Full endpoint name, project, location and API endpoint: from the name itself, then the
    arguments, then the registry entry, then the defaults."""
    match = ENDPOINT_NAME.fullmatch(endpoint_name)
    complete = match is not None and api_endpoint is not None
    entry = {} if complete else (_registry_entry(endpoint_name) or {})
    project = (match["project"] if match else None) or project or entry.get("project") or ""
    location = (
        (match["location"] if match else None)
        or location
        or entry.get("location")
        or DEFAULT_LOCATION
    )
    api = api_endpoint if api_endpoint is not None else entry.get("api_endpoint", "")
    if not project:
        raise InputError(f"{endpoint_name}: give the full endpoint resource name or --project")
    if not match:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", endpoint_name):
            raise InputError(f"{endpoint_name}: not an endpoint id or resource name")
        endpoint_name = f"projects/{project}/locations/{location}/endpoints/{endpoint_name}"
    return endpoint_name, project, location, api or ""


# --------------------------------------------------------------------------- deploy / delete


def default_display_name() -> str:
    """A unique endpoint display name, so a failed deploy can still be found and removed."""
    return f"routerlib-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def deploy(
    checkpoint_uri: str,
    *,
    machine_type: str = "g2-standard-12",
    accelerator_type: str = "NVIDIA_L4",
    accelerator_count: int = 1,
    endpoint_display_name: str | None = None,
    model_display_name: str | None = None,
    project: str,
    location: str = DEFAULT_LOCATION,
    api_endpoint: str = "",
    deploy_timeout: float | None = None,
) -> Deployment:
    """Deploy a tuned checkpoint (``gs://…/checkpoints/final``) with Model Garden's
    ``CustomModel(gcs_uri=…).deploy(…)`` and record it. Blocks until the endpoint serves."""
    if not checkpoint_uri.startswith("gs://"):
        raise InputError(f"{checkpoint_uri}: a Vertex deploy needs a gs:// checkpoint URI")
    if accelerator_count < 1:
        raise InputError(f"accelerator_count must be at least 1, got {accelerator_count}")
    display_name = endpoint_display_name or default_display_name()
    init_vertex(project, location, api_endpoint)
    from google.cloud import aiplatform
    from vertexai.preview.model_garden import CustomModel

    try:
        endpoint = CustomModel(gcs_uri=checkpoint_uri).deploy(
            machine_type=machine_type,
            accelerator_type=accelerator_type,
            accelerator_count=accelerator_count,
            endpoint_display_name=display_name,
            model_display_name=model_display_name,
            deploy_request_timeout=deploy_timeout,
        )
        endpoint = aiplatform.Endpoint(endpoint.resource_name)
        deployed_models = list(endpoint.gca_resource.deployed_models)
    except (*_sdk_errors(), ValueError) as exc:  # type: ignore[misc]
        raise _remote_error(f"deploy {checkpoint_uri}", exc) from None
    deployment = Deployment(
        endpoint_name=endpoint.resource_name,
        model_name=deployed_models[0].model if deployed_models else "",
        deployed_model_ids=[d.id for d in deployed_models],
        checkpoint_uri=checkpoint_uri,
        endpoint_display_name=display_name,
        machine_type=machine_type,
        accelerator_type=accelerator_type,
        accelerator_count=accelerator_count,
        project=project,
        location=location,
        api_endpoint=api_endpoint,
        deployed_at=_now(),
    )
    _record(deployment)
    return deployment


def delete_endpoint(
    endpoint_name: str,
    *,
    project: str | None = None,
    location: str | None = None,
    api_endpoint: str | None = None,
) -> list[str]:
    """Undeploy every model from the endpoint, then delete it. Returns the undeployed model ids.
    An endpoint that is already gone counts as deleted."""
    name, project, location, api = _resolve(endpoint_name, project, location, api_endpoint)
    init_vertex(project, location, api)
    from google.api_core import exceptions as gexc
    from google.cloud import aiplatform

    try:
        endpoint = aiplatform.Endpoint(name)
    except gexc.NotFound:
        _mark_deleted(name)
        return []
    except _sdk_errors() as exc:
        raise _remote_error(f"delete {name}", exc) from None
    try:
        model_ids = [d.id for d in endpoint.list_models()]
        endpoint.undeploy_all()
        endpoint.delete()
    except gexc.NotFound:
        model_ids = []
    except _sdk_errors() as exc:
        raise _remote_error(f"delete {name}", exc) from None
    _mark_deleted(name)
    return model_ids


def list_endpoints(
    *, project: str | None = None, location: str = DEFAULT_LOCATION, api_endpoint: str = ""
) -> list[EndpointInfo]:
    """Without ``project``: the endpoints routerlib recorded (no network). With it: the live
    endpoints of that project/location, annotated with the recorded checkpoint."""
    records = read_registry()
    if not project:
        return [
            EndpointInfo(
                r["endpoint_name"],
                r.get("endpoint_display_name", ""),
                list(r.get("deployed_model_ids", [])),
                [r["model_name"]] if r.get("model_name") else [],
                r.get("checkpoint_uri", ""),
                r.get("state", "deployed"),
            )
            for r in records
        ]
    init_vertex(project, location, api_endpoint)
    from google.cloud import aiplatform

    try:
        endpoints = aiplatform.Endpoint.list(project=project, location=location)
    except _sdk_errors() as exc:
        raise _remote_error(f"list endpoints of {project}/{location}", exc) from None
    known = {r["endpoint_name"]: r for r in records}
    out = []
    for endpoint in endpoints:
        gca = endpoint.gca_resource
        models = list(gca.deployed_models)
        out.append(
            EndpointInfo(
                endpoint_name=gca.name,
                display_name=gca.display_name,
                deployed_model_ids=[d.id for d in models],
                model_names=[d.model for d in models],
                checkpoint_uri=known.get(gca.name, {}).get("checkpoint_uri", ""),
            )
        )
    return out


def _find_by_display_name(
    project: str, location: str, api_endpoint: str, display_name: str
) -> list[str]:
    init_vertex(project, location, api_endpoint)
    from google.cloud import aiplatform

    found = aiplatform.Endpoint.list(
        filter=f'display_name="{display_name}"', project=project, location=location
    )
    return [e.resource_name for e in found if e.display_name == display_name]


@contextlib.contextmanager
def deployed(
    checkpoint_uri: str,
    *,
    machine_type: str = "g2-standard-12",
    accelerator_type: str = "NVIDIA_L4",
    accelerator_count: int = 1,
    endpoint_display_name: str | None = None,
    model_display_name: str | None = None,
    project: str,
    location: str = DEFAULT_LOCATION,
    api_endpoint: str = "",
    deploy_timeout: float | None = None,
) -> Iterator[Deployment]:
    """Deploy for the length of a ``with`` block and always delete what was deployed: when the
    block ends, when it raises, and when the deploy itself fails (or is interrupted) after
    Vertex created an endpoint — that one is found by its unique display name.

    A failed cleanup raises RemoteError naming the endpoint and the command that deletes it."""
    display_name = endpoint_display_name or default_display_name()
    cloud = {"project": project, "location": location, "api_endpoint": api_endpoint}
    try:
        deployment = deploy(
            checkpoint_uri,
            machine_type=machine_type,
            accelerator_type=accelerator_type,
            accelerator_count=accelerator_count,
            endpoint_display_name=display_name,
            model_display_name=model_display_name,
            deploy_timeout=deploy_timeout,
            **cloud,
        )
    except BaseException:
        with contextlib.suppress(Exception):
            for name in _find_by_display_name(project, location, api_endpoint, display_name):
                delete_endpoint(name, **cloud)
        raise
    try:
        yield deployment
    finally:
        try:
            delete_endpoint(deployment.endpoint_name, **cloud)
        except RemoteError as exc:
            raise RemoteError(
                f"could not delete {deployment.endpoint_name} ({exc}); it still costs money: "
                f"run `routerlib endpoints delete {deployment.endpoint_name}`"
            ) from None


# --------------------------------------------------------------------------- predict

_endpoint_cache: dict[tuple[str, str], Any] = {}
_endpoint_cache_lock = threading.Lock()


def _endpoint_for(name: str, api_endpoint: str) -> Any:
    from google.cloud import aiplatform

    key = (name, api_endpoint)
    with _endpoint_cache_lock:
        if key not in _endpoint_cache:
            _endpoint_cache[key] = aiplatform.Endpoint(name)
        return _endpoint_cache[key]


def predict(
    endpoint_name: str,
    instances: list[dict[str, Any]],
    *,
    project: str | None = None,
    location: str | None = None,
    api_endpoint: str | None = None,
    timeout: float | None = None,
) -> list[Any]:
    """``Endpoint.predict(instances)`` on a deployed endpoint; returns the predictions.

    Raises PredictError carrying the HTTP status and whether a retry may help. Thread-safe;
    the Endpoint object is looked up once per endpoint and reused.
    """
    name, project, location, api = _resolve(endpoint_name, project, location, api_endpoint)
    from google.api_core import exceptions as gexc

    try:
        init_vertex(project, location, api)
        endpoint = _endpoint_for(name, api)
        response = endpoint.predict(instances=instances, timeout=timeout)
    except gexc.GoogleAPICallError as exc:
        code = exc.code if isinstance(exc.code, int) else None
        retryable = (
            code == 429
            or (code is not None and code >= 500)
            or isinstance(
                exc, gexc.DeadlineExceeded | gexc.ServiceUnavailable | gexc.TooManyRequests
            )
        )
        raise PredictError(f"predict {name}: {code} {exc.message}", code, retryable) from None
    except gexc.RetryError as exc:
        raise PredictError(f"predict {name}: {exc}", None, True) from None
    except Exception as exc:  # requests timeouts and dropped connections
        kind = type(exc).__name__
        if "Timeout" in kind or "Connection" in kind:
            raise PredictError(f"predict {name}: {kind}: {exc}", None, True) from None
        raise
    return list(response.predictions)
