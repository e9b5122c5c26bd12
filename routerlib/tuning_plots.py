"""Figures of a tuning job for notebooks 02 and 03: the loss curve."""

from __future__ import annotations

from typing import TYPE_CHECKING

from routerlib.data_plots import shown

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from routerlib.tuning.base import Job


def loss_figure(job: Job) -> Figure:
    """Training and validation loss against step."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    curve = job.loss_curve
    train = [(p["step"], p["train_loss"]) for p in curve if p.get("train_loss") is not None]
    val = [(p["step"], p["val_loss"]) for p in curve if p.get("val_loss") is not None]
    if train:
        ax.plot(*zip(*train, strict=True), label="train", lw=1)
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (completion tokens)")
    ax.set_title(f"{job.spec.tuning_mode} · {job.spec.base_model.rsplit('/', 1)[-1]}")
    ax.legend()
    fig.tight_layout()
    return shown(fig)
