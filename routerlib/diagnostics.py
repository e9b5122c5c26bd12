"""Tool-level diagnostics of routing plans, per bucket, beside the original metrics.

Per sample, :func:`sample_plan` keeps the gold and predicted tool sequences and search modes
(``tools(plan)`` as in metrics.py: each step's text before the first ``(``; a search step's mode
is the first ``mode=`` value in it, as ``schema.validate_route_step`` reads it, else None). An
invalid prediction (not a JSON object) has no plan: it predicts no tool. Per bucket,
:func:`by_bucket` reports:

``tools``
    For each tool T (the three contract tools, plus any other name either side used), over the
    samples of the bucket: TP = samples whose gold and prediction both use T, FP = prediction
    uses T and gold does not, FN = gold uses T and the prediction does not (presence per sample,
    not counts). ``precision`` = TP / (TP + FP), ``recall`` = TP / (TP + FN), ``f1`` = 2PR / (P + R);
    each is None when its denominator is 0 (F1 is None when P or R is None, 0.0 when P + R = 0).
    ``support`` = TP + FN (samples whose gold uses T).
``search_mode_accuracy``
    Gold and predicted search steps are paired in order (the k-th ``/general-search`` step of
    each, up to the shorter count); accuracy = pairs whose modes are equal / pairs (None without
    pairs); ``search_mode_pairs`` = the number of pairs.
``plan_edit_distance``
    Mean Levenshtein distance between the gold and predicted tool sequences (insert, delete,
    substitute a whole tool, each cost 1; an invalid prediction is the empty sequence), and
    ``plan_edit_distance_norm``: the same divided by max(len(gold), len(pred), 1), averaged.
``first_tool_confusion``
    ``{gold first tool: {predicted first tool: count}}``; the predicted side is ``(invalid)`` for
    an invalid prediction and ``(none)`` for an empty plan.
``schema_breaking``
    Over predictions that are valid JSON objects: ``share`` = those with at least one schema
    violation (``schema.validate_completion``) / valid ones, and ``by_field`` = for each
    top-level field, the share of valid predictions with a violation there (``route_plan[2]``
    counts under ``route_plan``); ``valid_json`` = the number of valid predictions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from routerlib.schema import TOOLS, plan_steps, plan_tools, step_tool

_MODE = re.compile(r"mode\s*=\s*[\"']?([A-Za-z_-]*)")
SEARCH = "/general-search"
INVALID, NONE = "(invalid)", "(none)"


def _tools(plan: Any) -> list[str]:
    return plan_tools(plan)


def _modes(plan: Any) -> list[str | None]:
    modes: list[str | None] = []
    for step in plan_steps(plan):
        if step_tool(step) == SEARCH:
            found = _MODE.search(str(step))
            modes.append(found.group(1) if found else None)
    return modes


def sample_plan(gold: dict[str, Any], pred: dict[str, Any] | None) -> dict[str, Any]:
    """What the diagnostics need of one sample: tool sequences and search modes, both sides."""
    gold_plan = gold.get("route_plan", [])
    pred_plan = pred.get("route_plan", []) if pred is not None else []
    return {
        "gold_tools": _tools(gold_plan),
        "pred_tools": _tools(pred_plan) if pred is not None else None,
        "gold_modes": _modes(gold_plan),
        "pred_modes": _modes(pred_plan) if pred is not None else [],
    }


def edit_distance(a: Sequence[str], b: Sequence[str]) -> int:
    """Levenshtein distance over whole tools (unit costs)."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def tool_scores(plans: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per-tool precision, recall, F1 and support over ``plans`` (see the module docstring)."""
    names = list(TOOLS)
    for plan in plans:
        for tool in [*plan["gold_tools"], *(plan["pred_tools"] or [])]:
            if tool not in names:
                names.append(tool)
    out: dict[str, dict[str, Any]] = {}
    for tool in names:
        tp = fp = fn = 0
        for plan in plans:
            in_gold = tool in plan["gold_tools"]
            in_pred = tool in (plan["pred_tools"] or [])
            tp += in_gold and in_pred
            fp += in_pred and not in_gold
            fn += in_gold and not in_pred
        precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
        f1 = None
        if precision is not None and recall is not None:
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[tool] = {
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support": tp + fn,
            "tp": tp,
            "fp": fp,
            "fn": fn,
        }
    return out


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Every diagnostic over ``records`` (score records carrying ``plan``, ``valid`` and
    ``schema_violations``)."""
    plans = [r["plan"] for r in records]
    pairs = hits = 0
    distances: list[float] = []
    normalized: list[float] = []
    confusion: dict[str, dict[str, int]] = {}
    for plan in plans:
        pred_tools = plan["pred_tools"] or []
        for gold_mode, pred_mode in zip(plan["gold_modes"], plan["pred_modes"], strict=False):
            pairs += 1
            hits += gold_mode == pred_mode
        distance = edit_distance(plan["gold_tools"], pred_tools)
        distances.append(distance)
        normalized.append(distance / max(len(plan["gold_tools"]), len(pred_tools), 1))
        gold_first = plan["gold_tools"][0] if plan["gold_tools"] else NONE
        if plan["pred_tools"] is None:
            pred_first = INVALID
        else:
            pred_first = pred_tools[0] if pred_tools else NONE
        row = confusion.setdefault(gold_first, {})
        row[pred_first] = row.get(pred_first, 0) + 1
    valid = [r for r in records if r["valid"]]
    fields: dict[str, int] = {}
    breaking = 0
    for record in valid:
        names = {_top_field(v) for v in record.get("schema_violations") or []}
        breaking += bool(names)
        for name in names:
            fields[name] = fields.get(name, 0) + 1
    return {
        "samples": len(records),
        "tools": tool_scores(plans),
        "search_mode_accuracy": _ratio(hits, pairs),
        "search_mode_pairs": pairs,
        "plan_edit_distance": sum(distances) / len(distances) if distances else None,
        "plan_edit_distance_norm": sum(normalized) / len(normalized) if normalized else None,
        "first_tool_confusion": {
            g: dict(sorted(row.items())) for g, row in sorted(confusion.items())
        },
        "schema_breaking": {
            "valid_json": len(valid),
            "share": _ratio(breaking, len(valid)),
            "by_field": {name: fields[name] / len(valid) for name in sorted(fields)},
        },
    }


def _top_field(violation: str) -> str:
    """``"route_plan[2]: unknown tool …"`` → ``route_plan``."""
    head = str(violation).split(":", 1)[0]
    return re.split(r"[\[.]", head, maxsplit=1)[0].strip()


def by_bucket(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """:func:`summarize` per bucket (``overall`` first, then the buckets with samples, sorted)."""
    buckets: dict[str, list[dict[str, Any]]] = {"overall": []}
    for record in records:
        if "plan" not in record:
            continue
        for bucket in record["buckets"]:
            buckets.setdefault(bucket, []).append(record)
    order = ["overall", *sorted(b for b in buckets if b != "overall")]
    return {bucket: summarize(buckets[bucket]) for bucket in order if buckets[bucket]}


def tool_table(report: dict[str, Any], bucket: str = "overall") -> Any:
    """Per-tool precision/recall/F1/support of a report's bucket as a pandas table."""
    import pandas as pd

    tools = ((report.get("diagnostics") or {}).get(bucket) or {}).get("tools") or {}
    frame = pd.DataFrame.from_dict(tools, orient="index")
    return frame[["precision", "recall", "f1", "support"]] if len(frame) else frame


def confusion_table(report: dict[str, Any], bucket: str = "overall") -> Any:
    """The first-tool confusion matrix of a report's bucket (rows gold, columns predicted)."""
    import pandas as pd

    matrix = ((report.get("diagnostics") or {}).get(bucket) or {}).get("first_tool_confusion")
    frame = pd.DataFrame(matrix or {}).T.fillna(0).astype(int)
    frame.index.name, frame.columns.name = "gold first tool", "predicted first tool"
    return frame
