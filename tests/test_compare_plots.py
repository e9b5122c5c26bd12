"""Comparison figures that read: labels that never overlap or repeat, every router in a legend or
a note, labelled reference lines, a readable axis when every value is the same, panels named by
router and run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from routerlib import compare, compare_plots
from tests.support.compare_runs import make_partial_run, make_run


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory) -> list[compare.RunSummary]:
    """Two runs of one model name with identical results (a run repeated), plus a weaker model."""
    root = tmp_path_factory.mktemp("runs")
    first = make_run(root, "local", "good")
    shutil.copytree(first, root / "local-20260102-000000")
    make_run(root, "weak", "weak", cost=3.0)
    return compare.load_runs(sorted(p.parent for p in root.glob("*/metrics.json")))


def _texts(fig) -> list[str]:  # noqa: ANN001
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def _legend(fig) -> list[str]:  # noqa: ANN001
    legend = fig.axes[0].get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend else []


def test_scatter_labels_do_not_overlap_and_baselines_are_drawn(
    twins: list[compare.RunSummary],
) -> None:
    board = compare.leaderboard(twins)
    board["cost_usd"] = board["cost_usd"].where(board["kind"] == "baseline", 0.0)  # all at $0
    weak = board["model"] == "weak"
    board.loc[weak, "route_plan_exact strict"] = 0.605  # a hair above the baseline's 0.600
    fig = compare_plots.scatter_figure(board, "cost_usd", "tuning cost estimate (USD)")
    ax = fig.axes[0]
    labels = [t for t in ax.texts if t.get_text()]
    joined = " | ".join(t.get_text() for t in labels)
    # Both runs of "local" are named by run; the baseline is drawn at $0 and named.
    assert "local · 20260101-000000" in joined and "local · 20260102-000000" in joined
    assert "baseline:majority" in joined
    assert "local local" not in joined
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in labels]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not a.overlaps(b), joined
    lo, hi = ax.get_xlim()
    assert hi - lo >= 1.0 and lo >= -0.1  # not -0.04…0.04 around $0
    assert "Baseline routers are not tuned" in fig.get_supxlabel()


def test_loss_legend_names_each_run_once(twins: list[compare.RunSummary]) -> None:
    fig = compare_plots.loss_figure(twins)
    legend = _legend(fig)
    assert len(legend) == len(set(legend))
    assert "local · 20260101-000000" in legend
    assert "local · 20260102-000000 (same curve as local · 20260101-000000)" in legend
    assert {"train", "validation"} <= set(legend)


def test_length_ratio_names_every_router_and_labels_the_bands(
    twins: list[compare.RunSummary],
) -> None:
    routers = compare.routers(twins)
    fig = compare_plots.length_figure(routers)
    shown = " ".join(_legend(fig)) + fig.get_supxlabel()
    for label in compare_plots.run_labels(routers):
        assert label in shown
    top = [a for a in fig.axes[0].child_axes]
    ticks = [t.get_text() for t in top[0].get_xticklabels()]
    assert ticks == ["0.9 short", "1.1 long", "1.25 too long"]


def test_confusion_panels_are_titled_by_router_and_run(twins: list[compare.RunSummary]) -> None:
    fig = compare_plots.confusion_figure(compare.routers(twins))
    titles = [ax.get_title() for ax in fig.axes]
    assert len(titles) == len(set(titles)) == 4  # local twice, weak, the shared baseline
    assert "local · 20260102-000000" in titles
    assert "weak (weak-20260101-000000)" in titles


def test_all_zero_buckets_say_so(tmp_path: Path) -> None:
    run = compare.load_run(make_run(tmp_path, "copy", "majority"))
    for block in run.report["strict"].values():  # type: ignore[index]
        block["route_plan_exact"] = 0.0
    run.baselines = []
    fig = compare_plots.bucket_figure([run])
    assert "every router scores 0 in every bucket" in fig.axes[0].get_title()
    assert "0" in _texts(fig)  # zero bars are marked, not left blank
    assert fig.axes[1].get_title().startswith("tool_sequence_exact by bucket")


def test_a_router_without_scores_is_named_not_dropped(
    twins: list[compare.RunSummary], tmp_path: Path
) -> None:
    partial = compare.load_run(make_partial_run(tmp_path))
    routers = [*compare.routers(twins), partial]
    fig = compare_plots.bucket_figure(routers)
    assert "Not drawn (no scores): partial" in fig.get_supxlabel()


def test_labels_with_no_free_spot_are_kept_beside_their_point() -> None:
    """More routers in a row than label slots (a sweep): every label is still drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3))
    points = [(i * 1e-3, 0.5, f"e2e-tiny-adapter_size{i}") for i in range(40)]
    ax.scatter([p[0] for p in points], [p[1] for p in points])
    ax.set_xlim(0, 0.04)
    compare_plots._place_labels(ax, points)
    assert sorted(t.get_text() for t in ax.texts) == sorted(p[2] for p in points)
    plt.close(fig)
