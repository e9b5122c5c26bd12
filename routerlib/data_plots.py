"""Figures of the prepared splits for notebook 01: first tool, route length, difficulty and
estimated token length per split (from ``dataset.stats_frame``); and what every figure module
shares: :func:`shown` and :func:`grouped_bars`."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from routerlib.runfolder import SPLITS
from routerlib.schema import DIFFICULTIES

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

F = TypeVar("F", bound="Figure")


def split_figure(frame: pd.DataFrame) -> Figure:
    """Notebook 01's 2x2 figure of the prepared splits (``stages.split_frame``): first tool, route
    length, difficulty (share per split, grouped bars) and the estimated token length
    distribution per split (box plot)."""
    import pandas as pd
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 7), layout="constrained")
    axes = fig.subplots(2, 2)
    panels = (  # crosstab sorts the values; difficulty keeps its own order
        ("first_tool", "First tool", None),
        ("route_length", "Route length (steps)", None),
        ("difficulty", "Difficulty", DIFFICULTIES),
    )
    for ax, (column, title, order) in zip(axes.flat[:3], panels, strict=True):
        if frame.empty:
            ax.set_title(f"{title} (no rows)")
            continue
        # the share of each value within each split (rows: values, columns: splits)
        shares = pd.crosstab(frame[column], frame["split"].astype(str), normalize="columns")
        shares = shares.reindex(columns=[s for s in SPLITS if s in shares.columns])
        if order is not None:
            shares = shares.reindex([v for v in order if v in shares.index])
        shares.plot.bar(ax=ax, rot=0, width=0.8)
        ax.set_title(title)
        ax.set_xlabel("")
        ax.set_ylabel("share of split")
        ax.set_ylim(0, 1.05)
        ax.legend(title="split", fontsize=8)
    ax = axes.flat[3]
    by_split = dict(list(frame.groupby(frame["split"].astype(str))["est_tokens"]))
    names = [name for name in SPLITS if name in by_split]
    if names:
        ax.boxplot([by_split[name].to_numpy() for name in names], tick_labels=names)
    ax.set_title("Estimated tokens per example (prompt + completion)")
    ax.set_ylabel("tokens (ceil(chars / 4))")
    fig.suptitle("Prepared splits")
    return shown(fig)


def shown(fig: F) -> F:
    """Return ``fig`` ready to be a notebook cell's last expression: displayed once, as PNG, in
    Jupyter, papermill and nbconvert alike (importing pyplot activates the inline formatter;
    closing the figure stops the inline backend from showing it a second time)."""
    import matplotlib.pyplot as plt

    plt.close(fig)
    return fig


def grouped_bars(
    ax: Any,
    groups: Sequence[str],
    series: Sequence[tuple[str, Sequence[Any]]],
    hatched: Sequence[str] = (),
) -> str:
    """Rates as bars on ``ax``: per group, one bar per ``(label, values)`` series (those in
    ``hatched`` hatched); a zero or missing (not a number, or NaN) bar is marked 0 or – so it is
    not taken for a gap. Returns a note for the title when values are known and all 0, else ""."""
    width = 0.8 / max(len(series), 1)
    known: list[float] = []
    for i, (label, raw) in enumerate(series):
        values = [float(v) if isinstance(v, numbers.Real) else math.nan for v in raw]
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(groups))]
        style = {"hatch": "//", "edgecolor": "0.3"} if label in hatched else {"edgecolor": "white"}
        heights = [0.0 if math.isnan(v) else v for v in values]
        bars = ax.bar(xs, heights, width * 0.95, label=label, color=f"C{i % 10}", **style)
        for bar, value in zip(bars, values, strict=True):
            if math.isnan(value) or value == 0:
                x, mark = bar.get_x() + bar.get_width() / 2, "–" if math.isnan(value) else "0"
                ax.text(x, 0.01, mark, ha="center", va="bottom", fontsize=7, color="0.3")
        known += [v for v in values if not math.isnan(v)]
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylim(0, 1.05)
    all_zero = bool(known) and not any(v > 0 for v in known)
    return ": every router scores 0 in every bucket" if all_zero else ""
