"""Batch prediction on the wire: the real google-cloud-aiplatform SDK submits a job to the serving
stand-in, which runs it against gcp-storage-emulator (reads the instances JSONL, writes Vertex's
``prediction.results-*`` / ``prediction.errors_stats-*`` layout, some rows as errors), and the
real google-cloud-storage client reads the answers back."""

from __future__ import annotations

import _thread
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from routerlib.cli import main
from routerlib.config import load_config
from routerlib.evaluate import evaluate
from routerlib.serving import batch, vertex
from routerlib.serving.base import BatchPredictor, OnlinePredictor, open_predictor
from tests.support import gcs_emulator as emulator_support
from tests.support.fake_vertex_serving import ServingStandIn, ServingState
from tests.support.fault_server import gold_answers
from tests.support.gcs_emulator import GcsEmulator
from tests.support.recording_server import RecordingServer

pytestmark = pytest.mark.wire

gcs_emulator = emulator_support.gcs_emulator  # the fixture
CKPT = "gs://tuning-bucket/runs/r1/postprocess/node-0/checkpoints/final"
PREFIX = "gs://eval-bucket/router"


@pytest.fixture(scope="module")
def _stand_in_server() -> Iterator[ServingStandIn]:
    with ServingStandIn() as stand_in:
        yield stand_in


@pytest.fixture
def stand_in(
    _stand_in_server: ServingStandIn, gcs_emulator: GcsEmulator
) -> tuple[RecordingServer, ServingState]:
    gcs_emulator.make_bucket("tuning-bucket")
    gcs_emulator.make_bucket("eval-bucket")
    return _stand_in_server.fresh()


def cloud(server: RecordingServer) -> dict[str, str]:
    return {"project": "proj-1", "location": "us-central1", "api_endpoint": server.url}


def _gold(real_data: Path, tmp_path: Path, n: int) -> Path:
    lines = (real_data / "deep_router_benchmark.jsonl").read_text(encoding="utf-8").splitlines()
    path = tmp_path / "gold.jsonl"
    path.write_text("\n".join(lines[:n]) + "\n", encoding="utf-8")
    return path


def _answering(state: ServingState, gold: Path) -> None:
    """The stand-in model answers each prompt with its gold completion (so scores mean something)."""
    answers = gold_answers(gold)
    state.predict_fn = lambda instances: [answers[i["prompt"]] for i in instances]


def _fail_rows(state: ServingState, rows: set[int]) -> None:
    state.batch_error = lambda inst: (
        "replica ran out of memory" if int(inst["routerlib_key"].split("-")[0]) in rows else None
    )


def _creates(server: RecordingServer) -> list[Any]:
    return server.bodies("POST", r"/batchPredictionJobs$")


def test_batch_evaluate_matches_rows_by_key_and_scores_like_an_endpoint(
    stand_in: tuple[RecordingServer, ServingState],
    real_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, state = stand_in
    gold = _gold(real_data, tmp_path, 12)
    _answering(state, gold)
    _fail_rows(state, {3, 7})
    deployment = vertex.deploy(CKPT, **cloud(server))

    argv = ["evaluate", "--gold", str(gold), "--batch", deployment.model_name]
    argv += ["--gcs-prefix", PREFIX, "--out", str(tmp_path / "batch" / "r.json")]
    argv += ["--machine-type", "g2-standard-24", "--accelerator-count", "2"]
    argv += ["--poll-interval", "0.01", "--api-endpoint", server.url]
    assert main(argv) == 0
    err = capsys.readouterr().err

    (body,) = _creates(server)
    assert body["displayName"].startswith("routerlib-batch-")
    assert body["model"] == deployment.model_name
    assert body["inputConfig"]["instancesFormat"] == "jsonl"
    assert body["outputConfig"]["gcsDestination"]["outputUriPrefix"].startswith(
        "gs://eval-bucket/router/batch/"
    )
    spec = body["dedicatedResources"]["machineSpec"]
    assert (spec["machineType"], spec["acceleratorCount"]) == ("g2-standard-24", 2)
    assert "JOB_STATE_SUCCEEDED 12/12 rows (2 failed)" in err
    assert "2 row(s) failed in the batch job (scored invalid): 3, 7" in err

    report = json.loads((tmp_path / "batch" / "r.json").read_text())
    generation = report["generation"]
    assert generation["mode"] == "batch" and generation["failed_rows"] == [3, 7]
    assert "out of memory" in generation["failed_reasons"]["3"]
    preds = [json.loads(line) for line in (tmp_path / "batch" / "r.predictions.jsonl").open()]
    assert [p["index"] for p in preds] == list(range(12))
    assert preds[3]["completion"] is None and "batch error" in preds[3]["extraction"]

    # The same gold through the endpoint, same answers: identical per-row scores off the failures.
    online = evaluate(
        gold,
        endpoint=deployment.endpoint_name,
        out=tmp_path / "online" / "r.json",
        progress=False,
        **cloud(server),
    )
    assert online["generation"]["mode"] == "endpoint"
    samples = {
        kind: [json.loads(line) for line in (tmp_path / kind / "samples.jsonl").open()]
        for kind in ("batch", "online")
    }
    for b, o in zip(samples["batch"], samples["online"], strict=True):
        if b["index"] in (3, 7):
            assert not b["valid"] and o["valid"]
        else:
            assert b["strict"] == o["strict"] and b["metrics"] == o["metrics"]


def test_a_killed_wait_reattaches_and_failed_rows_rerun(
    stand_in: tuple[RecordingServer, ServingState],
    real_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, state = stand_in
    gold = _gold(real_data, tmp_path, 6)
    _answering(state, gold)
    _fail_rows(state, {1})
    deployment = vertex.deploy(
        CKPT, machine_type="g2-standard-24", accelerator_count=2, **cloud(server)
    )
    state.batch_polls = 10_000  # the job keeps running
    out = tmp_path / "r.json"

    def run(**kw: Any) -> dict[str, Any]:
        return evaluate(
            gold,
            batch=deployment.model_name,
            gcs_prefix=PREFIX,
            out=out,
            poll_s=0.05,
            progress=False,
            **cloud(server),
            **kw,
        )

    state.on_poll = _thread.interrupt_main  # Ctrl-C while it waits
    with pytest.raises(KeyboardInterrupt):
        run()
    assert "run the same command again to re-attach" in capsys.readouterr().err
    (record,) = batch.read_registry()
    assert record["job_name"] in state.batch_jobs and len(_creates(server)) == 1
    assert state.batch_jobs[record["job_name"]]["state"] == "JOB_STATE_RUNNING"
    # No machine given: the job runs on what the model's deploy ran on.
    spec = _creates(server)[0]["dedicatedResources"]["machineSpec"]
    assert (spec["machineType"], spec["acceleratorCount"]) == ("g2-standard-24", 2)

    # Killed between submit and the record: the job is found by its display name instead.
    batch.registry_path().unlink()
    state.batch_polls = 0
    for job in state.batch_jobs.values():
        job["_polls"] = 0
    report = run()
    assert len(_creates(server)) == 1  # re-attached, no second job
    assert report["generation"]["batch_reattached"] is True
    assert report["generation"]["failed_rows"] == [1]

    again = run()  # same command again: the failure is listed, nothing is submitted
    assert len(_creates(server)) == 1 and again["generation"]["failed_rows"] == [1]

    _fail_rows(state, set())
    rerun = run(rerun_failed=True)
    creates = _creates(server)
    assert len(creates) == 2
    uri = creates[1]["inputConfig"]["gcsSource"]["uris"][0]
    bucket, _, path = uri.removeprefix("gs://").partition("/")
    from tests.support.fake_vertex_serving import _gcs

    rerun_rows = _gcs().bucket(bucket).blob(path).download_as_text().splitlines()
    assert [json.loads(r)["routerlib_key"].split("-")[0] for r in rerun_rows] == ["1"]
    assert rerun["generation"]["failed_rows"] == []
    assert rerun["strict"]["overall"]["json_valid"] == 1.0


def test_cleanup_cancels_a_batch_job_left_running(
    stand_in: tuple[RecordingServer, ServingState],
    real_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, state = stand_in
    gold = _gold(real_data, tmp_path, 3)
    deployment = vertex.deploy(CKPT, **cloud(server))
    state.batch_polls = 10_000
    state.on_poll = _thread.interrupt_main  # Ctrl-C while it waits
    with pytest.raises(KeyboardInterrupt):
        evaluate(
            gold,
            batch=deployment.model_name,
            gcs_prefix=PREFIX,
            out=tmp_path / "r.json",
            poll_s=0.05,
            progress=False,
            **cloud(server),
        )
    capsys.readouterr()
    (job,) = state.batch_jobs

    assert main(["endpoints", "cleanup"]) == 0

    out = capsys.readouterr().out
    assert f"cancelled {job}" in out and f"deleted {deployment.endpoint_name}" in out
    assert state.batch_jobs[job]["state"] == "JOB_STATE_CANCELLED"
    assert server.bodies("POST", r"batchPredictionJobs/[^/]+:cancel$") == [{}]
    assert state.endpoints == {} and state.models == {}
    assert batch.cancel_running() == []  # recorded as cancelled: nothing left


def test_submit_refusals_are_vertex_shaped(
    stand_in: tuple[RecordingServer, ServingState], real_data: Path, tmp_path: Path
) -> None:
    server, _ = stand_in
    gold = _gold(real_data, tmp_path, 2)
    model = "projects/proj-1/locations/us-central1/models/does-not-exist"
    with pytest.raises(vertex.RemoteError, match="404"):
        evaluate(gold, batch=model, gcs_prefix=PREFIX, out=tmp_path / "r.json", **cloud(server))
    with pytest.raises(vertex.InputError, match="--gcs-prefix"):
        evaluate(gold, batch=model, out=tmp_path / "r.json", **cloud(server))


def test_open_predictor_picks_batch_or_endpoint_from_the_params(
    stand_in: tuple[RecordingServer, ServingState], real_data: Path, tmp_path: Path
) -> None:
    server, state = stand_in
    deployment = vertex.deploy(CKPT, **cloud(server))
    vertex.delete_endpoint(deployment.endpoint_name)  # keeps the model for batch
    overrides = {"project": "proj-1", "api_endpoint": server.url, "gcs_prefix": PREFIX}
    cfg = load_config("params/qwen3_32b.yaml", {**overrides, "eval_mode": "batch"})
    with open_predictor(cfg, CKPT) as predictor:
        assert isinstance(predictor, BatchPredictor)
        assert predictor.model == deployment.model_name
        assert predictor.extra == {"chat_template_kwargs": {"enable_thinking": False}}

    # Qwen params on an endpoint: the thinking switch travels in each instance, on the wire.
    endpoint = state.add_endpoint("proj-1", "us-central1", "made-elsewhere")
    cfg = load_config("params/qwen3_32b.yaml", {**overrides, "endpoint": endpoint["name"]})
    gold = _gold(real_data, tmp_path, 1)
    with open_predictor(cfg, CKPT) as predictor:
        assert isinstance(predictor, OnlinePredictor)
        predictor.predict_file(
            gold,
            cache_path=tmp_path / "c.cache.jsonl",
            pred_path=tmp_path / "c.predictions.jsonl",
            max_tokens=16,
            progress=False,
        )
    (body,) = server.bodies("POST", r":predict$")
    (instance,) = body["instances"]
    assert instance["chat_template_kwargs"] == {"enable_thinking": False}
    # a chat instance: only the chat route applies the template (a prompt instance would be
    # refused, its fields going to SamplingParams)
    assert instance["@requestFormat"] == "chatCompletions"
    assert instance["messages"][0]["role"] == "user" and "prompt" not in instance
