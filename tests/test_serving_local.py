"""The local predictor and HTTP server: greedy batching, EOS per sequence, the predict JSON,
request batching (counted, not timed), bad requests, shutdown."""

from __future__ import annotations

import json
import re
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from routerlib.errors import InputError
from routerlib.serving.local import LocalPredictor, LocalServer
from routerlib.serving.wire import Instance, parse_predict_body
from tests.support.tiny_serving_model import load_plain, tiny_checkpoint_fixture

PROMPTS = [
    "Route this request: plan the steps.",
    "x",
    "The quick brown fox jumps over the lazy dog and keeps on running far away",
    '{"route_plan": []}',
]


tiny_checkpoint = pytest.fixture(scope="session")(tiny_checkpoint_fixture)


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint: Path) -> Path:
    return tiny_checkpoint


@pytest.fixture(scope="module")
def predictor(checkpoint: Path) -> LocalPredictor:
    return LocalPredictor(checkpoint, loader=load_plain)


def post(url: str, body: Any) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def greedy_ids(predictor: LocalPredictor, prompt: str, n: int) -> list[int]:
    """Reference: the model's own greedy continuation of one prompt, no padding, no EOS stop."""
    import torch

    enc = predictor.tokenizer([prompt], return_tensors="pt")
    with torch.inference_mode():
        out = predictor.model.generate(
            **enc,
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=False,
            pad_token_id=predictor.tokenizer.pad_token_id,
        )
    return out[0, enc["input_ids"].shape[1] :].tolist()


# ---------------------------------------------------------------- predictor


def test_batched_greedy_equals_one_by_one(predictor: LocalPredictor) -> None:
    batched = predictor.generate(PROMPTS, max_tokens=12)
    single = [predictor.generate([p], max_tokens=12)[0] for p in PROMPTS]
    assert [r.text for r in batched] == [r.text for r in single]
    assert [r.completion_tokens for r in batched] == [r.completion_tokens for r in single]
    assert [r.prompt_tokens for r in batched] == [
        len(predictor.tokenizer(p)["input_ids"]) for p in PROMPTS
    ]
    assert all(r.text for r in batched)


def test_greedy_text_is_the_models_argmax_continuation(predictor: LocalPredictor) -> None:
    ids = greedy_ids(predictor, PROMPTS[0], 8)
    result = predictor.generate([PROMPTS[0]], max_tokens=8)[0]
    if not set(ids) & set(predictor.eos_token_ids):
        assert result.text == predictor.tokenizer.decode(ids, skip_special_tokens=True)
        assert result.finish_reason == "length"


def test_each_sequence_stops_at_its_own_eos(checkpoint: Path) -> None:
    predictor = LocalPredictor(checkpoint, loader=load_plain)
    a, b = PROMPTS[0], PROMPTS[2]
    ids_a, ids_b = greedy_ids(predictor, a, 16), greedy_ids(predictor, b, 16)
    # Declare a token of a's continuation (absent from b's) to be the EOS.
    stop_at = next(i for i, t in enumerate(ids_a) if t not in ids_b and t not in ids_a[:i])
    predictor.eos_token_ids = [ids_a[stop_at]]
    got_a, got_b = predictor.generate([a, b], max_tokens=16)
    assert got_a.finish_reason == "stop"
    assert got_a.completion_tokens == stop_at + 1  # EOS counts, as vLLM counts it
    assert got_a.text == predictor.tokenizer.decode(ids_a[:stop_at], skip_special_tokens=True)
    assert got_b.finish_reason == "length"
    assert got_b.completion_tokens == 16
    assert got_b.text == predictor.tokenizer.decode(ids_b, skip_special_tokens=True)


def test_per_prompt_limits(predictor: LocalPredictor) -> None:
    mixed = predictor.generate(PROMPTS[:2], max_tokens=[3, 9])
    assert [r.completion_tokens for r in mixed] == [3, 9]
    assert mixed[0].text == predictor.generate([PROMPTS[0]], 3)[0].text
    assert mixed[1].text == predictor.generate([PROMPTS[1]], 9)[0].text


def test_batches_larger_than_max_batch(checkpoint: Path) -> None:
    small = LocalPredictor(checkpoint, loader=load_plain, max_batch=3)
    got = small.generate(PROMPTS * 2, max_tokens=5)
    assert len(got) == 8
    assert [r.text for r in got[:4]] == [r.text for r in got[4:]]


def test_sampling_at_positive_temperature(predictor: LocalPredictor) -> None:
    got = predictor.generate(PROMPTS, max_tokens=6, temperature=1.5)
    assert all(1 <= r.completion_tokens <= 6 for r in got)


@pytest.mark.parametrize(
    ("prompts", "max_tokens", "temperature", "message"),
    [
        (["a"], 0, 0.0, "max_tokens[0]"),
        (["a", "b"], [1], 0.0, "2 prompts"),
        ([3], 4, 0.0, "prompts[0]"),
        (["a"], 4, -1.0, "temperature"),
    ],
)
def test_bad_generate_arguments(
    predictor: LocalPredictor, prompts: Any, max_tokens: Any, temperature: float, message: str
) -> None:
    with pytest.raises(InputError, match=re.escape(message)):
        predictor.generate(prompts, max_tokens, temperature)


def test_missing_checkpoint_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        LocalPredictor(tmp_path / "nope", loader=load_plain)


def test_default_loader_reads_a_plain_hugging_face_folder(
    checkpoint: Path, predictor: LocalPredictor
) -> None:
    default = LocalPredictor(checkpoint)  # routerlib.tuning.model_io.load_for_inference
    assert [r.text for r in default.generate(PROMPTS[:2], 6)] == [
        r.text for r in predictor.generate(PROMPTS[:2], 6)
    ]


# ---------------------------------------------------------------- server


def test_predict_json_shape_and_raw_response(predictor: LocalPredictor) -> None:
    expected = predictor.generate(PROMPTS[:2], max_tokens=7)
    with LocalServer(predictor=predictor) as server:
        assert server.endpoint_url.endswith(
            "/v1/projects/local/locations/local/endpoints/local:predict"
        )
        status, body = post(
            server.endpoint_url,
            {
                "instances": [
                    {"prompt": PROMPTS[0], "max_tokens": 7, "temperature": 0, "raw_response": True},
                    {"prompt": PROMPTS[1], "max_tokens": 7, "temperature": 0},
                    {
                        "prompt": PROMPTS[0],
                        "max_tokens": 7.0,
                        "temperature": 0.0,
                        "raw_response": False,
                    },
                ]
            },
        )
    assert status == 200
    assert body["deployedModelId"] == "local"
    assert body["predictions"] == [
        expected[0].text,
        f"Prompt:\n{PROMPTS[1]}\nOutput:\n{expected[1].text}",
        f"Prompt:\n{PROMPTS[0]}\nOutput:\n{expected[0].text}",
    ]


def test_any_project_location_and_id_and_health(predictor: LocalPredictor) -> None:
    with LocalServer(predictor=predictor) as server:
        status, body = post(
            server.url + "/v1/projects/p-1/locations/europe-west4/endpoints/987:predict",
            {"instances": [{"prompt": "x", "max_tokens": 2, "raw_response": True}]},
        )
        assert status == 200 and len(body["predictions"]) == 1
        with urllib.request.urlopen(server.url + "/health", timeout=10) as response:
            assert json.loads(response.read())["status"] == "ok"
        status, body = post(server.url + "/v1/elsewhere", {"instances": []})
        assert status == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "body"),
        ([1, 2], "body"),
        ({"instances": []}, "instances"),
        ({"instances": "x"}, "instances"),
        ({"instances": ["x"]}, "instances[0]"),
        ({"instances": [{"max_tokens": 3}]}, "instances[0].prompt"),
        (
            {"instances": [{"prompt": "a"}, {"prompt": "b", "max_tokens": -1}]},
            "instances[1].max_tokens",
        ),
        ({"instances": [{"prompt": "a", "max_tokens": 2.5}]}, "instances[0].max_tokens"),
        ({"instances": [{"prompt": "a", "temperature": "hot"}]}, "instances[0].temperature"),
        ({"instances": [{"prompt": "a", "raw_response": "yes"}]}, "instances[0].raw_response"),
    ],
)
def test_bad_requests_get_400(predictor: LocalPredictor, body: Any, field: str) -> None:
    with LocalServer(predictor=predictor) as server:
        status, answer = post(server.endpoint_url, body)
        assert status == 400
        assert answer["error"]["status"] == "INVALID_ARGUMENT"
        assert answer["error"]["message"].startswith(field + ":")
        assert server.stats.batches == 0


def test_parse_defaults() -> None:
    (inst,) = parse_predict_body(b'{"instances": [{"prompt": "p"}]}')
    assert (inst.max_tokens, inst.temperature, inst.raw_response) == (256, 0.0, False)


def _concurrent(server: LocalServer, prompts: list[str], max_tokens: int) -> list[Any]:
    answers: list[Any] = [None] * len(prompts)

    def send(i: int) -> None:
        answers[i] = post(
            server.endpoint_url,
            {"instances": [{"prompt": prompts[i], "max_tokens": max_tokens, "raw_response": True}]},
        )

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(prompts))]
    with server.hold():
        for thread in threads:
            thread.start()
        assert server.wait_queued(len(prompts))
    for thread in threads:
        thread.join(timeout=60)
    return answers


def test_concurrent_requests_run_as_one_batch(predictor: LocalPredictor) -> None:
    prompts = PROMPTS + ["another prompt", "and one more"]
    expected = [r.text for r in predictor.generate(prompts, max_tokens=6)]
    seen: list[int] = []
    with LocalServer(predictor=predictor, on_batch=seen.append) as server:
        answers = _concurrent(server, prompts, 6)
        assert server.stats.batches == 1
        assert server.stats.batch_sizes == [6]
        assert server.stats.requests == 6
    assert seen == [6]
    assert [a[0] for a in answers] == [200] * 6
    assert [a[1]["predictions"][0] for a in answers] == expected


def test_requests_arriving_one_after_another_share_a_batch(predictor: LocalPredictor) -> None:
    """The batch window slides: requests each within a window of the one before stay one batch
    although the last comes well after the first window closed (a busy machine spreads the
    requests an evaluation sends together); a gap longer than the window starts a new batch."""
    import time

    with LocalServer(predictor=predictor, batch_window=0.4) as server:
        threads = []
        for i, gap in enumerate([0.0, 0.15, 0.15, 0.15, 0.15, 1.5]):
            time.sleep(gap)
            thread = threading.Thread(
                target=server.complete, args=([Instance(PROMPTS[i % len(PROMPTS)], 3)],)
            )
            thread.start()
            threads.append(thread)
        for thread in threads:
            thread.join(timeout=60)
        assert server.stats.batch_sizes == [5, 1]


def test_a_sliding_batch_closes_at_its_cap(predictor: LocalPredictor) -> None:
    """Requests that never stop arriving within a window of each other do not hold a batch
    open forever: it closes MAX_WINDOWS windows after its first request."""
    import time

    from routerlib.serving import local

    window = 0.05
    with LocalServer(predictor=predictor, batch_window=window, max_batch=1000) as server:
        threads = []
        start = time.monotonic()
        while time.monotonic() - start < 1.5 * local.MAX_WINDOWS * window:
            thread = threading.Thread(target=server.complete, args=([Instance(PROMPTS[0], 2)],))
            thread.start()
            threads.append(thread)
            time.sleep(window / 4)
        for thread in threads:
            thread.join(timeout=60)
        sizes = server.stats.batch_sizes
        assert sum(sizes) == len(threads) and len(sizes) >= 2
        assert sizes[0] < len(threads)


def test_batches_are_capped_at_max_batch(predictor: LocalPredictor) -> None:
    prompts = PROMPTS + ["another prompt", "and one more"]
    with LocalServer(predictor=predictor, max_batch=4) as server:
        answers = _concurrent(server, prompts, 3)
        assert server.stats.batch_sizes == [4, 2]
    assert all(a[0] == 200 for a in answers)


def test_mixed_temperatures_in_one_batch(predictor: LocalPredictor) -> None:
    with LocalServer(predictor=predictor) as server:
        status, body = post(
            server.endpoint_url,
            {
                "instances": [
                    {"prompt": PROMPTS[0], "max_tokens": 4, "temperature": 0, "raw_response": True},
                    {
                        "prompt": PROMPTS[1],
                        "max_tokens": 4,
                        "temperature": 1.0,
                        "raw_response": True,
                    },
                ]
            },
        )
        assert server.stats.batches == 1
    assert status == 200
    assert body["predictions"][0] == predictor.generate([PROMPTS[0]], 4)[0].text


def test_close_answers_held_requests_and_frees_the_port(predictor: LocalPredictor) -> None:
    server = LocalServer(predictor=predictor).start()
    url = server.endpoint_url
    answer: list[Any] = []
    with server.hold():
        thread = threading.Thread(
            target=lambda: answer.append(
                post(url, {"instances": [{"prompt": "x", "max_tokens": 2}]})
            )
        )
        thread.start()
        assert server.wait_queued(1)
    thread.join(timeout=60)
    server.close()
    assert answer and answer[0][0] == 200
    assert not any(t.is_alive() for t in server._threads)
    with pytest.raises(OSError):
        urllib.request.urlopen(url.rsplit("/v1/", 1)[0] + "/health", timeout=5)


def test_predict_reports_token_usage_in_metadata(predictor: LocalPredictor) -> None:
    expected = predictor.generate([PROMPTS[0]], max_tokens=5)[0]
    with LocalServer(predictor=predictor) as server:
        _, body = post(
            server.endpoint_url,
            {"instances": [{"prompt": PROMPTS[0], "max_tokens": 5, "raw_response": True}]},
        )
    assert body["metadata"]["usage"] == [
        {
            "prompt_tokens": expected.prompt_tokens,
            "completion_tokens": expected.completion_tokens,
            "finish_reason": expected.finish_reason,
        }
    ]


def test_openai_compatible_completions(predictor: LocalPredictor) -> None:
    expected = predictor.generate(PROMPTS[:2], max_tokens=[6, 6])
    with LocalServer(predictor=predictor) as server:
        with urllib.request.urlopen(server.url + "/v1/models", timeout=10) as response:
            (model,) = json.loads(response.read())["data"]
        status, body = post(
            server.url + "/v1/completions",
            {"model": model["id"], "prompt": PROMPTS[:2], "max_tokens": 6, "temperature": 0},
        )
        assert status == 200
        assert [c["text"] for c in body["choices"]] == [r.text for r in expected]
        assert body["usage"]["completion_tokens"] == sum(r.completion_tokens for r in expected)
        status, one = post(
            server.url + "/v1/completions",
            {"prompt": PROMPTS[0], "max_tokens": 6, "temperature": 0},
        )
        assert one["choices"][0]["text"] == expected[0].text
        status, bad = post(server.url + "/v1/completions", {"prompt": 3})
        assert status == 400 and bad["error"]["message"].startswith("prompt:")
        status, bad = post(server.url + "/v1/completions", {"prompt": "a", "max_tokens": 0})
        assert status == 400 and bad["error"]["message"].startswith("max_tokens:")
