"""Leaderboard, paired significance, conclusion and plots over fake run folders scored for real."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest

from routerlib import compare, compare_plots, display
from tests.support.compare_runs import make_partial_run, make_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    make_run(root, "good", "good")
    make_run(root, "weak", "weak", tuning_mode="FULL", adapter_size=None, cost=3.0)
    make_partial_run(root)
    return root


@pytest.fixture()
def runs(runs_root: Path, monkeypatch: pytest.MonkeyPatch) -> list[compare.RunSummary]:
    monkeypatch.setenv("ROUTERLIB_OUTPUTS", str(runs_root))
    return compare.load_runs()


def _row(board, name):  # noqa: ANN001, ANN202
    rows = board[board["model"] == name]
    assert len(rows) == 1, f"expected one row for {name}: {list(board['model'])}"
    return rows.iloc[0]


def test_load_runs_finds_every_run_with_metrics(runs: list[compare.RunSummary]) -> None:
    assert sorted(r.name for r in runs) == ["good", "partial", "weak"]
    good = next(r for r in runs if r.name == "good")
    assert [b.name for b in good.baselines] == ["baseline:majority"]
    assert good.samples_path is not None and len(good.samples) == 40
    assert [p["train_loss"] for p in good.loss_curve()] == [2.0, 1.0, 2.0 / 3]


def test_leaderboard_values(runs: list[compare.RunSummary]) -> None:
    board = compare.leaderboard(runs)
    # Two models, one baseline (identical in both runs, shown once), one partial run.
    assert list(board["model"]) == ["good", "baseline:majority", "weak", "partial"]
    good, weak, base = _row(board, "good"), _row(board, "weak"), _row(board, "baseline:majority")
    assert good["route_plan_exact strict"] == pytest.approx(36 / 40)
    assert weak["route_plan_exact strict"] == pytest.approx(20 / 40)
    assert weak["route_plan_exact"] == pytest.approx(20 / 30)  # original: valid predictions only
    assert weak["json_valid"] == pytest.approx(30 / 40)
    assert base["route_plan_exact strict"] == pytest.approx(24 / 40)
    assert good["gate_pass"] is True and weak["gate_pass"] is False
    assert good["route_plan_exact strict lo"] <= 0.9 <= good["route_plan_exact strict hi"]
    assert good["tuning_mode"] == "PEFT_ADAPTER" and good["adapter_size"] == 16
    assert weak["tuning_mode"] == "FULL" and pd.isna(weak["adapter_size"])
    assert good["cost_usd"] == 1.5 and good["train_seconds"] == 42.0
    assert good["latency_p50_s"] > 0 and good["latency_p95_s"] >= good["latency_p50_s"]
    # Gold rows with i % 5 in {3, 4} start with /math: good gets all 16, the template none.
    assert good["math_first: route_plan_exact"] == 1.0
    assert base["math_first: route_plan_exact"] == 0.0
    assert "overall.route_plan_exact" in weak["failed_checks"]


def test_partial_run_gets_a_row_of_nans(runs: list[compare.RunSummary]) -> None:
    partial = _row(compare.leaderboard(runs), "partial")
    assert partial["tuning_mode"] == "FULL"
    assert math.isnan(partial["route_plan_exact strict"]) and math.isnan(partial["cost_usd"])
    assert partial["gate_pass"] is None


def test_significance_against_previous_router(runs: list[compare.RunSummary]) -> None:
    sig = compare.significance_table(runs)
    row = sig[
        (sig["model"] == "good")
        & (sig["reference"] == "baseline:majority")
        & (sig["metric"] == "route_plan_exact")
    ].iloc[0]
    # Fixed: the 16 /math-first rows; broken: rows 0, 10, 20, 30 (template rows good reversed).
    assert (row["b01"], row["b10"], row["n"]) == (16, 4, 40)
    assert row["test"] == "mcnemar"
    assert row["delta"] == pytest.approx(0.3)
    # Exact two-sided binomial: 2 * P(X <= 4 | n = 20, p = 1/2).
    expected = 2 * sum(math.comb(20, k) for k in range(5)) / 2**20
    assert row["p_value"] == pytest.approx(expected)
    assert row["significant"]
    recall = sig[
        (sig["model"] == "weak")
        & (sig["reference"] == "baseline:majority")
        & (sig["metric"] == "route_tool_recall")
    ].iloc[0]
    assert recall["test"] == "paired_bootstrap"
    assert recall["delta"] == pytest.approx(-0.25)  # invalid predictions count as misses
    assert recall["ci_low"] < 0
    # The two models share their test rows, so they are paired with each other too.
    assert ((sig["model"] == "good") & (sig["reference"] == "weak")).any()


def test_conclusion_names_the_model_to_ship(runs: list[compare.RunSummary]) -> None:
    board = compare.leaderboard(runs)
    text = compare.conclusion(board, compare.significance_table(runs))
    assert text.startswith("Ship **good**")
    assert "passes the evaluation gate" in text
    assert "0.900" in text and "baseline:majority" in text and "significant" in text


def test_conclusion_when_no_model_passes(runs: list[compare.RunSummary]) -> None:
    weak_only = [r for r in runs if r.name in ("weak", "partial")]
    board = compare.leaderboard(weak_only)
    text = compare.conclusion(board, compare.significance_table(weak_only))
    assert "No tuned model passes the gate" in text
    assert "**weak**" in text and "overall.route_plan_exact" in text
    # The template beats weak (0.600 vs 0.500): kept, with the numbers that decided it.
    assert "Keep the previous router `baseline:majority` (route_plan_exact 0.600)" in text
    assert "`baseline:majority` ranks above `weak` on route_plan_exact (0.600 vs 0.500)" in text
    assert compare.conclusion(compare.leaderboard([]), None).startswith("**No runs")


def test_conclusion_says_unknown_numbers_in_words(runs: list[compare.RunSummary]) -> None:
    """A number the runs did not record reads "unknown" inside a sentence; tables keep "–"."""
    weak_only = [r for r in runs if r.name in ("weak", "partial")]
    board = compare.leaderboard(weak_only)
    text = compare.conclusion(board, compare.significance_table(weak_only))
    assert "`weak` ranks above `partial` on route_plan_exact (0.500 vs unknown)" in text
    assert not re.search(r"(vs|=|valid|exact|p) –", text)
    partial = compare.leaderboard([r for r in runs if r.name == "partial"])
    assert compare.conclusion(partial, None).startswith(
        "**No tuned model passes the gate.** Closest: **partial**"
    )
    assert "with route_plan_exact unknown." in compare.conclusion(partial, None)
    assert display.headline_board(partial)["plan exact"].tolist() == [display.MISSING]


def test_plots_are_written(runs: list[compare.RunSummary], tmp_path: Path) -> None:
    written = compare_plots.all_plots(runs, tmp_path / "plots", compare.leaderboard(runs))
    names = sorted(p.name for p in written)
    assert names == sorted(
        [
            "bucket_scores.png",
            "route_confusion.png",
            "length_ratio.png",
            "quality_vs_cost.png",
            "quality_vs_latency.png",
            "quality_vs_serving_cost.png",
            "loss_curves.png",
        ]
    )
    for png in written:
        assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5000


def test_length_ratios_of_valid_predictions(runs: list[compare.RunSummary]) -> None:
    weak = next(r for r in runs if r.name == "weak")
    ratios = compare_plots.length_ratios(weak)
    assert len(ratios) == 30  # the 10 invalid predictions have no ratio
    assert all(r == pytest.approx(1.0) for r in ratios)  # same content, plan order aside


def test_first_tool_pairs_from_gold_and_predictions(runs: list[compare.RunSummary]) -> None:
    weak = next(r for r in runs if r.name == "weak")
    pairs = compare_plots.first_tool_pairs(weak)
    assert len(pairs) == 40
    assert pairs.count(("/general-search", "(invalid)")) + pairs.count(("/math", "(invalid)")) == 10
    assert pairs[0] == ("/general-search", "/general-search")
    assert pairs[3] == ("/math", "/math")  # i=3: reversed four-step plan ends with /math


def test_each_samples_file_is_read_once_however_many_pairs(
    runs: list[compare.RunSummary], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The paired tests and the plots ask a router for its samples many times; the file is read
    (and a bad one named in ``problems``) once."""
    reads: list[Path] = []
    read = compare.runfolder.read_samples
    monkeypatch.setattr(compare.runfolder, "read_samples", lambda f: reads.append(f) or read(f))
    compare.significance_table(runs)
    compare.significance_table(runs)
    assert reads and len(reads) == len(set(reads))
