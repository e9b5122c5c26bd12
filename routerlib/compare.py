"""Reading finished runs: the leaderboard, paired significance against the previous router, and a
conclusion written from the numbers.

A run folder (written by notebook 04) holds ``metrics.json``, ``eval/report.json``,
``eval/samples.jsonl``, ``eval/predictions.jsonl``, ``eval/baselines/<kind>/…`` and
``tuning/full/loss_curve.json``. Every piece is optional here: a run with a missing or unreadable
file still gets a leaderboard row, with NaN where the number would be.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from routerlib import paths

#: Buckets of the original evaluator, in report order (``overall`` first).
BUCKETS = ("overall", "math_first", "four_step", "has_guidance", "has_computation", "advanced")
#: The metric a bucket column and the ranking use.
PRIMARY = "route_plan_exact"
#: Headline metrics shown when a run's metrics.json names none.
DEFAULT_HEADLINE = (
    "json_valid",
    "route_plan_exact",
    "route_first_tool_match",
    "route_tool_recall",
    "metrics_keys_match",
    "todo_covers_all_tools",
    "handoff_tools_covered",
)
#: Per-sample metrics tested for paired significance (binary → McNemar, rates → bootstrap).
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
#: Per-sample rates (not yes/no): always tested with the paired bootstrap.
RATE_METRICS = ("route_tool_precision", "route_tool_recall", "todo_tool_alignment")
#: Metrics where a lower value is better (never used to pick a winner).
LOWER_IS_BETTER = ("length_ratio_gt_1.1", "length_ratio_gt_1.25", "length_ratio_lt_0.9")
ALPHA = 0.05
#: Cost columns of the leaderboard (from metrics.json ``cost``, priced by params/pricing.yaml).
TUNING_USD = "tuning_usd"
SERVING_USD = "serving_usd_per_1000_routes"
NAN = float("nan")


@dataclass
class RunSummary:
    """One scored router: a tuned model of a run folder, or a baseline router evaluated in it."""

    name: str
    path: Path
    kind: str  # "model" | "baseline"
    metrics: dict[str, Any] = field(default_factory=dict)  # metrics.json (models only)
    report: dict[str, Any] | None = None  # eval/report.json
    eval_dir: Path | None = None  # folder of report.json, samples.jsonl, predictions.jsonl
    baseline_kind: str = ""
    baselines: list[RunSummary] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def run_name(self) -> str:
        """The run folder's name."""
        return self.path.name

    def _first_file(self, recorded: Any, names: Sequence[str]) -> Path | None:
        candidates = [Path(str(recorded))] if recorded else []
        if self.eval_dir is not None:
            candidates += [self.eval_dir / name for name in names]
        for file in candidates:
            file = file if file.is_absolute() else self.path / file
            if file.is_file():
                return file
        return None

    @property
    def samples_path(self) -> Path | None:
        """The per-sample records: the report's ``samples_path``, else samples.jsonl beside it."""
        return self._first_file(_get(self.report, "samples_path"), ["samples.jsonl"])

    @property
    def predictions_path(self) -> Path | None:
        """The scored predictions: the report's ``config.pred_path``, else predictions.jsonl or
        report.predictions.jsonl beside it."""
        return self._first_file(
            _get(self.report, "config", "pred_path"),
            ["predictions.jsonl", "report.predictions.jsonl"],
        )

    def samples(self) -> list[dict[str, Any]]:
        """Per-sample records (unreadable lines are skipped and noted in ``problems``)."""
        return _read_jsonl(self.samples_path, self.problems) if self.samples_path else []

    def loss_curve(self) -> list[dict[str, Any]]:
        """Tuning loss points ``{"epoch", "step", "train_loss", "val_loss"}``."""
        curve = _get(self.metrics, "tuning", "loss_curve")
        if isinstance(curve, list) and curve:
            return [p for p in curve if isinstance(p, dict)]
        file = self.path / paths.FULL_TUNING_DIR / "loss_curve.json"
        data = _read_json(file, self.problems) if file.is_file() else None
        if isinstance(data, dict):
            data = data.get("loss_curve") or data.get("points")
        return [p for p in data if isinstance(p, dict)] if isinstance(data, list) else []

    def test_key(self) -> str | None:
        """A fingerprint of the gold test rows (the gold file's bytes), to pair two routers."""
        gold = _get(self.report, "config", "gold_path")
        if not gold:
            return None
        file = Path(gold)
        if not file.is_absolute():
            file = paths.resolve(file)
        try:
            return hashlib.sha256(file.read_bytes()).hexdigest()
        except OSError:
            return None


# ----------------------------------------------------------------------------- reading


def _get(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _read_json(file: Path, problems: list[str]) -> Any:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.append(f"{file}: missing")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{file}: unreadable ({exc})")
    except json.JSONDecodeError as exc:
        problems.append(f"{file}: line {exc.lineno}: not valid JSON")
    return None


def _read_jsonl(file: Path, problems: list[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        problems.append(f"{file}: unreadable ({exc})")
        return rows
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            problems.append(f"{file}: line {number}: not valid JSON")
            continue
        if isinstance(obj, dict):
            rows.append(obj)
    return rows


def _load_report(file: Path, problems: list[str]) -> dict[str, Any] | None:
    data = _read_json(file, problems) if file.is_file() else None
    if data is None and not file.is_file():
        problems.append(f"{file}: missing")
    return data if isinstance(data, dict) else None


def load_run(run_dir: str | Path) -> RunSummary:
    """Read one run folder into a RunSummary (model) with its baseline routers attached."""
    run_dir = Path(run_dir).resolve()
    problems: list[str] = []
    metrics = _read_json(run_dir / paths.METRICS_FILE, problems)
    metrics = metrics if isinstance(metrics, dict) else {}
    name = str(_get(metrics, "run", "name") or run_dir.name)
    report_rel = _get(metrics, "evaluation", "report") or f"{paths.EVAL_DIR}/report.json"
    report_file = run_dir / str(report_rel)
    run = RunSummary(
        name=name,
        path=run_dir,
        kind="model",
        metrics=metrics,
        report=_load_report(report_file, problems),
        eval_dir=report_file.parent,
        problems=problems,
    )
    kinds: dict[str, Path] = {}
    listed = _get(metrics, "baselines")
    if isinstance(listed, dict):
        for kind, entry in listed.items():
            rel = _get(entry, "report") or f"{paths.EVAL_DIR}/baselines/{kind}/report.json"
            kinds[str(kind)] = run_dir / str(rel)
    base_dir = run_dir / paths.EVAL_DIR / "baselines"
    if base_dir.is_dir():
        for folder in sorted(base_dir.iterdir()):
            if (folder / "report.json").is_file():
                kinds.setdefault(folder.name, folder / "report.json")
    for kind, file in sorted(kinds.items()):
        base_problems: list[str] = []
        run.baselines.append(
            RunSummary(
                name=f"baseline:{kind}",
                path=run_dir,
                kind="baseline",
                report=_load_report(file, base_problems),
                eval_dir=file.parent,
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
    return sorted(p.parent for p in root.glob(f"*/{paths.METRICS_FILE}"))


def load_runs(run_paths: Sequence[str | Path] | None = None) -> list[RunSummary]:
    """The given run folders, or every run folder with a metrics.json under the outputs root."""
    dirs = [Path(p) for p in run_paths] if run_paths else find_run_dirs()
    return [load_run(d) for d in dirs]


def _rows(runs: Iterable[RunSummary]) -> list[RunSummary]:
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
    names: list[str] = []
    for run in runs:
        for section in ("headline", "strict"):
            block = _get(run.metrics, "evaluation", section)
            if isinstance(block, dict):
                names.extend(k for k in block if k not in names)
    return names or list(DEFAULT_HEADLINE)


def _gate_pass(run: RunSummary) -> Any:
    value = _get(run.metrics, "evaluation", "gate_pass")
    if value is None:
        value = _get(run.report, "threshold_results", "overall_pass")
    return bool(value) if isinstance(value, bool) else None


def leaderboard(runs: Sequence[RunSummary]) -> pd.DataFrame:
    """One row per tuned model and per distinct baseline router, best ``route_plan_exact`` (strict)
    first. Columns: identity and settings, gate pass, each headline metric (original value, strict
    value, 95% bootstrap interval of the strict value as ``<m> strict lo/hi``), the primary metric
    per bucket (strict), cost, train time, latency p50/p95 and the failing gate checks."""
    rows = _rows(runs)
    headline = _headline_metrics([r for r in rows if r.kind == "model"])
    records = []
    for run in rows:
        report = run.report or {}
        overall = _get(report, "metrics", "overall") or {}
        strict = _get(report, "strict", "overall") or {}
        intervals = _get(report, "intervals", "overall") or {}
        head = _get(run.metrics, "evaluation", "headline") or {}
        head_strict = _get(run.metrics, "evaluation", "strict") or {}
        rec: dict[str, Any] = {
            "model": run.name,
            "kind": run.kind,
            "run": run.run_name,
            "backend": _get(run.metrics, "run", "backend"),
            "base_model": _get(run.metrics, "run", "base_model"),
            "tuning_mode": _get(run.metrics, "run", "tuning_mode"),
            "adapter_size": _num(_get(run.metrics, "run", "adapter_size")),
            "epochs": _num(_get(run.metrics, "run", "epochs")),
            "gate_pass": _gate_pass(run),
            "samples": _num(overall.get("samples")),
        }
        for metric in headline:
            value = head.get(metric, overall.get(metric))
            rec[metric] = _num(value)
            rec[f"{metric} strict"] = _num(head_strict.get(metric, strict.get(metric)))
            interval = intervals.get(metric)
            if not (isinstance(interval, (list, tuple)) and len(interval) == 2):
                interval = (NAN, NAN)
            rec[f"{metric} strict lo"] = _num(interval[0])
            rec[f"{metric} strict hi"] = _num(interval[1])
        for bucket in BUCKETS[1:]:
            block = _get(report, "strict", bucket) or _get(report, "metrics", bucket) or {}
            rec[f"{bucket}: {PRIMARY}"] = _num(block.get(PRIMARY))
        rec["cost_usd"] = _num(_get(run.metrics, "tuning", "cost_estimate_usd"))
        rec["checkpoint"] = _get(run.metrics, "tuning", "checkpoint", "served")
        rec[TUNING_USD] = _num(_get(run.metrics, "cost", "tuning_usd"))
        rec[SERVING_USD] = _num(_get(run.metrics, "cost", "serving_usd_per_1000_routes"))
        rec["routes_per_hour"] = _num(_get(run.metrics, "cost", "routes_per_hour"))
        rec["train_seconds"] = _num(_get(run.metrics, "tuning", "train_seconds"))
        rec["latency_p50_s"] = _num(_get(report, "latency", "p50_s"))
        rec["latency_p95_s"] = _num(_get(report, "latency", "p95_s"))
        rec["failed_checks"] = "; ".join(_failed_checks(run.report))
        records.append(rec)
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


def _strict_value(sample: dict[str, Any], metric: str) -> float | None:
    """A sample's strict value (an invalid prediction counts as a miss). Reads the scorer's
    ``strict`` block, else its ``metrics`` block, else a top-level key."""
    strict = sample.get("strict")
    if isinstance(strict, dict) and metric in strict:
        value = strict[metric]
    else:
        nested = sample.get("metrics")
        block: dict[str, Any] = nested if isinstance(nested, dict) else sample
        if metric == "json_valid":
            value = block.get("json_valid", sample.get("valid"))
        elif sample.get("valid") is False or block.get("json_valid") is False:
            return 1.0 if metric in LOWER_IS_BETTER else 0.0
        else:
            value = block.get(metric)
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and not math.isnan(float(value)):
        return float(value)
    return None


def _paired(a_rows: list[dict], b_rows: list[dict], metric: str) -> tuple[list[float], list[float]]:
    b_by_index = {row.get("index"): row for row in b_rows if "index" in row}
    xs, ys = [], []
    for row in a_rows:
        other = b_by_index.get(row.get("index"))
        if other is None:
            continue
        x, y = _strict_value(row, metric), _strict_value(other, metric)
        if x is not None and y is not None:
            xs.append(x)
            ys.append(y)
    return xs, ys


def compare_pair(
    a: RunSummary, b: RunSummary, metrics: Sequence[str] = SIGNIFICANCE_METRICS, seed: int = 0
) -> list[dict[str, Any]]:
    """Paired tests of router ``a`` against ``b`` on the test rows both scored (by ``index``):
    McNemar on binary metrics, paired bootstrap of the mean difference on the others. Values are
    strict (an invalid prediction is a miss)."""
    from routerlib import stats

    a_rows, b_rows = a.samples(), b.samples()
    out = []
    for metric in metrics:
        xs, ys = _paired(a_rows, b_rows, metric)
        if not xs:
            continue
        rec: dict[str, Any] = {
            "model": a.name,
            "model_run": a.run_name,
            "reference": b.name,
            "metric": metric,
            "n": len(xs),
            "model_rate": sum(xs) / len(xs),
            "reference_rate": sum(ys) / len(ys),
        }
        rec["delta"] = rec["model_rate"] - rec["reference_rate"]
        binary = metric not in RATE_METRICS and all(v in (0.0, 1.0) for v in (*xs, *ys))
        # stats gives delta = mean(second) - mean(first) and b01 = fixed (first 0, second 1):
        # the reference goes first, so both read "model minus reference".
        boot = stats.paired_bootstrap(ys, xs, n=2000, seed=seed)
        rec["ci_low"], rec["ci_high"] = _num(boot.get("ci_low")), _num(boot.get("ci_high"))
        if binary:
            test = stats.mcnemar([bool(v) for v in ys], [bool(v) for v in xs])
            rec.update(
                test="mcnemar",
                p_value=_num(test.get("p_value")),
                b01=test.get("b01"),
                b10=test.get("b10"),
            )
        else:
            rec.update(
                test="paired_bootstrap", p_value=_num(boot.get("p_value")), b01=None, b10=None
            )
        rec["significant"] = (
            bool(rec["p_value"] < ALPHA) if not math.isnan(rec["p_value"]) else False
        )
        out.append(rec)
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
    table = pd.DataFrame.from_records(records, columns=SIGNIFICANCE_COLUMNS)
    for column in ("n", "b01", "b10"):
        table[column] = table[column].astype("Int64")  # counts; <NA> for bootstrap rows
    return table


# ----------------------------------------------------------------------------- conclusion


def _fmt(value: Any, digits: int = 3) -> str:
    number = _num(value)
    return "n/a" if math.isnan(number) else f"{number:.{digits}f}"


def _failed_checks(report: dict[str, Any] | None, limit: int = 4) -> list[str]:
    """Names of gate checks that failed, read defensively from threshold_results."""
    results = _get(report, "threshold_results")
    listed = _get(results, "failed")
    if isinstance(listed, list):
        return [str(item) for item in listed[:limit]]
    found: list[str] = []

    def walk(obj: Any, trail: list[str]) -> None:
        if isinstance(obj, dict):
            flag = obj.get("pass", obj.get("passed"))
            if flag is False and trail:
                detail = "/".join(trail)
                if "value" in obj:
                    detail += f" = {_fmt(obj.get('value'))}"
                found.append(detail)
                return
            for key, value in obj.items():
                if key != "overall_pass":
                    walk(value, [*trail, str(key)])
        elif isinstance(obj, list):
            for item in obj:
                if isinstance(item, dict):
                    name = "/".join(str(item.get(k)) for k in ("bucket", "metric") if item.get(k))
                    walk(
                        {k: v for k, v in item.items() if k not in ("bucket", "metric")},
                        [*trail, name] if name else trail,
                    )

    walk(results, [])
    return found[:limit]


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


# ----------------------------------------------------------------------------- quality vs cost


def pareto_front(
    board: pd.DataFrame, quality: str = f"{PRIMARY} strict", cost: str = SERVING_USD
) -> pd.Series:
    """True for each row no other row beats: none has at least its ``quality`` at no more than
    its ``cost`` and is better in one of them. Rows missing either figure are never on it."""
    front = pd.Series(False, index=board.index, dtype=bool)
    if board.empty or quality not in board or cost not in board:
        return front
    q = pd.to_numeric(board[quality], errors="coerce")
    c = pd.to_numeric(board[cost], errors="coerce")
    known = [i for i in board.index if not (math.isnan(q[i]) or math.isnan(c[i]))]
    for i in known:
        front[i] = not any(
            q[j] >= q[i] and c[j] <= c[i] and (q[j] > q[i] or c[j] < c[i]) for j in known
        )
    return front


def cheapest_passing(board: pd.DataFrame, cost: str = SERVING_USD) -> pd.Series | None:
    """The cheapest row by ``cost`` whose gate passes and whose quality is known (ties: the
    better strict primary metric); None when no such row."""
    if board.empty or cost not in board or "gate_pass" not in board:
        return None
    quality = f"{PRIMARY} strict"
    keep = (board["gate_pass"] == True) & board[cost].notna()  # noqa: E712
    if quality in board:
        keep &= board[quality].notna()
    priced = board[keep]
    if priced.empty:
        return None
    order = [cost, quality] if quality in priced else [cost]
    return priced.sort_values(order, ascending=[True, False][: len(order)]).iloc[0]


def cost_line(board: pd.DataFrame, cost: str = SERVING_USD) -> str:
    """One sentence naming the cheapest run that passes the gate, or saying none does."""
    row = cheapest_passing(board, cost)
    if row is None:
        return f"No priced run passes the gate (cost column `{cost}`)."
    return (
        f"Cheapest run that passes the gate: **{row['model']}** ({row['run']}) at "
        f"${row[cost]:,.4f} per 1,000 routes, strict {PRIMARY} {_fmt(row.get(f'{PRIMARY} strict'))}."
    )


# ----------------------------------------------------------------------------- sweeps


def sweep_board(board: pd.DataFrame, sweep_dir: str | Path | None = None) -> pd.DataFrame:
    """The leaderboard rows of one sweep (default: the newest under the outputs root) with its
    varied keys as the first columns, best first. Empty when there is no sweep."""
    from routerlib import sweep

    folders = [Path(sweep_dir)] if sweep_dir else sweep.find_sweeps()[-1:]
    if not folders or board.empty:
        return pd.DataFrame()
    record = sweep.read_sweep(folders[0])
    keys = record.varied_keys() or list(record.grid)
    by_run = {Path(p.run_dir).name: p.values for p in record.points if p.run_dir is not None}
    rows = board[(board["kind"] == "model") & board["run"].isin(list(by_run))].copy()
    for position, key in enumerate(keys):
        rows.insert(position, key, [by_run[r].get(key) for r in rows["run"]])
    rows.attrs["sweep"] = record.sweep
    rows.attrs["varied_keys"] = keys
    return rows.reset_index(drop=True)
