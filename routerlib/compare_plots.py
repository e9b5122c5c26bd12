"""Comparison figures (matplotlib, no pyplot state): each function writes one PNG into a folder and
returns its Path. Notebooks show them with ``IPython.display.Image(path)``."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from routerlib.compare import PRIMARY, RunSummary
from routerlib.metrics import ALL_BUCKETS as BUCKETS

DPI = 100


def _figure(width: float = 8.0, height: float = 4.5) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _save(fig: Any, folder: Path, name: str) -> Path:
    from routerlib.atomic import atomic_writer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    with atomic_writer(path, "wb") as handle:
        fig.savefig(handle, format="png")
    return path


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _valid(value: Any) -> bool:
    return isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value))


def bucket_scores(board: pd.DataFrame, folder: Path, metric: str = PRIMARY) -> Path:
    """Grouped bars: ``metric`` (strict) per bucket, one bar per leaderboard row."""
    fig = _figure(9, 4.5)
    ax = fig.add_subplot()
    columns = [f"{metric} strict"] + [f"{b}: {metric}" for b in BUCKETS[1:]]
    labels = ["overall", *BUCKETS[1:]]
    present = [(c, lab) for c, lab in zip(columns, labels, strict=True) if c in board]
    if board.empty or not present:
        _empty(ax, "no scored runs")
    else:
        width = 0.8 / max(len(board), 1)
        for i, (_, row) in enumerate(board.iterrows()):
            values = [row[c] if _valid(row[c]) else 0.0 for c, _ in present]
            xs = [j + i * width for j in range(len(present))]
            ax.bar(
                xs,
                values,
                width=width,
                label=str(row["model"]),
                hatch="//" if row.get("kind") == "baseline" else None,
            )
        ax.set_xticks(
            [j + 0.4 - width / 2 for j in range(len(present))], [lab for _, lab in present]
        )
        ax.set_ylim(0, 1.05)
        ax.set_ylabel(f"{metric} (strict)")
        ax.legend(fontsize="small", loc="lower right")
    ax.set_title(f"{metric} by bucket")
    return _save(fig, folder, "bucket_scores.png")


def _tool_label(tool: str | None) -> str:
    return "(none)" if tool is None else (tool or "(empty)")


def first_tool_pairs(run: RunSummary) -> list[tuple[str, str]]:
    """(gold first tool, predicted first tool) per test row, from the per-sample records
    (``(invalid)`` for an invalid prediction, ``(none)`` for a plan with no steps)."""
    return [
        (
            _tool_label(sample.gold_first_tool),
            _tool_label(sample.pred_first_tool) if sample.valid else "(invalid)",
        )
        for sample in run.samples()
    ]


def route_confusion(runs: Sequence[RunSummary], folder: Path) -> Path:
    """One confusion matrix per router: first tool of the gold plan (rows) vs predicted (columns)."""
    items = [(r, first_tool_pairs(r)) for r in runs]
    items = [(r, p) for r, p in items if p] or items[:1]
    n = max(len(items), 1)
    fig = _figure(4.2 * min(n, 3), 3.8 * math.ceil(n / 3))
    if not items:
        _empty(fig.add_subplot(), "no predictions")
        return _save(fig, folder, "route_confusion.png")
    for k, (run, pairs) in enumerate(items, 1):
        ax = fig.add_subplot(math.ceil(n / 3), min(n, 3), k)
        if not pairs:
            _empty(ax, "no predictions")
            ax.set_title(run.name, fontsize="small")
            continue
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
                    ax.text(
                        j, i, str(value), ha="center", va="center", fontsize="small", color=color
                    )
        ax.set_xticks(
            range(len(pred_labels)), pred_labels, rotation=30, ha="right", fontsize="small"
        )
        ax.set_yticks(range(len(gold_labels)), gold_labels, fontsize="small")
        ax.set_xlabel("predicted first tool")
        ax.set_ylabel("gold first tool")
        ax.set_title(run.name, fontsize="small")
    return _save(fig, folder, "route_confusion.png")


def length_ratios(run: RunSummary) -> list[float]:
    """Per-sample ``length_ratio`` of valid predictions (the scorer's ``metrics`` block)."""
    values: list[float] = []
    for sample in run.samples():
        value = sample.metrics.get("length_ratio")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and _valid(value):
            values.append(float(value))
    return values


def length_ratio(runs: Sequence[RunSummary], folder: Path) -> Path:
    """Histogram of per-sample ``length_ratio`` (prediction chars / gold chars) per router."""
    fig = _figure()
    ax = fig.add_subplot()
    drawn = 0
    for run in runs:
        values = length_ratios(run)
        if values:
            ax.hist(values, bins=30, alpha=0.5, label=run.name)
            drawn += 1
    if drawn:
        for x in (0.9, 1.1, 1.25):
            ax.axvline(x, color="0.5", linestyle="--", linewidth=0.8)
        ax.set_xlabel("length ratio (prediction / gold, JSON characters)")
        ax.set_ylabel("samples")
        ax.legend(fontsize="small")
    else:
        _empty(ax, "no per-sample length ratios")
    ax.set_title("Length-ratio distribution")
    return _save(fig, folder, "length_ratio.png")


def _scatter(board: pd.DataFrame, folder: Path, column: str, xlabel: str, name: str) -> Path:
    fig = _figure(6.5, 4.5)
    ax = fig.add_subplot()
    quality = f"{PRIMARY} strict"
    drawn = 0
    if not board.empty and column in board and quality in board:
        for _, row in board.iterrows():
            x, y = row[column], row[quality]
            if _valid(x) and _valid(y):
                marker = "s" if row.get("kind") == "baseline" else "o"
                ax.scatter([x], [y], marker=marker, s=60)
                ax.annotate(
                    str(row["model"]),
                    (x, y),
                    textcoords="offset points",
                    xytext=(5, 5),
                    fontsize="small",
                )
                drawn += 1
    if drawn:
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"{PRIMARY} (strict)")
        ax.set_ylim(-0.05, 1.05)
    else:
        _empty(ax, f"no runs with both {column} and {PRIMARY}")
    ax.set_title(f"Quality vs {xlabel}")
    return _save(fig, folder, name)


def quality_vs_cost(board: pd.DataFrame, folder: Path) -> Path:
    """Strict route-plan accuracy against the tuning cost estimate (USD)."""
    return _scatter(board, folder, "cost_usd", "tuning cost estimate (USD)", "quality_vs_cost.png")


def quality_vs_latency(board: pd.DataFrame, folder: Path) -> Path:
    """Strict route-plan accuracy against p95 prediction latency (s)."""
    return _scatter(board, folder, "latency_p95_s", "latency p95 (s)", "quality_vs_latency.png")


def loss_curves(runs: Sequence[RunSummary], folder: Path) -> Path:
    """Train (solid) and validation (dashed) loss per step of each tuned model."""
    fig = _figure()
    ax = fig.add_subplot()
    drawn = 0
    models = [r for r in runs if r.kind == "model"]
    for k, run in enumerate(models):
        curve = run.loss_curve()
        for key, style in (("train_loss", "-"), ("val_loss", "--")):
            points = [(p.get("step", i), p.get(key)) for i, p in enumerate(curve)]
            points = [(x, y) for x, y in points if _valid(x) and _valid(y)]
            if points:
                ax.plot(
                    *zip(*points, strict=True),
                    style,
                    color=f"C{k % 10}",
                    label=f"{run.name} {key.split('_')[0]}",
                )
                drawn += 1
    if drawn:
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.legend(fontsize="small")
    else:
        _empty(ax, "no loss curves recorded")
    ax.set_title("Tuning loss")
    return _save(fig, folder, "loss_curves.png")


def all_plots(
    runs: Sequence[RunSummary], folder: Path, board: pd.DataFrame | None = None
) -> list[Path]:
    """Every comparison figure for these runs and their baselines (the leaderboard is built from
    ``runs`` when not given)."""
    from routerlib.compare import leaderboard, routers

    if board is None:
        board = leaderboard(runs)
    rows = routers(runs)
    return [
        bucket_scores(board, folder),
        route_confusion(rows, folder),
        length_ratio(rows, folder),
        quality_vs_cost(board, folder),
        quality_vs_latency(board, folder),
        loss_curves(runs, folder),
    ]
