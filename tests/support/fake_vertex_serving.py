"""Vertex AI serving routes for the REST stand-in (a RecordingServer on 127.0.0.1).

It answers what the real google-cloud-aiplatform 2.7 SDK sends with ``api_transport="rest"``
(read from the installed source):

- ``CustomModel(gcs_uri).deploy(...)`` -> ``POST /v1beta1/projects/P/locations/L:deploy``
  (ModelGardenService.Deploy; the body carries ``customModel.gcsUri`` and
  ``deployConfig.dedicatedResources``), an LRO the SDK polls at ``GET /ui/<operation name>``;
  its response is a DeployResponse naming the endpoint and the uploaded model.
- ``aiplatform.Endpoint(name)`` -> ``GET /v1/.../endpoints/ID``; ``Endpoint.list()`` ->
  ``GET /v1/.../endpoints``; ``undeploy_all()`` -> one ``POST .../endpoints/ID:undeployModel``
  per deployed model; ``delete()`` -> ``DELETE .../endpoints/ID`` (both LROs);
  ``Endpoint.predict`` -> ``POST /v1/.../endpoints/ID:predict``.

Register the routes on any RecordingServer with ``add_serving_routes(server, state)``; the state
holds the fake resources so tests can inspect and seed them.
"""

from __future__ import annotations

import datetime
import itertools
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.support.recording_server import RecordingServer, Request

#: Resource name prefix: ``projects/P/locations/L``.
_PARENT = r"projects/(?P<project>[^/]+)/locations/(?P<location>[^/:]+)"
_VERSION = r"/(?:v1|v1beta1)/"

_ENDPOINT_ID = r"[a-z][a-z0-9-]{0,61}[a-z0-9]|[1-9][0-9]{0,8}"
_MODEL_ID = r"[a-z_][a-z0-9_-]{0,62}"
_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}

#: ``predict_fn(instances) -> predictions`` answers the predict route.
PredictFn = Callable[[list[dict[str, Any]]], list[Any]]

CANNED_COMPLETION = (
    '{"route_plan": ["/general-search(query=\\"x\\", mode=web)"], "route_rationale": "canned"}'
)


#: What Model Garden's vLLM predict handler accepts in a prompt instance: it pops ``prompt``,
#: ``stream`` and ``raw_response`` and passes every other field to ``SamplingParams(**instance)``
#: (vertex-ai-samples community-content/vertex_model_garden/model_oss/vllm/vllm.patch), which
#: raises TypeError on a keyword it does not take. ``SAMPLING_PARAMS`` is a subset of
#: SamplingParams' keyword arguments (vllm-project/vllm vllm/sampling_params.py): the common
#: sampling fields, those routerlib and the Model Garden samples send, so the stand-in may refuse
#: more than the container, never less. Anything else -- ``guided_json``, ``response_format``,
#: ``chat_template_kwargs`` (OpenAI-request fields), a row key -- fails the request; only a
#: chatCompletions instance takes OpenAI-request fields.
HANDLER_FIELDS = ("prompt", "stream", "raw_response")
SAMPLING_PARAMS = (
    "n",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
    "temperature",
    "top_p",
    "top_k",
    "stop",
    "stop_token_ids",
    "ignore_eos",
    "max_tokens",
    "logprobs",
    "prompt_logprobs",
    "skip_special_tokens",
    "spaces_between_special_tokens",
    "include_stop_str_in_output",
)


def _is_chat(instance: Any) -> bool:
    return isinstance(instance, dict) and instance.get("@requestFormat") == "chatCompletions"


def refused_fields(instances: list[dict[str, Any]]) -> str:
    """The container's failure for the first prompt instance with a field SamplingParams does
    not take ('' when none)."""
    for inst in instances:
        if not isinstance(inst, dict) or _is_chat(inst):
            continue
        for name in inst:
            if name not in HANDLER_FIELDS and name not in SAMPLING_PARAMS:
                return (
                    "Internal Server Error: TypeError: SamplingParams got an unexpected keyword "
                    f"argument '{name}'"
                )
    return ""


def canned_predict(instances: list[dict[str, Any]]) -> list[Any]:
    """Each instance gets CANNED_COMPLETION, framed like Model Garden unless raw_response."""
    out = []
    for inst in instances:
        if _is_chat(inst):
            message = {"role": "assistant", "content": CANNED_COMPLETION}
            out.append({"object": "chat.completion", "choices": [{"index": 0, "message": message}]})
        elif inst.get("raw_response"):
            out.append(CANNED_COMPLETION)
        else:
            out.append(f"Prompt:\n{inst.get('prompt')}\nOutput:\n{CANNED_COMPLETION}")
    return out


def predictor_predict(predictor: Any) -> PredictFn:
    """A predict_fn backed by a routerlib LocalPredictor (a real tiny model)."""
    from routerlib.serving.local import format_prediction, parse_predict_body

    def answer(instances: list[dict[str, Any]]) -> list[Any]:
        import json

        parsed = parse_predict_body(json.dumps({"instances": instances}).encode())
        args: list[Any] = [[i.prompt for i in parsed], [i.max_tokens for i in parsed]]
        if any(i.schema is not None for i in parsed):  # response_format & co. reach the predictor
            args += [0.0, [i.schema for i in parsed]]
        results = predictor.generate(*args)
        return [format_prediction(i, r.text) for i, r in zip(parsed, results, strict=True)]

    return answer


@dataclass
class ServingState:
    """The fake project's endpoints, models and operations."""

    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    operations: dict[str, dict[str, Any]] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    predict_fn: PredictFn = canned_predict
    #: How many GET polls an operation answers "not done" before it is done.
    lro_polls: int = 0
    #: When set, the deploy LRO ends with this error (after creating the endpoint).
    deploy_error: str | None = None
    #: When set, predict answers this HTTP status with an error body.
    predict_status: int | None = None
    #: When set, deleting an endpoint answers this HTTP status with an error body.
    delete_status: int | None = None
    #: Called (once) when an operation or a batch job is next polled: tests use it to press
    #: Ctrl-C at a known point (``_thread.interrupt_main``).
    on_poll: Callable[[], None] | None = None
    #: When set, polling an operation answers this HTTP status (the deploy itself goes on).
    operation_status: int | None = None
    #: host:port of the TLS predict server; when set, deploys make dedicated endpoints.
    dedicated_dns: str = ""
    #: How many endpoint GETs answer an empty ``dedicatedEndpointDns`` (not ready yet).
    dns_not_ready_gets: int = 0
    #: Statuses the next predict calls answer, one per call, before answering normally.
    predict_faults: list[int] = field(default_factory=list)
    #: RecommendSpec answer: ``recommendations`` as the REST JSON has them.
    recommendations: list[dict[str, Any]] = field(default_factory=list)
    #: Batch prediction jobs by name, and how many GETs a job answers RUNNING before it runs.
    batch_jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    batch_polls: int = 1
    #: ``batch_error(line) -> message | None``: rows the batch job fails (given the JSONL line).
    batch_error: Callable[[dict[str, Any]], str | None] = lambda instance: None
    #: Every instance a batch job sent to the model, as the model got it.
    batch_instances: list[dict[str, Any]] = field(default_factory=list)
    #: Node hours a finished batch job reports (``resourcesConsumed.replicaHours``).
    batch_replica_hours: float = 0.25
    lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: Any = field(default_factory=lambda: itertools.count(1000))

    def reset(self) -> None:
        """Forget every resource and setting (ids keep counting, so names never repeat)."""
        fresh = ServingState()
        with self.lock:
            for name in (
                "endpoints",
                "models",
                "operations",
                "deleted",
                "predict_fn",
                "lro_polls",
                "deploy_error",
                "predict_status",
                "delete_status",
                "operation_status",
                "on_poll",
                "dns_not_ready_gets",
                "predict_faults",
                "recommendations",
                "batch_jobs",
                "batch_polls",
                "batch_error",
                "batch_instances",
                "batch_replica_hours",
            ):
                setattr(self, name, getattr(fresh, name))

    def next_id(self) -> str:
        return str(next(self._ids))

    def add_endpoint(
        self,
        project: str,
        location: str,
        display_name: str,
        models: int = 1,
        endpoint_id: str = "",
        model_id: str = "",
    ) -> dict[str, Any]:
        """Seed an endpoint with ``models`` deployed models (ids d1, d2, ...)."""
        name = f"projects/{project}/locations/{location}/endpoints/{endpoint_id or self.next_id()}"
        deployed = []
        for n in range(models):
            mid = model_id if (model_id and n == 0) else self.next_id()
            model_name = f"projects/{project}/locations/{location}/models/{mid}"
            self.models[model_name] = {"name": model_name, "displayName": f"{display_name}-m{n}"}
            deployed.append(
                {"id": self.next_id(), "model": model_name, "displayName": f"{display_name}-m{n}"}
            )
        split = {d["id"]: 0 for d in deployed}
        if deployed:
            split[deployed[-1]["id"]] = 100
        self.endpoints[name] = {
            "name": name,
            "displayName": display_name,
            "deployedModels": deployed,
            "trafficSplit": split,
            "createTime": "2026-11-25T12:00:00Z",
        }
        return self.endpoints[name]

    def polled(self) -> None:
        """Run ``on_poll`` once, if set."""
        hook, self.on_poll = self.on_poll, None
        if hook is not None:
            hook()

    def take_fault(self) -> int | None:
        """The status the next predict must answer (a queued fault or predict_status)."""
        with self.lock:
            if self.predict_faults:
                return self.predict_faults.pop(0)
        return self.predict_status


def _operation(
    state: ServingState,
    parent: str,
    *,
    response: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    metadata_type: str = "GenericOperationMetadata",
) -> dict[str, Any]:
    name = f"{parent}/operations/{state.next_id()}"
    op: dict[str, Any] = {
        "name": name,
        "metadata": {"@type": f"type.googleapis.com/google.cloud.aiplatform.v1.{metadata_type}"},
        "done": state.lro_polls == 0,
    }
    final = (
        {"error": error}
        if error
        else {"response": response or {"@type": "type.googleapis.com/google.protobuf.Empty"}}
    )
    state.operations[name] = {"op": op, "final": final, "polls_left": state.lro_polls}
    return {**op, **(final if op["done"] else {})}


def _not_found(what: str) -> tuple[int, Any]:
    return 404, {"error": {"code": 404, "message": f"{what} not found", "status": "NOT_FOUND"}}


_PREDICT = _VERSION + r"(?P<name>" + _PARENT + r"/endpoints/[^/:]+):predict"


def _error(code: int, message: str) -> tuple[int, Any]:
    return code, {
        "error": {"code": code, "message": message, "status": _STATUS.get(code, "UNKNOWN")}
    }


def _predict_handler(state: ServingState, *, dedicated: bool) -> Any:
    """The predict route, on the shared API server or on the dedicated (TLS) server. A
    dedicated endpoint refuses the shared address, as Vertex does."""

    def predict(req: Request, m: Any) -> tuple[int, Any]:
        with state.lock:
            endpoint = state.endpoints.get(m["name"])
        if endpoint is None:
            return _not_found(m["name"])
        if bool(endpoint.get("dedicatedEndpointEnabled")) != dedicated:
            return _error(
                400,
                "Dedicated endpoint: send requests to its dedicatedEndpointDns"
                if not dedicated
                else "This endpoint is not a dedicated endpoint",
            )
        code = state.take_fault()
        if code:
            return _error(code, "injected")
        if not endpoint["deployedModels"]:
            return _error(400, "no model deployed")
        instances = (req.json() or {}).get("instances") or []
        refused = refused_fields(instances)
        if refused:
            return _error(500, refused)
        deployed = endpoint["deployedModels"][0]
        predictions: Any = state.predict_fn(instances)
        if dedicated and len(instances) == 1 and _is_chat(instances[0]):
            # Model Garden's handler answers a chat instance with one chat completion object,
            # which a dedicated endpoint returns as it is (the Model Garden samples read
            # ``predictions["choices"]``); the shared address's protobuf answer is a list.
            (predictions,) = predictions
        return 200, {
            "predictions": predictions,
            "deployedModelId": deployed["id"],
            "model": deployed["model"],
        }

    return predict


def add_serving_routes(server: RecordingServer, state: ServingState) -> ServingState:
    """Register deploy, endpoint, operation and predict routes on ``server``."""

    @server.route("POST", _VERSION + _PARENT + ":deploy")
    def deploy(req: Request, m: Any) -> tuple[int, Any]:
        body = req.json() or {}
        gcs_uri = (body.get("customModel") or {}).get("gcsUri")
        if not gcs_uri:
            return 400, {
                "error": {
                    "code": 400,
                    "message": "customModel.gcsUri is required",
                    "status": "INVALID_ARGUMENT",
                }
            }
        project, location = m["project"], m["location"]
        parent = f"projects/{project}/locations/{location}"
        endpoint_config = body.get("endpointConfig") or {}
        endpoint_id = endpoint_config.get("endpointUserId", "")
        model_id = (body.get("modelConfig") or {}).get("modelUserId", "")
        for field_name, value, pattern in (
            ("endpointConfig.endpointUserId", endpoint_id, _ENDPOINT_ID),
            ("modelConfig.modelUserId", model_id, _MODEL_ID),
        ):
            if value and not re.fullmatch(pattern, value):
                return 400, {
                    "error": {
                        "code": 400,
                        "message": f"{field_name}: invalid id {value!r}",
                        "status": "INVALID_ARGUMENT",
                    }
                }
        with state.lock:
            if endpoint_id and f"{parent}/endpoints/{endpoint_id}" in state.endpoints:
                return 409, {
                    "error": {"code": 409, "message": "endpoint exists", "status": "ALREADY_EXISTS"}
                }
            display = endpoint_config.get("endpointDisplayName") or "endpoint"
            endpoint = state.add_endpoint(
                project, location, display, endpoint_id=endpoint_id, model_id=model_id
            )
            if state.dedicated_dns and not endpoint_config.get("dedicatedEndpointDisabled"):
                endpoint["dedicatedEndpointEnabled"] = True
                endpoint["dedicatedEndpointDns"] = state.dedicated_dns
            resources = (body.get("deployConfig") or {}).get("dedicatedResources")
            if resources:
                endpoint["deployedModels"][0]["dedicatedResources"] = resources
            model_name = endpoint["deployedModels"][0]["model"]
            state.models[model_name]["artifactUri"] = gcs_uri
            if state.deploy_error:
                error = {"code": 9, "message": state.deploy_error}
                return 200, _operation(
                    state, parent, error=error, metadata_type="DeployOperationMetadata"
                )
            response = {
                "@type": "type.googleapis.com/google.cloud.aiplatform.v1beta1.DeployResponse",
                "endpoint": endpoint["name"],
                "model": model_name,
            }
            return 200, _operation(
                state, parent, response=response, metadata_type="DeployOperationMetadata"
            )

    @server.route("GET", r"/(?:ui|v1|v1beta1)/(?P<name>" + _PARENT + r"/operations/[^/]+)")
    def get_operation(req: Request, m: Any) -> tuple[int, Any]:
        state.polled()
        if state.operation_status:
            return _error(state.operation_status, "injected")
        with state.lock:
            entry = state.operations.get(m["name"])
            if entry is None:
                return _not_found(m["name"])
            if entry["polls_left"] > 0:
                entry["polls_left"] -= 1
                return 200, entry["op"]
            return 200, {**entry["op"], "done": True, **entry["final"]}

    @server.route("GET", _VERSION + r"(?P<name>" + _PARENT + r"/endpoints/[^/:]+)")
    def get_endpoint(req: Request, m: Any) -> tuple[int, Any]:
        with state.lock:
            endpoint = state.endpoints.get(m["name"])
            if endpoint is None:
                return _not_found(m["name"])
            if endpoint.get("dedicatedEndpointEnabled") and state.dns_not_ready_gets > 0:
                state.dns_not_ready_gets -= 1
                return 200, {**endpoint, "dedicatedEndpointDns": ""}
            return 200, endpoint

    @server.route("PATCH", _VERSION + r"(?P<name>" + _PARENT + r"/endpoints/[^/:]+)")
    def update_endpoint(req: Request, m: Any) -> tuple[int, Any]:
        body = req.json() or {}
        mask = (req.query.get("updateMask") or [""])[0].split(",")
        with state.lock:
            endpoint = state.endpoints.get(m["name"])
            if endpoint is None:
                return _not_found(m["name"])
            for key, value in (body.get("labels") or {}).items():
                if not re.fullmatch(r"[a-z][a-z0-9_-]{0,62}", key) or len(str(value)) > 63:
                    return _error(400, f"labels: invalid label {key}={value}")
            if "labels" in mask:
                endpoint["labels"] = dict(body.get("labels") or {})
            return 200, endpoint

    @server.route("GET", _VERSION + _PARENT + r"/endpoints")
    def list_endpoints(req: Request, m: Any) -> tuple[int, Any]:
        prefix = f"projects/{m['project']}/locations/{m['location']}/endpoints/"
        with state.lock:
            found = [e for n, e in state.endpoints.items() if n.startswith(prefix)]
        wanted = (req.query.get("filter") or [""])[0]
        if wanted.startswith("display_name="):
            display = wanted.split("=", 1)[1].strip('"')
            found = [e for e in found if e["displayName"] == display]
        return 200, {"endpoints": found}

    @server.route("POST", _VERSION + r"(?P<name>" + _PARENT + r"/endpoints/[^/:]+):undeployModel")
    def undeploy(req: Request, m: Any) -> tuple[int, Any]:
        body = req.json() or {}
        with state.lock:
            endpoint = state.endpoints.get(m["name"])
            if endpoint is None:
                return _not_found(m["name"])
            model_id = body.get("deployedModelId")
            before = len(endpoint["deployedModels"])
            endpoint["deployedModels"] = [
                d for d in endpoint["deployedModels"] if d["id"] != model_id
            ]
            if len(endpoint["deployedModels"]) == before:
                return _not_found(f"deployed model {model_id}")
            endpoint["trafficSplit"] = body.get("trafficSplit") or {}
            parent = m["name"].rsplit("/endpoints/", 1)[0]
            response = {
                "@type": "type.googleapis.com/google.cloud.aiplatform.v1.UndeployModelResponse"
            }
            return 200, _operation(
                state, parent, response=response, metadata_type="UndeployModelOperationMetadata"
            )

    @server.route("DELETE", _VERSION + r"(?P<name>" + _PARENT + r"/endpoints/[^/:]+)")
    def delete(req: Request, m: Any) -> tuple[int, Any]:
        with state.lock:
            endpoint = state.endpoints.get(m["name"])
            if endpoint is None:
                return _not_found(m["name"])
            if state.delete_status:
                code = state.delete_status
                return code, {"error": {"code": code, "message": "injected", "status": "INTERNAL"}}
            if endpoint["deployedModels"]:
                return 400, {
                    "error": {
                        "code": 400,
                        "status": "FAILED_PRECONDITION",
                        "message": "endpoint has deployed models; undeploy them first",
                    }
                }
            del state.endpoints[m["name"]]
            state.deleted.append(m["name"])
            parent = m["name"].rsplit("/endpoints/", 1)[0]
            return 200, _operation(state, parent, metadata_type="DeleteOperationMetadata")

    server.route("POST", _PREDICT)(_predict_handler(state, dedicated=False))
    _add_model_routes(server, state)
    _add_batch_routes(server, state)

    return state


def _add_model_routes(server: RecordingServer, state: ServingState) -> None:
    """Model Registry (GET/DELETE a model) and ModelService.RecommendSpec."""

    @server.route("GET", _VERSION + r"(?P<name>" + _PARENT + r"/models/[^/:@]+)")
    def get_model(req: Request, m: Any) -> tuple[int, Any]:
        with state.lock:
            model = state.models.get(m["name"])
        return (200, {**model, "versionId": "1"}) if model else _not_found(m["name"])

    @server.route("DELETE", _VERSION + r"(?P<name>" + _PARENT + r"/models/[^/:@]+)")
    def delete_model(req: Request, m: Any) -> tuple[int, Any]:
        with state.lock:
            if m["name"] not in state.models:
                return _not_found(m["name"])
            for endpoint in state.endpoints.values():
                if any(d["model"] == m["name"] for d in endpoint["deployedModels"]):
                    return 400, {
                        "error": {
                            "code": 400,
                            "status": "FAILED_PRECONDITION",
                            "message": f"Model {m['name']} is deployed to {endpoint['name']}",
                        }
                    }
            del state.models[m["name"]]
            state.deleted.append(m["name"])
            parent = m["name"].rsplit("/models/", 1)[0]
            return 200, _operation(state, parent, metadata_type="DeleteOperationMetadata")

    @server.route("POST", r"/v1beta1/" + _PARENT + r":recommendSpec")
    def recommend_spec(req: Request, m: Any) -> tuple[int, Any]:
        body = req.json() or {}
        if not str(body.get("gcsUri", "")).startswith("gs://"):
            return _error(400, "gcsUri is required")
        return 200, {"baseModel": "custom", "recommendations": state.recommendations}


def _gcs() -> Any:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage as gcs

    return gcs.Client(project="stand-in", credentials=AnonymousCredentials())


def _split(uri: str) -> tuple[str, str]:
    bucket, _, path = uri.removeprefix("gs://").partition("/")
    return bucket, path


def _run_batch_job(state: ServingState, job: dict[str, Any]) -> None:
    """Read the job's JSONL instances from Cloud Storage (the emulator), predict each, and write
    Vertex's output layout: ``prediction-<model>-<time>/prediction.results-0000N-of-0000M`` and
    ``prediction.errors_stats-00000-of-00001``, in no particular row order.

    As Vertex does for a custom container, each JSONL object goes to the model as an instance
    of a predict request (``{"instances": [...]}``; here one instance per request), without
    ``instanceConfig.keyField`` and ``excludedFields``; with a key field an output line carries
    ``key`` instead of ``instance``. The request is answered as the predict route answers it: a
    prompt instance with a field SamplingParams does not take fails the row (the container's
    500), a chatCompletions instance is answered with a chat completion object."""
    client = _gcs()
    lines: list[dict[str, Any]] = []
    for uri in job["inputConfig"]["gcsSource"]["uris"]:
        bucket, path = _split(uri)
        text = client.bucket(bucket).blob(path).download_as_text()
        lines.extend(json.loads(line) for line in text.splitlines() if line.strip())
    config = job.get("instanceConfig") or {}
    key_field = config.get("keyField", "")
    dropped = {key_field, *(config.get("excludedFields") or [])} - {""}
    ok: list[str] = []
    failed: list[str] = []
    for line in lines:
        instance = {k: v for k, v in line.items() if k not in dropped}
        state.batch_instances.append(instance)
        where = {"key": line.get(key_field)} if key_field else {"instance": line}
        message = state.batch_error(line) or refused_fields([instance])
        if message:
            error = {"status": "INTERNAL", "message": message}
            failed.append(json.dumps({**where, "error": error}))
        else:
            (prediction,) = state.predict_fn([instance])
            ok.append(json.dumps({**where, "prediction": prediction}))
    ok.reverse()  # the order of output rows is not the input order
    model = state.models.get(job["model"], {}).get("displayName", "model")
    stamp = datetime.datetime(2026, 12, 1, 12, 0, 0).strftime("%Y_%m_%dT%H_%M_%S_000Z")
    prefix = job["outputConfig"]["gcsDestination"]["outputUriPrefix"].rstrip("/")
    out_dir = f"{prefix}/prediction-{model}-{stamp}"
    bucket, path = _split(out_dir)
    halves = [ok[: len(ok) // 2], ok[len(ok) // 2 :]]
    for n, half in enumerate(halves):
        blob = client.bucket(bucket).blob(f"{path}/prediction.results-{n:05d}-of-00002")
        blob.upload_from_string("".join(row + "\n" for row in half))
    blob = client.bucket(bucket).blob(f"{path}/prediction.errors_stats-00000-of-00001")
    blob.upload_from_string("".join(row + "\n" for row in failed))
    job["outputInfo"] = {"gcsOutputDirectory": out_dir}
    job["completionStats"] = {
        "successfulCount": str(len(ok)),
        "failedCount": str(len(failed)),
        "incompleteCount": "0",
    }
    job["resourcesConsumed"] = {"replicaHours": state.batch_replica_hours}
    job["state"] = "JOB_STATE_SUCCEEDED"


def _add_batch_routes(server: RecordingServer, state: ServingState) -> None:
    """JobService batch prediction: create, get, cancel; the job runs on its last poll."""

    @server.route("POST", r"/v1/(?P<parent>" + _PARENT + r")/batchPredictionJobs")
    def create(req: Request, m: Any) -> tuple[int, Any]:
        body = req.json() or {}
        problems = []
        if not body.get("displayName"):
            problems.append("displayName is required")
        uris = ((body.get("inputConfig") or {}).get("gcsSource") or {}).get("uris") or []
        if not uris:
            problems.append("inputConfig.gcsSource.uris is required")
        dest = ((body.get("outputConfig") or {}).get("gcsDestination") or {}).get("outputUriPrefix")
        if not dest:
            problems.append("outputConfig.gcsDestination.outputUriPrefix is required")
        if problems:
            return _error(400, "; ".join(problems))
        with state.lock:
            if body.get("model") not in state.models:
                return _not_found(f"Model {body.get('model')}")
            name = f"{m['parent']}/batchPredictionJobs/{state.next_id()}"
            job = {
                **body,
                "name": name,
                "state": "JOB_STATE_PENDING",
                "createTime": "2026-12-01T12:00:00Z",
                "_polls": state.batch_polls,
            }
            state.batch_jobs[name] = job
        return 200, {k: v for k, v in job.items() if not k.startswith("_")}

    @server.route("GET", r"/v1/(?P<parent>" + _PARENT + r")/batchPredictionJobs")
    def list_jobs(req: Request, m: Any) -> tuple[int, Any]:
        wanted = (req.query.get("filter") or [""])[0]
        with state.lock:
            jobs = [
                {k: v for k, v in j.items() if not k.startswith("_")}
                for n, j in state.batch_jobs.items()
                if n.startswith(m["parent"] + "/")
            ]
        if wanted.startswith("display_name="):
            display = wanted.split("=", 1)[1].strip('"')
            jobs = [j for j in jobs if j["displayName"] == display]
        return 200, {"batchPredictionJobs": jobs}

    @server.route("GET", r"/v1/(?P<name>" + _PARENT + r"/batchPredictionJobs/[^/:]+)")
    def get(req: Request, m: Any) -> tuple[int, Any]:
        state.polled()
        with state.lock:
            job = state.batch_jobs.get(m["name"])
            if job is None:
                return _not_found(m["name"])
            if job["state"] in ("JOB_STATE_PENDING", "JOB_STATE_RUNNING"):
                if job["_polls"] > 0:
                    job["_polls"] -= 1
                    job["state"] = "JOB_STATE_RUNNING"
                else:
                    _run_batch_job(state, job)
            return 200, {k: v for k, v in job.items() if not k.startswith("_")}

    @server.route("POST", r"/v1/(?P<name>" + _PARENT + r"/batchPredictionJobs/[^/:]+):cancel")
    def cancel(req: Request, m: Any) -> tuple[int, Any]:
        with state.lock:
            job = state.batch_jobs.get(m["name"])
            if job is None:
                return _not_found(m["name"])
            job["state"] = "JOB_STATE_CANCELLED"
        return 200, {}


def self_signed_cert(folder: Any) -> tuple[str, str]:
    """A certificate for 127.0.0.1 and localhost (SAN IP and DNS), made with ``cryptography``;
    returns (cert.pem, key.pem) paths in ``folder``. Point REQUESTS_CA_BUNDLE at the cert."""
    import ipaddress
    from pathlib import Path

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "routerlib dedicated stand-in")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = Path(folder)
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_path), str(key_path)


class ServingStandIn:
    """One RecordingServer with the serving routes, reusable across tests: ``fresh()`` clears
    the request log and the state (saves a server start and stop per test).

    With ``cert=(cert.pem, key.pem)`` a second server speaks HTTPS on 127.0.0.1 and answers
    dedicated-endpoint predicts; ``fresh(dedicated=True)`` makes deploys dedicated."""

    def __init__(self, cert: tuple[str, str] | None = None) -> None:
        self.server = RecordingServer()
        self.state = add_serving_routes(self.server, ServingState())
        self.tls: RecordingServer | None = None
        if cert is not None:
            import ssl

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*cert)
            self.tls = RecordingServer(ssl_context=context)
            self.tls.route("POST", _PREDICT)(_predict_handler(self.state, dedicated=True))

    def __enter__(self) -> ServingStandIn:
        self.server.__enter__()
        if self.tls is not None:
            self.tls.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.tls is not None:
            self.tls.__exit__(*exc)
        self.server.__exit__(*exc)

    def fresh(self, dedicated: bool = False) -> tuple[RecordingServer, ServingState]:
        self.server.requests.clear()
        self.state.reset()
        if self.tls is not None:
            self.tls.requests.clear()
            self.state.dedicated_dns = self.tls.url.removeprefix("https://") if dedicated else ""
        return self.server, self.state
