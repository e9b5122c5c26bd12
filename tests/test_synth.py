"""Synthetic Week-2 rows: deterministic, valid, realistic distributions."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path

import pytest

from routerlib import schema, synth
from routerlib.cli import main


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return list(synth.generate_rows(5000, 7))


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    a = synth.write_rows(tmp_path / "a.jsonl", 300, 5)
    assert main(["synth", "--rows", "300", "--seed", "5", "--out", str(tmp_path / "b.jsonl")]) == 0
    assert a.read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    c = synth.write_rows(tmp_path / "c.jsonl", 300, 6)
    assert c.read_bytes() != a.read_bytes()
    # A prefix of a longer run is the shorter run.
    d = synth.write_rows(tmp_path / "d.jsonl", 350, 5)
    assert d.read_bytes().startswith(a.read_bytes())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("seed", [0, 1, 99, 123456])
def test_every_row_is_valid(seed: int) -> None:
    for row in synth.generate_rows(400, seed):
        assert schema.validate_row(row) == [], row["id"]
        assert set(row) == set(schema.ROW_FIELD_TYPES)  # the source-only fields are present
        assert row["task_summary"] == row["user_query"][:120]


def test_distributions(rows: list[dict]) -> None:
    n = len(rows)

    def share(counter: Counter, key) -> float:
        return counter[key] / n

    first = Counter(schema.step_tool(r["route_plan"][0]) for r in rows)
    assert share(first, "/general-search") == pytest.approx(6846 / 6962, abs=0.006)
    assert share(first, "/math") == pytest.approx(116 / 6962, abs=0.006)
    length = Counter(len(r["route_plan"]) for r in rows)
    assert share(length, 3) == pytest.approx(6674 / 6962, abs=0.01)
    assert share(length, 4) == pytest.approx(280 / 6962, abs=0.01)
    assert set(length) <= {2, 3, 4, 5} and length[2] + length[5] <= 15
    difficulty = Counter(r["difficulty"] for r in rows)
    assert share(difficulty, "advanced") == pytest.approx(0.658, abs=0.025)
    assert share(difficulty, "intermediate") == pytest.approx(0.225, abs=0.02)
    assert share(difficulty, "introductory") == pytest.approx(0.116, abs=0.015)
    shapes = Counter(", ".join(sorted(r["metrics"])) for r in rows)
    assert share(shapes, "primary, secondary") == pytest.approx(6271 / 6962, abs=0.02)
    assert share(
        shapes, "primary, primary_guidance, secondary, secondary_guidance"
    ) == pytest.approx(548 / 6962, abs=0.015)
    assert share(
        shapes, "primary, primary_computation, secondary, secondary_computation"
    ) == pytest.approx(72 / 6962, abs=0.006)
    rare = {
        "guidance, primary, secondary",
        "computation_guidance, primary, secondary",
        "diagnostic, primary, secondary",
    }
    assert all(shapes[s] > 0 for s in rare)
    assert all(r["metrics"]["primary"] == [synth.PRIMARY_METRIC] for r in rows)
    top_tags = Counter(r["tags"][0] for r in rows)
    assert len(top_tags) == len(synth.TOPICS)
    assert statistics.mean(len(r["tags"]) for r in rows) == pytest.approx(3.05, abs=0.1)


def test_queries_and_shapes_look_real(rows: list[dict], real_data: Path) -> None:
    assert len({r["user_query"] for r in rows}) == len(rows)  # no query repeats
    lengths = [len(schema.completion_text(r)) for r in rows]
    with open(real_data / "week2_rows_sample.jsonl", encoding="utf-8") as handle:
        real = [len(schema.completion_text(json.loads(line))) for line in handle]
    assert statistics.mean(lengths) == pytest.approx(statistics.mean(real), rel=0.08)
    assert 3000 < min(lengths) and max(lengths) < 7500
    for row in rows[:500]:
        tools = [schema.step_tool(step) for step in row["route_plan"]]
        assert row["handoff_plan"].startswith(" -> ".join(tools) + " -> router QA")
        assert row["todo_list"][-1].startswith("- [ ] router QA:")
        assert all(item.startswith("- [ ] /") for item in row["todo_list"][:-1])
        assert {t.split(":")[0][6:] for t in row["todo_list"][:-1]} >= set(tools)
        for step in row["route_plan"]:
            if step.startswith("/general-search("):
                assert (
                    step.startswith('/general-search(query="')
                    and step.rsplit("mode=", 1)[1][:-1] in schema.SEARCH_MODES
                )
        assert row["requires_browse"] == ("/general-search" in tools)
