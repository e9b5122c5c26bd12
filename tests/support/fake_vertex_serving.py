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

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.support.recording_server import RecordingServer, Request

#: Resource name prefix: ``projects/P/locations/L``.
_PARENT = r"projects/(?P<project>[^/]+)/locations/(?P<location>[^/:]+)"
_VERSION = r"/(?:v1|v1beta1)/"

#: ``predict_fn(instances) -> predictions`` answers the predict route.
PredictFn = Callable[[list[dict[str, Any]]], list[Any]]

CANNED_COMPLETION = (
    '{"route_plan": ["/general-search(query=\\"x\\", mode=web)"], "route_rationale": "canned"}'
)


def canned_predict(instances: list[dict[str, Any]]) -> list[Any]:
    """Each instance gets CANNED_COMPLETION, framed like Model Garden unless raw_response."""
    out = []
    for inst in instances:
        if inst.get("raw_response"):
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
        if any(i.schema is not None for i in parsed):  # guided_json & co. reach the predictor
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
            ):
                setattr(self, name, getattr(fresh, name))

    def next_id(self) -> str:
        return str(next(self._ids))

    def add_endpoint(
        self, project: str, location: str, display_name: str, models: int = 1
    ) -> dict[str, Any]:
        """Seed an endpoint with ``models`` deployed models (ids d1, d2, ...)."""
        name = f"projects/{project}/locations/{location}/endpoints/{self.next_id()}"
        deployed = []
        for n in range(models):
            model_name = f"projects/{project}/locations/{location}/models/{self.next_id()}"
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
        with state.lock:
            display = (body.get("endpointConfig") or {}).get("endpointDisplayName") or "endpoint"
            endpoint = state.add_endpoint(project, location, display)
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
            return (200, endpoint) if endpoint else _not_found(m["name"])

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

    @server.route("POST", _VERSION + r"(?P<name>" + _PARENT + r"/endpoints/[^/:]+):predict")
    def predict(req: Request, m: Any) -> tuple[int, Any]:
        with state.lock:
            endpoint = state.endpoints.get(m["name"])
        if endpoint is None:
            return _not_found(m["name"])
        if state.predict_status:
            code = state.predict_status
            return code, {"error": {"code": code, "message": "injected", "status": "UNAVAILABLE"}}
        if not endpoint["deployedModels"]:
            return 400, {
                "error": {
                    "code": 400,
                    "status": "FAILED_PRECONDITION",
                    "message": "no model deployed",
                }
            }
        instances = (req.json() or {}).get("instances") or []
        deployed = endpoint["deployedModels"][0]
        return 200, {
            "predictions": state.predict_fn(instances),
            "deployedModelId": deployed["id"],
            "model": deployed["model"],
        }

    return state


class ServingStandIn:
    """One RecordingServer with the serving routes, reusable across tests: ``fresh()`` clears
    the request log and the state (saves a server start and stop per test)."""

    def __init__(self) -> None:
        self.server = RecordingServer()
        self.state = add_serving_routes(self.server, ServingState())

    def __enter__(self) -> ServingStandIn:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.__exit__(*exc)

    def fresh(self) -> tuple[RecordingServer, ServingState]:
        self.server.requests.clear()
        self.state.reset()
        return self.server, self.state
