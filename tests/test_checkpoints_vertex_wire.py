"""Vertex checkpoint choice on the wire: each gs:// epoch checkpoint deployed with the real
google-cloud-aiplatform SDK to the serving stand-in, one endpoint at a time, scored on validation
and deleted; the pick follows the scores. Scored constrained (the default run's decoding), every
request is a chat-completions instance carrying the generation schema in ``response_format``, as
``evaluate --endpoint --constrained`` sends it; scored free, a prompt instance without one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from routerlib import checkpoints
from routerlib.schema import completion_json_schema
from routerlib.serving import factory
from routerlib.serving.settings import VertexSettings
from routerlib.serving.wire import schema_from_fields
from routerlib.tuning.base import SUCCEEDED, Checkpoint, Job, TuningSpec
from tests.support.fake_vertex_serving import ServingStandIn
from tests.support.local_tuning_data import synthetic_splits

pytestmark = pytest.mark.wire

OUT = "gs://tuning-bucket/runs/r1"


@pytest.fixture()
def stand_in() -> Iterator[ServingStandIn]:
    with ServingStandIn() as serving:
        yield serving


@pytest.mark.parametrize("decoding", ["constrained", "free"])
def test_each_vertex_checkpoint_is_deployed_scored_and_deleted(
    stand_in: ServingStandIn, tmp_path: Path, decoding: str
) -> None:
    server, state = stand_in.fresh()
    _, validation = synthetic_splits(tmp_path / "data", n_train=1, n_val=3)
    gold = {
        json.loads(line)["prompt"]: json.loads(line)["completion"]
        for line in validation.read_text().splitlines()
    }
    live_seen: list[int] = []

    def answer(instances: list[dict[str, Any]]) -> list[Any]:
        # Answer as the checkpoint behind the (only) live endpoint would: epoch-2 routes right.
        with state.lock:
            live = list(state.endpoints.values())
            live_seen.append(len(live))
            model = live[0]["deployedModels"][0]["model"]
            uri = state.models[model]["artifactUri"]
        good = uri.endswith("epoch-2")
        out: list[Any] = []
        for i in instances:
            if i.get("@requestFormat") == "chatCompletions":  # Model Garden's chat instance
                (turn,) = i["messages"]
                text = gold[turn["content"]] if good else "{not json"
                message = {"role": "assistant", "content": text}
                out.append({"object": "chat.completion", "choices": [{"message": message}]})
            else:
                out.append(gold[i["prompt"]] if good else "{not json")
        return out

    state.predict_fn = answer
    uris = {e: f"{OUT}/postprocess/node-0/checkpoints/epoch-{e}" for e in (1, 2, 3)}
    job = Job(
        name="projects/proj-1/locations/us-central1/tuningJobs/7",
        backend="vertex",
        state=SUCCEEDED,
        spec=TuningSpec.build(training_dataset_uri="gs://b/train.jsonl", output_uri=OUT, epochs=3),
        checkpoint_uri=f"{OUT}/postprocess/node-0/checkpoints/final",
        checkpoints=[
            *(Checkpoint(checkpoint_id=f"epoch-{e}", epoch=e, uri=u) for e, u in uris.items()),
            Checkpoint(checkpoint_id="final", epoch=3, uri=f"{OUT}/postprocess/node-0/final"),
        ],
        loss_curve=[{"epoch": float(e), "val_loss": 2.0 - e / 10} for e in (1, 2, 3)],
    )
    machine = VertexSettings(
        project="proj-1",
        location="us-central1",
        api_endpoint=server.url,
        machine_type="g2-standard-12",
        accelerator_type="NVIDIA_L4",
        accelerator_count=1,
    )
    scorer = checkpoints.predictor_scorer(
        lambda uri: factory.make("vertex", uri, settings=machine, concurrency=2),
        max_tokens=64,
        limit=None,
    )
    run = tmp_path / "run"
    settings = {"max_tokens": 64, "decoding": decoding}
    choice = checkpoints.score_checkpoints(job, validation, run, scorer, settings=settings)

    deploys = server.bodies("POST", r":deploy$")
    assert [b["customModel"]["gcsUri"] for b in deploys] == [uris[1], uris[2], uris[3]]
    assert set(live_seen) == {1}  # never two endpoints up at once
    deleted = [name for name in state.deleted if "/endpoints/" in name]
    assert state.endpoints == {} and len(deleted) == 3  # every endpoint cleaned up
    assert [s.metric for s in choice.scores] == [0.0, 1.0, 0.0]
    assert choice.chosen == "epoch-2" and choice.chosen_uri == uris[2]
    assert choice.decoding == decoding

    # What went over the wire: 3 validation rows for each of the 3 checkpoints.
    sent = [i for b in server.bodies("POST", r":predict$") for i in b["instances"]]
    assert len(sent) == 9
    generation = completion_json_schema(generation=True)
    for instance in sent:
        if decoding == "constrained":
            assert instance["@requestFormat"] == "chatCompletions" and "prompt" not in instance
            assert instance["response_format"]["type"] == "json_schema"
            assert schema_from_fields(instance, "instance") == generation
        else:
            assert "prompt" in instance and schema_from_fields(instance, "instance") is None

    # Resumed: nothing is deployed again.
    checkpoints.score_checkpoints(job, validation, run, scorer, settings=settings)
    assert len(server.bodies("POST", r":deploy$")) == 3
