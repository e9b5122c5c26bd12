"""Threshold gate files (JSON and YAML), the gate itself, and --compare-to regression figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from routerlib import metrics
from routerlib.errors import InputError

BENCH = "deep_router_benchmark.jsonl"
GATE = "router_benchmark_thresholds.json"
ROOT = Path(__file__).resolve().parent.parent
PARAMS = ROOT / "params"
#: Default files shipped inside the package (importlib.resources).
PACKAGED = ROOT / "routerlib" / "data"


def _write(path: Path, lines: list[Any]) -> Path:
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), "utf-8")
    return path


def _rows(real_data: Path, n: int | None = None) -> list[dict[str, Any]]:
    rows = [json.loads(x) for x in (real_data / BENCH).read_text("utf-8").splitlines() if x]
    return rows[:n] if n else rows


def test_default_yaml_equals_the_original_json(real_data: Path) -> None:
    assert metrics.DEFAULT_THRESHOLDS_PATH == PACKAGED / "thresholds.yaml"
    assert metrics.load_thresholds(metrics.DEFAULT_THRESHOLDS_PATH) == json.loads(
        (real_data / GATE).read_text("utf-8")
    )


@pytest.mark.parametrize(
    "path",
    sorted(p for d in (PARAMS, PACKAGED) for p in d.glob("*.y*ml") if "threshold" in p.name),
    ids=lambda p: p.name,
)
def test_every_thresholds_file_in_params_validates(path: Path) -> None:
    assert metrics.load_thresholds(path)


def test_invalid_thresholds_list_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "gate.yaml"
    bad.write_text(
        "overall:\n  min:\n    route_plan_exakt: 0.8\n    json_valid: high\n"
        "  avg:\n    json_valid: 1\nmath_frist:\n  min: {}\n",
        "utf-8",
    )
    with pytest.raises(InputError) as info:
        metrics.load_thresholds(bad)
    text = "\n".join(info.value.problems)
    assert "overall.min.route_plan_exakt: unknown metric" in text
    assert "overall.min.json_valid: must be a number" in text
    assert "overall.avg: unknown kind" in text
    assert "math_frist: unknown bucket" in text
    with pytest.raises(InputError, match="not found"):
        metrics.load_thresholds(tmp_path / "none.yaml")


def test_gate_passes_for_perfect_predictions(real_data: Path, tmp_path: Path) -> None:
    pred = _write(tmp_path / "p.jsonl", [{"completion": r["completion"]} for r in _rows(real_data)])
    report = metrics.score_files(real_data / BENCH, pred, thresholds=real_data / GATE, bootstrap=0)
    results = report["threshold_results"]
    assert results["overall_pass"] is True and results["failed"] == []
    check = results["overall"]["length_ratio_gt_1.1"]
    assert check == {"value": 0.0, "threshold": 0.3, "kind": "max", "passed": True}
    assert results["math_first"]["route_plan_exact"]["passed"] is True


def test_gate_missing_value_fails_and_strict_figures(real_data: Path, tmp_path: Path) -> None:
    rows = _rows(real_data, 20)  # row 12 is the only math_first row among these
    preds = [{"completion": r["completion"]} for r in rows]
    preds[12] = {"completion": "not json"}
    report = metrics.score_files(
        _write(tmp_path / "g.jsonl", rows),
        _write(tmp_path / "p.jsonl", preds),
        thresholds=metrics.DEFAULT_THRESHOLDS_PATH,
        bootstrap=0,
    )
    results = report["threshold_results"]
    # math_first has no valid prediction: its route metrics are missing -> fail.
    assert results["math_first"]["route_plan_exact"] == {
        "value": None,
        "threshold": 0.7,
        "kind": "min",
        "passed": False,
    }
    assert "math_first.route_plan_exact" in results["failed"]
    assert results["overall_pass"] is False
    # json_valid 19/20 = 0.95 < 0.98
    assert results["overall"]["json_valid"]["passed"] is False
    gate = {"overall": {"min": {"route_plan_exact": 0.96, "schema_valid": 0.9}}}
    metrics.apply_gate(report, gate)
    assert report["threshold_results"]["overall_pass"] is True  # 19/19 valid are exact
    metrics.apply_gate(report, gate, figures="strict")
    assert report["threshold_results"]["overall"]["route_plan_exact"]["value"] == 19 / 20
    assert report["threshold_results"]["overall_pass"] is False


def test_compare_to_previous_predictions(real_data: Path, tmp_path: Path) -> None:
    rows = _rows(real_data, 30)
    gold = _write(tmp_path / "g.jsonl", rows)
    new = [{"completion": r["completion"]} for r in rows]
    old = [dict(x) for x in new]
    for i in (1, 2, 3):  # previous router broke JSON on rows 1-3
        old[i] = {"completion": "{"}
    swapped = json.loads(rows[4]["completion"])
    swapped["route_plan"] = swapped["route_plan"][::-1]
    new[4] = {"completion": swapped}  # new model regresses row 4's plan
    prev = _write(tmp_path / "prev.jsonl", old)
    cur = _write(tmp_path / "new.jsonl", new)
    report = metrics.score_files(gold, cur, compare_to=prev, bootstrap=0)
    comp = report["comparison"]
    assert comp["previous_pred_path"] == str(prev)
    assert comp["changes"]["json_valid"] == {"fixed": [1, 2, 3], "broken": []}
    assert comp["changes"]["route_plan_exact"] == {"fixed": [1, 2, 3], "broken": [4]}
    assert comp["changes"]["length_ratio_gt_1.1"] == {"fixed": [1, 2, 3], "broken": []}
    overall = comp["strict"]["overall"]["route_plan_exact"]
    assert overall == {"new": 29 / 30, "previous": 27 / 30, "delta": 29 / 30 - 27 / 30}
    original = comp["metrics"]["overall"]["route_plan_exact"]  # valid-only: 29/30 vs 27/27
    assert original["previous"] == 1.0 and original["delta"] == 29 / 30 - 1.0
    test = comp["significance"]["overall"]["route_plan_exact"]
    # b01 = 3 fixed, b10 = 1 broken: exact two-sided p = 2 * (1 + 4) / 16 = 0.625
    assert (test["test"], test["b01"], test["b10"]) == ("mcnemar", 3, 1)
    assert test["p_value"] == pytest.approx(0.625)
    boot = comp["significance"]["overall"]["todo_tool_alignment"]
    assert boot["test"] == "paired_bootstrap" and boot["delta"] > 0
    same = metrics.score_files(gold, cur, compare_to=cur, bootstrap=0)["comparison"]
    assert all(v["delta"] == 0 for v in same["strict"]["overall"].values())
    assert all(c == {"fixed": [], "broken": []} for c in same["changes"].values())
