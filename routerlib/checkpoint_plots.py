"""The checkpoint figure of notebook 03: validation loss and the selection metric per epoch, with
the picked checkpoint marked."""

from __future__ import annotations

from typing import Any

from routerlib.checkpoints import CheckpointChoice
from routerlib.data_plots import shown


def checkpoint_figure(choice: CheckpointChoice, job: Any) -> Any:
    """Validation loss (left axis, at every epoch end of the job's loss curve) beside the strict
    ``select_metric`` of each scored checkpoint under its decoding (right axis); the served
    checkpoint is starred."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.4), layout="constrained")
    losses = [
        (float(p["epoch"]), float(p["val_loss"]))
        for p in job.loss_curve
        if p.get("val_loss") is not None and isinstance(p.get("epoch"), int | float)
    ]
    if losses:
        ax.plot(*zip(*losses, strict=True), "o-", color="C0", label="validation loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation loss", color="C0")
    right = ax.twinx()
    scored = [(s.epoch, s.metric) for s in choice.scores if s.metric is not None]
    if scored:
        right.plot(*zip(*scored, strict=True), "s--", color="C1", label=choice.select_metric)
    chosen = choice.score(choice.chosen or "")
    if chosen is not None and chosen.metric is not None:
        right.plot([chosen.epoch], [chosen.metric], "*", ms=16, color="C3", label="served")
    if chosen is not None:
        ax.axvline(chosen.epoch, color="C3", lw=0.8, ls=":")
    right.set_ylim(-0.02, 1.02)
    decoding = f", {choice.decoding}" if choice.decoding else ""
    right.set_ylabel(f"strict {choice.select_metric} (validation{decoding})", color="C1")
    ax.set_xticks(sorted({e for e, _ in losses} | {s.epoch for s in choice.scores}))
    handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    if handles:
        ax.legend(handles=handles, fontsize=8, loc="upper center")
    ax.set_title(f"checkpoint served: {choice.chosen or 'none'}", fontsize=10)
    return shown(fig)
