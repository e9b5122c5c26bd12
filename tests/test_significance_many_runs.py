"""The comparison's significance table with many runs (a sweep under two decodings): each
candidate is tested against one reference instead of every pair, and the headline view has one
row per pair of routers. Hand-made run folders, scored by the real scorer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from routerlib import compare, display, metrics, report, runfolder
from tests.support import compare_runs
from tests.support.compare_runs import gold_object


def _perfect() -> list[dict]:
    return [{"completion": json.dumps(gold_object(i))} for i in range(compare_runs.N_ROWS)]


def _sweep_point(root: Path, name: str, free: str, constrained: str | None) -> Path:
    """A finished run scored free with router ``free`` (compare_runs' kinds) and, when given,
    constrained with router ``constrained`` (a kind or "perfect")."""
    run = compare_runs.make_run(root, name, free)
    if constrained is None:
        return run
    rows = _perfect() if constrained == "perfect" else compare_runs.predictions(constrained)
    return compare_runs.add_constrained(run, rows)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("sweep")
    return [
        _sweep_point(root, "a4", "weak", "good"),
        _sweep_point(root, "a16", "good", "perfect"),  # a16 [constrained] is the best router
        _sweep_point(root, "b4", "weak", "weak"),
        _sweep_point(root, "b16", "good", "good"),
    ]


def _pairs(sig) -> set[tuple[str, str]]:  # noqa: ANN001
    return set(zip(sig["model"], sig["reference"], strict=True))


def test_each_candidate_is_tested_against_one_reference(sweep: list[Path]) -> None:
    runs = compare.load_runs(sweep)
    models = [r.name for r in runs]
    assert len(models) == 8  # four points, two decodings each
    sig = compare.significance_table(runs)
    pairs = _pairs(sig)
    best = "a16 [constrained]"
    # every model against the previous router
    assert {(m, "baseline:majority") for m in models} <= pairs
    # each constrained decoding against its own run's free decoding
    assert {(f"{p} [constrained]", p) for p in ("a4", "a16", "b4", "b16")} <= pairs
    # the best-ranked model against every other model not already paired with it
    others = {m for m in models if m not in (best, "a16")}
    assert {(best, m) for m in others} <= pairs
    expected = len(models) + 4 + len(others)
    assert len(pairs) == expected == 18  # all pairs would be 8 + 28 = 36
    # no pair is tested twice, in either direction
    assert not {(b, a) for a, b in pairs} & pairs
    assert len(sig) == expected * len(compare.SIGNIFICANCE_METRICS)
    # the star's rows: perfect against good on the same 40 rows, 4 rows fixed, none broken
    row = sig[
        (sig["model"] == best) & (sig["reference"] == "b16") & (sig["metric"] == "route_plan_exact")
    ].iloc[0]
    assert (row["n"], row["b01"], row["b10"]) == (40, 4, 0)
    assert row["delta"] == pytest.approx(4 / 40)


def test_the_best_is_the_gate_passing_top_router(sweep: list[Path]) -> None:
    """Without the perfect router, the reference is the first of the tied good routers (run
    order), never a weak one."""
    runs = [r for r in compare.load_runs(sweep) if r.name != "a16 [constrained]"]
    sig = compare.significance_table(runs)
    star = sig[~sig["reference"].str.startswith("baseline:")]
    starred = star[star["model"] != star["reference"] + " [constrained]"]
    assert set(starred["model"]) == {"a4 [constrained]"}


def test_headline_view_has_one_row_per_pair(sweep: list[Path]) -> None:
    sig = compare.significance_table(compare.load_runs(sweep))
    view = display.significance_view(sig, compare.DECIDING_METRICS)
    heads = [display.SHORT_NAMES[m] for m in compare.DECIDING_METRICS]
    assert list(view.columns) == ["router", "against", "rows", *heads]
    assert len(view) == len(_pairs(sig)) == 18
    # each cell carries the long table's Δ and p-value for that pair and metric
    long = display.significance_view(sig)
    assert len(long) == len(sig)
    cell = view[(view["router"] == "a16 [constrained]") & (view["against"] == "b16")].iloc[0]
    test = long[
        (long["router"] == "a16 [constrained]")
        & (long["against"] == "b16")
        & (long["metric"] == "route_plan_exact")
    ].iloc[0]
    assert cell["plan exact"].startswith("+0.100 (p ")
    assert f"(p {test['p']})" in cell["plan exact"]
    assert cell["plan exact"].endswith("significant") == (test["significant"] == "yes")
    assert cell["rows"] == "40"


def test_report_index_shows_pairs_and_links_every_test(sweep: list[Path], tmp_path: Path) -> None:
    sig_html = report._comparison(sweep, tmp_path)["significance"]
    main = sig_html.split("<details>")[0]
    assert main.count("<tr") == 1 + 18  # header + one row per pair
    csv = (tmp_path / runfolder.SIGNIFICANCE_FILE).read_text().splitlines()
    assert len(csv) == 1 + 18 * len(compare.SIGNIFICANCE_METRICS)
    assert f'href="{runfolder.SIGNIFICANCE_FILE}"' in sig_html


def test_notebook_05_pair_cells_show_notebook_04s_p_values(tmp_path: Path) -> None:
    """The run's model against the previous router: the cell notebook 05 shows per headline
    metric carries the Δ and p-value notebook 04's comparison table shows for it."""
    from routerlib.stages import evaluate as evaluate_stage

    run = compare_runs.make_run(tmp_path, "good", "good")
    eval_dir = run / "eval"
    report_04 = metrics.score_files(
        run / "data" / "test.jsonl",
        eval_dir / "predictions.jsonl",
        compare_to=eval_dir / "baselines" / "majority" / "predictions.jsonl",
        bootstrap=0,
    )
    in_04 = evaluate_stage.comparison_table(report_04)
    sig = compare.significance_table(compare.load_runs([run]))
    view = display.significance_view(sig, compare.DECIDING_METRICS)
    (row,) = [r for _, r in view.iterrows() if r["against"] == "baseline:majority"]
    for metric in compare.DECIDING_METRICS:
        shown = in_04.loc[metric]
        assert row[display.SHORT_NAMES[metric]].startswith(
            f"{shown['delta']} (p {shown['p_value']})"
        ), metric
