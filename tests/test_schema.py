"""The router contract: every real row validates, violations are named, prompts match the benchmark."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

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


# ---------------------------------------------------------------- JSON Schema (issue 12)


def _real_completions(real_data: Path) -> list[dict]:
    with open(real_data / "deep_router_benchmark.jsonl", encoding="utf-8") as handle:
        return [json.loads(json.loads(line)["completion"]) for line in handle if line.strip()]


def _validator(generation: bool):
    import jsonschema

    document = schema.completion_json_schema(generation)
    jsonschema.Draft202012Validator.check_schema(document)
    return jsonschema.Draft202012Validator(document)


@pytest.mark.parametrize("generation", [False, True], ids=["validation", "generation"])
def test_every_real_completion_passes_the_json_schema(real_data: Path, generation: bool) -> None:
    validator = _validator(generation)
    rows = _real_completions(real_data)
    assert len(rows) == 291
    errors = [(i, e.message) for i, row in enumerate(rows) for e in validator.iter_errors(row)]
    assert errors == []


def test_real_search_steps_with_text_after_the_mode_are_covered(real_data: Path) -> None:
    steps = [s for row in _real_completions(real_data) for s in row["route_plan"]]
    trailing = [s for s in steps if re.search(r"mode=(web|rag|both)[^)]", s)]
    assert len(trailing) >= 10  # "..., mode=both, includes cybersecurity)" and the like
    generation = re.compile(schema.generation_step_pattern())
    assert all(re.search(schema.STEP_PATTERN, s) and generation.search(s) for s in trailing)


def _valid_completion() -> dict:
    return {key: _valid_row()[key] for key in schema.COMPLETION_KEYS}


BAD_STEPS = [
    "/browse(query=x)",  # unknown tool
    "math(no slash)",
    '/general-search(query="x", mode=webs)',  # unknown mode
    '/general-search(query="x", mode="gpt")',
    "/general-search(query=x, mode = )",
    '/general-search(query="x", mode=web, mode=rag_x)',
    "",
]


@pytest.mark.parametrize("step", BAD_STEPS)
def test_json_schema_rejects_a_bad_step_like_the_python_validator(step: str) -> None:
    obj = _valid_completion()
    obj["route_plan"] = [step]
    assert schema.validate_completion(obj)  # the contract says no
    for generation in (False, True):
        assert not _validator(generation).is_valid(obj), (generation, step)


GOOD_STEPS = [
    '/general-search(query="x", mode=web)',
    '/general-search(query="a", mode=both, includes cybersecurity)',
    "/general-search(Search for papers on X., mode=rag)",
    "/general-search(query=\"x\", mode='rag')",
    "/math(Derive it; mode of the posterior = argmax)",
    "/code(Implement it, using Python)",
]


@pytest.mark.parametrize("step", GOOD_STEPS)
def test_validation_schema_agrees_with_the_python_validator_on_good_steps(step: str) -> None:
    obj = _valid_completion()
    obj["route_plan"] = [step]
    assert schema.validate_completion(obj) == []
    assert _validator(False).is_valid(obj)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda o: o.pop("tags"), "tags"),
        (lambda o: o.update(difficulty="expert"), "difficulty"),
        (lambda o: o.update(route_plan=[]), "route_plan"),
        (lambda o: o.update(todo_list="- [ ] x"), "todo_list"),
        (lambda o: o.update(metrics=["p"]), "metrics"),
        (lambda o: o.update(expected_artifacts=[1, 2]), "expected_artifacts"),
    ],
)
def test_json_schema_rejects_hand_made_invalid_completions(change: Any, field: str) -> None:
    obj = _valid_completion()
    change(obj)
    assert any(v.field.startswith(field) for v in schema.validate_completion(obj))
    assert not _validator(False).is_valid(obj)
    assert not _validator(True).is_valid(obj)


def test_generation_schema_bounds_what_validation_allows() -> None:
    obj = _valid_completion()
    obj["route_rationale"] = "x" * (schema.GENERATION_BOUNDS["route_rationale"] + 1)
    obj["tags"] = ["t"] * (schema.GENERATION_BOUNDS["tags_items"] + 1)
    assert _validator(False).is_valid(obj)
    errors = {e.path[0] for e in _validator(True).iter_errors(obj)}
    assert errors == {"route_rationale", "tags"}
    extra = {**_valid_completion(), "note": "x"}
    assert _validator(False).is_valid(extra) and not _validator(True).is_valid(extra)


def test_schema_cli_writes_both_variants(tmp_path: Path) -> None:
    from routerlib.cli import main

    out = tmp_path / "schema.json"
    assert main(["schema", "--out", str(out)]) == 0
    written = json.loads(out.read_text(encoding="utf-8"))
    assert written == schema.completion_json_schema(False)
    assert list(written["properties"]) == list(schema.COMPLETION_KEYS)
    assert written["required"] == list(schema.COMPLETION_KEYS)
    assert written["properties"]["difficulty"]["enum"] == list(schema.DIFFICULTIES)
    assert main(["schema", "--generation", "--out", str(out)]) == 0
    assert json.loads(out.read_text(encoding="utf-8")) == schema.completion_json_schema(True)
