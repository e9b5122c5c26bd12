"""The previous router logic as prediction files: valid, aligned with gold, scored like a model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from routerlib import baselines, metrics
from routerlib.errors import InputError
from routerlib.schema import validate_completion

BENCH = "deep_router_benchmark.jsonl"


def _tools(plan: list[str]) -> list[str]:
    return [step.split("(", 1)[0].strip() for step in plan]


@pytest.mark.parametrize("kind", ["majority", "rules"])
def test_baseline_files_are_valid_and_aligned(real_data: Path, tmp_path: Path, kind: str) -> None:
    gold = real_data / BENCH
    out = baselines.write_baseline(gold, tmp_path / f"{kind}.jsonl", kind=kind)
    lines = out.read_text("utf-8").splitlines()
    gold_rows = [json.loads(x) for x in gold.read_text("utf-8").splitlines() if x.strip()]
    assert len(lines) == len(gold_rows) == 291
    for line, row in zip(lines, gold_rows, strict=True):
        record = json.loads(line)
        assert list(record) == ["completion"] and isinstance(record["completion"], str)
        completion = json.loads(record["completion"])
        assert validate_completion(completion) == []
        query = row["prompt"].split("User query:\n", 1)[1].strip()
        search = completion["route_plan"][_tools(completion["route_plan"]).index("/general-search")]
        assert "mode=both" in search
        assert any(word in search.lower() for word in query.lower().split()[:30] if len(word) > 3)


def test_majority_scores_tool_sequence_on_majority_rows(real_data: Path, tmp_path: Path) -> None:
    gold = real_data / BENCH
    pred = baselines.write_baseline(gold, tmp_path / "majority.jsonl", kind="majority")
    report = metrics.score_files(gold, pred, out_path=tmp_path / "report.json", bootstrap=0)
    samples = [json.loads(x) for x in (tmp_path / "samples.jsonl").read_text().splitlines()]
    gold_rows = [json.loads(x) for x in gold.read_text("utf-8").splitlines() if x.strip()]
    majority = [
        i
        for i, row in enumerate(gold_rows)
        if _tools(json.loads(row["completion"])["route_plan"])
        == ["/general-search", "/math", "/code"]
    ]
    assert len(majority) == 263  # deep_router_benchmark_stats.json
    assert all(samples[i]["strict"]["tool_sequence_exact"] is True for i in majority)
    others = [i for i in range(291) if i not in majority]
    assert not any(samples[i]["strict"]["tool_sequence_exact"] for i in others)
    assert report["extra"]["overall"]["tool_sequence_exact"] == 263 / 291
    overall = report["metrics"]["overall"]
    assert overall["json_valid"] == 1.0
    assert overall["route_tool_recall"] == 1.0  # every gold plan uses all three tools
    assert overall["todo_tool_alignment"] == 1.0
    assert overall["handoff_router_qa"] == 1.0
    assert report["strict"]["overall"]["schema_valid"] == 1.0


def test_rules_router_choices() -> None:
    assert baselines.rules_tools("Derive the update rule and implement it in Python.") == [
        "/math",
        "/code",
        "/general-search",
    ]
    assert baselines.rules_tools(
        "Survey recent papers, derive the bound, implement it, and verify the proof numerically."
    ) == ["/general-search", "/math", "/code", "/math"]
    assert baselines.rules_tools("Find recent literature on transformers.") == ["/general-search"]
    assert baselines.rules_tools("hello") == ["/general-search", "/math", "/code"]
    assert baselines.query_of("x\nUser query:\n  what?  \n") == "what?"


def test_baseline_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown baseline kind"):
        baselines.write_baseline(tmp_path / "g.jsonl", tmp_path / "o.jsonl", kind="oracle")
    with pytest.raises(InputError, match="not found"):
        baselines.write_baseline(tmp_path / "g.jsonl", tmp_path / "o.jsonl")
    gold = tmp_path / "g.jsonl"
    gold.write_text('{"completion": "{}"}\n', "utf-8")
    with pytest.raises(InputError) as info:
        baselines.write_baseline(gold, tmp_path / "o.jsonl")
    assert info.value.problems == [f"{gold}:1: prompt: missing or not a string"]
    assert not (tmp_path / "o.jsonl").exists()


#: The predictions on the real benchmark before the words and texts moved to
#: routerlib/data/baselines.yaml: the move changed no byte.
DIGESTS = {
    "majority": "bab38661558c6416a6b0ed68b1b1e6701173b82a0bd9debd7d3bb7262192fd16",
    "rules": "a65a5c8c25f25672515768c0a62f2749d04cea5e078ed8b1cbafff5be3267ed8",
}


@pytest.mark.parametrize("kind", sorted(DIGESTS))
def test_the_texts_are_packaged_data_and_the_predictions_unchanged(
    real_data: Path, tmp_path: Path, kind: str
) -> None:
    import hashlib

    out = baselines.write_baseline(real_data / BENCH, tmp_path / f"{kind}.jsonl", kind=kind)
    assert hashlib.sha256(out.read_bytes()).hexdigest() == DIGESTS[kind]


def test_a_broken_texts_file_names_file_line_and_field(tmp_path: Path) -> None:
    from routerlib.paths import packaged_file
    from routerlib.tables import read_yaml

    text = packaged_file(baselines.TEXTS_FILE).read_text(encoding="utf-8")
    broken = tmp_path / "baselines.yaml"
    broken.write_text(text.replace("  intro: [", "  intros: ["), encoding="utf-8")
    line = text.splitlines().index(next(x for x in text.splitlines() if x.startswith("  intro:")))
    with pytest.raises(InputError) as info:
        read_yaml(broken, baselines.Texts, "baseline texts")
    assert any(
        p.startswith(f"{broken}:{line + 1}: words.intros.[key]: ") for p in info.value.problems
    )
