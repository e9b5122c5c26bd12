"""Prediction-line parsing (strict, as the original evaluator) and JSON extraction from raw text."""

from __future__ import annotations

import json

import pytest

from routerlib.extract import THINK_NOTE, extract_json_object, read_prediction, split_thinking
from routerlib.schema import PROMPT_TEMPLATE

OBJ = {
    "route_plan": ['/general-search(query="a {b} c", mode=web)', "/math(x)"],
    "route_rationale": "uses } and { inside strings",
    "metrics": {"primary": ["p"], "secondary": []},
}
TEXT = json.dumps(OBJ)


@pytest.mark.parametrize(
    "line",
    [{"completion": TEXT}, {"completion": OBJ}, OBJ, TEXT],
    ids=["completion-string", "completion-dict", "object", "json-string"],
)
def test_read_prediction_accepts_the_four_shapes(line: object) -> None:
    assert read_prediction(line)[0] == OBJ
    assert read_prediction(line)[1] == ""


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ({"completion": TEXT[:40]}, "not valid JSON"),
        ({"completion": "[1, 2]"}, "not an object"),
        ({"completion": None}, "completion is null"),
        ({"completion": 3}, "completion is a number"),
        ("plain words", "not valid JSON"),
        ('"a string"', "not an object"),
        ([OBJ], "prediction is a list"),
        (7, "prediction is a number"),
        (None, "prediction is null"),
    ],
)
def test_read_prediction_invalid(line: object, reason: str) -> None:
    assert read_prediction(line)[0] is None
    assert reason in read_prediction(line)[1]


def test_any_object_without_completion_is_valid() -> None:
    # As the original: a dict without "completion" is the completion object itself.
    assert read_prediction({"foo": 1})[0] == {"foo": 1}


def test_extract_whole_text() -> None:
    assert extract_json_object("  " + TEXT + "\n") == (OBJ, "whole")


def test_extract_after_output_marker_with_echoed_prompt() -> None:
    # Model Garden vLLM without raw_response: "Prompt:\n<prompt>\nOutput:\n<text>". The query
    # itself holds braces that are not JSON.
    prompt = PROMPT_TEMPLATE + 'Solve f(x) = {x | x > 0} and report {"k": 1}\n'
    raw = f"Prompt:\n{prompt}\nOutput:\n{TEXT}"
    assert extract_json_object(raw) == (OBJ, "after Output:")


def test_extract_fenced_with_chatter() -> None:
    raw = f'Sure! Here is the plan:\n```json\n{TEXT}\n```\nLet me know {{"if": "more"}}.'
    assert extract_json_object(raw) == (OBJ, "fenced")


def test_extract_scan_prefers_route_plan_over_other_objects() -> None:
    raw = f'Note {{"a": 1}} then {TEXT} and finally {{"b": {{"c": 2}}}} thanks'
    assert extract_json_object(raw) == (OBJ, "scan")


def test_extract_trailing_words_and_echoed_prompt_without_marker() -> None:
    raw = PROMPT_TEMPLATE + "query here\n" + TEXT + " I hope this helps."
    assert extract_json_object(raw) == (OBJ, "scan")


def test_extract_object_without_route_plan_is_still_returned() -> None:
    assert extract_json_object('answer: {"x": 1} done') == ({"x": 1}, "scan, no route_plan")


def test_extract_json_string_holding_object() -> None:
    assert extract_json_object(json.dumps(TEXT)) == (OBJ, "whole (JSON string)")


@pytest.mark.parametrize(
    ("raw", "note"),
    [
        ("", "empty text"),
        ("no json here", "no JSON object in text"),
        (TEXT[: len(TEXT) // 2], "no complete JSON object"),  # cut off by max_tokens
        ("[1, 2, 3]", "no JSON object in text"),
    ],
)
def test_extract_failures(raw: str, note: str) -> None:
    obj, got = extract_json_object(raw)
    assert obj is None and note in got


def test_extract_prefers_fuller_completion() -> None:
    small = {"route_plan": ["/math(a)"]}
    raw = json.dumps(small) + "\n" + TEXT
    assert extract_json_object(raw)[0] == OBJ  # more contract keys wins


def test_a_leading_think_block_is_dropped_and_kept_apart() -> None:
    thinking = 'The user wants math. Maybe {"route_plan": ["/code(x)"]}? No, math first.'
    raw = f"<think>\n{thinking}\n</think>\n\n{TEXT}"
    obj, note = extract_json_object(raw)
    assert obj == OBJ  # not the object inside the reasoning
    assert note == "whole" + THINK_NOTE
    assert split_thinking(raw) == (thinking, f"\n\n{TEXT}")


def test_an_unclosed_think_block_is_all_thinking() -> None:
    obj, note = extract_json_object('<think>still {"route_plan": ["/math(a)"]} thinking')
    assert obj is None and note == "empty text" + THINK_NOTE
    assert split_thinking("no think here") == (None, "no think here")


def test_the_prediction_record_carries_the_thinking() -> None:
    from routerlib.evaluate import prediction_record

    rec = prediction_record(0, {"text": f"<think>hmm</think>{TEXT}", "latency_s": 0.1})
    assert json.loads(rec["completion"]) == OBJ
    assert rec["thinking"] == "hmm" and rec["extraction"].endswith(THINK_NOTE)
    assert "thinking" not in prediction_record(1, {"text": TEXT})
