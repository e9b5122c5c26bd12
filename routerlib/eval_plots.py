"""Figures of an evaluation for notebook 04: one metric per bucket for several reports."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from routerlib.data_plots import grouped_bars, shown
from routerlib.metric_names import ALL_BUCKETS

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def bucket_figure(reports: dict[str, dict[str, Any]], metric: str = "route_plan_exact") -> Figure:
    """A grouped bar chart of one metric per bucket, strict figures, for several reports."""
    import matplotlib.pyplot as plt

    tables = {label: r.get("strict") or r["metrics"] for label, r in reports.items()}
    found = {b for table in tables.values() for b in table}
    buckets = [b for b in ALL_BUCKETS if b in found] + sorted(found - set(ALL_BUCKETS))
    fig, ax = plt.subplots(figsize=(9, 3.4))
    series = [
        (label, [table.get(b, {}).get(metric) for b in buckets]) for label, table in tables.items()
    ]
    title = f"{metric} by bucket (strict)" + grouped_bars(ax, buckets, series)
    ax.set_ylabel(f"{metric} (strict)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return shown(fig)
