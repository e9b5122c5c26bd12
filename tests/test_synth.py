"""Synthetic Week-2 rows: deterministic, valid, realistic distributions."""

from __future__ import annotations

import hashlib
import json
import shutil
import statistics
from collections import Counter
from pathlib import Path

import pytest

from routerlib import schema, synth
from routerlib.cli import main
from routerlib.errors import InputError


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
    primary = synth.tables().phrases.primary_metric
    assert all(r["metrics"]["primary"] == [primary] for r in rows)
    top_tags = Counter(r["tags"][0] for r in rows)
    assert len(top_tags) == len(synth.tables().topics)
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


#: sha256 of the bytes the generator writes, pinned when its tables moved from code to
#: routerlib/data/synth_topics.yaml: the same (rows, seed) must keep giving the same file.
PINNED_DIGESTS = {
    # `routerlib synth` and the embedded default input: RunConfig's synth_rows / synth_seed
    (300, 7): "0199c438578fdd75887b5ef540256c6153942437bce1b952f534225cfa45c3cb",
    (2000, 12345): "179ec121f841db5650902b17fa322c0204bbdd45232300a0edf0bc69dcd8722f",
}


def test_default_rows_keep_their_digest(tmp_path: Path) -> None:
    assert (synth.DEFAULT_ROWS, synth.DEFAULT_SEED) == (300, 7)
    assert main(["synth", "--out", str(tmp_path / "default.jsonl")]) == 0
    digest = hashlib.sha256((tmp_path / "default.jsonl").read_bytes()).hexdigest()
    assert digest == PINNED_DIGESTS[(300, 7)]


def test_a_second_seed_keeps_its_digest(tmp_path: Path) -> None:
    path = synth.write_rows(tmp_path / "rows.jsonl", 2000, 12345)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == PINNED_DIGESTS[(2000, 12345)]


def test_tables_are_read_from_the_packaged_yaml() -> None:
    packaged = Path(synth.__file__).parent / "data"
    tables = synth.tables()
    assert synth.load_tables(packaged) == tables and len(tables.topics) == 26
    assert tables.phrases.primary_metric.startswith("Define at least one domain-specific")
    # the route weights are the counts of the original split, computed as before the move
    weights = dict(tables.route_templates)
    assert weights[("/general-search", "/math", "/code")] == 6674 * (1 - 116 / 6962)
    assert weights[("/math", "/code", "/general-search")] == 6674 * (116 / 6962) * 0.75
    assert tables.dict_value_share["guidance"] == 5 / 14


def _copy_tables(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    shutil.copytree(Path(synth.__file__).parent / "data", folder)
    return folder


def _edit(path: Path, old: str, new: str) -> int:
    """Replace ``old`` (once) in ``path``; return the 1-based line it was on."""
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new), encoding="utf-8")
    return text[: text.index(old)].count("\n") + 1


@pytest.mark.parametrize(
    ("file", "old", "new", "field", "message"),
    [
        (
            synth.PHRASES_FILE,
            "  - Work out {derivation} carefully.",
            "  - Work out {derivaton} carefully.",
            "math_asks.3",
            "unknown placeholder {derivaton} in 'Work out {derivaton} carefully.'",
        ),
        (synth.PHRASES_FILE, "  /math: derives {derivation}\n", "", "agent_roles", "missing /math"),
        (
            synth.TOPICS_FILE,
            "  metric_name: duality gap",
            "  metric: duality gap",
            "topics.1.metric",
            "unknown key",
        ),
        (
            synth.DISTRIBUTIONS_FILE,
            "  - {tools: [/math, /code], weight: 1}",
            "  - {tools: [/math, /cod], weight: 1}",
            "route_templates.6.tools.1",
            "'/cod' is not a tool",
        ),
        (
            synth.DISTRIBUTIONS_FILE,
            "  rag: 85",
            "  rags: 85",
            "search_modes.rags.[key]",
            "'rags' is not a search mode",
        ),
    ],
)
def test_a_broken_table_is_named_with_file_line_and_field(
    tmp_path: Path, file: str, old: str, new: str, field: str, message: str
) -> None:
    folder = _copy_tables(tmp_path)
    line = _edit(folder / file, old, new)
    with pytest.raises(InputError) as info:
        synth.load_tables(folder)
    assert str(info.value) == f"{folder / file}: invalid synthetic-data table"
    where = f"{folder / file}:{line if new else line - 1}: {field}: "
    problems = info.value.problems
    assert any(p.startswith(where) and message in p for p in problems), problems


def test_a_missing_or_unreadable_table_is_named(tmp_path: Path) -> None:
    folder = _copy_tables(tmp_path)
    (folder / synth.TOPICS_FILE).write_text("topics: [unclosed\n", encoding="utf-8")
    with pytest.raises(InputError, match=rf"{synth.TOPICS_FILE}: not valid YAML"):
        synth.load_tables(folder)
    (folder / synth.TOPICS_FILE).unlink()
    with pytest.raises(InputError, match=rf"{synth.TOPICS_FILE}: synthetic-data table not found"):
        synth.load_tables(folder)
