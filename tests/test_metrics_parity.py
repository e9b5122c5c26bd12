"""Scoring parity with the team's earlier evaluator on real rows.

Expected values are worked out by hand from the definitions and the row contents (quoted in the
comments), never by calling routerlib's own scoring helpers.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from routerlib import metrics
from routerlib.errors import InputError

BENCH = "deep_router_benchmark.jsonl"
#: Rows used for the hand-made perturbations (benchmark line order, 0-based):
#: 0 advanced g-m-c; 42 advanced + has_computation; 12 math_first introductory;
#: 14 has_guidance introductory; 15 four_step advanced; 34 has_guidance introductory.
PICK = (0, 42, 12, 14, 15, 34)


def _rows(real_data: Path) -> list[dict[str, Any]]:
    with (real_data / BENCH).open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _write(path: Path, lines: list[Any]) -> Path:
    path.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), "utf-8")
    return path


def _dlen(obj: Any) -> int:
    """len(json.dumps(obj, sort_keys=True)): EVALUATOR's length, with default separators/ASCII."""
    return len(json.dumps(obj, sort_keys=True))


def _words(value: Any) -> int:
    """Whitespace words over string leaves (EVALUATOR's total_token_count), written for the test."""
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        return sum(_words(v) for v in value)
    if isinstance(value, dict):
        return sum(_words(v) for v in value.values())
    return 0


def _samples(report: dict[str, Any]) -> list[dict[str, Any]]:
    text = Path(report["samples_path"]).read_text("utf-8")
    return [json.loads(line) for line in text.splitlines()]


# --------------------------------------------------------------------------- perfect predictions


def _gold_todo_alignment(gold: dict[str, Any]) -> float:
    """EVALUATOR's todo alignment of the gold todo list against its own tools (independent)."""
    tools = [step.split("(", 1)[0].strip() for step in gold["route_plan"]]
    hits = 0
    for entry in gold["todo_list"]:
        found = re.search(r"/[a-zA-Z0-9_-]+", entry)
        tool = found.group(0) if found else ("router QA" if "router qa" in entry.lower() else None)
        if tool is not None and (tool in tools or tool.lower().startswith("router")):
            hits += 1
    return hits / len(gold["todo_list"])


@pytest.mark.parametrize("form", ["string", "dict", "object", "json_string"])
def test_perfect_predictions_score_one(real_data: Path, tmp_path: Path, form: str) -> None:
    rows = _rows(real_data)
    lines: list[Any] = []
    for row in rows:
        obj = json.loads(row["completion"])
        lines.append(
            {
                "string": {"completion": row["completion"]},
                "dict": {"completion": obj},
                "object": obj,
                "json_string": row["completion"],
            }[form]
        )
    pred = _write(tmp_path / "pred.jsonl", lines)
    report = metrics.score_files(real_data / BENCH, pred, bootstrap=50)
    overall = report["metrics"]["overall"]
    assert report["config"]["total_samples"] == 291 and overall["samples"] == 291
    golds = [json.loads(row["completion"]) for row in rows]
    # Two metrics depend on the gold text itself, so a perfect copy does not reach 1.0:
    # 9 gold handoff plans never say "router qa", and gold todo lists hold entries such as
    # "- [ ] /router: Perform final QA" whose tool "/router" is neither a gold tool nor starts
    # with "router" (it starts with "/").
    qa = sum("router qa" in g["handoff_plan"].lower() for g in golds)
    assert qa == 282
    assert overall["handoff_router_qa"] == qa / 291
    alignment = [_gold_todo_alignment(g) for g in golds]
    total = 0.0
    for value in alignment:
        total += value
    assert overall["todo_tool_alignment"] == total / 291
    for name, value in overall.items():
        if name in ("samples", "total_token_count", "handoff_router_qa", "todo_tool_alignment"):
            continue
        if name.startswith("length_ratio_"):
            assert value == 0.0, name
        else:
            assert value == 1.0, name
    assert report["strict"]["overall"]["schema_valid"] == 1.0
    assert report["strict"]["overall"]["tool_sequence_exact"] == 1.0
    assert report["extra"]["overall"] == {
        "samples": 291,
        "schema_valid": 1.0,
        "tool_sequence_exact": 1.0,
    }
    assert {b: v["samples"] for b, v in report["metrics"].items()} == {
        "advanced": 274,
        "four_step": 24,
        "has_computation": 10,
        "has_guidance": 32,
        "math_first": 5,
        "overall": 291,
    }


def test_report_layout_and_sorting(real_data: Path, tmp_path: Path) -> None:
    rows = _rows(real_data)[:20]
    gold = _write(tmp_path / "gold.jsonl", rows)
    pred = _write(tmp_path / "pred.jsonl", [{"completion": r["completion"]} for r in rows])
    out = tmp_path / "eval" / "report.json"
    report = metrics.score_files(gold, pred, out_path=out, bootstrap=20)
    assert list(report)[:3] == ["config", "metrics", "error_samples"]
    assert report["config"] == {"gold_path": str(gold), "pred_path": str(pred), "total_samples": 20}
    assert list(report["metrics"]) == sorted(report["metrics"])
    for block in report["metrics"].values():
        names = list(block)
        assert names[0] == "samples" and names[1:] == sorted(names[1:])
    assert {"math_first", "four_step", "has_guidance"} <= set(report["metrics"])  # rows 12-15
    assert (tmp_path / "eval" / "samples.jsonl").is_file()
    on_disk = json.loads(out.read_text("utf-8"))
    assert on_disk["metrics"] == report["metrics"]
    assert report["latency"] is None and report["tokens"] is None
    assert not list((tmp_path / "eval").glob(".*.tmp"))


# --------------------------------------------------------------------------- perturbations


@pytest.fixture()
def perturbed(real_data: Path, tmp_path: Path) -> tuple[dict[str, Any], dict[int, dict]]:
    rows = _rows(real_data)
    gold_rows = [rows[i] for i in PICK]
    golds = {i: json.loads(rows[i]["completion"]) for i in PICK}
    preds: list[Any] = []

    # [0] row 0, swapped steps: search and math change places (plain completion string).
    p0 = copy.deepcopy(golds[0])
    p0["route_plan"] = [p0["route_plan"][1], p0["route_plan"][0], p0["route_plan"][2]]
    preds.append({"completion": json.dumps(p0, ensure_ascii=False)})

    # [1] row 42, dropped metrics keys: primary_computation and secondary removed.
    p1 = copy.deepcopy(golds[42])
    del p1["metrics"]["primary_computation"]
    del p1["metrics"]["secondary"]
    preds.append({"completion": json.dumps(p1)})

    # [2] row 12, invalid JSON: a completion string cut off mid-plan.
    preds.append({"completion": '{"route_plan": ["/math(Derive the composite loss'})

    # [3] row 14, dict-form row with an empty todo list.
    p3 = copy.deepcopy(golds[14])
    p3["todo_list"] = []
    preds.append({"completion": p3})

    # [4] row 15, the completion object itself, with a long rationale: 1021 more ASCII
    # characters (a space and 1020 x's), one more word.
    p4 = copy.deepcopy(golds[15])
    p4["route_rationale"] += " " + "x" * 1020
    preds.append(p4)

    # [5] row 34, a JSON string holding the object: handoff without a tool, secondary_guidance
    # missing, todo entries with router QA / no tool / "/Math".
    p5 = copy.deepcopy(golds[34])
    p5["handoff_plan"] = "Hand the results to router QA for review."
    del p5["metrics"]["secondary_guidance"]
    p5["todo_list"] = [
        "- [ ] router QA: check everything",  # tool "router QA" -> starts with router: aligned
        "- [ ] Verification: look again",  # no /name, no "router qa": no tool
        "- [ ] /math: derive",  # gold tool: aligned
        "- [ ] /Math: not a tool",  # "/Math" is not "/math" (case-sensitive), not router
    ]
    preds.append(json.dumps(p5))

    gold = _write(tmp_path / "gold.jsonl", gold_rows)
    pred = _write(tmp_path / "pred.jsonl", preds)
    report = metrics.score_files(gold, pred, out_path=tmp_path / "report.json", bootstrap=100)
    return report, golds


def test_swapped_steps(perturbed: tuple[dict[str, Any], dict[int, dict]]) -> None:
    report, _ = perturbed
    s = _samples(report)[0]["metrics"]
    assert s["route_plan_exact"] is False
    assert s["route_length_match"] is True
    assert s["route_first_tool_match"] is False  # /math vs /general-search
    assert s["route_last_tool_match"] is True  # /code vs /code
    assert s["route_tool_precision"] == 1.0 and s["route_tool_recall"] == 1.0
    assert s["length_ratio"] == 1.0  # same characters, reordered
    assert s["todo_tool_alignment"] == 1.0  # 7 tool entries + "router QA" of 8
    assert _samples(report)[0]["strict"]["tool_sequence_exact"] is False


def test_dropped_metrics_keys(perturbed: tuple[dict[str, Any], dict[int, dict]]) -> None:
    report, golds = perturbed
    s = _samples(report)[1]["metrics"]
    assert s["metrics_keys_match"] is False
    assert s["metrics_primary_list"] is True and s["metrics_primary_nonempty"] is True
    assert s["metrics_secondary_list"] is False and s["metrics_secondary_nonempty"] is False
    assert s["primary_computation_retained"] is False  # gold str, pred missing
    assert s["secondary_computation_retained"] is True  # str and str
    assert "primary_guidance_retained" not in s  # gold has no guidance key
    g = golds[42]
    removed = (
        len(', "primary_computation": ')
        + len(json.dumps(g["metrics"]["primary_computation"]))
        + len('"secondary": ')
        + len(json.dumps(g["metrics"]["secondary"]))
        + len(", ")
    )
    assert s["length_ratio"] == (_dlen(g) - removed) / _dlen(g)
    assert s["length_ratio_lt_0.9"] is False  # about 0.94


def test_invalid_json_records_only_json_valid(
    perturbed: tuple[dict[str, Any], dict[int, dict]],
) -> None:
    report, _ = perturbed
    sample = _samples(report)[2]
    assert sample["valid"] is False
    assert sample["metrics"] == {"json_valid": False}
    # math_first holds only this invalid row: the original figures have json_valid alone.
    assert report["metrics"]["math_first"] == {"samples": 1, "json_valid": 0.0}
    strict = report["strict"]["math_first"]
    assert strict["route_plan_exact"] == 0.0 and strict["todo_tool_alignment"] == 0.0
    assert strict["length_ratio_gt_1.1"] == 1.0  # a broken output is out of band
    assert "length_ratio" not in strict and "total_token_count" not in strict
    assert strict["schema_valid"] == 0.0


def test_empty_todo_list_dict_row(perturbed: tuple[dict[str, Any], dict[int, dict]]) -> None:
    report, golds = perturbed
    s = _samples(report)[3]["metrics"]
    assert s["json_valid"] is True and s["route_plan_exact"] is True
    assert s["todo_tool_alignment"] == 0.0  # empty list, gold has tools
    assert s["todo_covers_all_tools"] is False
    assert s["primary_guidance_retained"] is True and s["secondary_guidance_retained"] is True
    g = golds[14]
    expected = (_dlen(g) - len(json.dumps(g["todo_list"])) + len("[]")) / _dlen(g)
    assert s["length_ratio"] == expected
    assert s["length_ratio_lt_0.9"] is True  # about 0.886


def test_long_rationale_object_row(perturbed: tuple[dict[str, Any], dict[int, dict]]) -> None:
    report, golds = perturbed
    s = _samples(report)[4]["metrics"]
    assert s["route_plan_exact"] is True
    length = _dlen(golds[15])
    assert length == 5107
    assert s["length_ratio"] == (5107 + 1021) / 5107  # about 1.1999
    assert s["length_ratio_gt_1.1"] is True
    assert s["length_ratio_gt_1.25"] is False
    assert s["length_ratio_lt_0.9"] is False
    assert s["total_token_count"] == _words(golds[15]) + 1


def test_handoff_guidance_todo_router_qa(
    perturbed: tuple[dict[str, Any], dict[int, dict]],
) -> None:
    report, golds = perturbed
    s = _samples(report)[5]["metrics"]
    assert s["handoff_tools_covered"] is False  # names no tool
    assert s["handoff_router_qa"] is True
    assert s["metrics_keys_match"] is False
    assert s["primary_guidance_retained"] is True
    assert s["secondary_guidance_retained"] is False  # missing
    assert s["todo_tool_alignment"] == 0.5  # router QA and /math of 4 entries
    assert s["todo_covers_all_tools"] is False  # no /general-search, no /code


def test_buckets_and_aggregation(perturbed: tuple[dict[str, Any], dict[int, dict]]) -> None:
    report, _ = perturbed
    samples = _samples(report)
    assert [s["buckets"] for s in samples] == [
        ["overall", "advanced"],
        ["overall", "has_computation", "advanced"],
        ["overall", "math_first"],
        ["overall", "has_guidance"],
        ["overall", "four_step", "advanced"],
        ["overall", "has_guidance"],
    ]
    m, st, ex = report["metrics"], report["strict"], report["extra"]
    assert {b: v["samples"] for b, v in m.items()} == {
        "advanced": 3,
        "four_step": 1,
        "has_computation": 1,
        "has_guidance": 2,
        "math_first": 1,
        "overall": 6,
    }
    o = m["overall"]
    assert o["json_valid"] == 5 / 6
    # valid-only (original) vs strict: 4 exact plans of 5 valid, of 6 samples.
    assert o["route_plan_exact"] == 4 / 5 and st["overall"]["route_plan_exact"] == 4 / 6
    # todo alignment per valid row: 1.0, 1.0, 0.0, 1.0, 0.5 -> 3.5 / 5
    assert o["todo_tool_alignment"] == 0.7
    assert st["overall"]["todo_tool_alignment"] == 3.5 / 6
    assert o["handoff_tools_covered"] == 4 / 5 and o["handoff_router_qa"] == 1.0
    assert o["length_ratio_gt_1.1"] == 1 / 5 and o["length_ratio_gt_1.25"] == 0.0
    assert o["length_ratio_lt_0.9"] == 2 / 5  # rows 14 and 34
    assert st["overall"]["length_ratio_gt_1.1"] == 2 / 6  # + the invalid row
    assert m["has_guidance"]["primary_guidance_retained"] == 1.0
    assert m["has_guidance"]["secondary_guidance_retained"] == 0.5
    assert m["has_guidance"]["metrics_keys_match"] == 0.5
    assert m["has_computation"]["primary_computation_retained"] == 0.0
    assert m["has_computation"]["secondary_computation_retained"] == 1.0
    assert m["four_step"]["length_ratio_gt_1.1"] == 1.0
    assert m["advanced"]["route_plan_exact"] == 2 / 3  # rows 0 (swapped), 42, 15
    assert ex["overall"] == {"samples": 6, "schema_valid": 1.0, "tool_sequence_exact": 0.8}
    assert st["overall"]["schema_valid"] == 5 / 6
    assert st["overall"]["tool_sequence_exact"] == 4 / 6
    assert "has_computation_retained" not in o and "primary_guidance_retained" in o
    assert [e["index"] for e in report["error_samples"]] == [0, 1, 2, 3, 5]
    assert report["error_samples"][2]["details"]["error"].startswith("Failed to parse prediction")
    assert report["error_samples"][3]["details"] == {"todo_list": []}
    assert report["error_samples"][0]["prompt_preview"].startswith("You are the Router Agent")
    assert len(report["error_samples"][0]["prompt_preview"]) == 140
    lo, hi = report["intervals"]["overall"]["route_plan_exact"]
    assert 0.0 <= lo <= 4 / 6 <= hi <= 1.0
    assert samples[2]["schema_violations"] and samples[1]["schema_violations"] == []


def test_ascii_escaping_in_length_ratio(real_data: Path, tmp_path: Path) -> None:
    row = _rows(real_data)[0]
    gold = json.loads(row["completion"])
    pred = copy.deepcopy(gold)
    pred["route_rationale"] += "é" * 100  # each is written as \u00e9: 6 characters
    report = metrics.score_files(
        _write(tmp_path / "g.jsonl", [row]), _write(tmp_path / "p.jsonl", [pred]), bootstrap=0
    )
    assert _dlen(gold) == 4898
    assert report["metrics"]["overall"]["length_ratio"] == (4898 + 600) / 4898  # about 1.1225
    assert report["metrics"]["overall"]["length_ratio_gt_1.1"] == 1.0
    assert report["intervals"] is None


def test_small_definitions_by_hand() -> None:
    gold = {
        "route_plan": ["/math(a)", " /code (b)"],
        "metrics": {"primary_guidance": "x"},
        "difficulty": "advanced",
    }
    pred = {
        "route_plan": ["/general-search(q)", "/code(z)"],
        "metrics": {"primary_guidance": 3, "primary": "not a list"},
        "todo_list": "not a list",  # counts as an empty list
        "handoff_plan": "/MATH then /Code",
        "expected_artifacts": [],
        "acceptance_criteria": ["ok"],
        "extra": {
            "a": "one two",
            "b": ["three", {"c": "four five six"}],
            "n": 3,
            "t": True,
            "z": None,
        },
    }
    got, _ = metrics.sample_metrics(gold, pred)
    assert got["route_tool_precision"] == 0.5 and got["route_tool_recall"] == 0.5
    assert got["route_first_tool_match"] is False and got["route_last_tool_match"] is True
    assert got["metrics_primary_list"] is False and got["metrics_primary_nonempty"] is False
    assert got["primary_guidance_retained"] is False  # int vs str
    assert got["todo_tool_alignment"] == 0.0 and got["todo_covers_all_tools"] is False
    assert got["handoff_tools_covered"] is True  # case-insensitive substrings
    assert got["handoff_router_qa"] is False
    assert got["expected_artifacts_nonempty"] is False
    assert got["acceptance_criteria_nonempty"] is True
    # words of pred's string leaves: plan 1 + 1, metrics.primary 3 (the int counts 0),
    # todo_list 3, handoff 3, acceptance 1, extra 2 + 1 + 3 (numbers/bools/null 0) = 18
    assert got["total_token_count"] == 18
    # A plan with no tools: precision 1.0; gold with no tools: recall 1.0, handoff non-empty,
    # empty todo scores 1.0.
    none, _ = metrics.sample_metrics({"route_plan": []}, {"route_plan": [], "handoff_plan": "x"})
    assert none["route_tool_precision"] == 1.0 and none["route_tool_recall"] == 1.0
    assert none["todo_tool_alignment"] == 1.0 and none["todo_covers_all_tools"] is True
    assert none["handoff_tools_covered"] is True
    assert none["route_first_tool_match"] is True  # None == None
    # metrics that is not a dict counts as empty.
    odd, _ = metrics.sample_metrics({"metrics": {}}, {"metrics": ["primary"]})
    assert odd["metrics_keys_match"] is True and odd["metrics_primary_list"] is False


def test_half_invalid_model_looks_perfect_only_in_original(real_data: Path, tmp_path: Path) -> None:
    rows = _rows(real_data)[:10]
    preds = [
        {"completion": r["completion"]} if i % 2 == 0 else {"completion": "oops"}
        for i, r in enumerate(rows)
    ]
    report = metrics.score_files(
        _write(tmp_path / "g.jsonl", rows), _write(tmp_path / "p.jsonl", preds), bootstrap=0
    )
    assert report["metrics"]["overall"]["route_plan_exact"] == 1.0
    assert report["strict"]["overall"]["route_plan_exact"] == 0.5
    assert report["metrics"]["overall"]["json_valid"] == 0.5


# --------------------------------------------------------------------------- bad input


def test_count_mismatch_names_both_counts(real_data: Path, tmp_path: Path) -> None:
    rows = _rows(real_data)[:3]
    gold = _write(tmp_path / "g.jsonl", rows)
    pred = _write(tmp_path / "p.jsonl", [{"completion": r["completion"]} for r in rows[:2]])
    with pytest.raises(InputError, match=r"has 3 rows but pred .* has 2 rows"):
        metrics.score_files(gold, pred)


def test_unreadable_line_and_missing_file(real_data: Path, tmp_path: Path) -> None:
    rows = _rows(real_data)[:2]
    gold = _write(tmp_path / "g.jsonl", rows)
    pred = tmp_path / "p.jsonl"
    pred.write_text(json.dumps({"completion": rows[0]["completion"]}) + "\n\n{broken\n", "utf-8")
    with pytest.raises(InputError) as info:
        metrics.score_files(gold, pred)
    assert any(f"{pred}:3:" in line for line in info.value.problems)
    with pytest.raises(InputError, match="not found"):
        metrics.score_files(gold, tmp_path / "nope.jsonl")
    bad_gold = _write(tmp_path / "bad.jsonl", [{"prompt": "p"}])
    with pytest.raises(InputError) as info:
        metrics.score_files(bad_gold, pred)
    assert info.value.problems == [f"{bad_gold}:1: completion: missing"]


def test_latency_and_tokens(real_data: Path, tmp_path: Path) -> None:
    rows = _rows(real_data)[:4]
    preds = [
        {
            "completion": r["completion"],
            "raw": f"raw {i}",
            "latency_s": float(i + 1),
            "prompt_tokens": 100,
            "completion_tokens": 10 * (i + 1),
        }
        for i, r in enumerate(rows)
    ]
    report = metrics.score_files(
        _write(tmp_path / "g.jsonl", rows),
        _write(tmp_path / "p.jsonl", preds),
        out_path=tmp_path / "r.json",
        bootstrap=0,
    )
    # latencies 1, 2, 3, 4: median 2.5, p95 (linear) 3 + 0.85 * 1 = 3.85
    assert report["latency"]["p50_s"] == 2.5
    assert report["latency"]["p95_s"] == pytest.approx(3.85)
    assert report["latency"]["mean_s"] == 2.5 and report["latency"]["n"] == 4
    assert report["tokens"]["prompt_tokens_total"] == 400
    assert report["tokens"]["completion_tokens_total"] == 100
    assert report["tokens"]["completion_tokens_mean"] == 25.0
    assert [s["raw"] for s in _samples(report)] == ["raw 0", "raw 1", "raw 2", "raw 3"]
