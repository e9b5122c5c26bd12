"""Deploy a tuned checkpoint to a Vertex AI endpoint, predict on it, and clean it up (the only
module that deploys; google-cloud-aiplatform is imported inside functions). Every deployment is
recorded in ``<outputs>/endpoints.json``; ``deployed(...)`` deletes what it deployed when the
block ends. See docs/serving.md ("Cleanup", "Dedicated endpoints").
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import re
import secrets
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from routerlib import auth
from routerlib.errors import InputError, RemoteError
from routerlib.runfolder import Registry, now
from routerlib.serving import hardware as hw
from routerlib.serving.client import error_text, is_retryable
from routerlib.serving.settings import DEFAULT_LOCATION, PLACE, VertexSettings

#: ``<outputs>/endpoints.json``: every deployment (a :class:`Deployment` each), newest last.
REGISTRY = Registry("endpoints.json", "endpoints", "endpoint_name")
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
    #: requested (recorded before the request) | deploying (the operation runs) | deployed |
    #: failed | refused (nothing created) | deleted
    state: str = "deployed"
    deleted_at: str = ""
    operation_name: str = ""
    dedicated_endpoint_dns: str = ""
    #: present | deleted: the Model Registry model the deploy uploaded
    model_state: str = "present"


@dataclass
class EndpointInfo:
    """An endpoint as listed: remote facts plus what the registry knows about it."""

    endpoint_name: str
    display_name: str
    deployed_model_ids: list[str] = field(default_factory=list)
    checkpoint_uri: str = ""
    state: str = "deployed"


class PredictError(RemoteError):
    """A predict call failed. ``status_code`` is the HTTP status (None for a timeout, a lost
    connection or an endpoint not ready); ``retryable``: whether trying again may help."""

    def __init__(self, message: str, status_code: int | None) -> None:
        super().__init__(message)
        self.status_code = self.code = status_code  # ``code``: as google.api_core errors carry
        self.retryable = is_retryable(status_code)


def _resolve(
    endpoint_name: str, project: str | None, location: str | None, api_endpoint: str | None
) -> tuple[str, str, str, str]:
    """Full endpoint name, project, location and API endpoint: from the name itself, then the
    arguments, then the registry entry, then the defaults."""
    match = ENDPOINT_NAME.fullmatch(endpoint_name)
    complete = match is not None and api_endpoint is not None
    entry = {} if complete else (REGISTRY.find(endpoint_name) or {})
    named = match.groupdict() if match else {}
    project = named.get("project") or project or entry.get("project") or ""
    location = named.get("location") or location or entry.get("location") or DEFAULT_LOCATION
    api = api_endpoint if api_endpoint is not None else entry.get("api_endpoint", "")
    if not project:
        raise InputError(f"{endpoint_name}: give the full endpoint resource name or --project")
    if not match:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", endpoint_name):
            raise InputError(f"{endpoint_name}: not an endpoint id or resource name")
        endpoint_name = f"projects/{project}/locations/{location}/endpoints/{endpoint_name}"
    return endpoint_name, project, location, api or ""


#: How long a deploy may take before routerlib stops waiting (the SDK's own default: 2 hours).
DEFAULT_DEPLOY_TIMEOUT_S = 2 * 60 * 60
CLEANUP_COMMAND = "routerlib endpoints cleanup"
#: Display names routerlib gives; `endpoints cleanup --project` also removes live ones so named.
NAME_PREFIX = "routerlib-"
#: The label routerlib puts on every endpoint it deployed.
LABEL = "routerlib"


_DEFAULT_NAME = re.compile(rf"{NAME_PREFIX}\d{{8}}-\d{{6}}-[0-9a-f]{{6}}")


def resource_id(display_name: str) -> str:
    """The endpoint and model id routerlib asks for (``[a-z][a-z0-9-]``, at most 63 characters),
    so both resource names are known before Vertex answers; a caller's name gets a random suffix."""
    if _DEFAULT_NAME.fullmatch(display_name):
        return display_name
    slug = re.sub(r"[^a-z0-9-]+", "-", display_name.lower()).strip("-")
    if not slug or not slug[0].isalpha():
        slug = f"r-{slug}"
    return f"{slug[:56].rstrip('-')}-{secrets.token_hex(3)}"


def deploy(
    checkpoint_uri: str,
    settings: VertexSettings,
    *,
    base_model: str = "",
    endpoint_display_name: str | None = None,
    deploy_timeout: float | None = None,
) -> Deployment:
    """Deploy a tuned checkpoint (``gs://…/checkpoints/final``) through Model Garden on
    ``settings``' machine (unset: the base model's contract, checked to fit) and block until it
    serves. Recorded before the wait; what happens on failure: docs/serving.md, "Cleanup"."""
    if not checkpoint_uri.startswith("gs://"):
        raise InputError(f"{checkpoint_uri}: a Vertex deploy needs a gs:// checkpoint URI")
    count = settings.accelerator_count
    if count is not None and count < 1:
        raise InputError(f"accelerator_count must be at least 1, got {count}")
    project, location, api_endpoint = settings.project, settings.region, settings.api_endpoint
    auth.init_vertex(project, location, api_endpoint)
    chosen = settings.hardware(base_model)
    hw.check_fit(checkpoint_uri, chosen)
    # unique, so a failed deploy can still be found and removed
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    display_name = endpoint_display_name or f"{NAME_PREFIX}{stamp}"
    ids = resource_id(display_name)
    from google.cloud.aiplatform_v1beta1 import types
    from vertexai.preview.model_garden import CustomModel

    # The Model Garden DeployRequest ``CustomModel.deploy`` builds, plus the endpoint and model
    # ids routerlib chooses (so the resources can be recorded before the wait).
    parent = f"projects/{project}/locations/{location}"
    request = types.DeployRequest(destination=parent)
    request.custom_model = types.DeployRequest.CustomModel(gcs_uri=checkpoint_uri)
    request.endpoint_config.endpoint_display_name = display_name
    request.endpoint_config.endpoint_user_id = ids
    request.model_config.model_display_name = display_name
    request.model_config.model_user_id = ids
    request.deploy_config.dedicated_resources = types.DedicatedResources(
        machine_spec=types.MachineSpec(**asdict(chosen)), min_replica_count=1, max_replica_count=1
    )
    client = CustomModel(gcs_uri=checkpoint_uri)._model_garden_client
    deployment = Deployment(
        endpoint_name=f"{parent}/endpoints/{ids}",
        model_name=f"{parent}/models/{ids}",
        deployed_model_ids=[],
        checkpoint_uri=checkpoint_uri,
        endpoint_display_name=display_name,
        **asdict(chosen),
        project=project,
        location=location,
        api_endpoint=api_endpoint,
        state="requested",  # recorded before the request: a kill right after it leaves a trace
    )
    known = REGISTRY.find(deployment.endpoint_name)
    if known and known.get("state") not in ("deleted", "refused"):
        raise InputError(
            f"{deployment.endpoint_name} is already recorded ({known.get('state')}); "
            "choose another --endpoint-display-name"
        )
    REGISTRY.save(asdict(deployment))
    try:
        operation = client.deploy(request)
    except auth.sdk_errors() as exc:
        error = auth.remote_error(f"deploy {checkpoint_uri}", exc)
        code = getattr(exc, "code", None)
        if isinstance(code, int) and 400 <= code < 500:  # refused: nothing was created
            deployment.state, deployment.model_state = "refused", "deleted"
            REGISTRY.save(asdict(deployment))
            raise error from None
        raise RemoteError(f"{error}; {_still_recorded(deployment, 'no answer')}") from None
    deployment.state = "deploying"
    deployment.operation_name = operation.operation.name
    REGISTRY.save(asdict(deployment))
    return _wait_for_deploy(operation, deployment, deploy_timeout or DEFAULT_DEPLOY_TIMEOUT_S)


def _still_recorded(deployment: Deployment, why: str) -> str:
    return (
        f"{why}; {deployment.endpoint_name} stays recorded (operation "
        f"{deployment.operation_name or 'unknown'}) and may cost money: run `{CLEANUP_COMMAND}`"
    )


def _wait_for_deploy(operation: Any, deployment: Deployment, timeout: float) -> Deployment:
    from google.cloud import aiplatform

    try:
        response = operation.result(timeout=timeout)
    except KeyboardInterrupt:
        print(_still_recorded(deployment, "deploy interrupted"), file=sys.stderr, flush=True)
        raise
    except concurrent.futures.TimeoutError:
        raise RemoteError(
            _still_recorded(deployment, f"deploy still running after {timeout:g} s")
        ) from None
    except (*auth.sdk_errors(), ValueError) as exc:  # type: ignore[misc]
        error = auth.remote_error(f"deploy {deployment.checkpoint_uri}", exc)
        if not getattr(operation, "_result_set", True):
            # Polling failed (a lost connection, a 5xx on the operation), not the deploy: it may
            # still be running, so nothing is deleted under it.
            raise RemoteError(
                _still_recorded(deployment, f"lost track of the deploy ({error})")
            ) from None
        deployment.state = "failed"
        REGISTRY.save(asdict(deployment))
        try:
            delete_endpoint(deployment.endpoint_name, delete_models=[deployment.model_name])
        except RemoteError as cleanup:
            raise RemoteError(f"{error}; {_still_recorded(deployment, str(cleanup))}") from None
        raise error from None
    try:
        endpoint = aiplatform.Endpoint(response.endpoint or deployment.endpoint_name)
        deployed_models = list(endpoint.gca_resource.deployed_models)
    except auth.sdk_errors() as exc:
        raise RemoteError(
            _still_recorded(deployment, str(auth.remote_error("read the deployed endpoint", exc)))
        ) from None
    try:  # a label lets `endpoints cleanup --project` find it without this machine's registry
        endpoint.update(labels={**dict(endpoint.gca_resource.labels), LABEL: "deploy"})
    except auth.sdk_errors() as exc:
        print(f"warning: could not label {endpoint.resource_name}: {exc}", file=sys.stderr)
    deployment.endpoint_name = endpoint.resource_name
    deployment.model_name = response.model or (
        deployed_models[0].model if deployed_models else deployment.model_name
    )
    deployment.deployed_model_ids = [d.id for d in deployed_models]
    deployment.dedicated_endpoint_dns = endpoint.gca_resource.dedicated_endpoint_dns or ""
    deployment.state = "deployed"
    deployment.deployed_at = now()
    REGISTRY.save(asdict(deployment))
    return deployment


def delete_endpoint(
    endpoint_name: str,
    *,
    project: str | None = None,
    location: str | None = None,
    api_endpoint: str | None = None,
    delete_models: list[str] | None = None,
) -> list[str]:
    """Undeploy every model from the endpoint, delete it, then delete the Model Registry models
    named in ``delete_models`` (the ones a routerlib deploy uploaded). Returns the undeployed
    model ids. An endpoint or model that is already gone counts as deleted."""
    name, project, location, api = _resolve(endpoint_name, project, location, api_endpoint)
    auth.init_vertex(project, location, api)
    from google.api_core import exceptions as gexc
    from google.cloud import aiplatform

    model_ids: list[str] = []
    with auth.sdk_call(f"delete {name}"), contextlib.suppress(gexc.NotFound):
        endpoint = aiplatform.Endpoint(name)
        model_ids = [d.id for d in endpoint.list_models()]
        endpoint.undeploy_all()
        endpoint.delete()
    with _endpoint_cache_lock:
        _endpoint_cache.pop((name, api), None)
    for model in delete_models or []:
        with auth.sdk_call(f"delete model {model}"), contextlib.suppress(gexc.NotFound):
            aiplatform.Model(model).delete()
    with REGISTRY.edit() as records:
        for record in (r for r in records if r.get("endpoint_name") == name):
            record.update(state="deleted", deleted_at=now())
            if delete_models:
                record["model_state"] = "deleted"
    return model_ids


def _live_endpoints(project: str, location: str, api_endpoint: str) -> list[Any]:
    """The endpoint resources (``gca_resource``) of a project and location, as Vertex lists them."""
    auth.init_vertex(project, location, api_endpoint)
    from google.cloud import aiplatform

    with auth.sdk_call(f"list endpoints of {project}/{location}"):
        return [
            e.gca_resource for e in aiplatform.Endpoint.list(project=project, location=location)
        ]


def cleanup(
    *, project: str | None = None, location: str = DEFAULT_LOCATION, api_endpoint: str = ""
) -> list[str]:
    """Delete every recorded endpoint not deleted yet and the models its deploy uploaded; with
    ``project`` also the live endpoints there routerlib named or labelled. Returns those removed;
    one failure does not stop the rest (the RemoteError at the end lists what is left)."""
    done: list[str] = []
    problems: list[str] = []

    def remove(name: str, models: list[str], **where: Any) -> None:
        try:
            delete_endpoint(name, delete_models=models, **where)
            done.append(name)
        except RemoteError as exc:
            problems.append(f"{name}: {exc}")

    for record in REGISTRY.read():
        model = record.get("model_name")
        if record.get("state") in ("deleted", "refused") and not (
            model and record.get("model_state") == "present"
        ):
            continue
        where = {k: record.get(k) for k in PLACE}
        remove(record["endpoint_name"], [model] if model else [], **where)
    for gca in _live_endpoints(project, location, api_endpoint) if project else []:
        ours = gca.display_name.startswith(NAME_PREFIX) or LABEL in gca.labels
        if ours and gca.name not in done:
            own_id = gca.name.rsplit("/", 1)[-1]
            models = [d.model for d in gca.deployed_models if d.model.rsplit("/", 1)[-1] == own_id]
            remove(gca.name, models, project=project, location=location, api_endpoint=api_endpoint)
    if problems:
        raise RemoteError(f"{len(problems)} endpoint(s) could not be cleaned up", problems)
    return done


def list_endpoints(
    *, project: str | None = None, location: str = DEFAULT_LOCATION, api_endpoint: str = ""
) -> list[EndpointInfo]:
    """Without ``project``: the endpoints routerlib recorded (no network). With it: the live
    endpoints of that project/location, annotated with the recorded checkpoint."""
    records = REGISTRY.read()
    if not project:
        return [
            EndpointInfo(
                r["endpoint_name"],
                r.get("endpoint_display_name", ""),
                list(r.get("deployed_model_ids", [])),
                r.get("checkpoint_uri", ""),
                r.get("state", "deployed"),
            )
            for r in records
        ]
    checkpoints = {r["endpoint_name"]: r.get("checkpoint_uri", "") for r in records}
    return [
        EndpointInfo(
            gca.name,
            gca.display_name,
            [d.id for d in gca.deployed_models],
            checkpoints.get(gca.name, ""),
        )
        for gca in _live_endpoints(project, location, api_endpoint)
    ]


@contextlib.contextmanager
def deployed(checkpoint_uri: str, settings: VertexSettings, **options: Any) -> Iterator[Deployment]:
    """:func:`deploy` (``options`` as it takes them) for the length of a ``with`` block; the
    endpoint and the model it uploaded are deleted when the block ends or raises. A failed
    cleanup raises RemoteError naming the endpoint and the command that deletes it."""
    deployment = deploy(checkpoint_uri, settings, **options)
    try:
        yield deployment
    finally:
        try:
            name, api = deployment.endpoint_name, deployment.api_endpoint
            delete_endpoint(name, delete_models=[deployment.model_name], api_endpoint=api)
        except RemoteError as exc:
            raise RemoteError(
                f"could not delete {deployment.endpoint_name} ({exc}); it still costs money: "
                f"run `{CLEANUP_COMMAND}` (or `routerlib endpoints delete "
                f"{deployment.endpoint_name}`)"
            ) from None


@dataclass(frozen=True)
class DeployOption:
    """One deploy option Vertex recommends for a checkpoint."""

    hardware: hw.Hardware
    region: str = ""
    quota: str = ""  # QUOTA_STATE_USER_HAS_QUOTA | QUOTA_STATE_NO_USER_QUOTA | "" (not checked)

    @property
    def has_quota(self) -> bool | None:
        return self.quota == "QUOTA_STATE_USER_HAS_QUOTA" if self.quota else None


def deploy_options(
    checkpoint_uri: str, *, project: str, location: str, api_endpoint: str = ""
) -> list[DeployOption]:
    """The request under ``CustomModel.list_deploy_options()`` (ModelService.RecommendSpec) read
    as data: every recommended option, with or without quota (the SDK drops those without)."""
    auth.init_vertex(project, location, api_endpoint)
    from google.cloud.aiplatform_v1beta1 import types
    from vertexai.preview.model_garden import CustomModel

    model = CustomModel(gcs_uri=checkpoint_uri)
    request = types.RecommendSpecRequest(
        gcs_uri=checkpoint_uri,
        parent=f"projects/{project}/locations/{location}",
        check_machine_availability=True,
        check_user_quota=True,
    )
    with auth.sdk_call(f"recommend deploy options for {checkpoint_uri}"):
        response = model._model_service_client.recommend_spec(request, timeout=60)

    def shape(spec: Any) -> hw.Hardware:
        m = spec.machine_spec
        return hw.Hardware(m.machine_type, m.accelerator_type.name, int(m.accelerator_count))

    unspecified = types.RecommendSpecResponse.Recommendation.QuotaState.QUOTA_STATE_UNSPECIFIED
    if response.recommendations:
        return [
            DeployOption(
                shape(r.spec),
                r.region,
                r.user_quota_state.name if r.user_quota_state != unspecified else "",
            )
            for r in response.recommendations
            if r.spec
        ]
    return [DeployOption(shape(s)) for s in response.specs]


_endpoint_cache: dict[tuple[str, str], Any] = {}
_endpoint_cache_lock = threading.Lock()
_STATUS_IN_TEXT = re.compile(r"Status code:\s*(\d{3})")
_NOT_READY = "Dedicated endpoint DNS is empty"


def _endpoint_for(name: str, api_endpoint: str) -> Any:
    from google.cloud import aiplatform

    key = (name, api_endpoint)
    with _endpoint_cache_lock:
        if key not in _endpoint_cache:
            _endpoint_cache[key] = aiplatform.Endpoint(name)
        return _endpoint_cache[key]


def dedicated_error(exc: ValueError) -> tuple[int | None, str] | None:
    """What a dedicated-endpoint ``ValueError`` from ``Endpoint.predict`` says: (status, message)
    for a non-200 answer ("Status code:429, response: …"), (None, …) for a DNS not assigned yet
    (not ready), None for any other ValueError (a bug, not the endpoint)."""
    text = " ".join(str(exc).split())
    if _NOT_READY in text:
        return None, "dedicated endpoint not ready yet (no DNS assigned)"
    match = _STATUS_IN_TEXT.search(text)
    if not match:
        return None if "prediction request" not in text else (None, text[:200])
    body = text.split("response:", 1)[1].strip().rstrip(".") if "response:" in text else ""
    return int(match.group(1)), " ".join(error_text(body.encode()).split())


def predict(
    endpoint_name: str,
    instances: list[dict[str, Any]],
    *,
    project: str | None = None,
    location: str | None = None,
    api_endpoint: str | None = None,
    timeout: float | None = None,
) -> list[Any]:
    """``Endpoint.predict(instances)`` on a deployed endpoint (shared or dedicated); returns the
    predictions. Raises PredictError with the HTTP status. Thread-safe; the Endpoint object is
    looked up once per endpoint and reused."""
    name, project, location, api = _resolve(endpoint_name, project, location, api_endpoint)
    from google.api_core import exceptions as gexc
    from google.auth.exceptions import GoogleAuthError

    try:
        auth.init_vertex(project, location, api)
        endpoint = _endpoint_for(name, api)
        response = endpoint.predict(instances=instances, timeout=timeout)
    except gexc.GoogleAPICallError as exc:
        code = exc.code if isinstance(exc.code, int) else None
        raise PredictError(f"predict {name}: {code} {exc.message}", code) from None
    except gexc.RetryError as exc:
        raise PredictError(f"predict {name}: {exc}", None) from None
    except GoogleAuthError as exc:
        # A dedicated endpoint answering 401 makes the SDK's AuthorizedSession refresh the
        # credentials; credentials that cannot be refreshed end here.
        raise PredictError(
            f"predict {name}: HTTP 401: credentials refused and not refreshable: {exc}", 401
        ) from None
    except ValueError as exc:
        found = dedicated_error(exc)
        if found is None:
            raise
        status, message = found
        label = f"HTTP {status}" if status else "not ready"
        raise PredictError(
            f"predict {name} (dedicated endpoint): {label}: {message}", status
        ) from None
    except Exception as exc:  # requests timeouts and dropped connections
        kind = type(exc).__name__
        if "Timeout" in kind or "Connection" in kind:
            raise PredictError(f"predict {name}: {kind}: {exc}", None) from None
        raise
    predictions = response.predictions
    # A chatCompletions instance is answered with one chat completion object, which the SDK
    # hands back as it is (Model Garden's samples read ``predictions["choices"]``).
    return [predictions] if isinstance(predictions, dict) else list(predictions)
