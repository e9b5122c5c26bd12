"""Fake finished run folders in the layout notebook 04 writes, scored by the real scorer.

Forty gold rows; three routers with known outcomes on ``route_plan_exact``:
- ``good``: exact except on rows i % 10 == 0 (plan reversed) → 36/40, passes the gate;
- ``weak``: exact on even rows, invalid JSON on i % 4 == 1, reversed on i % 4 == 3 → strict 20/40,
  original 20/30;
- baseline ``majority``: always the majority template, which is the gold plan on i % 5 in {0,1,2}
  → 24/40.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from routerlib import metrics
from routerlib.atomic import write_json

N_ROWS = 40
GATE = {"overall": {"min": {"route_plan_exact": 0.8, "json_valid": 0.95}}}

TEMPLATE = [
    '/general-search(query="site:arxiv.org topic survey", mode=web)',
    "/math(Derive the bound and check the constants.)",
    "/code(Implement the method in Python and validate it, mode=python)",
]
MATH_FIRST = [
    "/math(Set up the objective and derive the update rule.)",
    "/code(Simulate the update and report convergence, mode=python)",
    '/general-search(query="related convergence results", mode=both)',
    "/math(Compare simulated rates against the derived bound.)",
]


def gold_object(i: int) -> dict[str, Any]:
    """One gold completion: the majority template on i % 5 in {0, 1, 2}, else math first."""
    plan = TEMPLATE if i % 5 in (0, 1, 2) else MATH_FIRST
    tools = sorted({step.split("(")[0] for step in plan})
    return {
        "route_plan": list(plan),
        "route_rationale": f"Row {i}: search first for context, then derive, then implement.",
        "expected_artifacts": ["derivation", "code"],
        "thinking_outline": ["1. read", "2. derive", "3. implement"],
        "handoff_plan": " -> ".join(tools) + " -> router QA",
        "todo_list": [f"- [ ] {tool}: do the step" for tool in tools] + ["- [ ] router QA review"],
        "difficulty": "advanced" if i % 4 == 0 else "intermediate",
        "tags": ["optimization"],
        "acceptance_criteria": ["derivation is correct"],
        "metrics": {"primary": ["exactness"], "secondary": ["runtime"]},
    }


def gold_rows() -> list[dict[str, Any]]:
    """The gold JSONL rows (prompt + completion string)."""
    return [
        {"prompt": f"User query {i}: route me.", "completion": json.dumps(gold_object(i))}
        for i in range(N_ROWS)
    ]


def _reversed(obj: dict[str, Any]) -> dict[str, Any]:
    return {**obj, "route_plan": list(reversed(obj["route_plan"]))}


def predictions(kind: str) -> list[dict[str, Any]]:
    """Prediction lines of one router (``good``, ``weak`` or ``majority``), with latencies."""
    lines = []
    for i in range(N_ROWS):
        gold = gold_object(i)
        if kind == "good":
            pred: Any = _reversed(gold) if i % 10 == 0 else gold
        elif kind == "weak":
            pred = gold if i % 2 == 0 else ("{not json" if i % 4 == 1 else _reversed(gold))
        else:
            pred = {**gold, "route_plan": list(TEMPLATE)}
        text = pred if isinstance(pred, str) else json.dumps(pred)
        lines.append({"completion": text, "latency_s": 0.1 + 0.01 * (i % 7)})
    return lines


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _score(gold: Path, preds: Path, out: Path) -> dict[str, Any]:
    return metrics.score_files(gold, preds, out_path=out, thresholds=GATE, bootstrap=200, seed=0)


def make_run(
    root: Path,
    name: str,
    kind: str,
    *,
    tuning_mode: str = "PEFT_ADAPTER",
    adapter_size: int | None = 16,
    cost: float = 1.5,
) -> Path:
    """A finished run folder ``root/<name>-20260101-000000`` for router ``kind``."""
    run = root / f"{name}-20260101-000000"
    gold = _write_jsonl(run / "data" / "test.jsonl", gold_rows())
    preds = _write_jsonl(run / "eval" / "predictions.jsonl", predictions(kind))
    report = _score(gold, preds, run / "eval" / "report.json")
    base_preds = _write_jsonl(
        run / "eval" / "baselines" / "majority" / "predictions.jsonl", predictions("majority")
    )
    _score(gold, base_preds, run / "eval" / "baselines" / "majority" / "report.json")
    curve = [
        {"epoch": e, "step": 10 * e, "train_loss": 2.0 / e, "val_loss": 2.2 / e} for e in (1, 2, 3)
    ]
    write_json(run / "tuning" / "full" / "loss_curve.json", curve)
    overall, strict = report["metrics"]["overall"], report["strict"]["overall"]
    headline = ("json_valid", "route_plan_exact", "route_tool_recall")
    write_json(
        run / "metrics.json",
        {
            "run": {
                "name": name,
                "params_file": f"params/{name}.yaml",
                "backend": "local",
                "base_model": "routerlib/tiny-router-lm",
                "tuning_mode": tuning_mode,
                "adapter_size": adapter_size,
                "epochs": 3,
                "created": "2026-01-01T00:00:00",
            },
            "tuning": {
                "job_name": f"local/{name}",
                "state": "JOB_STATE_SUCCEEDED",
                "train_seconds": 42.0,
                "cost_estimate_usd": cost,
                "tuning_data_stats": {},
                "loss_curve": curve,
            },
            "evaluation": {
                "report": "eval/report.json",
                "gate_pass": report["threshold_results"]["overall_pass"],
                "headline": {m: overall.get(m) for m in headline},
                "strict": {m: strict.get(m) for m in headline},
            },
            "baselines": {"majority": {"report": "eval/baselines/majority/report.json"}},
        },
    )
    (run / "pipeline.json").write_text(
        json.dumps({"status": "finished", "stages": []}), encoding="utf-8"
    )
    return run


def add_constrained(run: Path, rows: list[dict[str, Any]]) -> Path:
    """Score ``rows`` as ``run``'s constrained decoding (eval/constrained/) and record both
    decodings in its metrics.json, free first."""
    preds = _write_jsonl(run / "eval" / "constrained" / "predictions.jsonl", rows)
    _score(run / "data" / "test.jsonl", preds, run / "eval" / "constrained" / "report.json")
    record = json.loads((run / "metrics.json").read_text())
    record["evaluation"]["decoding"] = "free"
    record["decodings"] = {
        "free": {"report": "eval/report.json"},
        "constrained": {"report": "eval/constrained/report.json"},
    }
    (run / "metrics.json").write_text(json.dumps(record))
    return run


def make_partial_run(root: Path, name: str = "partial") -> Path:
    """A run folder with a metrics.json and nothing else (evaluation never ran)."""
    run = root / f"{name}-20260101-000001"
    run.mkdir(parents=True)
    write_json(run / "metrics.json", {"run": {"name": name, "tuning_mode": "FULL"}})
    return run
