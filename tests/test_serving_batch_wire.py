"""Batch prediction on the wire: the real google-cloud-aiplatform SDK submits a job to the serving
stand-in, which runs it against gcp-storage-emulator (reads the instances JSONL, sends each line to
the model as the vLLM container gets it, writes Vertex's ``prediction.results-*`` /
``prediction.errors_stats-*`` layout, some rows as errors), and the real google-cloud-storage
client reads the answers back. Free decoding writes prompt instances, constrained decoding
chatCompletions instances with the generation schema; the row key is the job's keyField."""

from __future__ import annotations

import _thread
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from routerlib import auth
from routerlib.cli import main
from routerlib.config import load_config
from routerlib.errors import InputError
from routerlib.evaluate import evaluate, generate_predictions
from routerlib.schema import completion_json_schema
from routerlib.serving import batch, factory, vertex
from routerlib.serving.batch import BatchPredictor
from routerlib.serving.factory import open_predictor
from routerlib.serving.online import OnlinePredictor
from routerlib.serving.settings import VertexSettings
from routerlib.serving.wire import format_prediction, parse_predict_body
from tests.support import gcs_emulator as emulator_support
from tests.support.fake_vertex_serving import (
    CANNED_COMPLETION,
    ServingStandIn,
    ServingState,
    _gcs,
)
from tests.support.fault_server import gold_answers
from tests.support.gcs_emulator import GcsEmulator
from tests.support.recording_server import RecordingServer
from tests.support.vertex_params import EDITS

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


def evaluate_batch(
    gold: Path,
    model: str,
    server: RecordingServer,
    *,
    out: Path,
    gcs_prefix: str = PREFIX,
    poll_s: float = 0.01,
    rerun_failed: bool = False,
    constrained: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """``routerlib evaluate --batch MODEL`` as a library call: the factory's batch predictor."""
    with factory.opened(
        "batch",
        model,
        gcs_prefix=gcs_prefix,
        settings=VertexSettings(**cloud(server)),
        poll_s=poll_s,
        rerun_failed=rerun_failed,
    ) as predictor:
        return evaluate(predictor, gold, out=out, constrained=constrained, progress=progress)


def _gold(real_data: Path, tmp_path: Path, n: int) -> Path:
    lines = (real_data / "deep_router_benchmark.jsonl").read_text(encoding="utf-8").splitlines()
    path = tmp_path / "gold.jsonl"
    path.write_text("\n".join(lines[:n]) + "\n", encoding="utf-8")
    return path


def _answering(state: ServingState, gold: Path) -> None:
    """The stand-in model answers each prompt with its gold completion (so scores mean
    something), shaped as the container shapes it: the text for a raw prompt instance, a chat
    completion object for a chatCompletions instance. Instances go through the local server's
    parser, so a malformed one (a bad response_format, no messages) fails the test."""
    answers = gold_answers(gold)

    def answer(instances: list[dict[str, Any]]) -> list[Any]:
        parsed = parse_predict_body(json.dumps({"instances": instances}).encode())
        return [format_prediction(i, answers[i.prompt]) for i in parsed]

    state.predict_fn = answer


def _fail_rows(state: ServingState, rows: set[int]) -> None:
    state.batch_error = lambda inst: (
        "replica ran out of memory" if int(inst["routerlib_key"].split("-")[0]) in rows else None
    )


def _creates(server: RecordingServer) -> list[Any]:
    return server.bodies("POST", r"/batchPredictionJobs$")


def _written(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The JSONL lines a create request's job reads (from the emulator)."""
    (uri,) = body["inputConfig"]["gcsSource"]["uris"]
    bucket, _, path = uri.removeprefix("gs://").partition("/")
    text = _gcs().bucket(bucket).blob(path).download_as_text()
    return [json.loads(line) for line in text.splitlines()]


def _prompts(gold: Path) -> list[str]:
    return [json.loads(line)["prompt"] for line in gold.read_text().splitlines() if line.strip()]


def _assert_keyed(body: dict[str, Any], lines: list[dict[str, Any]], prompts: list[str]) -> None:
    """Each line carries its row key, which the job names as its keyField."""
    assert body["instanceConfig"] == {"keyField": "routerlib_key"}
    keys = [line["routerlib_key"] for line in lines]
    assert keys == [batch.row_key(i, prompts[i]) for i in range(len(lines))]


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
    deployment = vertex.deploy(CKPT, VertexSettings(**cloud(server)))

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
    # free decoding: plain prompt instances, no schema; the key stays out of what the model got
    lines = _written(body)
    _assert_keyed(body, lines, _prompts(gold))
    for line, prompt in zip(lines, _prompts(gold), strict=True):
        assert {k: v for k, v in line.items() if k != "routerlib_key"} == {
            "prompt": prompt,
            "max_tokens": 1280,
            "temperature": 0,
            "raw_response": True,
        }
    assert len(state.batch_instances) == 12
    assert all(
        set(i) == {"prompt", "max_tokens", "temperature", "raw_response"}
        for i in state.batch_instances
    )
    assert "JOB_STATE_SUCCEEDED 12/12 rows (2 failed)" in err
    assert "2 row(s) failed in the batch job and were scored invalid: 3, 7" in err

    report = json.loads((tmp_path / "batch" / "r.json").read_text())
    generation = report["generation"]
    assert generation["mode"] == "batch" and generation["failed_rows"] == [3, 7]
    assert "out of memory" in generation["failed_reasons"]["3"]
    preds = [json.loads(line) for line in (tmp_path / "batch" / "r.predictions.jsonl").open()]
    assert [p["index"] for p in preds] == list(range(12))
    assert preds[3]["completion"] is None and "batch error" in preds[3]["extraction"]

    # The same gold through the endpoint, same answers: identical per-row scores off the failures.
    with factory.opened("endpoint", deployment.endpoint_name, **cloud(server)) as endpoint:
        online = evaluate(endpoint, gold, out=tmp_path / "online" / "r.json", progress=False)
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
        CKPT, VertexSettings(**cloud(server), machine_type="g2-standard-24", accelerator_count=2)
    )
    state.batch_polls = 10_000  # the job keeps running
    out = tmp_path / "r.json"

    def run(**kw: Any) -> dict[str, Any]:
        return evaluate_batch(gold, deployment.model_name, server, out=out, poll_s=0.05, **kw)

    state.on_poll = _thread.interrupt_main  # Ctrl-C while it waits
    with pytest.raises(KeyboardInterrupt):
        run()
    assert "run the same command again to re-attach" in capsys.readouterr().err
    (record,) = batch.REGISTRY.read()
    assert record["job_name"] in state.batch_jobs and len(_creates(server)) == 1
    assert state.batch_jobs[record["job_name"]]["state"] == "JOB_STATE_RUNNING"
    # No machine given: the job runs on what the model's deploy ran on.
    spec = _creates(server)[0]["dedicatedResources"]["machineSpec"]
    assert (spec["machineType"], spec["acceleratorCount"]) == ("g2-standard-24", 2)

    # Killed between submit and the record: the job is found by its display name instead.
    batch.REGISTRY.path().unlink()
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
    deployment = vertex.deploy(CKPT, VertexSettings(**cloud(server)))
    state.batch_polls = 10_000
    state.on_poll = _thread.interrupt_main  # Ctrl-C while it waits
    with pytest.raises(KeyboardInterrupt):
        evaluate_batch(gold, deployment.model_name, server, out=tmp_path / "r.json", poll_s=0.05)
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
        evaluate_batch(gold, model, server, out=tmp_path / "r.json", progress=True)
    with pytest.raises(vertex.InputError, match="--gcs-prefix"):
        evaluate_batch(gold, model, server, out=tmp_path / "r.json", gcs_prefix="")


def test_open_predictor_picks_batch_or_endpoint_from_the_params(
    stand_in: tuple[RecordingServer, ServingState], real_data: Path, tmp_path: Path
) -> None:
    server, state = stand_in
    deployment = vertex.deploy(CKPT, VertexSettings(**cloud(server)))
    vertex.delete_endpoint(deployment.endpoint_name)  # keeps the model for batch
    overrides = {**EDITS, "project": "proj-1", "api_endpoint": server.url, "gcs_prefix": PREFIX}
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
        generate_predictions(
            gold,
            predictor=predictor,
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


def test_constrained_batch_sends_the_schema_and_scores_the_chat_answers(
    stand_in: tuple[RecordingServer, ServingState], real_data: Path, tmp_path: Path
) -> None:
    """``evaluate --batch --constrained``: every JSONL line is the endpoint path's chatCompletions
    instance with the generation schema in response_format; the chat completion objects that
    come back are read, matched by key and scored."""
    server, state = stand_in
    gold = _gold(real_data, tmp_path, 8)
    prompts = _prompts(gold)
    _answering(state, gold)
    _fail_rows(state, {5})
    deployment = vertex.deploy(CKPT, VertexSettings(**cloud(server)))
    out = tmp_path / "c" / "r.json"

    argv = ["evaluate", "--gold", str(gold), "--batch", deployment.model_name, "--constrained"]
    argv += ["--gcs-prefix", PREFIX, "--out", str(out), "--max-tokens", "900"]
    argv += ["--poll-interval", "0.01", "--api-endpoint", server.url, "--no-progress"]
    assert main(argv) == 0

    (body,) = _creates(server)
    lines = _written(body)
    _assert_keyed(body, lines, prompts)
    generation_schema = completion_json_schema(generation=True)
    for line, prompt in zip(lines, prompts, strict=True):
        assert line["@requestFormat"] == "chatCompletions"
        assert line["messages"] == [{"role": "user", "content": prompt}]
        assert (line["max_tokens"], line["temperature"]) == (900, 0)
        assert line["response_format"]["type"] == "json_schema"
        assert line["response_format"]["json_schema"]["schema"] == generation_schema
        assert "prompt" not in line and "guided_json" not in line
    # what the model got: the chat instances without the key (the job's keyField)
    assert len(state.batch_instances) == 8
    assert all("routerlib_key" not in i and "response_format" in i for i in state.batch_instances)

    report = json.loads(out.read_text())
    generation = report["generation"]
    assert generation["decoding"] == "constrained" and generation["mode"] == "batch"
    assert generation["source"] == f"batch:{deployment.model_name}#constrained"
    assert generation["failed_rows"] == [5]
    # the other 7 rows came back as chat completion objects holding the gold completion
    assert report["metrics"]["overall"]["route_plan_exact"] == 1.0  # over the valid rows
    assert report["strict"]["overall"]["json_valid"] == pytest.approx(7 / 8)
    assert report["strict"]["overall"]["route_plan_exact"] == pytest.approx(7 / 8)
    preds = [json.loads(line) for line in (tmp_path / "c" / "r.predictions.jsonl").open()]
    answers = gold_answers(gold)
    for pred, prompt in zip(preds, prompts, strict=True):
        if pred["index"] == 5:
            assert pred["completion"] is None and "out of memory" in pred["extraction"]
        else:
            assert json.loads(pred["raw"]) == json.loads(answers[prompt])
    cached = [json.loads(line) for line in (tmp_path / "c" / "r.cache.jsonl").open()]
    assert {c["target"] for c in cached} == {f"batch:{deployment.model_name}#constrained"}
    (record,) = batch.REGISTRY.read()
    assert record["decoding"] == "constrained"


def test_free_and_constrained_batch_predictions_never_share_a_cache(
    stand_in: tuple[RecordingServer, ServingState], real_data: Path, tmp_path: Path
) -> None:
    """A free cache is refused by a constrained run and the other way round, before any job."""
    server, state = stand_in
    gold = _gold(real_data, tmp_path, 3)
    _answering(state, gold)
    deployment = vertex.deploy(CKPT, VertexSettings(**cloud(server)))

    def run(out: Path, constrained: bool) -> dict[str, Any]:
        return evaluate_batch(gold, deployment.model_name, server, out=out, constrained=constrained)

    model = deployment.model_name
    for first in (False, True):
        out = tmp_path / f"first-{'constrained' if first else 'free'}" / "r.json"
        assert run(out, first)["strict"]["overall"]["json_valid"] == 1.0
        jobs = len(_creates(server))
        with pytest.raises(InputError) as caught:
            run(out, not first)
        message = str(caught.value)
        assert f"come from batch:{model}{'#constrained' if first else ''} with" in message
        assert f"not batch:{model}{'' if first else '#constrained'} with" in message
        assert len(_creates(server)) == jobs  # refused before a job was submitted
    # each decoding ran its own job: prompt instances once, chat instances once
    kinds = [("@requestFormat" in _written(body)[0]) for body in _creates(server)]
    assert kinds == [False, True]


def test_the_batch_stand_in_refuses_what_the_container_refuses(
    stand_in: tuple[RecordingServer, ServingState], tmp_path: Path
) -> None:
    """Each JSONL line reaches the model as an instance: a prompt instance with a field
    SamplingParams does not take (a schema field, or a row key the job does not name as its
    keyField) fails that row as the container's handler fails it; a chatCompletions instance
    with response_format is answered with a chat completion object."""
    from google.cloud import aiplatform

    server, state = stand_in
    deployment = vertex.deploy(CKPT, VertexSettings(**cloud(server)))
    schema = completion_json_schema(generation=True)
    fmt = {"type": "json_schema", "json_schema": {"name": "r", "schema": schema}}
    prompt = {"prompt": "route this", "max_tokens": 8, "temperature": 0, "raw_response": True}
    chat = {"@requestFormat": "chatCompletions", "messages": [{"role": "user", "content": "x"}]}
    lines = [
        {**prompt, "guided_json": schema},
        {**prompt, "response_format": fmt},
        {**prompt, "routerlib_key": "2-abc"},
        {**chat, "response_format": fmt},
        prompt,
    ]
    uri = f"{PREFIX}/selftest/instances.jsonl"
    bucket, _, path = uri.removeprefix("gs://").partition("/")
    _gcs().bucket(bucket).blob(path).upload_from_string(
        "".join(json.dumps(line) + "\n" for line in lines)
    )
    auth.init_vertex("proj-1", "us-central1", server.url)
    job = aiplatform.BatchPredictionJob.submit(  # no keyField: each line goes as it is
        job_display_name="selftest",
        model_name=deployment.model_name,
        gcs_source=uri,
        gcs_destination_prefix=f"{PREFIX}/selftest/out",
    )
    assert batch._wait(job, len(lines), 0.01, progress=False) == "JOB_STATE_SUCCEEDED"
    rows = {
        lines.index(row["instance"]): row
        for row in batch.output_lines(job.output_info.gcs_output_directory)
    }
    assert sorted(rows) == [0, 1, 2, 3, 4]
    for i, field in ((0, "guided_json"), (1, "response_format"), (2, "routerlib_key")):
        assert "prediction" not in rows[i]
        assert f"unexpected keyword argument '{field}'" in rows[i]["error"]["message"]
    assert rows[3]["prediction"]["object"] == "chat.completion"
    assert rows[3]["prediction"]["choices"][0]["message"]["content"] == CANNED_COMPLETION
    assert rows[4]["prediction"] == CANNED_COMPLETION
    assert state.batch_instances == lines  # no key field: the model got each line as it is


def test_a_run_scores_each_decoding_with_its_own_batch_job(
    stand_in: tuple[RecordingServer, ServingState], tmp_path: Path
) -> None:
    """Notebook 04 with ``eval_mode: batch`` and both decodings: ``evaluate_stage.evaluate_all`` runs
    one batch job per decoding on the model the checkpoint's deploy uploaded, prompt instances
    for free and chat instances with the schema for constrained, one report each."""
    from routerlib.stages import evaluate as evaluate_stage
    from routerlib.stages import prepare as prepare_stage
    from routerlib.stages import run as run_stage

    server, state = stand_in
    deployment = vertex.deploy(CKPT, VertexSettings(**cloud(server)))
    vertex.delete_endpoint(deployment.endpoint_name)  # keeps the model for batch
    overrides = {"synth_rows": 60, "eval_limit": 3, "eval_mode": "batch", "gcs_prefix": PREFIX}
    overrides |= {"project": "proj-1", "api_endpoint": server.url}
    run = run_stage.open_run("params/local.yaml", str(tmp_path / "run"), overrides)
    prepare_stage.prepare(run)
    assert run_stage.decodings(run) == ["free", "constrained"]
    assert prepare_stage.dataset_uris(run)["test"].startswith("gs://")  # uploaded for tuning
    gold = prepare_stage.gold_file(run)
    _answering(state, gold)
    with open_predictor(run.config, CKPT) as predictor:
        assert isinstance(predictor, BatchPredictor)
        reports = evaluate_stage.evaluate_all(run, predictor)

    assert list(reports) == ["free", "constrained"]
    free, constrained = _creates(server)
    assert all("@requestFormat" not in line for line in _written(free))
    assert all(line["response_format"]["type"] == "json_schema" for line in _written(constrained))
    for decoding, report in reports.items():
        assert report["generation"]["decoding"] == decoding
        assert report["generation"]["mode"] == "batch"
        assert report["strict"]["overall"]["route_plan_exact"] == 1.0
    assert (run.path / "eval" / "constrained" / "samples.jsonl").is_file()
    assert [r["decoding"] for r in batch.REGISTRY.read()] == ["free", "constrained"]
