"""Generating predictions: fault drills, kill-and-resume, extraction, the three transports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from routerlib import evaluate as ev
from routerlib.errors import InputError, RemoteError
from routerlib.serving import factory
from routerlib.serving.base import Completion, Predictor
from routerlib.serving.client import cache_name
from routerlib.serving.online import OnlinePredictor
from routerlib.serving.transports import OpenAIClient, PredictClient, VertexEndpointClient
from tests.support.fault_server import MODEL_ID, FaultServer, gold_answers, schedule
from tests.support.recording_server import RecordingServer

ROOT = Path(__file__).resolve().parent.parent


def _gold(real_data: Path, tmp_path: Path, n: int) -> Path:
    """The first ``n`` real benchmark rows as a gold file."""
    lines = (real_data / "deep_router_benchmark.jsonl").read_text(encoding="utf-8").splitlines()
    path = tmp_path / "gold.jsonl"
    path.write_text("\n".join(lines[:n]) + "\n", encoding="utf-8")
    return path


def _address(target: str, **options: object) -> Predictor:
    """The predictor ``routerlib evaluate --endpoint TARGET`` gets from the factory."""
    return factory.make(*factory.kind_of(target), **options)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _gold_rows(path: Path) -> list[dict]:
    return _rows(path)


def _assert_complete(pred: Path, gold: Path) -> None:
    """One prediction per gold row, in order, each equal to the gold completion."""
    preds, golds = _rows(pred), _gold_rows(gold)
    assert [p["index"] for p in preds] == list(range(len(golds)))
    for p, g in zip(preds, golds, strict=True):
        assert json.loads(p["completion"]) == json.loads(g["completion"])


def test_fault_drill_completes_within_retry_bound(real_data: Path, tmp_path: Path) -> None:
    gold = _gold(real_data, tmp_path, 12)
    prompts = [r["prompt"] for r in _gold_rows(gold)]
    faults = {
        0: ["429", "429"],
        1: ["503"],
        2: ["timeout"],
        3: ["torn", "503"],
        4: ["500", "torn", "429"],
    }
    with FaultServer(gold_answers(gold), plan=schedule(faults, prompts), hang_s=1.5) as srv:
        client = PredictClient(srv.predict_url, timeout=1.0)
        pred = ev.generate_predictions(
            gold,
            predictor=OnlinePredictor(client, concurrency=4, retries=3, backoff_s=0.01),
            cache_path=tmp_path / "r.cache.jsonl",
            progress=False,
        )
        attempts = dict(srv.attempts)
    _assert_complete(pred, gold)
    # Every faulty row took exactly faults + 1 attempts; the others one.
    for i, prompt in enumerate(prompts):
        assert attempts[prompt] == len(faults.get(i, [])) + 1, i
    cache = _rows(tmp_path / "r.cache.jsonl")
    assert sorted(r["index"] for r in cache) == list(range(12))
    assert {r["index"]: r["attempts"] for r in cache if r["index"] in faults} == {
        i: len(seq) + 1 for i, seq in faults.items()
    }


def test_run_beyond_retry_bound_fails_clearly_and_resumes(real_data: Path, tmp_path: Path) -> None:
    gold = _gold(real_data, tmp_path, 6)
    prompts = [r["prompt"] for r in _gold_rows(gold)]
    cache = tmp_path / "r.cache.jsonl"
    broken = {"on": True}

    def plan(prompt: str, attempt: int) -> str | None:
        return "503" if broken["on"] and prompt == prompts[2] else None

    with FaultServer(gold_answers(gold), plan=plan) as srv:
        predictor = OnlinePredictor(
            PredictClient(srv.predict_url, timeout=5), concurrency=1, retries=2, backoff_s=0.01
        )
        with pytest.raises(RemoteError) as info:
            ev.generate_predictions(gold, predictor=predictor, cache_path=cache, progress=False)
        message = str(info.value)
        assert "row 2" in message and "gave up after 3 attempts" in message
        assert "HTTP 503" in message and "run again to resume" in message
        assert srv.attempts[prompts[2]] == 3
        # Rows answered before the failure are cached; nothing was written for row 2.
        cached = {r["index"] for r in _rows(cache)}
        assert cached == {0, 1}
        assert not (tmp_path / "r.predictions.jsonl").exists()

        broken["on"] = False
        pred = ev.generate_predictions(gold, predictor=predictor, cache_path=cache, progress=False)
        assert srv.attempts[prompts[0]] == 1 and srv.attempts[prompts[1]] == 1
    _assert_complete(pred, gold)


def test_client_error_is_not_retried(real_data: Path, tmp_path: Path) -> None:
    gold = _gold(real_data, tmp_path, 2)
    with FaultServer(gold_answers(gold), plan=lambda p, a: "400") as srv:
        with pytest.raises(RemoteError, match="HTTP 400: bad instance"):
            ev.generate_predictions(
                gold,
                predictor=OnlinePredictor(
                    PredictClient(srv.predict_url), concurrency=1, retries=5, backoff_s=0.01
                ),
                cache_path=tmp_path / "c.jsonl",
                progress=False,
            )
        assert len(srv.requests) == 1


def test_predict_instances_on_the_wire(real_data: Path, tmp_path: Path) -> None:
    gold = _gold(real_data, tmp_path, 3)
    with FaultServer(gold_answers(gold)) as srv:
        pred = ev.generate_predictions(
            gold,
            predictor=_address(srv.predict_url, concurrency=2),
            cache_path=tmp_path / "c.jsonl",
            max_tokens=99,
            progress=False,
        )
        bodies = srv.bodies("POST", r":predict$")
    prompts = {r["prompt"] for r in _gold_rows(gold)}
    assert len(bodies) == 3
    for body in bodies:
        (instance,) = body["instances"]
        assert instance["prompt"] in prompts
        assert instance == {
            "prompt": instance["prompt"],
            "max_tokens": 99,
            "temperature": 0,
            "raw_response": True,
        }
    rows = _rows(pred)
    # The predict JSON reports no usage: token counts are estimates and say so.
    assert all(r["tokens_estimated"] and r["prompt_tokens"] > 0 for r in rows)
    assert all(r["latency_s"] >= 0 and r["extraction"] == "whole" for r in rows)


WRAPPERS = {
    "fenced": lambda t: f"Here is the plan:\n```json\n{t}\n```\nLet me know if you need more.",
    "model_garden": lambda t: 'Prompt:\nRespond with {"route_plan": []}\nOutput:\n' + t,
    "trailing": lambda t: t + "\n\nI hope this routing plan helps!",
}


@pytest.mark.parametrize("kind", sorted(WRAPPERS))
def test_extraction_from_wrapped_outputs(real_data: Path, tmp_path: Path, kind: str) -> None:
    gold = _gold(real_data, tmp_path, 3)
    wrap = WRAPPERS[kind]
    with FaultServer(gold_answers(gold), wrap=wrap) as srv:
        pred = ev.generate_predictions(
            gold,
            predictor=_address(srv.predict_url),
            cache_path=tmp_path / "c.jsonl",
            progress=False,
        )
    _assert_complete(pred, gold)
    for p, g in zip(_rows(pred), _gold_rows(gold), strict=True):
        assert p["raw"] == wrap(g["completion"])
        assert p["extraction"] != "whole"


def test_unextractable_text_is_kept_raw(real_data: Path, tmp_path: Path) -> None:
    gold = _gold(real_data, tmp_path, 2)
    with FaultServer(default="I cannot route this query.") as srv:
        pred = ev.generate_predictions(
            gold,
            predictor=_address(srv.predict_url),
            cache_path=tmp_path / "c.jsonl",
            progress=False,
        )
    rows = _rows(pred)
    assert [r["completion"] for r in rows] == ["I cannot route this query."] * 2
    assert all(r["raw"] == r["completion"] and "no JSON" in r["extraction"] for r in rows)


def test_openai_compatible_path(real_data: Path, tmp_path: Path) -> None:
    gold = _gold(real_data, tmp_path, 4)
    with FaultServer(gold_answers(gold), plan=lambda p, a: "429" if a == 0 else None) as srv:
        predictor = _address(srv.openai_url, concurrency=2, backoff_s=0.01)
        assert isinstance(predictor, OnlinePredictor)
        assert isinstance(predictor.transport, OpenAIClient)
        pred = ev.generate_predictions(
            gold,
            predictor=predictor,
            cache_path=tmp_path / "c.jsonl",
            max_tokens=77,
            progress=False,
        )
        bodies = srv.bodies("POST", r"^/v1/completions$")
        assert len(srv.bodies("GET", r"^/v1/models$")) == 1
    assert len(bodies) == 8  # each prompt: one 429, then the answer
    for body in bodies:
        assert body["model"] == MODEL_ID
        assert body["max_tokens"] == 77 and body["temperature"] == 0
    _assert_complete(pred, gold)
    rows = _rows(pred)
    assert all("tokens_estimated" not in r for r in rows)
    assert [r["completion_tokens"] for r in rows] == [
        len(g["completion"].split()) for g in _gold_rows(gold)
    ]


def test_openai_model_given_skips_listing(real_data: Path, tmp_path: Path) -> None:
    gold = _gold(real_data, tmp_path, 1)
    with FaultServer(gold_answers(gold)) as srv:
        predictor = _address(srv.openai_url + "/", model="my-router")
        ev.generate_predictions(
            gold, predictor=predictor, cache_path=tmp_path / "c.jsonl", progress=False
        )
        assert srv.bodies("GET", r"/models") == []
        assert srv.bodies("POST", r"/completions")[0]["model"] == "my-router"


def test_torn_cache_tail_and_foreign_cache(real_data: Path, tmp_path: Path) -> None:
    gold = _gold(real_data, tmp_path, 5)
    prompts = [r["prompt"] for r in _gold_rows(gold)]
    cache = tmp_path / "c.jsonl"
    with FaultServer(gold_answers(gold)) as srv:
        predictor = OnlinePredictor(PredictClient(srv.predict_url))
        ev.generate_predictions(
            gold, predictor=predictor, cache_path=cache, limit=2, progress=False
        )
        # A run killed mid-write leaves half a line.
        with open(cache, "a", encoding="utf-8") as handle:
            handle.write('{"index": 2, "text": "half a li')
        pred = ev.generate_predictions(gold, predictor=predictor, cache_path=cache, progress=False)
        assert [srv.attempts[p] for p in prompts] == [1, 1, 1, 1, 1]
        # The same cache answered by another model is refused, not mixed in.
        with pytest.raises(InputError, match="delete the cache or write the report elsewhere"):
            ev.generate_predictions(
                gold,
                predictor=OnlinePredictor(PredictClient(srv.predict_url, name="other-model")),
                cache_path=cache,
                progress=False,
            )
    _assert_complete(pred, gold)
    assert sorted(r["index"] for r in _rows(cache)) == [0, 1, 2, 3, 4]


def test_kill_and_resume_loses_and_repeats_nothing(real_data: Path, tmp_path: Path) -> None:
    """`routerlib evaluate --endpoint` killed (SIGKILL) mid-run, then run again: every row once,
    and no cached row asked twice."""
    from routerlib.cli import main

    n = 40
    gold = _gold(real_data, tmp_path, n)
    prompts = [r["prompt"] for r in _gold_rows(gold)]
    out = tmp_path / "eval" / "report.json"
    cache = ev.artifact_paths(out)["cache"]
    with FaultServer(gold_answers(gold), delay_s=0.05) as srv:
        argv = [
            "evaluate",
            "--gold",
            str(gold),
            "--endpoint",
            srv.predict_url,
            "--out",
            str(out),
            "--concurrency",
            "2",
            "--no-progress",
        ]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        child = subprocess.Popen([sys.executable, "-m", "routerlib", *argv], env=env)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if cache.exists() and cache.read_text(encoding="utf-8").count("\n") >= 8:
                    break
                if child.poll() is not None:
                    pytest.fail(f"generation ended before it was killed (exit {child.returncode})")
                time.sleep(0.01)
            child.send_signal(signal.SIGKILL)
        finally:
            child.wait(timeout=10)
        assert child.returncode == -signal.SIGKILL
        assert not out.exists()
        before = {r["index"] for r in _rows(cache)}
        assert 8 <= len(before) < n
        asked_before = sum(srv.attempts.values())

        assert main(argv) == 0
        for i in before:  # cached rows were not asked again
            assert srv.attempts[prompts[i]] == 1, i
        # Only the rows not cached were asked (those in flight at the kill: a second time).
        assert sum(srv.attempts.values()) - asked_before == n - len(before)
        assert sum(srv.attempts.values()) - n <= 2
    _assert_complete(ev.artifact_paths(out)["predictions"], gold)
    counts = Counter(r["index"] for r in _rows(cache))
    assert sorted(counts) == list(range(n)) and set(counts.values()) == {1}
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["metrics"]["overall"]["samples"] == n
    assert report["strict"]["overall"]["route_plan_exact"] == 1.0


@pytest.mark.parametrize(
    ("target", "kind"),
    [
        ("http://127.0.0.1:8000/v1", OpenAIClient),
        ("http://127.0.0.1:8000/v1/completions", OpenAIClient),
        ("http://h:1/v1/projects/p/locations/l/endpoints/7:predict", PredictClient),
        ("http://h:1/v1/projects/p/locations/l/endpoints/7", PredictClient),
        ("projects/p/locations/us-central1/endpoints/123", VertexEndpointClient),
    ],
)
def test_endpoint_kinds(target: str, kind: type) -> None:
    predictor = _address(target)
    assert isinstance(predictor, OnlinePredictor) and isinstance(predictor.transport, kind)


def test_endpoint_numeric_id_and_bad_values() -> None:
    client = _address("123", project="p", location="us-central1").transport
    assert isinstance(client, VertexEndpointClient)
    assert client.endpoint == "projects/p/locations/us-central1/endpoints/123"
    assert _address("123").transport.endpoint == "123"  # serving.vertex resolves it (registry)
    with pytest.raises(InputError, match="cannot tell the protocol"):
        _address("http://127.0.0.1:8000/generate")
    with pytest.raises(InputError, match="expected an http"):
        _address("my-endpoint")


def test_vertex_client_is_no_predict_client() -> None:
    """The Vertex transport shares the predict JSON with PredictClient through a base both set
    up, not by inheriting a PredictClient whose __init__ it never ran."""
    assert not issubclass(VertexEndpointClient, PredictClient)
    client = VertexEndpointClient("projects/p/locations/l/endpoints/1", extra={"seed": 1})
    assert client.instance("hi", 4) == PredictClient(
        "http://h/x:predict", extra={"seed": 1}
    ).instance("hi", 4)
    assert (client.schema, client.label) == (None, "projects/p/locations/l/endpoints/1")
    client.close()


@pytest.mark.parametrize("answer", [["a bare list"], {"outputs": ["x"]}, {"predictions": []}])
def test_an_answer_without_predictions_is_refused(answer: object) -> None:
    """Only ``{"predictions": [...]}`` is a predict answer (vLLM and Vertex wrap the list)."""
    with RecordingServer() as server:
        server.route("POST", r"/v1/x:predict")(lambda request, match: (200, answer))
        client = PredictClient(f"{server.url}/v1/x:predict")
        with pytest.raises(RemoteError, match="answer has no predictions"):
            client.complete("hi", 4)
        client.close()


def test_bad_gold_lines_name_file_and_line(tmp_path: Path) -> None:
    gold = tmp_path / "g.jsonl"
    gold.write_text('{"prompt": "a"}\n\n{"completion": "x"}\n', encoding="utf-8")
    with pytest.raises(InputError) as bad:
        ev.read_gold_prompts(gold)
    assert any("g.jsonl:3: prompt: missing" in p for p in bad.value.problems)
    gold.write_text('{"prompt": "a"}\nnot json\n', encoding="utf-8")
    with pytest.raises(InputError) as bad:
        ev.read_gold_prompts(gold)
    assert any("g.jsonl:2: not valid JSON" in p for p in bad.value.problems)
    with pytest.raises(InputError, match="gold file not found"):
        ev.read_gold_prompts(tmp_path / "missing.jsonl")


def test_evaluate_through_endpoint_scores_perfect(real_data: Path, tmp_path: Path) -> None:
    gold = _gold(real_data, tmp_path, 20)
    with FaultServer(gold_answers(gold), wrap=WRAPPERS["fenced"]) as srv:
        with factory.opened(*factory.kind_of(srv.predict_url)) as predictor:
            report = ev.evaluate(
                predictor, gold, out=tmp_path / "eval" / "report.json", progress=False
            )
    overall = report["metrics"]["overall"]
    assert overall["samples"] == 20
    for name in (
        "json_valid",
        "route_plan_exact",
        "route_tool_precision",
        "route_tool_recall",
        "metrics_keys_match",
        "todo_covers_all_tools",
        "length_ratio",
    ):
        assert overall[name] == 1.0, name
    on_disk = json.loads((tmp_path / "eval" / "report.json").read_text(encoding="utf-8"))
    assert on_disk["generation"] == report["generation"]
    assert report["generation"]["extraction"] == {"fenced": 20}
    assert report["generation"]["source"] == cache_name(srv.predict_url)
    assert (tmp_path / "eval" / "report.predictions.jsonl").exists()
    assert (tmp_path / "eval" / "report.cache.jsonl").exists()


@pytest.mark.wire
def test_vertex_endpoint_through_aiplatform(real_data: Path, tmp_path: Path) -> None:
    """The real aiplatform SDK (REST) against the stand-in: instances on the wire, a 503 retried."""
    gold = _gold(real_data, tmp_path, 4)
    name = "projects/p/locations/us-central1/endpoints/77"
    with FaultServer(gold_answers(gold), plan=lambda p, a: "503" if a == 0 else None) as srv:
        predictor = _address(name, api_endpoint=srv.url, timeout=10, concurrency=2, backoff_s=0.01)
        assert isinstance(predictor.transport, VertexEndpointClient)
        pred = ev.generate_predictions(
            gold,
            predictor=predictor,
            cache_path=tmp_path / "c.jsonl",
            max_tokens=64,
            progress=False,
        )
        bodies = srv.bodies("POST", r"/v1/projects/p/locations/us-central1/endpoints/77:predict$")
    assert len(bodies) == 8  # each prompt: one 503, then the answer
    for body in bodies:
        (instance,) = body["instances"]
        assert {k: v for k, v in instance.items() if k != "prompt"} == {
            "max_tokens": 64,
            "temperature": 0,
            "raw_response": True,
        }
    _assert_complete(pred, gold)


def test_resume_through_a_restarted_local_server(real_data: Path, tmp_path: Path) -> None:
    """A local server restarted on another free port is the same model: the cache carries over."""
    gold = _gold(real_data, tmp_path, 6)
    prompts = [r["prompt"] for r in _gold_rows(gold)]
    cache = tmp_path / "c.jsonl"
    with FaultServer(gold_answers(gold)) as first:
        ev.generate_predictions(
            gold, predictor=_address(first.predict_url), cache_path=cache, limit=4, progress=False
        )
    with FaultServer(gold_answers(gold)) as second:
        assert second.url != first.url
        pred = ev.generate_predictions(
            gold, predictor=_address(second.predict_url), cache_path=cache, progress=False
        )
        assert sorted(second.attempts) == sorted(prompts[4:])
    _assert_complete(pred, gold)


def test_evaluate_local_checkpoint(real_data: Path, tmp_path: Path) -> None:
    """--checkpoint serves a real (tiny, random) checkpoint in-process and scores what it says."""
    from tests.support.tiny_serving_model import make_checkpoint

    ckpt = make_checkpoint(tmp_path / "ckpt")
    gold = _gold(real_data, tmp_path, 3)
    out = tmp_path / "eval" / "report.json"
    with factory.opened("local-server", str(ckpt)) as predictor:
        report = ev.evaluate(predictor, gold, out=out, max_tokens=8, progress=False)
    assert report["config"]["total_samples"] == 3
    preds = _rows(tmp_path / "eval" / "report.predictions.jsonl")
    assert [p["index"] for p in preds] == [0, 1, 2]
    assert all(isinstance(p["raw"], str) and p["tokens_estimated"] for p in preds)
    cache = _rows(tmp_path / "eval" / "report.cache.jsonl")
    assert {c["target"] for c in cache} == {f"checkpoint:{ckpt.resolve()}"}


class _Refusing:
    """A client of routerlib's own protocol whose endpoint name cannot be resolved."""

    name = "refusing"

    def __init__(self) -> None:
        self.calls = 0

    def complete(self, prompt: str, max_tokens: int, schema: object = None) -> Completion:
        self.calls += 1
        raise InputError("endpoint 42: give the full endpoint resource name or --project")

    def close(self) -> None:
        pass


def test_input_error_from_a_client_stays_an_input_error(real_data: Path, tmp_path: Path) -> None:
    gold = _gold(real_data, tmp_path, 3)
    client = _Refusing()
    with pytest.raises(InputError, match="--project"):
        ev.generate_predictions(
            gold,
            predictor=OnlinePredictor(client, concurrency=1),
            cache_path=tmp_path / "c.jsonl",
            progress=False,
        )
    assert client.calls == 1


def test_cache_names_hold_no_secrets_and_no_loopback_port() -> None:
    assert (
        cache_name("https://user:secret@h.example:8000/v1?key=abc") == "https://h.example:8000/v1"
    )
    assert cache_name("http://127.0.0.1:4567/v1/e:predict") == "http://127.0.0.1:*/v1/e:predict"


def test_a_second_writer_is_refused(real_data: Path, tmp_path: Path) -> None:
    import fcntl

    gold = _gold(real_data, tmp_path, 2)
    cache = tmp_path / "c.jsonl"
    with open(cache, "a") as other:
        fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(InputError, match="another run is writing this cache"):
            ev.generate_predictions(
                gold,
                predictor=_address("http://127.0.0.1:9/v1"),
                cache_path=cache,
                progress=False,
            )


def test_compare_to_of_another_length_is_refused_before_any_prediction(
    real_data: Path, tmp_path: Path
) -> None:
    gold = _gold(real_data, tmp_path, 3)
    previous = tmp_path / "previous.jsonl"
    previous.write_text('{"completion": "{}"}\n' * 2, encoding="utf-8")

    class Refuses:
        """A predictor that fails the test if evaluate asks it anything."""

        name, kind = "refuses", "test"

        def predict(self, *args: object, **kwargs: object) -> list[Completion]:
            raise AssertionError("predicted before checking --compare-to")

        def describe(self) -> dict[str, str]:
            return {"kind": self.kind}

        def close(self) -> None:
            pass

    with pytest.raises(InputError, match=r"has 3 rows but --compare-to .*previous.jsonl has 2"):
        ev.evaluate(Refuses(), gold, out=tmp_path / "r.json", compare_to=previous)  # type: ignore[arg-type]
    assert not (tmp_path / "r.json").exists()
