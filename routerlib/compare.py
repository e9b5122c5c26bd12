"""Comparing routers: the paired test, a prediction file against a previous one (the report's
``comparison``), and finished runs side by side (the leaderboard, paired significance and a
conclusion written from the numbers).

Scoring is metrics.py's; this module reads what it wrote (through runfolder's records) and never
recomputes a per-sample or strict value. A run folder's pieces are optional here: a run with a
missing, unreadable or foreign file still gets a leaderboard row, with NaN where the number would
be, and the file's problem (file and field) in ``RunSummary.problems``.

The comparison of two prediction files on the same gold holds:

* ``metrics`` / ``strict`` / ``extra``: per bucket, per metric ``{new, previous, delta}`` with
  ``delta = new - previous`` (a metric present on one side only has ``delta`` null), read from the
  two reports' own figures;
* ``changes``: for every binary strict metric over all samples, the indices ``fixed`` (the previous
  prediction missed, the new one hits) and ``broken`` (the reverse). For the lower-is-better flags
  (``length_ratio_gt_1.1`` …) "hit" means the flag is off;
* ``significance``: per bucket, per strict metric, :func:`paired_test` of the previous against the
  new per-sample strict values.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from routerlib import metrics, paths, runfolder
from routerlib.errors import InputError
from routerlib.metrics import ALL_BUCKETS as BUCKETS
from routerlib.metrics import HEADLINE, LOWER_IS_BETTER, RATE_METRICS
from routerlib.runfolder import MetricsRecord, RunFolderError, SampleRecord

if TYPE_CHECKING:
    import pandas as pd

#: The metric a bucket column and the ranking use.
PRIMARY = "route_plan_exact"
#: Per-sample metrics tested for paired significance between runs (binary → McNemar, rates →
#: bootstrap).
SIGNIFICANCE_METRICS = (
    "json_valid",
    "route_plan_exact",
    "route_first_tool_match",
    "route_length_match",
    "metrics_keys_match",
    "todo_covers_all_tools",
    "handoff_tools_covered",
    "route_tool_precision",
    "route_tool_recall",
    "todo_tool_alignment",
)
ALPHA = 0.05
#: Resamples of the paired bootstrap.
N_BOOT = 2000
NAN = float("nan")

__all__ = ["BUCKETS", "HEADLINE", "PRIMARY", "paired_test", "compare_predictions", "score_files"]


# ----------------------------------------------------------------------------- the paired test


def _good(metric: str, value: float) -> bool:
    """A hit: the value is true, or off for a lower-is-better flag."""
    return (not value) if metric in LOWER_IS_BETTER else bool(value)


def paired_test(
    previous: Sequence[float], new: Sequence[float], metric: str, *, seed: int = 0
) -> dict[str, Any]:
    """The one paired test of routerlib (the report's comparison, notebook 04, and the
    significance table, notebook 05): ``previous`` and ``new`` are the strict per-sample values
    of one metric on the same test rows, in the same order.

    Always ``delta`` (mean new - mean previous), ``ci_low``/``ci_high`` (paired bootstrap, 95%,
    ``N_BOOT`` resamples, seeded). Binary metrics: ``test = "mcnemar"`` on hits (b01 = fixed,
    b10 = broken) with its ``p_value``; rates: ``test = "paired_bootstrap"`` and the bootstrap's
    ``p_value``, ``b01``/``b10`` None."""
    from routerlib import stats

    boot = stats.paired_bootstrap(previous, new, n=N_BOOT, seed=seed)
    binary = metric not in RATE_METRICS and all(v in (0.0, 1.0) for v in (*previous, *new))
    if not binary:
        return {"test": "paired_bootstrap", **boot, "b01": None, "b10": None}
    test = stats.mcnemar([_good(metric, v) for v in previous], [_good(metric, v) for v in new])
    return {
        "test": "mcnemar",
        **test,
        "delta": boot["delta"],
        "ci_low": boot["ci_low"],
        "ci_high": boot["ci_high"],
    }


# ----------------------------------------------------------------------------- two prediction files


def _deltas(new: dict[str, dict[str, Any]], old: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for bucket in sorted(set(new) | set(old)):
        a, b = old.get(bucket, {}), new.get(bucket, {})
        rows = {}
        for name in sorted(set(a) | set(b)):
            if name == "samples":
                continue
            n_val, p_val = b.get(name), a.get(name)
            delta = n_val - p_val if n_val is not None and p_val is not None else None
            rows[name] = {"new": n_val, "previous": p_val, "delta": delta}
        out[bucket] = rows
    return out


def compare_scored(
    new: tuple[dict[str, Any], list[dict[str, Any]]],
    previous: tuple[dict[str, Any], list[dict[str, Any]]],
    *,
    seed: int = 0,
) -> dict[str, Any]:
    """The comparison block of two scored prediction files on the same gold: each a
    ``(report, records)`` pair from ``metrics.score_report``."""
    (new_report, new_records), (old_report, old_records) = new, previous
    if len(new_records) != len(old_records):
        raise InputError(
            f"cannot compare {len(new_records)} predictions with {len(old_records)} previous ones"
        )
    result: dict[str, Any] = {
        block: _deltas(new_report.get(block) or {}, old_report.get(block) or {})
        for block in ("metrics", "strict", "extra")
    }
    pairs = list(zip(old_records, new_records, strict=True))
    names = sorted({name for record in new_records for name in record["strict"]})
    changes: dict[str, dict[str, list[int]]] = {}
    for name in names:
        if name in RATE_METRICS:
            continue
        fixed, broken = [], []
        for old, cur in pairs:
            if name not in cur["strict"] or name not in old["strict"]:
                continue
            was, now = _good(name, old["strict"][name]), _good(name, cur["strict"][name])
            if now and not was:
                fixed.append(cur["index"])
            elif was and not now:
                broken.append(cur["index"])
        changes[name] = {"fixed": fixed, "broken": broken}
    result["changes"] = changes
    significance: dict[str, dict[str, Any]] = {}
    for bucket in sorted({bucket for record in new_records for bucket in record["buckets"]}):
        in_bucket = [(old, cur) for old, cur in pairs if bucket in cur["buckets"]]
        tests: dict[str, Any] = {}
        for name in names:
            both = [
                (o["strict"][name], c["strict"][name]) for o, c in in_bucket if name in o["strict"]
            ]
            if both:
                a, b = zip(*both, strict=True)
                tests[name] = paired_test(
                    [float(x) for x in a], [float(x) for x in b], name, seed=seed
                )
        significance[bucket] = tests
    result["significance"] = significance
    return result


def compare_predictions(
    gold_path: str | os.PathLike[str],
    pred_path: str | os.PathLike[str],
    prev_pred_path: str | os.PathLike[str],
    *,
    seed: int = 0,
) -> dict[str, Any]:
    """Compare ``pred_path`` with ``prev_pred_path`` on the same gold (see the module docstring)."""
    new = metrics.score_report(gold_path, pred_path, bootstrap=0)
    result = compare_scored(
        new, metrics.score_report(gold_path, prev_pred_path, bootstrap=0), seed=seed
    )
    result["previous_pred_path"] = str(prev_pred_path)
    return result


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
    """``metrics.score_files``, plus ``comparison`` against the previous prediction file
    ``compare_to`` when given (written into the report before it is saved)."""
    report, records = metrics.score_report(
        gold_path, pred_path, thresholds=thresholds, bootstrap=bootstrap, seed=seed
    )
    if compare_to is not None:
        previous = metrics.score_report(gold_path, compare_to, bootstrap=0)
        report["comparison"] = compare_scored((report, records), previous, seed=seed)
        report["comparison"]["previous_pred_path"] = str(compare_to)
    if out_path is not None:
        metrics.write_report(report, records, out_path)
    return report


# ----------------------------------------------------------------------------- finished runs


@dataclass
class RunSummary:
    """One scored router: a tuned model of a run folder, or a baseline router evaluated in it."""

    name: str
    path: Path
    kind: str  # "model" | "baseline"
    metrics: MetricsRecord | None = None  # metrics.json (models only)
    report: dict[str, Any] | None = None  # report.json, checked against runfolder.ReportRecord
    report_path: Path | None = None
    baseline_kind: str = ""
    baselines: list[RunSummary] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def run_name(self) -> str:
        """The run folder's name."""
        return self.path.name

    def _recorded(self, value: str | None, default: Path | None) -> Path | None:
        file = Path(value) if value else default
        if file is None:
            return None
        file = file if file.is_absolute() else self.path / file
        return file if file.is_file() else None

    @property
    def samples_path(self) -> Path | None:
        """The per-sample records: the report's ``samples_path``, else samples.jsonl beside it."""
        default = runfolder.samples_path(self.report_path) if self.report_path else None
        return self._recorded((self.report or {}).get("samples_path"), default)

    @property
    def predictions_path(self) -> Path | None:
        """The scored predictions: the report's ``config.pred_path``, else the run folder's name
        for them (``runfolder.predictions_path``)."""
        default = runfolder.predictions_path(self.report_path) if self.report_path else None
        return self._recorded(((self.report or {}).get("config") or {}).get("pred_path"), default)

    def samples(self) -> list[SampleRecord]:
        """Per-sample records (none, and a line in ``problems``, when the file is bad)."""
        if self.samples_path is None:
            return []
        try:
            return runfolder.read_samples(self.samples_path)
        except RunFolderError as exc:
            self.problems.extend(exc.lines())
            return []

    def loss_curve(self) -> list[dict[str, Any]]:
        """Tuning loss points ``{"epoch", "step", "train_loss", "val_loss"}``: metrics.json's,
        else the tuning folder's loss_curve.json."""
        if self.metrics is not None and self.metrics.tuning and self.metrics.tuning.loss_curve:
            return self.metrics.tuning.loss_curve
        file = self.path / runfolder.FULL_TUNING_DIR / runfolder.LOSS_CURVE_FILE
        if not file.is_file():
            return []
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            self.problems.append(f"{file}: unreadable ({exc})")
            return []
        return [p for p in data if isinstance(p, dict)] if isinstance(data, list) else []

    def test_key(self) -> str | None:
        """A fingerprint of the gold test rows (the gold file's bytes), to pair two routers."""
        gold = ((self.report or {}).get("config") or {}).get("gold_path")
        if not gold:
            return None
        file = Path(gold)
        if not file.is_absolute():
            file = paths.resolve(file)
        try:
            return hashlib.sha256(file.read_bytes()).hexdigest()
        except OSError:
            return None


def _get(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _load_report(file: Path, problems: list[str]) -> dict[str, Any] | None:
    try:
        return runfolder.read_report(file)
    except RunFolderError as exc:
        problems.extend(exc.lines())
        return None


def load_run(run_dir: str | Path) -> RunSummary:
    """Read one run folder into a RunSummary (model) with its baseline routers attached."""
    run_dir = Path(run_dir).resolve()
    problems: list[str] = []
    record: MetricsRecord | None = None
    try:
        record = runfolder.read_metrics(run_dir)
    except RunFolderError as exc:
        problems.extend(exc.lines())
    evaluation = record.evaluation if record else None
    report_file = run_dir / (evaluation.report if evaluation else runfolder.REPORT_FILE)
    run = RunSummary(
        name=record.run.name if record else run_dir.name,
        path=run_dir,
        kind="model",
        metrics=record,
        report=_load_report(report_file, problems),
        report_path=report_file,
        problems=problems,
    )
    kinds: dict[str, Path] = {}
    for kind, entry in (record.baselines if record else {}).items():
        kinds[kind] = run_dir / entry.report
    base_dir = run_dir / runfolder.BASELINES_DIR
    if base_dir.is_dir():
        for folder in sorted(base_dir.iterdir()):
            file = run_dir / runfolder.baseline_report_file(folder.name)
            if file.is_file():
                kinds.setdefault(folder.name, file)
    for kind, file in sorted(kinds.items()):
        base_problems: list[str] = []
        run.baselines.append(
            RunSummary(
                name=f"baseline:{kind}",
                path=run_dir,
                kind="baseline",
                report=_load_report(file, base_problems),
                report_path=file,
                baseline_kind=kind,
                problems=base_problems,
            )
        )
    return run


def find_run_dirs(root: Path | None = None) -> list[Path]:
    """Every folder directly under the outputs root that holds a metrics.json, oldest first."""
    root = root or paths.outputs_root()
    if not root.is_dir():
        return []
    return sorted(p.parent for p in root.glob(f"*/{runfolder.METRICS_FILE}"))


def load_runs(run_paths: Sequence[str | Path] | None = None) -> list[RunSummary]:
    """The given run folders, or every run folder with a metrics.json under the outputs root."""
    dirs = [Path(p) for p in run_paths] if run_paths else find_run_dirs()
    return [load_run(d) for d in dirs]


def routers(runs: Iterable[RunSummary]) -> list[RunSummary]:
    """Models, then their baselines, with identical baseline results (same kind, same test rows,
    same numbers) shown once."""
    runs = list(runs)
    out: list[RunSummary] = [r for r in runs if r.kind == "model"]
    seen: set[str] = set()
    for run in runs:
        for base in [run] if run.kind == "baseline" else run.baselines:
            key = json.dumps([base.baseline_kind, _get(base.report, "metrics")], sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
            out.append(base)
    return out


# ----------------------------------------------------------------------------- leaderboard


def _num(value: Any) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
        return float(value)
    return NAN


def _headline_metrics(runs: Sequence[RunSummary]) -> list[str]:
    """The headline metrics the runs' metrics.json recorded, else ``metrics.HEADLINE``."""
    names: list[str] = []
    for run in runs:
        evaluation = run.metrics.evaluation if run.metrics else None
        if evaluation is not None:
            for block in (evaluation.headline, evaluation.strict):
                names.extend(k for k in block if k not in names)
    return names or list(HEADLINE)


def _gate_pass(run: RunSummary) -> bool | None:
    evaluation = run.metrics.evaluation if run.metrics else None
    value = evaluation.gate_pass if evaluation else None
    if value is None:
        value = _get(run.report, "threshold_results", "overall_pass")
    return value if isinstance(value, bool) else None


def leaderboard(runs: Sequence[RunSummary]) -> pd.DataFrame:
    """One row per tuned model and per distinct baseline router, best ``route_plan_exact`` (strict)
    first. Columns: identity and settings, gate pass, each headline metric (original value, strict
    value, 95% bootstrap interval of the strict value as ``<m> strict lo/hi``), the primary metric
    per bucket (strict), cost, train time, latency p50/p95 and the failing gate checks."""
    rows = routers(runs)
    headline = _headline_metrics([r for r in rows if r.kind == "model"])
    records = []
    for run in rows:
        report = run.report or {}
        overall = _get(report, "metrics", "overall") or {}
        strict = _get(report, "strict", "overall") or {}
        intervals = _get(report, "intervals", "overall") or {}
        record = run.metrics
        info = record.run if record else None
        tuning = record.tuning if record else None
        evaluation = record.evaluation if record else None
        head = evaluation.headline if evaluation else {}
        head_strict = evaluation.strict if evaluation else {}
        rec: dict[str, Any] = {
            "model": run.name,
            "kind": run.kind,
            "run": run.run_name,
            "backend": info.backend if info else None,
            "base_model": info.base_model if info else None,
            "tuning_mode": info.tuning_mode if info else None,
            "adapter_size": _num(info.adapter_size if info else None),
            "epochs": _num(info.epochs if info else None),
            "gate_pass": _gate_pass(run),
            "samples": _num(overall.get("samples")),
        }
        for metric in headline:
            rec[metric] = _num(head.get(metric, overall.get(metric)))
            rec[f"{metric} strict"] = _num(head_strict.get(metric, strict.get(metric)))
            interval = intervals.get(metric)
            if not (isinstance(interval, (list, tuple)) and len(interval) == 2):
                interval = (NAN, NAN)
            rec[f"{metric} strict lo"] = _num(interval[0])
            rec[f"{metric} strict hi"] = _num(interval[1])
        for bucket in BUCKETS[1:]:
            block = _get(report, "strict", bucket) or _get(report, "metrics", bucket) or {}
            rec[f"{bucket}: {PRIMARY}"] = _num(block.get(PRIMARY))
        rec["cost_usd"] = _num(tuning.cost_estimate_usd if tuning else None)
        rec["train_seconds"] = _num(tuning.train_seconds if tuning else None)
        rec["latency_p50_s"] = _num(_get(report, "latency", "p50_s"))
        rec["latency_p95_s"] = _num(_get(report, "latency", "p95_s"))
        rec["failed_checks"] = "; ".join(_failed_checks(run.report))
        records.append(rec)
    import pandas as pd

    board = pd.DataFrame.from_records(records)
    if board.empty:
        return board
    for column in ("adapter_size", "epochs", "samples"):
        board[column] = board[column].round().astype("Int64")  # whole numbers; <NA> when unknown
    sort_key = f"{PRIMARY} strict" if f"{PRIMARY} strict" in board else board.columns[0]
    board = board.sort_values(
        [sort_key, "kind"], ascending=[False, False], na_position="last", kind="stable"
    )
    return board.reset_index(drop=True)


# ----------------------------------------------------------------------------- significance


def _paired(
    a_rows: list[SampleRecord], b_rows: list[SampleRecord], metric: str
) -> tuple[list[float], list[float]]:
    """The strict values metrics.py recorded for ``metric`` on the test rows both scored."""
    b_by_index = {row.index: row for row in b_rows}
    xs, ys = [], []
    for row in a_rows:
        other = b_by_index.get(row.index)
        if other is not None and metric in row.strict and metric in other.strict:
            xs.append(float(row.strict[metric]))
            ys.append(float(other.strict[metric]))
    return xs, ys


def compare_pair(
    a: RunSummary, b: RunSummary, metrics: Sequence[str] = SIGNIFICANCE_METRICS, seed: int = 0
) -> list[dict[str, Any]]:
    """Paired tests (:func:`paired_test`) of router ``a`` against ``b`` on the test rows both
    scored (by ``index``), on the strict values (an invalid prediction is a miss)."""
    a_rows, b_rows = a.samples(), b.samples()
    out = []
    for metric in metrics:
        xs, ys = _paired(a_rows, b_rows, metric)
        if not xs:
            continue
        # The reference goes first, so delta and b01 (fixed) read "model minus reference".
        test = paired_test(ys, xs, metric, seed=seed)
        p_value = _num(test.get("p_value"))
        out.append(
            {
                "model": a.name,
                "model_run": a.run_name,
                "reference": b.name,
                "metric": metric,
                "n": len(xs),
                "model_rate": sum(xs) / len(xs),
                "reference_rate": sum(ys) / len(ys),
                "delta": sum(xs) / len(xs) - sum(ys) / len(ys),
                "ci_low": _num(test.get("ci_low")),
                "ci_high": _num(test.get("ci_high")),
                "test": test["test"],
                "p_value": p_value,
                "b01": test.get("b01"),
                "b10": test.get("b10"),
                "significant": bool(p_value < ALPHA) if not math.isnan(p_value) else False,
            }
        )
    return out


SIGNIFICANCE_COLUMNS = [
    "model",
    "model_run",
    "reference",
    "metric",
    "test",
    "n",
    "model_rate",
    "reference_rate",
    "delta",
    "ci_low",
    "ci_high",
    "p_value",
    "significant",
    "b01",
    "b10",
]


def significance_table(runs: Sequence[RunSummary]) -> pd.DataFrame:
    """Each tuned model against the previous router(s) evaluated on its own test rows, and against
    each other model scored on identical test rows. One row per (model, reference, metric)."""
    models = [r for r in runs if r.kind == "model"]
    records: list[dict[str, Any]] = []
    for run in models:
        if run.samples_path is None:
            continue
        for base in run.baselines:
            if base.samples_path is not None:
                records.extend(compare_pair(run, base))
    keyed = [(m, m.test_key()) for m in models if m.samples_path is not None]
    for i, (a, key_a) in enumerate(keyed):
        for b, key_b in keyed[i + 1 :]:
            if key_a is not None and key_a == key_b:
                records.extend(compare_pair(a, b))
    import pandas as pd

    table = pd.DataFrame.from_records(records, columns=SIGNIFICANCE_COLUMNS)
    for column in ("n", "b01", "b10"):
        table[column] = table[column].astype("Int64")  # counts; <NA> for bootstrap rows
    return table


# ----------------------------------------------------------------------------- conclusion


def _fmt(value: Any, digits: int = 3) -> str:
    number = _num(value)
    return "n/a" if math.isnan(number) else f"{number:.{digits}f}"


def _failed_checks(report: dict[str, Any] | None, limit: int = 4) -> list[str]:
    """The gate checks that failed ("bucket.metric"), as ``metrics.apply_gate`` lists them."""
    failed = _get(report, "threshold_results", "failed")
    return [str(item) for item in failed[:limit]] if isinstance(failed, list) else []


def conclusion(board: pd.DataFrame, sig: pd.DataFrame) -> str:
    """A short markdown paragraph from the numbers: which model to ship and why, or that none passes
    the gate and which comes closest."""
    if board is None or board.empty or "kind" not in board:
        return "**No runs to compare yet.** Run `routerlib run params/local.yaml` first."
    models = board[board["kind"] == "model"]
    baselines = board[board["kind"] == "baseline"]
    primary = f"{PRIMARY} strict" if f"{PRIMARY} strict" in board else PRIMARY
    if models.empty:
        return "**No tuned model has been evaluated yet**; only the baseline routers are scored."

    def describe(row: pd.Series) -> str:
        bits = [str(row.get("tuning_mode") or "?")]
        if not math.isnan(_num(row.get("adapter_size"))):
            bits.append(f"adapter {int(row['adapter_size'])}")
        base = row.get("base_model")
        return f"**{row['model']}** ({base}, {', '.join(bits)}; run `{row['run']}`)"

    def interval(row: pd.Series) -> str:
        lo, hi = _num(row.get(f"{PRIMARY} strict lo")), _num(row.get(f"{PRIMARY} strict hi"))
        return "" if math.isnan(lo) or math.isnan(hi) else f" (95% interval {lo:.3f}–{hi:.3f})"

    ranked = models.sort_values(
        [primary, "json_valid strict" if "json_valid strict" in models else primary],
        ascending=False,
        na_position="last",
        kind="stable",
    )
    passing = ranked[ranked["gate_pass"] == True]  # noqa: E712 (object column with None)
    best = passing.iloc[0] if not passing.empty else ranked.iloc[0]
    lines = []
    if not passing.empty:
        lines.append(
            f"Ship {describe(best)}: it passes the evaluation gate and scores {PRIMARY} "
            f"{_fmt(best[primary])} strict{interval(best)}"
            + (
                f", JSON valid {_fmt(best.get('json_valid strict'))}"
                if "json_valid strict" in best
                else ""
            )
            + "."
        )
        if len(passing) > 1:
            runner = passing.iloc[1]
            lines.append(
                f"Runner-up among passing models: {describe(runner)} at {_fmt(runner[primary])}."
            )
    else:
        lines.append(
            f"**No tuned model passes the gate.** Closest: {describe(best)} with {PRIMARY} "
            f"{_fmt(best[primary])} strict{interval(best)}."
        )
        failed = str(best.get("failed_checks") or "")
        if failed and failed != "nan":
            lines.append(
                "Failing checks include: " + ", ".join(f"`{c}`" for c in failed.split("; ")) + "."
            )
    if not baselines.empty:
        top_base = baselines.sort_values(primary, ascending=False, na_position="last").iloc[0]
        base_score, best_score = _num(top_base[primary]), _num(best[primary])
        if passing.empty and not math.isnan(base_score) and not best_score > base_score:
            lines.append(
                f"No tuned model beats the previous router on {PRIMARY} (strict): keep "
                f"`{top_base['model']}` ({_fmt(base_score)}) until one does."
            )
        else:
            lines.append(
                f"The best previous router, `{top_base['model']}`, scores {_fmt(base_score)}."
            )
    if sig is not None and not sig.empty:
        rows = sig[
            (sig["model_run"] == best["run"])
            & (sig["metric"] == PRIMARY)
            & sig["reference"].astype(str).str.startswith("baseline:")
        ]
        for _, row in rows.iterrows():
            verdict = "significant" if row["significant"] else "not significant"
            lines.append(
                f"Against `{row['reference']}` on the same {int(row['n'])} test rows: "
                f"Δ{PRIMARY} = {row['delta']:+.3f} ({row['test']} p = {_fmt(row['p_value'], 4)}, "
                f"{verdict} at {ALPHA})."
            )
    extras = []
    if not math.isnan(_num(best.get("cost_usd"))):
        extras.append(f"estimated tuning cost ${_num(best['cost_usd']):.2f}")
    if not math.isnan(_num(best.get("train_seconds"))):
        extras.append(f"train time {_num(best['train_seconds']):.0f} s")
    if not math.isnan(_num(best.get("latency_p95_s"))):
        extras.append(f"latency p95 {_num(best['latency_p95_s']):.2f} s")
    if extras:
        lines.append("For it: " + ", ".join(extras) + ".")
    return " ".join(lines)
