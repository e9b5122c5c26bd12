"""Figures of the tool-level diagnostics (routerlib.diagnostics): the first-tool confusion matrix
and per-tool precision / recall / F1 bars, one group per report (e.g. free and constrained)."""

from __future__ import annotations

from typing import Any

from routerlib.data_plots import grouped_bars
from routerlib.diagnostics import confusion_table, tool_table
from routerlib.schema import TOOLS


def confusion_matrix(report: dict[str, Any], bucket: str = "overall", title: str = "") -> Any:
    """Heat map of gold first tool (rows) against predicted first tool (columns), with counts."""
    import matplotlib.pyplot as plt

    table = confusion_table(report, bucket)
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    if table.empty:
        ax.text(0.5, 0.5, "no samples", ha="center", va="center")
        ax.set_axis_off()
        return fig
    ax.imshow(table.to_numpy(), cmap="Blues")
    ax.set_xticks(range(len(table.columns)), table.columns, rotation=20, ha="right")
    ax.set_yticks(range(len(table.index)), table.index)
    for i, row in enumerate(table.to_numpy()):
        for j, count in enumerate(row):
            ax.text(j, i, str(count), ha="center", va="center", fontsize=9)
    ax.set_xlabel(table.columns.name)
    ax.set_ylabel(table.index.name)
    ax.set_title(title or f"first tool · {bucket}")
    fig.tight_layout()
    return fig


def tool_bars(reports: dict[str, dict[str, Any]], bucket: str = "overall") -> Any:
    """Per-tool precision, recall and F1 bars, one panel per metric, one bar per report."""
    import matplotlib.pyplot as plt

    tables = {label: tool_table(report, bucket) for label, report in reports.items()}
    named = {tool for table in tables.values() for tool in table.index}
    # the router's tools only: an invalid step's text is no tool name and would swamp the axis
    tools = [tool for tool in TOOLS if tool in named] or list(TOOLS)
    others = len(named - set(TOOLS))
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.2), sharey=True)
    for ax, metric in zip(axes, ("precision", "recall", "f1"), strict=True):
        series = [
            (label, [table.loc[t, metric] if t in table.index else None for t in tools])
            for label, table in tables.items()
        ]
        grouped_bars(ax, tools, series)
        ax.tick_params(axis="x", labelrotation=15)
        ax.set_title(metric)
    axes[0].legend(fontsize=8)
    if others:
        note = f"{others} other predicted step name(s) (not a router tool) are left out"
        fig.text(0.01, 0.01, note, fontsize=8)
    fig.tight_layout(rect=(0, 0.05 if others else 0, 1, 1))
    return fig
