"""Notebook 05's figures (matplotlib, no pyplot state; docs/notebooks.md): each ``*_figure``
builds one Figure, :func:`all_plots` writes them as PNGs; what a figure cannot draw is named at
its foot."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from routerlib.atomic import atomic_writer
from routerlib.compare import (
    PRIMARY,
    SERVING_USD,
    RunSummary,
    cheapest_passing,
    number,
    pareto_front,
    routers,
)
from routerlib.data_plots import grouped_bars
from routerlib.display import router_labels
from routerlib.metric_names import ALL_BUCKETS as BUCKETS

DPI = 100


def _figure(width: float = 8.0, height: float = 4.5) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)  # a renderer to measure label boxes with
    return fig


def _save(fig: Any, folder: Path, name: str) -> Path:
    path = Path(folder) / name
    with atomic_writer(path, "wb") as handle:
        fig.savefig(handle, format="png")
    return path


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def run_labels(routers: Sequence[RunSummary]) -> list[str]:
    """Each router's name, with its run when another router has the same name."""
    names = {"model": [r.name for r in routers], "run": [r.run_name for r in routers]}
    return router_labels(pd.DataFrame(names))  # the leaderboard's own rule


def _note(fig: Any, lines: Sequence[str] = (), why: str = "", skipped: Sequence[str] = ()) -> None:
    """A grey note at the foot of the figure for what it leaves out (the layout makes room):
    ``lines``, then ``why`` and the routers ``skipped``, when there are any."""
    lines = [*lines, *([f"{why}: {', '.join(skipped)}."] if skipped else [])]
    if lines:
        fig.supxlabel("\n".join(lines), x=0.01, ha="left", fontsize=8, color="0.35")


BUCKET_METRICS = (PRIMARY, "tool_sequence_exact")


def bucket_figure(routers: Sequence[RunSummary]) -> Any:
    """Grouped bars per bucket, one bar per router, from the routers' reports (strict): the
    primary metric and ``tool_sequence_exact``, which still separates routers when no plan is
    exact. Zero and missing bars are marked so they are not taken for gaps."""
    metrics = BUCKET_METRICS
    fig = _figure(12, 3.6 * len(metrics) + 0.6)
    axes = [fig.add_subplot(len(metrics), 1, k + 1) for k in range(len(metrics))]
    series: list[tuple[str, dict[str, list[Any]]]] = []
    skipped: list[str] = []
    hatched: list[str] = []  # the baseline routers
    for label, run in zip(run_labels(routers), routers, strict=True):
        strict = (run.report or {}).get("strict") or {}
        values = {m: [(strict.get(b) or {}).get(m) for b in BUCKETS] for m in metrics}
        if any(not math.isnan(number(v)) for vals in values.values() for v in vals):
            series.append((label, values))
        else:
            skipped.append(label)
        if run.kind == "baseline":
            hatched.append(label)
    for ax, name in zip(axes, metrics, strict=True):
        title = f"{name} by bucket (strict)"
        if not series:
            _empty(ax, "no scored runs")
        else:
            title += grouped_bars(ax, BUCKETS, [(lab, v[name]) for lab, v in series], hatched)
        ax.set_ylabel("strict rate")
        ax.set_title(title, fontsize="medium")
    if series:
        axes[0].legend(
            fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False
        )
        _note(fig, why="Not drawn (no scores)", skipped=skipped)
    return fig


def _tool_label(tool: str | None) -> str:
    return "(none)" if tool is None else (tool or "(empty)")


def first_tool_pairs(run: RunSummary) -> list[tuple[str, str]]:
    """(gold, predicted) first tool per test row: ``(invalid)``, ``(none)`` for no steps."""
    return [
        (
            _tool_label(sample.gold_first_tool),
            _tool_label(sample.pred_first_tool) if sample.valid else "(invalid)",
        )
        for sample in run.samples
    ]


def confusion_figure(runs: Sequence[RunSummary]) -> Any:
    """One confusion matrix per router, titled by router and run: first tool of the gold plan
    (rows) vs predicted (columns). Routers without predictions are named in a note."""
    found = [
        (label, r, first_tool_pairs(r)) for label, r in zip(run_labels(runs), runs, strict=True)
    ]
    items, skipped = [i for i in found if i[2]], [label for label, _, pairs in found if not pairs]
    per_row = min(max(len(items), 1), 3)
    n_rows = max(math.ceil(len(items) / per_row), 1)
    fig = _figure(4.6 * per_row, 4.2 * n_rows + (0.3 if skipped else 0))
    if not items:
        _empty(fig.add_subplot(), "no predictions")
        return fig
    for k, (label, run, pairs) in enumerate(items, 1):
        ax = fig.add_subplot(n_rows, per_row, k)
        gold_labels = sorted({g for g, _ in pairs})
        # Gold tools first, in the same order, so agreement lies on the diagonal.
        pred_labels = gold_labels + sorted({p for _, p in pairs} - set(gold_labels))
        counts = Counter(pairs)
        grid = [[counts[(g, p)] for p in pred_labels] for g in gold_labels]
        peak = max(max(row) for row in grid) or 1
        ax.imshow(grid, cmap="Blues", vmin=0, vmax=peak)
        for i, row in enumerate(grid):
            for j, value in enumerate(row):
                if value:
                    color = "white" if value > peak / 2 else "black"
                    ax.text(j, i, str(value), ha="center", va="center", fontsize=10, color=color)
        ax.set_xticks(range(len(pred_labels)), pred_labels, rotation=30, ha="right", fontsize=9)
        ax.set_yticks(range(len(gold_labels)), gold_labels, fontsize=9)
        ax.set_xlabel("predicted first tool")
        ax.set_ylabel("gold first tool")
        ax.set_title(
            label if run.kind == "baseline" or " · " in label else f"{label} ({run.run_name})",
            fontsize=10,
        )
    _note(fig, why="No predictions to tabulate", skipped=skipped)
    return fig


def length_ratios(run: RunSummary) -> list[float]:
    """Per-sample ``length_ratio`` of valid predictions (the scorer's ``metrics`` block)."""
    found = (sample.metrics.get("length_ratio") for sample in run.samples)
    return [x for v in found if not isinstance(v, bool) and not math.isnan(x := number(v))]


#: The gate's length-ratio bands: (value, label).
LENGTH_BANDS = ((0.9, "0.9 short"), (1.1, "1.1 long"), (1.25, "1.25 too long"))


def length_figure(runs: Sequence[RunSummary]) -> Any:
    """Histogram of per-sample ``length_ratio`` (prediction chars / gold chars) per router, with
    the gate's bands labelled; routers without a valid prediction are named in a note."""
    fig = _figure(9, 4.5)
    ax = fig.add_subplot()
    found = [(label, length_ratios(run)) for label, run in zip(run_labels(runs), runs, strict=True)]
    series = [(f"{label} ({len(values)} valid)", values) for label, values in found if values]
    skipped = [label for label, values in found if not values]
    if series:
        every = [v for _, values in series for v in values]
        lo = min(min(every), LENGTH_BANDS[0][0]) - 0.05
        hi = max(max(every), LENGTH_BANDS[-1][0]) + 0.05
        bins = np.linspace(lo, hi, 40)  # one set of bins, so the routers compare bar for bar
        for k, (label, values) in enumerate(series):
            color = f"C{k % 10}"
            ax.hist(values, bins=bins, alpha=0.35, color=color, label=label)
            ax.hist(values, bins=bins, histtype="step", color=color, linewidth=1)
        for x, _ in LENGTH_BANDS:
            ax.axvline(x, color="0.4", linestyle="--", linewidth=0.8)
        top = ax.secondary_xaxis("top")
        top.set_xticks([x for x, _ in LENGTH_BANDS], [text for _, text in LENGTH_BANDS])
        top.tick_params(labelsize=8, colors="0.3")
        top.set_xlabel("gate bands", fontsize=8, color="0.3")
        ax.set_xlim(lo, hi)
        ax.set_xlabel("length ratio (prediction / gold, JSON characters)")
        ax.set_ylabel("samples")
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        _note(fig, why="Not drawn (no valid prediction)", skipped=skipped)
    else:
        _empty(ax, "no valid predictions, so no length ratios")
    ax.set_title("Length-ratio distribution (valid predictions)")
    return fig


def _x_window(xs: Sequence[float], unit: float) -> tuple[float, float]:
    """A non-negative x range that reads: a window of ``unit`` around equal values (all $0, say),
    else the data with room for labels on the right; it starts just left of zero."""
    lo, hi = min(xs), max(xs)
    span = hi - lo
    if span < 1e-12:
        pad = max(abs(hi) * 0.5, unit)
        lo, hi = lo - pad, hi + pad
    else:
        lo, hi = lo - 0.1 * span, hi + 0.35 * span
    return max(lo, -0.05 * (hi - max(lo, 0.0))), hi


def _place_labels(ax: Any, points: list[tuple[float, float, str]]) -> None:
    """Annotate points without overlap: routers at the same spot share one label; other labels
    move up or down in steps until their boxes clear the ones already placed."""
    groups: dict[tuple[float, float], list[str]] = {}
    for x, y, label in points:
        groups.setdefault((round(x, 9), round(y, 9)), []).append(label)
    fig = ax.figure
    fig.draw_without_rendering()  # settle the layout first, so the boxes measured are final
    renderer = fig.canvas.get_renderer()
    placed: list[Any] = []
    for (x, y), names in sorted(groups.items()):
        text = ", ".join(names)
        # the last try, with no free spot left, keeps the label beside its point, overlapping
        steps = (0, 1, -1, 2, -2, 3, -3, 4, -4, 5, -5, 6, -6, 0)
        for n, step in enumerate(steps, 1):
            note = ax.annotate(
                text,
                (x, y),
                textcoords="offset points",
                xytext=(7, 4 + 12 * step),
                fontsize=8,
                arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.5} if step else None,
            )
            note.set_in_layout(False)
            box = note.get_window_extent(renderer)
            if n == len(steps) or not any(box.overlaps(other) for other in placed):
                placed.append(box)
                break
            note.remove()


def scatter_figure(board: pd.DataFrame, column: str, xlabel: str) -> Any:
    """Strict route-plan accuracy against ``column``, one labelled point per router; against the
    serving cost (SERVING_USD) the Pareto front is joined and ringed and the cheapest run that
    passes the gate is named in the title."""
    fig = _figure(7.5, 4.8)
    ax = fig.add_subplot()
    quality = f"{PRIMARY} strict"
    points: list[tuple[float, float, str]] = []
    skipped: list[str] = []
    if not board.empty and column in board and quality in board:
        for label, (_, row) in zip(router_labels(board), board.iterrows(), strict=True):
            x, y = number(row[column]), number(row[quality])
            baseline = row.get("kind") == "baseline"
            if column == "cost_usd" and baseline and math.isnan(x):
                x = 0.0  # a baseline router is not tuned: nothing to pay
            if not (math.isnan(x) or math.isnan(y)):
                style = {"marker": "s", "color": "0.45"} if baseline else {"color": "C0"}
                ax.scatter([x], [y], s=60, zorder=3, **style)
                points.append((x, y, label))
            else:
                skipped.append(label)
    title = f"Quality vs {xlabel}"
    if points:
        unit = 0.1 if column == "latency_p95_s" else 1.0
        ax.set_xlim(*_x_window([p[0] for p in points], unit=unit))
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"{PRIMARY} (strict)")
        ax.scatter([], [], marker="o", color="C0", label="tuned model")
        ax.scatter([], [], marker="s", color="0.45", label="baseline router")
        if column == SERVING_USD:
            on = board[pareto_front(board)].sort_values(column)
            ax.step(on[column], on[quality], where="post", color="C3", lw=1)
            ring = {"s": 160, "facecolors": "none", "edgecolors": "C3"}
            ax.scatter(on[column], on[quality], label="Pareto front", **ring)
            best = cheapest_passing(board)
            title += f" · cheapest passing: {best['model']}" if best is not None else ""
        ax.legend(fontsize="small", loc="upper left")
        _place_labels(ax, points)
        at_zero = column == "cost_usd" and any(lab.startswith("baseline:") for *_, lab in points)
        notes = ["Baseline routers are not tuned: drawn at $0."] if at_zero else []
        _note(fig, notes, f"Not drawn (no {xlabel})", skipped)
    else:
        _empty(ax, f"no runs with both {xlabel} and {PRIMARY}")
    ax.set_title(title)
    return fig


def sweep_metric(rows: pd.DataFrame, folder: Path) -> Path:
    """The strict primary metric against each varied key of a sweep (``compare.sweep_board``),
    one panel per key; points sharing the other keys' values are joined."""
    metric = f"{PRIMARY} strict"
    keys = list(rows.attrs.get("varied_keys", [])) if not rows.empty else []
    fig = _figure(4.0 * max(len(keys), 1), 3.8)
    if not keys or metric not in rows:
        _empty(fig.add_subplot(), "no sweep to show")
        return _save(fig, folder, "sweep_metric.png")
    for n, key in enumerate(keys, start=1):
        ax = fig.add_subplot(1, len(keys), n)
        others = [k for k in keys if k != key]
        groups = rows.groupby(others, dropna=False) if others else [((), rows)]
        for label, group in groups:  # label: the other keys' values, a tuple
            group = group.sort_values(key)
            text = ", ".join(f"{k}={v}" for k, v in zip(others, label, strict=True))
            ax.plot(group[key].astype(str), group[metric], "o-", label=text or None)
        ax.set_xlabel(key)
        ax.set_ylabel(metric)
        ax.set_ylim(-0.05, 1.05)
        if others:
            ax.legend(fontsize="x-small")
    fig.suptitle(f"sweep {rows.attrs.get('sweep', '')}")
    return _save(fig, folder, "sweep_metric.png")


#: Line styles of the loss curves.
TRAIN: dict[str, Any] = {"linestyle": "-", "markersize": 3}
VALIDATION: dict[str, Any] = {"linestyle": "--", "marker": "o", "markersize": 3}


def loss_figure(runs: Sequence[RunSummary]) -> Any:
    """Train (solid) and validation (dashed, dots) loss per step of each tuned model, one colour
    per model and run; a curve identical to an earlier one says so in the legend."""
    from matplotlib.lines import Line2D

    fig = _figure()
    ax = fig.add_subplot()
    models = [r for r in runs if r.kind == "model"]
    seen: dict[str, str] = {}
    handles: list[Any] = []
    skipped: list[str] = []
    for k, (label, run) in enumerate(zip(run_labels(models), models, strict=True)):
        curve = run.loss_curve()
        color = f"C{k % 10}"
        lines = {}
        for key, style in (("train_loss", TRAIN), ("val_loss", VALIDATION)):
            points = [(p.get("step", i), p.get(key)) for i, p in enumerate(curve)]
            lines[key] = [(x, y) for x, y in points if not math.isnan(number(x) + number(y))]
            if lines[key]:
                width = 1.6 - 0.3 * (k % 3)
                ax.plot(*zip(*lines[key], strict=True), color=color, linewidth=width, **style)
        if not any(lines.values()):
            skipped.append(label)
            continue
        fingerprint = json.dumps(lines, sort_keys=True)
        same = seen.setdefault(fingerprint, label)
        legend = label if same == label else f"{label} (same curve as {same})"
        handles.append(Line2D([], [], color=color, label=legend))
    if handles:
        handles += [
            Line2D([], [], color="0.3", label="train", **TRAIN),
            Line2D([], [], color="0.3", label="validation", **VALIDATION),
        ]
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.legend(handles=handles, fontsize="small", loc="upper right")
        _note(fig, why="No loss curve recorded", skipped=skipped)
    else:
        _empty(ax, "no loss curves recorded")
    ax.set_title("Tuning loss")
    return fig


def all_plots(runs: Sequence[RunSummary], folder: Path, board: pd.DataFrame) -> list[Path]:
    """Every comparison figure for these runs and their baselines (``board``: their
    ``compare.leaderboard``), as PNGs in ``folder``."""
    rows = routers(runs)
    figures = {
        "bucket_scores": bucket_figure(rows),
        "route_confusion": confusion_figure(rows),
        "length_ratio": length_figure(rows),
        "quality_vs_cost": scatter_figure(board, "cost_usd", "tuning cost estimate (USD)"),
        "quality_vs_latency": scatter_figure(board, "latency_p95_s", "latency p95 (s)"),
        "quality_vs_serving_cost": scatter_figure(
            board, SERVING_USD, "serving USD per 1,000 routes"
        ),
        "loss_curves": loss_figure(runs),
    }
    return [_save(fig, folder, f"{name}.png") for name, fig in figures.items()]
