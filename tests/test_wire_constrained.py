"""Constrained decoding on every endpoint kind, end to end: each client puts the schema in the
field its server documents (on a Vertex / ``:predict`` URL: a chatCompletions instance with
``response_format``), the local server (and the Vertex stand-in backed by a real tiny
model) decodes under it, and the answer is a schema-valid object."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from routerlib import evaluate, schema
from routerlib.serving import factory
from routerlib.serving.local import LocalPredictor, LocalServer
from routerlib.serving.transports import OpenAIClient, PredictClient
from routerlib.serving.wire import OPENAI_SCHEMA_FIELDS, predict_instance
from tests.support.fake_vertex_serving import ServingStandIn, predictor_predict
from tests.support.tiny_serving_model import load_plain, tiny_checkpoint_fixture

pytestmark = pytest.mark.wire

tiny_checkpoint = pytest.fixture(scope="session")(tiny_checkpoint_fixture)
SMALL = {key: (1 if key.endswith("_items") else 8) for key in schema.GENERATION_BOUNDS}
SCHEMA = schema.completion_json_schema(generation=True, bounds=SMALL)
PROMPT = "Route this request: plan the steps."


@pytest.fixture(scope="module")
def predictor(tiny_checkpoint: Path) -> LocalPredictor:
    return LocalPredictor(tiny_checkpoint, loader=load_plain)


@pytest.fixture(scope="module")
def server(predictor: LocalPredictor) -> Iterator[LocalServer]:
    with LocalServer(predictor=predictor) as running:
        yield running


def _valid(text: str) -> dict[str, Any]:
    import jsonschema

    obj = json.loads(text)
    assert schema.validate_completion(obj) == []
    jsonschema.validate(obj, SCHEMA)
    return obj


def test_free_decoding_of_the_tiny_model_is_not_json(server: LocalServer) -> None:
    answer = PredictClient(server.endpoint_url).complete(PROMPT, 40)
    with pytest.raises(json.JSONDecodeError):
        json.loads(answer.text)


def _chat_instance_schema(instance: dict[str, Any]) -> dict[str, Any]:
    """The schema a constrained predict instance carries, after checking its documented shape:
    a chatCompletions instance (Model Garden's vLLM handler), the schema in response_format."""
    assert instance["@requestFormat"] == "chatCompletions"
    assert instance["messages"] == [{"role": "user", "content": PROMPT}]
    assert "prompt" not in instance and "guided_json" not in instance
    fmt = instance["response_format"]
    assert fmt["type"] == "json_schema"
    return fmt["json_schema"]["schema"]


def test_predict_client_sends_a_chat_instance_with_response_format(server: LocalServer) -> None:
    client = PredictClient(server.endpoint_url, schema=SCHEMA)
    assert _chat_instance_schema(client.instance(PROMPT, 500)) == SCHEMA
    assert client.name.endswith("#constrained")
    _valid(client.complete(PROMPT, 500).text)
    # free decoding keeps the prompt instance
    assert PredictClient(server.endpoint_url).instance(PROMPT, 5)["prompt"] == PROMPT


def test_chat_instance_is_answered_with_a_chat_completion(server: LocalServer) -> None:
    instance = predict_instance(PROMPT, 500, schema=SCHEMA)
    status, body = _post(server.endpoint_url, {"instances": [instance]})
    assert status == 200
    (prediction,) = body["predictions"]
    assert prediction["object"] == "chat.completion"
    _valid(prediction["choices"][0]["message"]["content"])


@pytest.mark.parametrize("field", OPENAI_SCHEMA_FIELDS)
def test_openai_client_fields(server: LocalServer, field: str) -> None:
    client = OpenAIClient(f"{server.url}/v1", schema=SCHEMA, schema_field=field)
    assert set(client.schema_fields) == {field}
    if field == "response_format":
        fmt = client.schema_fields["response_format"]
        assert fmt["type"] == "json_schema" and fmt["json_schema"]["schema"] == SCHEMA
    _valid(client.complete(PROMPT, 500).text)


def test_vertex_endpoint_client_sends_a_chat_instance(predictor: LocalPredictor) -> None:
    with ServingStandIn() as stand_in:
        recorder, state = stand_in.fresh()
        state.predict_fn = predictor_predict(predictor)
        endpoint = state.add_endpoint("proj-1", "us-central1", "router")["name"]
        client = factory.make(
            "endpoint",
            endpoint,
            project="proj-1",
            location="us-central1",
            api_endpoint=recorder.url,
        ).transport
        _valid(client.complete(PROMPT, 500, SCHEMA).text)
        (body,) = recorder.bodies("POST", r"/endpoints/[^/]+:predict$")
    sent = _chat_instance_schema(body["instances"][0])
    assert sent["properties"]["difficulty"]["enum"] == list(schema.DIFFICULTIES)


def test_a_dedicated_endpoint_answers_the_chat_completion_object(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over a dedicated endpoint the SDK hands back ``predictions`` as the container sent it: one
    chat completion object, not a list; the client reads its message."""
    from routerlib.serving import vertex
    from tests.support.fake_vertex_serving import CANNED_COMPLETION, self_signed_cert

    cert = self_signed_cert(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", cert[0])
    with ServingStandIn(cert=cert) as stand_in:
        recorder, state = stand_in.fresh(dedicated=True)
        endpoint = state.add_endpoint("proj-1", "us-central1", "router")
        endpoint.update(dedicatedEndpointEnabled=True, dedicatedEndpointDns=state.dedicated_dns)
        cloud = {"project": "proj-1", "location": "us-central1", "api_endpoint": recorder.url}
        instance = predict_instance(PROMPT, 50, schema=SCHEMA)
        (prediction,) = vertex.predict(endpoint["name"], [instance], **cloud)
        assert prediction["choices"][0]["message"]["content"] == CANNED_COMPLETION
        client = factory.make("endpoint", endpoint["name"], **cloud).transport
        assert client.complete(PROMPT, 50, SCHEMA).text == CANNED_COMPLETION
        assert stand_in.tls is not None and len(stand_in.tls.bodies("POST", r":predict$")) == 2


@pytest.mark.parametrize("field", ["guided_json", "response_format", "chat_template_kwargs"])
def test_vertex_stand_in_refuses_a_schema_field_on_a_prompt_instance(field: str) -> None:
    """Model Garden's vLLM handler passes a prompt instance's other fields to SamplingParams,
    which has no such argument: the request fails, as the stand-in's does."""
    from routerlib.serving import vertex

    with ServingStandIn() as stand_in:
        recorder, state = stand_in.fresh()
        endpoint = state.add_endpoint("proj-1", "us-central1", "router")["name"]
        instance = {"prompt": PROMPT, "max_tokens": 5, "raw_response": True, field: SCHEMA}
        with pytest.raises(vertex.PredictError) as caught:
            vertex.predict(
                endpoint,
                [instance],
                project="proj-1",
                location="us-central1",
                api_endpoint=recorder.url,
            )
    assert caught.value.status_code == 500
    assert f"unexpected keyword argument '{field}'" in str(caught.value)


def _post(url: str, body: Any) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"response_format": {"type": "text"}}, "response_format"),
        ({"structured_outputs": {"regex": "a+"}}, "structured_outputs"),
        ({"guided_json": "{not json"}, "guided_json"),
        ({"guided_json": SCHEMA, "response_format": {"type": "json_schema"}}, "not several"),
    ],
)
def test_server_refuses_bad_schema_fields(server: LocalServer, extra: dict, field: str) -> None:
    instance = {"prompt": PROMPT, "max_tokens": 4, "raw_response": True, **extra}
    status, body = _post(server.endpoint_url, {"instances": [instance]})
    assert status == 400 and field in body["error"]["message"]


def test_evaluate_checkpoint_constrained_writes_a_valid_report(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``evaluate --checkpoint --constrained``: every answer parses and passes the schema."""
    from routerlib.serving import local

    monkeypatch.setattr(local, "load_for_inference", load_plain)
    monkeypatch.setattr(schema, "GENERATION_BOUNDS", {**schema.GENERATION_BOUNDS, **SMALL})
    gold = tmp_path / "gold.jsonl"
    row = {"route_plan": ["/math(x)"], **{k: v for k, v in _gold().items() if k != "route_plan"}}
    gold.write_text(
        "".join(
            json.dumps({"prompt": f"{PROMPT} {i}", "completion": json.dumps(row)}) + "\n"
            for i in range(3)
        )
    )
    with factory.opened("local-server", str(tiny_checkpoint)) as served:
        report = evaluate.evaluate(
            served,
            gold,
            out=tmp_path / "report.json",
            constrained=True,
            max_tokens=500,
            progress=False,
        )
    assert report["generation"]["decoding"] == "constrained"
    assert report["strict"]["overall"]["json_valid"] == 1.0
    assert report["strict"]["overall"]["schema_valid"] == 1.0


def _gold() -> dict[str, Any]:
    return {
        "route_rationale": "r",
        "expected_artifacts": ["a"],
        "thinking_outline": ["t"],
        "handoff_plan": "/math",
        "todo_list": ["- /math"],
        "difficulty": "advanced",
        "tags": ["x"],
        "acceptance_criteria": ["c"],
        "metrics": {"primary": ["p"], "secondary": ["s"]},
    }
