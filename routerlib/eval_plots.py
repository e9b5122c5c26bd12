"""Figures of an evaluation for notebook 04: one metric per bucket for several reports."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from routerlib.data_plots import shown
from routerlib.metric_names import ALL_BUCKETS

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def bucket_figure(reports: dict[str, dict[str, Any]], metric: str = "route_plan_exact") -> Figure:
    """A grouped bar chart of one metric per bucket, strict figures, for several reports."""
    import matplotlib.pyplot as plt
    import numpy as np

    found = {b for r in reports.values() for b in (r.get("strict") or r["metrics"])}
    buckets = [b for b in ALL_BUCKETS if b in found] + sorted(found - set(ALL_BUCKETS))
    fig, ax = plt.subplots(figsize=(9, 3.4))
    width = 0.8 / max(len(reports), 1)
    for i, (label, report) in enumerate(reports.items()):
        table = report.get("strict") or report["metrics"]
        values = [table.get(b, {}).get(metric, np.nan) for b in buckets]
        ax.bar(np.arange(len(buckets)) + i * width, values, width, label=label)
    ax.set_xticks(np.arange(len(buckets)) + width * (len(reports) - 1) / 2, buckets)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(f"{metric} (strict)")
    scores = [
        v
        for r in reports.values()
        for b in (r.get("strict") or r["metrics"]).values()
        if isinstance(v := b.get(metric), (int, float))
    ]
    title = f"{metric} by bucket (strict)"
    if scores and not any(scores):
        title += ": every router scores 0 in every bucket"
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return shown(fig)
