"""The router contract: every real row validates, violations are named, prompts match the benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from routerlib import schema


def _rows(real_data: Path) -> list[dict]:
    lines = (real_data / "week2_rows_sample.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_every_real_row_is_valid(real_data: Path) -> None:
    rows = _rows(real_data)
    assert len(rows) == 291
    problems = [(row["id"], str(v)) for row in rows for v in schema.validate_row(row)]
    assert problems == []


def test_every_real_completion_is_valid(real_data: Path) -> None:
    with open(real_data / "deep_router_benchmark.jsonl", encoding="utf-8") as handle:
        for line in handle:
            completion = json.loads(json.loads(line)["completion"])
            assert list(completion) == list(schema.COMPLETION_KEYS)
            assert schema.validate_completion(completion) == []


def test_prompt_and_completion_reproduce_benchmark(real_data: Path) -> None:
    rows = {
        schema.build_prompt(r["user_query"]): schema.completion_text(r) for r in _rows(real_data)
    }
    with open(real_data / "deep_router_benchmark.jsonl", encoding="utf-8") as handle:
        bench = [json.loads(line) for line in handle]
    assert {b["prompt"]: b["completion"] for b in bench} == rows


def _valid_row() -> dict:
    return {
        "id": "r1",
        "user_query": "Derive and implement something.",
        "route_plan": [
            '/general-search(query="x", mode=web)',
            "/math(Derive it.)",
            "/code(Implement it, using Python)",
        ],
        "route_rationale": "why",
        "expected_artifacts": ["a"],
        "thinking_outline": ["1. t"],
        "handoff_plan": "/general-search -> /math -> /code -> router QA",
        "todo_list": ["- [ ] /math: x"],
        "difficulty": "advanced",
        "tags": ["t"],
        "acceptance_criteria": ["c"],
        "metrics": {"primary": ["p"], "secondary": ["s"]},
    }


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (lambda r: r.pop("user_query"), "user_query", "missing"),
        (lambda r: r.update(user_query=3), "user_query", "must be str, got number"),
        (lambda r: r.update(tags="x"), "tags", "must be list[str]"),
        (lambda r: r.update(tags=["x", 1]), "tags", "must be list[str]"),
        (lambda r: r.update(metrics=[]), "metrics", "must be dict"),
        (lambda r: r.update(route_plan=[]), "route_plan", "must not be empty"),
        (lambda r: r.update(route_plan="/math(x)"), "route_plan", "must be a list"),
        (lambda r: r["route_plan"].append("/search(x)"), "route_plan[3]", "unknown tool"),
        (lambda r: r["route_plan"].append(7), "route_plan[3]", "must be a string"),
        (
            lambda r: r["route_plan"].__setitem__(0, '/general-search(query="x", mode=deep)'),
            "route_plan[0]",
            "bad search mode 'deep'",
        ),
        (lambda r: r.update(difficulty="expert"), "difficulty", "unknown difficulty 'expert'"),
        (lambda r: r.update(quality_score="high"), "quality_score", "must be number"),
        (lambda r: r.update(requires_browse=1), "requires_browse", "must be bool"),
    ],
)
def test_violations_are_named(change, field: str, words: str) -> None:
    row = _valid_row()
    assert schema.validate_row(row) == []
    change(row)
    violations = schema.validate_row(row)
    assert [v.field for v in violations] == [field]
    assert words in violations[0].message


@pytest.mark.parametrize("value", [None, [], 3, "row"])
def test_non_object_row(value) -> None:
    violations = schema.validate_row(value)
    assert len(violations) == 1 and violations[0].field == "row"
    assert "must be a JSON object" in violations[0].message


def test_real_messy_steps_are_accepted() -> None:
    assert (
        schema.validate_route_step('/general-search(query="x", mode=both, includes cybersecurity)')
        is None
    )
    assert schema.validate_route_step("/general-search(tutorials on PINNs)") is None
