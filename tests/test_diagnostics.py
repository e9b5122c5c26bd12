"""Tool-level diagnostics against values worked out by hand (four samples, see each comment)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from routerlib import diagnostics, metrics

S, M, C = "/general-search", "/math", "/code"


def _completion(plan: list[str], **changes: object) -> dict:
    base = {
        "route_plan": plan,
        "route_rationale": "r",
        "expected_artifacts": ["a"],
        "thinking_outline": ["t"],
        "handoff_plan": "h",
        "todo_list": ["- /math"],
        "difficulty": "advanced",
        "tags": ["x"],
        "acceptance_criteria": ["c"],
        "metrics": {"primary": ["p"], "secondary": ["s"]},
    }
    base.update(changes)
    return base


GOLD = [
    _completion(['/general-search(query="a", mode=web)', "/math(x)", "/code(y)"]),
    _completion(["/math(x)", "/code(y)"]),
    _completion(['/general-search(query="b", mode=rag)', "/code(y)"]),
    _completion(["/math(x)"], difficulty="intermediate"),
]
PRED = [
    # same tools and order; the search mode differs (web -> both)
    _completion(['/general-search(query="a", mode=both)', "/math(x)", "/code(y)"]),
    # /math then /general-search: FN on /code, FP on search; difficulty breaks the schema
    _completion(["/math(x)", '/general-search(query="c", mode=web)'], difficulty="expert"),
    # right mode, but /code is missing
    _completion(['/general-search(query="b", mode=rag)']),
    None,  # invalid JSON: predicts no tool
]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("diag")
    gold = folder / "gold.jsonl"
    pred = folder / "pred.jsonl"
    gold.write_text(
        "".join(json.dumps({"prompt": "q", "completion": json.dumps(g)}) + "\n" for g in GOLD)
    )
    pred.write_text(
        "".join(
            json.dumps({"completion": json.dumps(p) if p else "not json {"}) + "\n" for p in PRED
        )
    )
    return metrics.score_files(gold, pred, bootstrap=0)


def test_per_tool_precision_recall_f1(report: dict) -> None:
    tools = report["diagnostics"]["overall"]["tools"]
    # search: gold in 0, 2; pred in 0, 1, 2 -> TP 2, FP 1, FN 0
    assert tools[S] == pytest.approx(
        {"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2, "tp": 2, "fp": 1, "fn": 0}
    )
    # math: gold in 0, 1, 3; pred in 0, 1 -> TP 2, FP 0, FN 1 (sample 3 is invalid)
    assert tools[M]["precision"] == 1.0
    assert tools[M]["recall"] == pytest.approx(2 / 3)
    assert tools[M]["f1"] == pytest.approx(0.8)
    # code: gold in 0, 1, 2; pred in 0 -> TP 1, FN 2
    assert tools[C] == pytest.approx(
        {"precision": 1.0, "recall": 1 / 3, "f1": 0.5, "support": 3, "tp": 1, "fp": 0, "fn": 2}
    )


def test_search_mode_accuracy_pairs_steps_in_order(report: dict) -> None:
    overall = report["diagnostics"]["overall"]
    # pairs: sample 0 (web vs both: miss), sample 2 (rag vs rag: hit); sample 1's gold has none
    assert overall["search_mode_pairs"] == 2
    assert overall["search_mode_accuracy"] == 0.5


def test_plan_edit_distance(report: dict) -> None:
    overall = report["diagnostics"]["overall"]
    # 0: identical -> 0; 1: [M, C] vs [M, S] -> 1 substitution; 2: [S, C] vs [S] -> 1 deletion;
    # 3: [M] vs [] (invalid) -> 1. Mean 3/4; normalised 0, 1/2, 1/2, 1 -> 2/4.
    assert overall["plan_edit_distance"] == 0.75
    assert overall["plan_edit_distance_norm"] == 0.5
    assert diagnostics.edit_distance([S, M, C], [M, C, S]) == 2
    assert diagnostics.edit_distance([], [S, M]) == 2


def test_first_tool_confusion(report: dict) -> None:
    confusion = report["diagnostics"]["overall"]["first_tool_confusion"]
    assert confusion == {S: {S: 2}, M: {M: 1, "(invalid)": 1}}
    table = diagnostics.confusion_table(report)
    assert table.loc[M, "(invalid)"] == 1 and table.loc[S, M] == 0


def test_schema_breaking_share_by_field(report: dict) -> None:
    breaking = report["diagnostics"]["overall"]["schema_breaking"]
    # three valid JSON answers; sample 1 breaks the difficulty enum
    assert breaking == {
        "valid_json": 3,
        "share": pytest.approx(1 / 3),
        "by_field": {"difficulty": pytest.approx(1 / 3)},
    }


def test_diagnostics_per_bucket(report: dict) -> None:
    by_bucket = report["diagnostics"]
    assert list(by_bucket)[0] == "overall"
    # math_first: samples 1 and 3
    math_first = by_bucket["math_first"]
    assert math_first["samples"] == 2
    assert math_first["first_tool_confusion"] == {M: {M: 1, "(invalid)": 1}}
    assert math_first["plan_edit_distance"] == 1.0
    assert math_first["search_mode_accuracy"] is None  # no gold search step to pair


def test_samples_carry_the_plan(tmp_path: Path) -> None:
    record = metrics.score([{"completion": json.dumps(GOLD[1])}], [PRED[1]])[0]
    assert record["plan"] == {
        "gold_tools": [M, C],
        "pred_tools": [M, S],
        "gold_modes": [],
        "pred_modes": ["web"],
    }
    assert "plan" in metrics.sample_line(record)
