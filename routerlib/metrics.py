"""Scoring of routing plans: the team's earlier evaluator reproduced exactly (same inputs, same
floats, same report layout), plus what it lacked (strict figures, schema validity, intervals,
latency, diagnostics, per-sample records, the gate). Every figure and every decision where the
original would crash is defined in docs/scoring.md ("Metric definitions");
tests/test_metrics_parity.py holds the original figures to the original's values.
"""

from __future__ import annotations

import functools
import json
import math
import operator
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from routerlib import runfolder
from routerlib.diagnostics import by_bucket as diagnostics_by_bucket
from routerlib.diagnostics import sample_plan
from routerlib.errors import InputError
from routerlib.extract import read_prediction
from routerlib.metric_names import (
    ALL_BUCKETS,
    BUCKETS,
    EXTRA_METRICS,
    KNOWN_METRICS,
    LOWER_IS_BETTER,
    NOT_STRICT,
    ORIGINAL_METRICS,
    RATE_METRICS,
    RETAINED_KEYS,
)
from routerlib.paired import compare_scored
from routerlib.paths import packaged_file
from routerlib.schema import plan_steps, plan_tools, validate_completion
from routerlib.stats import LEVEL, bootstrap_ci

MAX_ERROR_SAMPLES = 15
PROMPT_PREVIEW_CHARS = 140
#: The original team's gates, shipped inside the package (routerlib/data/thresholds.yaml).
DEFAULT_THRESHOLDS_PATH = packaged_file("thresholds.yaml")
#: The word that names DEFAULT_THRESHOLDS_PATH on the command line (``--thresholds default``).
DEFAULT_THRESHOLDS = "default"

_TODO_TOOL_RE = re.compile(r"/[a-zA-Z0-9_-]+")
#: Why a completion that is the JSON text ``null`` is invalid: the original lists no error for it.
_NULL_REASON = "JSON is null, not an object"


# --------------------------------------------------------------------------- per-sample pieces


def _metrics_keys(block: Any) -> frozenset[str]:
    return frozenset(block.keys()) if isinstance(block, dict) else frozenset()


def _value_type(block: Any, key: str) -> str:
    """The original's type tag of ``block[key]``: its Python type name (list, dict, str, int,
    float, bool), or missing (absent or null)."""
    value = block.get(key) if isinstance(block, dict) else None
    return "missing" if value is None else type(value).__name__


def todo_tool(entry: Any) -> str | None:
    """A todo entry's tool: first ``/name`` in it, else "router QA" when it mentions router qa."""
    if not isinstance(entry, str):
        return None
    match = _TODO_TOOL_RE.search(entry)
    return match.group(0) if match else "router QA" if "router qa" in entry.lower() else None


def count_tokens(value: Any) -> int:
    """Whitespace-split words over every string leaf (lists and dict values recursively)."""
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list | tuple):
        return sum(count_tokens(item) for item in value)
    if isinstance(value, dict):
        return sum(count_tokens(item) for item in value.values())
    return 0


def bucket_flags(gold: dict[str, Any]) -> dict[str, bool]:
    """Bucket membership of a sample, from its gold completion."""
    tools = plan_tools(gold.get("route_plan", []))
    keys = _metrics_keys(gold.get("metrics", {}))
    return {
        "math_first": bool(tools) and tools[0] == "/math",
        "four_step": len(plan_steps(gold.get("route_plan", []))) >= 4,
        "has_guidance": any("guidance" in key for key in keys),
        "has_computation": any("computation" in key for key in keys),
        "advanced": gold.get("difficulty") == "advanced",
    }


def sample_metrics(
    gold: dict[str, Any], pred: dict[str, Any] | None
) -> tuple[dict[str, bool | float | int], dict[str, Any]]:
    """The original per-sample metrics of one prediction, and the original's debug details."""
    out: dict[str, bool | float | int] = {"json_valid": pred is not None}
    debug: dict[str, Any] = {}
    if pred is None:
        return out, debug
    gold_plan, pred_plan = gold.get("route_plan", []), pred.get("route_plan", [])
    gold_tools, pred_tools = plan_tools(gold_plan), plan_tools(pred_plan)
    gold_metrics, pred_metrics = gold.get("metrics", {}), pred.get("metrics", {})

    out["route_plan_exact"] = pred_plan == gold_plan
    out["route_length_match"] = len(plan_steps(pred_plan)) == len(plan_steps(gold_plan))
    out["route_first_tool_match"] = pred_tools[:1] == gold_tools[:1]  # both empty: a match
    out["route_last_tool_match"] = pred_tools[-1:] == gold_tools[-1:]
    gold_set, pred_set = set(gold_tools), set(pred_tools)
    common = len(gold_set & pred_set)
    out["route_tool_precision"] = common / len(pred_set) if pred_set else 1.0
    out["route_tool_recall"] = common / len(gold_set) if gold_set else 1.0

    out["metrics_keys_match"] = _metrics_keys(pred_metrics) == _metrics_keys(gold_metrics)
    for key in ("primary", "secondary"):
        value = pred_metrics.get(key) if isinstance(pred_metrics, dict) else None
        out[f"metrics_{key}_list"] = isinstance(value, list)
        out[f"metrics_{key}_nonempty"] = isinstance(value, list) and len(value) > 0
    for key in RETAINED_KEYS:
        expected = _value_type(gold_metrics, key)
        if expected != "missing":
            out[f"{key}_retained"] = _value_type(pred_metrics, key) == expected

    raw_todo = pred.get("todo_list")
    todo = raw_todo if isinstance(raw_todo, list) else []
    todo_tools = [todo_tool(entry) for entry in todo]
    aligned = [t for t in todo_tools if t and (t in gold_tools or t.lower().startswith("router"))]
    empty_score = 1.0 if not gold_tools else 0.0  # an empty todo list
    out["todo_tool_alignment"] = len(aligned) / len(todo) if todo else empty_score
    out["todo_covers_all_tools"] = all(tool in todo_tools for tool in gold_tools)

    for key in ("expected_artifacts", "acceptance_criteria"):
        out[f"{key}_nonempty"] = isinstance(pred.get(key), list) and len(pred[key]) > 0

    handoff = pred.get("handoff_plan", "")
    lowered = handoff.lower() if isinstance(handoff, str) else None
    covered = lowered is not None and all(tool.lower() in lowered for tool in gold_tools)
    out["handoff_tools_covered"] = covered if gold_tools else bool(handoff)
    out["handoff_router_qa"] = lowered is not None and "router qa" in lowered

    out["total_token_count"] = count_tokens(pred)
    ratio = len(json.dumps(pred, sort_keys=True)) / len(json.dumps(gold, sort_keys=True))
    out["length_ratio"] = ratio
    out["length_ratio_gt_1.1"] = ratio > 1.1
    out["length_ratio_gt_1.25"] = ratio > 1.25
    out["length_ratio_lt_0.9"] = ratio < 0.9

    if not out["route_plan_exact"]:
        debug.update(route_plan_pred=pred_plan, route_plan_gold=gold_plan)
    if not out["metrics_keys_match"]:
        debug["metrics_keys_pred"] = sorted(_metrics_keys(pred_metrics))
        debug["metrics_keys_gold"] = sorted(_metrics_keys(gold_metrics))
    if out["todo_tool_alignment"] < 1.0:
        debug["todo_list"] = todo
    return out, debug


def strict_metrics(
    gold: dict[str, Any], original: dict[str, Any], plan: dict[str, Any], violations: list[str]
) -> dict[str, bool | float]:
    """Strict per-sample values: the original ones, or each one's failing value for an invalid
    prediction, plus ``schema_valid`` (no ``violations``) and ``tool_sequence_exact`` (from the
    sample's ``plan``, diagnostics.sample_plan)."""
    out: dict[str, bool | float] = {}
    if not original["json_valid"]:  # the failing values, where the original records none
        for name in ORIGINAL_METRICS:
            key = name.removesuffix("_retained")
            unrecorded = key != name and _value_type(gold.get("metrics"), key) == "missing"
            if name not in NOT_STRICT and not unrecorded:
                out[name] = 0.0 if name in RATE_METRICS else name in LOWER_IS_BETTER
    out |= {name: value for name, value in original.items() if name not in NOT_STRICT}
    out["schema_valid"] = not violations
    out["tool_sequence_exact"] = plan["pred_tools"] == plan["gold_tools"]
    return out


# --------------------------------------------------------------------------- scoring


def score(gold_rows: list[dict[str, Any]], pred_rows: list[Any]) -> list[dict[str, Any]]:
    """Per-sample records (runfolder.SampleRecord's fields, plus ``prompt_preview`` for the
    error listings) of aligned gold rows and decoded prediction lines
    (read by extract.read_prediction; their ``raw`` and ``thinking`` are kept)."""
    if len(gold_rows) != len(pred_rows):
        raise InputError(f"gold has {len(gold_rows)} rows but predictions have {len(pred_rows)}")
    records: list[dict[str, Any]] = []
    for index, (row, line) in enumerate(zip(gold_rows, pred_rows, strict=True)):
        gold, problem = read_prediction(row)  # the gold row's completion, read the same way
        if gold is None:
            raise InputError(f"gold row {index + 1}: completion: {problem}")
        pred, reason = read_prediction(line)
        flags = bucket_flags(gold)
        original, debug = sample_metrics(gold, pred)
        plan = sample_plan(gold, pred)
        if pred is None:
            debug = {"error": f"Failed to parse prediction: {reason}"}
            violations = [f"completion: {reason}"]
        else:
            violations = [str(v) for v in validate_completion(pred)]
        strict = strict_metrics(gold, original, plan, violations)
        record: dict[str, Any] = {
            "index": index,
            "buckets": ["overall", *(name for name in BUCKETS if flags[name])],
            "valid": pred is not None,
            "reason": reason,
            "metrics": original,
            "strict": strict,
            "extra": {name: strict[name] for name in EXTRA_METRICS} if pred is not None else {},
            "schema_violations": violations,
            "debug": debug,
            "gold_first_tool": next(iter(plan["gold_tools"]), None),
            "pred_first_tool": next(iter(plan["pred_tools"] or []), None),
            "plan": plan,
            # the raw text, and a <think> block dropped before extraction
            **{k: line[k] for k in ("raw", "thinking") if isinstance(line, dict) and k in line},
        }
        if isinstance(row, dict) and "prompt" in row:
            record["prompt_preview"] = str(row.get("prompt", ""))[:PROMPT_PREVIEW_CHARS]
        records.append(record)
    return records


def _bucket_values(records: list[dict[str, Any]], field: str) -> dict[str, dict[str, list[float]]]:
    """Per bucket and metric, the numbers of ``record[field]`` in sample order (booleans count
    1/0; None and NaN are skipped)."""
    values: dict[str, dict[str, list[float]]] = {}
    for record in records:
        for bucket in record["buckets"]:
            for name, value in record[field].items():
                if isinstance(value, int | float) and not math.isnan(value):
                    values.setdefault(bucket, {}).setdefault(name, []).append(float(value))
    return values


def aggregate(records: list[dict[str, Any]], field: str = "metrics") -> dict[str, dict[str, Any]]:
    """Per-bucket means of ``record[field]`` exactly as the original (see _bucket_values): sums
    are plain float additions in sample order; buckets and metric names sorted, ``samples``
    first, a bucket only when it has samples (``overall`` always)."""
    samples = Counter(bucket for record in records for bucket in record["buckets"])
    values = _bucket_values(records, field)
    out: dict[str, dict[str, Any]] = {}
    for bucket in sorted({"overall", *samples}):
        out[bucket] = {"samples": samples[bucket]}
        for name, numbers in sorted(values.get(bucket, {}).items()):
            # left to right, as the original (not sum(): 3.12 compensates)
            out[bucket][name] = functools.reduce(operator.add, numbers, 0.0) / len(numbers)
    return out


def error_samples(records: list[dict[str, Any]], as_original: bool = True) -> list[dict[str, Any]]:
    """The first MAX_ERROR_SAMPLES samples with details to show: as the original chooses them,
    else (``as_original=False``) routerlib's fuller list."""
    shown = [r for r in records if r["debug"] and (r["reason"] != _NULL_REASON or not as_original)]
    return [
        {"index": r["index"], "prompt_preview": r.get("prompt_preview", ""), "details": r["debug"]}
        for r in shown[:MAX_ERROR_SAMPLES]
    ]


def intervals(
    records: list[dict[str, Any]], n: int = 1000, seed: int = 0
) -> dict[str, dict[str, list[float]]]:
    """95% percentile bootstrap interval of each strict metric per bucket."""
    return {
        bucket: {name: list(bootstrap_ci(v, n=n, seed=seed)) for name, v in sorted(by_name.items())}
        for bucket, by_name in sorted(_bucket_values(records, "strict").items())
    }


def _numbers(rows: Iterable[Any], key: str) -> list[float]:
    found = (row.get(key) for row in rows if isinstance(row, dict))
    return [
        float(v) for v in found if isinstance(v, int | float) and not isinstance(v, bool) and v == v
    ]  # v == v: not NaN


def latency_summary(pred_rows: list[Any]) -> dict[str, float | int] | None:
    """p50/p95/mean of ``latency_s`` over prediction lines that carry it, else None."""
    values = _numbers(pred_rows, "latency_s")
    if not values:
        return None
    p50, p95 = np.percentile(np.asarray(values), [50, 95])
    return {
        "p50_s": float(p50),
        "p95_s": float(p95),
        "mean_s": sum(values) / len(values),
        "n": len(values),
    }


def token_summary(pred_rows: list[Any]) -> dict[str, float | int | None] | None:
    """Token totals from ``prompt_tokens`` / ``completion_tokens`` fields, else None."""
    prompt = _numbers(pred_rows, "prompt_tokens")
    completion = _numbers(pred_rows, "completion_tokens")
    if not prompt and not completion:
        return None
    return {
        "prompt_tokens_total": int(sum(prompt)),
        "completion_tokens_total": int(sum(completion)),
        "completion_tokens_mean": (sum(completion) / len(completion)) if completion else None,
        "n": max(len(prompt), len(completion)),
    }


# --------------------------------------------------------------------------- files


def read_jsonl(
    path: str | os.PathLike[str], what: str, check: Callable[[Any], str] | None = None
) -> list[tuple[int, Any]]:
    """Decoded non-blank lines of a JSONL file with their 1-based line numbers. InputError names
    the file and line of every line that is not JSON or in which ``check`` (decoded line ->
    its problem, "" for none) finds a problem."""
    file = Path(path)
    if not file.is_file():
        raise InputError(f"{what} file not found: {file}")
    rows: list[tuple[int, Any]] = []
    problems: list[str] = []
    try:
        with file.open("r", encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                line = line.strip()
                if not line:
                    continue
                try:
                    row = json.loads(line)
                except (ValueError, RecursionError) as exc:
                    problems.append(f"{file}:{number}: not valid JSON ({exc})")
                    continue
                rows.append((number, row))
                if check and (problem := check(row)):
                    problems.append(f"{file}:{number}: {problem}")
    except UnicodeDecodeError as exc:
        raise InputError(f"{file}: not UTF-8 text ({exc})") from None
    except OSError as exc:
        raise InputError(f"cannot read {what} file {file}: {exc.strerror or exc}") from None
    if problems:
        more = [f"... and {len(problems) - 10} more bad lines"] if len(problems) > 10 else []
        raise InputError(f"{file}: {len(problems)} bad line(s)", problems=problems[:10] + more)
    return rows


def prompt_problem(row: Any) -> str:
    """A gold line's problem when it has no string ``prompt`` ("" when it has one)."""
    ok = isinstance(row, dict) and isinstance(row.get("prompt"), str)
    return "" if ok else "prompt: missing or not a string"


def _gold_problem(row: Any) -> str:
    if not isinstance(row, dict) or "completion" not in row:
        return "completion: missing"
    reason = read_prediction(row)[1]
    return f"completion: {reason}" if reason else ""


def load_gold(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Gold rows; each must hold a ``completion`` that is a JSON object (string or dict)."""
    return [row for _, row in read_jsonl(path, "gold", _gold_problem)]


def matching_predictions(
    gold_path: Any, n_gold: int, pred_path: str | os.PathLike[str], what: str = "pred"
) -> list[Any]:
    """The lines of a prediction file, which must match the gold file's ``n_gold`` rows."""
    rows = [row for _, row in read_jsonl(pred_path, what)]
    if len(rows) != n_gold:
        raise InputError(
            f"gold {gold_path} has {n_gold} rows but {what} {pred_path} has "
            f"{len(rows)} rows; they must match line for line"
        )
    return rows


def score_files(
    gold_path: str | os.PathLike[str],
    pred_path: str | os.PathLike[str],
    *,
    compare_to: str | os.PathLike[str] | None = None,
    out_path: str | os.PathLike[str] | None = None,
    thresholds: dict[str, Any] | str | os.PathLike[str] | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Score a prediction file against a gold file and return the report. ``thresholds`` (a dict
    or a gate file path) adds ``threshold_results``; ``compare_to`` (the previous router's
    prediction file on the same gold) adds the ``comparison`` block (``paired.compare_scored``);
    with ``out_path`` the report JSON and ``samples.jsonl`` beside it are written atomically.
    InputError for a missing file, an unreadable line (file:line) or a count mismatch."""
    gold_rows = load_gold(gold_path)
    pred_rows = matching_predictions(gold_path, len(gold_rows), pred_path)
    records = score(gold_rows, pred_rows)
    report: dict[str, Any] = {  # the original three sections first, then routerlib's
        "config": {
            "gold_path": str(gold_path),
            "pred_path": str(pred_path),
            "total_samples": len(records),
        },
        "metrics": aggregate(records, "metrics"),
        "error_samples": error_samples(records),
        "error_samples_all": error_samples(records, as_original=False),
        "strict": aggregate(records, "strict"),
        "extra": aggregate(records, "extra"),
        "intervals": intervals(records, n=bootstrap, seed=seed) if bootstrap > 0 else None,
        "intervals_config": {
            "method": "percentile bootstrap",
            "level": LEVEL,
            "resamples": bootstrap,
            "seed": seed,
            "over": "strict",
        },
        "latency": latency_summary(pred_rows),
        "tokens": token_summary(pred_rows),
        "diagnostics": diagnostics_by_bucket(records),
    }
    if thresholds is not None:
        gate = thresholds if isinstance(thresholds, dict) else load_thresholds(thresholds)
        apply_gate(report, gate)
    if compare_to is not None:
        old = score(gold_rows, matching_predictions(gold_path, len(gold_rows), compare_to))
        figures = {field: aggregate(old, field) for field in ("metrics", "strict", "extra")}
        report["comparison"] = compare_scored((report, records), (figures, old), seed=seed)
        report["comparison"]["previous_pred_path"] = str(compare_to)
    if out_path is not None:
        write_report(report, records, out_path)
    return report


def sample_line(record: dict[str, Any]) -> dict[str, Any]:
    """The ``samples.jsonl`` form of a per-sample record (the fields of runfolder.SampleRecord)."""
    return {key: record[key] for key in runfolder.SampleRecord.model_fields if key in record}


def write_report(
    report: dict[str, Any], records: list[dict[str, Any]], out_path: str | os.PathLike[str]
) -> Path:
    """Write the report JSON and ``samples.jsonl`` beside it, each atomically, through their
    run-folder records (the one writer of both files)."""
    target = Path(out_path)
    samples = runfolder.samples_path(target)
    report["samples_path"] = str(samples)
    runfolder.write_samples(samples, [sample_line(record) for record in records])
    runfolder.write_report(target, report)
    return target


# --------------------------------------------------------------------------- thresholds gate


def validate_thresholds(data: Any, source: str = "thresholds") -> list[str]:
    """Problems of a gate mapping ``{bucket: {"min"|"max": {metric: number}}}`` (one line each)."""
    if not isinstance(data, dict):
        return [f"{source}: must be a mapping of bucket -> {{min, max}}"]
    problems = []
    for bucket, checks in data.items():
        where = f"{source}: {bucket}"
        if bucket not in ALL_BUCKETS:
            problems.append(f"{where}: unknown bucket (expected one of {', '.join(ALL_BUCKETS)})")
            continue
        if not isinstance(checks, dict):
            problems.append(f"{where}: must be a mapping with min and/or max")
            continue
        for kind, block in checks.items():
            if kind not in ("min", "max"):
                problems.append(f"{where}.{kind}: unknown kind (expected min or max)")
                continue
            if not isinstance(block, dict):
                problems.append(f"{where}.{kind}: must be a mapping of metric -> number")
                continue
            for metric, value in block.items():
                if metric not in KNOWN_METRICS:
                    problems.append(f"{where}.{kind}.{metric}: unknown metric")
                elif isinstance(value, bool) or not isinstance(value, int | float):
                    problems.append(f"{where}.{kind}.{metric}: must be a number, got {value!r}")
    return problems


def thresholds_file(path: str | os.PathLike[str]) -> Path:
    """The gate file ``path`` names: ``default`` is the packaged gates unless a file of that
    name exists (an existing file always wins)."""
    file = Path(path)
    if str(path) == DEFAULT_THRESHOLDS and not file.exists():
        return DEFAULT_THRESHOLDS_PATH
    return file


def load_thresholds(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a gate file (the original JSON format or the same structure in YAML); ``default``
    is the packaged gates (see thresholds_file)."""
    file = thresholds_file(path)
    if not file.is_file():
        raise InputError(f"thresholds file not found: {file}")
    text = file.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if file.suffix.lower() == ".json" else yaml.safe_load(text)
    except Exception as exc:  # json and yaml raise different types
        raise InputError(f"{file}: cannot parse thresholds ({exc})") from None
    problems = validate_thresholds(data, str(file))
    if problems:
        raise InputError(f"{file}: invalid thresholds file", problems=problems)
    return data


def apply_gate(
    report: dict[str, Any], thresholds: dict[str, Any], *, figures: str = "metrics"
) -> dict[str, Any]:
    """Check ``report[figures]`` (``metrics`` or ``strict``) against a gate; set and return
    ``report["threshold_results"]`` (runfolder.GateResults: the checks per bucket, ``overall_pass``
    and the ``failed`` "bucket.metric"s). A bucket other than ``overall`` with no test rows is
    skipped, not failed; a metric missing from a bucket with rows fails. Extra metrics named under
    ``metrics`` are read from ``extra``."""
    problems = validate_thresholds(thresholds)
    if problems:
        raise InputError("invalid thresholds", problems=problems)
    source, extra = report.get(figures) or {}, report.get("extra") or {}
    counts = report.get("metrics") or {}  # samples per bucket; a report without them skips nothing
    results: dict[str, Any] = {}
    failed: list[str] = []
    for bucket, checks in thresholds.items():
        bucket_values = source.get(bucket, {})
        empty = bucket != "overall" and bool(counts) and not counts.get(bucket, {}).get("samples")
        for kind in ("min", "max"):
            for metric, threshold in (checks.get(kind) or {}).items():
                value = bucket_values.get(metric)
                if value is None and figures == "metrics" and metric in EXTRA_METRICS:
                    value = extra.get(bucket, {}).get(metric)
                check: dict[str, Any] = {"value": value, "threshold": threshold, "kind": kind}
                if empty:
                    check.update(passed=None, skipped=True, samples=0)
                else:
                    passed = value is not None and (
                        value >= threshold if kind == "min" else value <= threshold
                    )
                    check["passed"] = passed
                    if not passed:
                        failed.append(f"{bucket}.{metric}")
                results.setdefault(bucket, {})[metric] = check
    results.update(overall_pass=not failed, failed=failed, figures=figures)
    report["threshold_results"] = results
    return report


def skipped_buckets(results: dict[str, Any] | None) -> dict[str, tuple[int, int]]:
    """Each bucket whose gate checks were skipped (no test rows): bucket -> (its test rows, the
    checks skipped), in gate order (runfolder.GateResults.skipped_buckets); empty without
    ``threshold_results``."""
    if not results:
        return {}
    gate = runfolder.GateResults.model_validate(results)
    checks = gate.checks()
    return {bucket: (rows, len(checks[bucket])) for bucket, rows in gate.skipped_buckets().items()}


def gate_line(results: dict[str, Any] | None, limit: int = 6) -> str:
    """The gate's verdict in one line (``gate: PASS (24 checks passed; skipped: has_computation
    (0 test rows, 2 checks))``); ``gate: not checked`` without ``threshold_results``."""
    if not isinstance(results, dict) or "overall_pass" not in results:
        return "gate: not checked"
    gate = runfolder.GateResults.model_validate(results)
    failed = gate.failed
    judged = sum(not c.skipped for checks in gate.checks().values() for c in checks.values())
    more = " …" if len(failed) > limit else ""
    failures = f"{len(failed)} of {judged} checks failed: {', '.join(failed[:limit])}{more}"
    parts = [failures if failed else f"{judged} checks passed"]
    skipped = [
        f"{b} ({rows} test rows, {n} check{'s' if n != 1 else ''})"
        for b, (rows, n) in skipped_buckets(results).items()
    ]
    parts += [f"skipped: {', '.join(skipped)}"] if skipped else []
    verdict = "PASS" if gate.overall_pass else "FAIL"
    return f"gate: {verdict} ({'; '.join(parts)})"


def failed_rows_line(report: dict[str, Any]) -> str:
    """The rows a batch job failed (scored invalid) and how to predict them again; "" if none."""
    failed = (report.get("generation") or {}).get("failed_rows") or []
    if not failed:
        return ""
    shown = ", ".join(map(str, failed[:10])) + (" …" if len(failed) > 10 else "")
    return (
        f"{len(failed)} row(s) failed in the batch job and were scored invalid: {shown} "
        "(`routerlib evaluate --batch … --rerun-failed` predicts them again)"
    )
