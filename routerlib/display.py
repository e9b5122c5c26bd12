"""Results as a reader meets them in notebooks and the report: router labels that say which run,
the compact headline table, rounded numbers, one marker for a missing value, short Markdown and
two-column tables instead of dicts, lists and paths. Full precision stays in the files.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from routerlib.metric_names import DECIDING_METRICS

#: The one marker for a value that is not known (NaN, None, pd.NA all show as this).
MISSING = "–"
#: Short column names of the deciding metrics in the headline table.
SHORT_NAMES = {
    "route_plan_exact": "plan exact",
    "tool_sequence_exact": "tool sequence exact",
    "route_tool_recall": "tool recall",
    "json_valid": "JSON valid",
}
#: The headline table never has more columns than this (router, run, gate, four metrics, cost,
#: latency).
HEADLINE_MAX_COLUMNS = 9


def missing(value: Any) -> bool:
    """True for None, NaN and pandas' NA."""
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def fmt(value: Any, digits: int = 3) -> str:
    """A number rounded for reading, a bool as yes/no, a path as its name, MISSING when unknown."""
    if missing(value):
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Path):
        return value.name
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value.is_integer() and abs(value) >= 1000:
            return f"{int(value):,}"
        return f"{value:.{digits}f}"
    return str(value)


def spoken(value: Any, digits: int = 3) -> str:
    """:func:`fmt` for a number inside a sentence: an unknown one is "unknown", never MISSING."""
    return "unknown" if missing(value) else fmt(value, digits)


def readable(frame: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """Every cell as display text: rounded numbers, yes/no, one missing-value marker."""
    return frame.map(lambda value: fmt(value, digits)).astype(object)


def run_suffix(model: str, run: str) -> str:
    """What tells two runs of one model apart: the run folder without the model's name."""
    return run[len(model) + 1 :] if run.startswith(f"{model}-") else run


def router_label(row: Mapping[str, Any], board: pd.DataFrame) -> str:
    """The router's name, with its run when another leaderboard row has the same name."""
    name = str(row.get("model"))
    if board is not None and "model" in board and (board["model"] == name).sum() > 1:
        return f"{name} · {run_suffix(name, str(row.get('run')))}"
    return name


def router_labels(board: pd.DataFrame) -> list[str]:
    """``router_label`` of every leaderboard row, in order."""
    return [router_label(row, board) for _, row in board.iterrows()]


def with_interval(row: Mapping[str, Any], metric: str) -> str:
    """``0.900 [0.825, 0.975]``: the strict value and its 95% interval (value alone without one)."""
    value = row.get(f"{metric} strict", row.get(metric))
    if missing(value):
        return MISSING
    lo, hi = row.get(f"{metric} strict lo"), row.get(f"{metric} strict hi")
    if missing(lo) or missing(hi):
        return f"{value:.3f}"
    return f"{value:.3f} [{lo:.2f}, {hi:.2f}]"


def gate_cell(row: Mapping[str, Any]) -> str:
    """``pass``, ``fail`` or MISSING, with the buckets the gate skipped for want of test rows
    (``pass · has_computation skipped (0 rows)``)."""
    gate = row.get("gate_pass")
    if missing(gate):
        return MISSING
    text = "pass" if gate else "fail"
    skipped = row.get("skipped_checks")
    if isinstance(skipped, str) and skipped:
        for item in skipped.split("; "):  # "has_computation (0 test rows)"
            name, _, rows = item.partition(" (")
            text += f" · {name} skipped ({rows.replace(' test rows)', ' rows')})"
    return text


def headline_board(board: pd.DataFrame) -> pd.DataFrame:
    """The compact leaderboard: router, run, gate, the deciding metrics (strict, with intervals),
    tuning cost and p95 latency; at most HEADLINE_MAX_COLUMNS columns, all text."""
    if board is None or board.empty:
        return pd.DataFrame(columns=["router"])
    rows = []
    for label, (_, row) in zip(router_labels(board), board.iterrows(), strict=True):
        rec: dict[str, Any] = {"router": label, "run": str(row.get("run")), "gate": gate_cell(row)}
        for metric in DECIDING_METRICS:
            rec[SHORT_NAMES.get(metric, metric)] = with_interval(row, metric)
        cost, latency = row.get("cost_usd"), row.get("latency_p95_s")
        rec["tuning cost"] = MISSING if missing(cost) else f"${cost:,.2f}"
        rec["latency p95"] = MISSING if missing(latency) else f"{latency:.2f} s"
        rows.append(rec)
    return pd.DataFrame(rows)


def full_board(board: pd.DataFrame) -> pd.DataFrame:
    """Every leaderboard column for reading: each strict figure with its interval in one cell,
    numbers rounded, one missing-value marker, labels that name the run."""
    if board is None or board.empty:
        return pd.DataFrame(columns=["router"])
    shown = board.copy()
    for column in list(shown.columns):
        if column.endswith(" strict") and f"{column} lo" in shown:
            metric = column[: -len(" strict")]
            shown[column] = [with_interval(row, metric) for _, row in board.iterrows()]
            shown = shown.drop(columns=[f"{column} lo", f"{column} hi"])
    shown.insert(0, "router", router_labels(board))
    shown = shown.drop(columns=["model"])
    return readable(shown)


def significance_view(sig: pd.DataFrame, metrics: Iterable[str] | None = None) -> pd.DataFrame:
    """Paired tests for reading, routers named with their run when one name has several runs.

    Without ``metrics``: one row per test (router, against, metric, rows, both rates, Δ with its
    95% interval, p-value, verdict). With ``metrics``: one row per pair of routers in table order
    and one column per metric, ``Δ (p …)`` with "significant" when it is, so many runs stay
    readable."""
    shown = None if metrics is None else list(metrics)
    if shown is None:
        columns = ["router", "against", "metric", "rows", "router rate", "against rate"]
        columns += ["Δ [95% CI]", "p", "significant"]
    else:
        columns = ["router", "against", "rows", *(SHORT_NAMES.get(m, m) for m in shown)]
    if sig is None or sig.empty:
        return pd.DataFrame(columns=columns)
    runs_of: dict[str, set[str]] = {}
    for _, row in sig.iterrows():
        runs_of.setdefault(str(row["model"]), set()).add(str(row["model_run"]))
        if not str(row["reference"]).startswith("baseline:"):
            runs_of.setdefault(str(row["reference"]), set()).add(str(row.get("reference_run")))

    def name(router: str, run: Any) -> str:
        several = len(runs_of.get(router, ())) > 1 and not router.startswith("baseline:")
        return f"{router} · {run_suffix(router, str(run))}" if several else router

    tests: list[tuple[Any, ...]] = []
    pairs: dict[tuple[str, str], dict[str, Any]] = {}
    for _, row in sig.iterrows():
        router = name(str(row["model"]), row["model_run"])
        against = name(str(row["reference"]), row.get("reference_run"))
        delta, p_value = row.get("delta"), fmt(row.get("p_value"), 4)
        if shown is None:
            ci = f"[{fmt(row.get('ci_low'), 2)}, {fmt(row.get('ci_high'), 2)}]"
            rates = fmt(row.get("n")), fmt(row.get("model_rate")), fmt(row.get("reference_rate"))
            cells = MISSING if missing(delta) else f"{delta:+.3f} {ci}", p_value
            verdict = "yes" if row.get("significant") else "no"
            tests.append((router, against, row["metric"], *rates, *cells, verdict))
        elif row["metric"] in shown:  # one row per pair: its names tell its runs apart
            start = dict.fromkeys(columns, MISSING) | {"router": router, "against": against}
            rec = pairs.setdefault((router, against), start)
            if rec["rows"] == MISSING:  # the first test that counted them
                rec["rows"] = fmt(row.get("n"))
            if not missing(delta):
                verdict = " significant" if row.get("significant") else ""
                cell = f"{delta:+.3f} (p {p_value}){verdict}"
                rec[SHORT_NAMES.get(row["metric"], row["metric"])] = cell
    return pd.DataFrame(tests if shown is None else list(pairs.values()), columns=columns)


def fields(mapping: Mapping[str, Any], digits: int = 3) -> pd.DataFrame:
    """A two-column table (field, value) of a flat or nested dict; nested keys joined with dots,
    lists joined with commas."""
    rows: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            if not value:
                rows.append((prefix, MISSING))
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        elif isinstance(value, (list, tuple)):
            rows.append((prefix, ", ".join(fmt(v, digits) for v in value) or MISSING))
        else:
            rows.append((prefix, fmt(value, digits)))

    walk("", mapping)
    return pd.DataFrame(rows, columns=["field", "value"]).set_index("field")


class HTMLTable:
    """A DataFrame shown whole (no pandas truncation), rounded, on one line per row, scrolling
    sideways when wide."""

    def __init__(self, frame: pd.DataFrame, index: bool = False) -> None:
        self.frame = frame
        self.index = index

    def _repr_html_(self) -> str:
        body = readable(self.frame).to_html(index=self.index, border=0, classes="routerlib")
        style = (
            "<style>table.routerlib td,table.routerlib th{white-space:nowrap}"
            "table.routerlib td:first-child,table.routerlib th{text-align:left}</style>"
        )
        return f'{style}<div style="overflow-x:auto">{body}</div>'

    def __repr__(self) -> str:
        return readable(self.frame).to_string(index=self.index)


#: ``whole(frame)`` for a notebook cell's last line: every row and column, rounded.
whole = HTMLTable


def runs_table(runs: Iterable[Any]) -> pd.DataFrame:
    """The run folders being compared: folder, model, base model, mode, epochs, routers scored."""
    rows = []
    for run in runs:
        info = run.metrics.run if run.metrics is not None else None
        mode, size = getattr(info, "tuning_mode", None), getattr(info, "adapter_size", None)
        rows.append(
            (
                run.run_name,
                run.name,
                getattr(info, "base_model", None),
                f"{mode} r={size}" if mode and size else mode,
                getattr(info, "epochs", None),
                ", ".join(b.baseline_kind for b in run.baselines) or None,
                len(run.problems) or None,
            )
        )
    columns = ["run", "model", "base model", "tuning", "epochs", "baselines", "problems"]
    return readable(pd.DataFrame(rows, columns=columns))


def saved(folder: Path, files: Iterable[str]) -> str:
    """Markdown naming the files written into a run folder (names only, no absolute paths)."""
    present = [name for name in files if (Path(folder) / name).exists()]
    names = ", ".join(f"`{name}`" for name in present) or "nothing"
    return f"Saved in `{Path(folder).name}/`: {names}."
