"""Tool-level diagnostics of routing plans, per bucket, beside the original metrics: per-tool
precision/recall/F1, search-mode accuracy, plan edit distance, the first-tool confusion matrix and
the share of valid-JSON answers that break the schema (defined in docs/scoring.md, "Tool-level
diagnostics").
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

from routerlib.schema import MODE_RE, TOOLS, plan_steps, plan_tools, step_tool

#: Ends the top field a schema violation names ("route_plan[2]: unknown tool …": route_plan).
_TOP_FIELD = re.compile(r"[\[.:]")
SEARCH = "/general-search"
INVALID, NONE = "(invalid)", "(none)"


def _modes(plan: Any) -> list[str | None]:
    found = [MODE_RE.search(str(step)) for step in plan_steps(plan) if step_tool(step) == SEARCH]
    return [match.group(1) if match else None for match in found]


def sample_plan(gold: dict[str, Any], pred: dict[str, Any] | None) -> dict[str, Any]:
    """What the diagnostics need of one sample: tool sequences and search modes, both sides."""
    gold_plan = gold.get("route_plan", [])
    pred_plan = pred.get("route_plan", []) if pred is not None else []
    return {
        "gold_tools": plan_tools(gold_plan),
        "pred_tools": plan_tools(pred_plan) if pred is not None else None,
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
    """Per-tool precision, recall, F1, support and the counts behind them over ``plans``."""
    names = dict.fromkeys(TOOLS)
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    for plan in plans:
        gold, pred = plan["gold_tools"], plan["pred_tools"] or []
        names.update(dict.fromkeys([*gold, *pred]))
        tp.update(set(gold) & set(pred))
        fp.update(set(pred) - set(gold))
        fn.update(set(gold) - set(pred))
    out: dict[str, dict[str, Any]] = {}
    for tool in names:
        p, r = _ratio(tp[tool], tp[tool] + fp[tool]), _ratio(tp[tool], tp[tool] + fn[tool])
        f1 = None if p is None or r is None else (2 * p * r / (p + r) if p + r else 0.0)
        counts = {"support": tp[tool] + fn[tool], "tp": tp[tool], "fp": fp[tool], "fn": fn[tool]}
        out[tool] = {"precision": p, "recall": r, "f1": f1, **counts}
    return out


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Every diagnostic over ``records`` (score records carrying ``plan``, ``valid`` and
    ``schema_violations``)."""
    plans = [r["plan"] for r in records]
    modes = [pair for p in plans for pair in zip(p["gold_modes"], p["pred_modes"], strict=False)]
    distances: list[float] = []
    normalized: list[float] = []
    confusion: dict[str, Counter[str]] = {}
    for plan in plans:
        pred_tools = plan["pred_tools"] or []
        distance = edit_distance(plan["gold_tools"], pred_tools)
        distances.append(distance)
        normalized.append(distance / max(len(plan["gold_tools"]), len(pred_tools), 1))
        gold_first = (plan["gold_tools"] or [NONE])[0]
        pred_first = (pred_tools or [NONE])[0] if plan["pred_tools"] is not None else INVALID
        confusion.setdefault(gold_first, Counter())[pred_first] += 1
    valid = [r for r in records if r["valid"]]
    broken = [
        {_TOP_FIELD.split(str(v), 1)[0].strip() for v in r.get("schema_violations") or []}
        for r in valid
    ]
    fields = Counter(name for names in broken for name in names)
    return {
        "samples": len(records),
        "tools": tool_scores(plans),
        "search_mode_accuracy": _ratio(sum(gold == pred for gold, pred in modes), len(modes)),
        "search_mode_pairs": len(modes),
        "plan_edit_distance": sum(distances) / len(distances) if distances else None,
        "plan_edit_distance_norm": sum(normalized) / len(normalized) if normalized else None,
        "first_tool_confusion": {
            g: dict(sorted(row.items())) for g, row in sorted(confusion.items())
        },
        "schema_breaking": {
            "valid_json": len(valid),
            "share": _ratio(sum(1 for names in broken if names), len(valid)),
            "by_field": {name: fields[name] / len(valid) for name in sorted(fields)},
        },
    }


def by_bucket(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """:func:`summarize` per bucket (``overall`` first, then the buckets with samples, sorted)."""
    buckets: dict[str, list[dict[str, Any]]] = {"overall": []}
    for record in records:
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
