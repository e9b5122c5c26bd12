"""Quality against cost: cost columns follow from the price table, the Pareto front and the
cheapest passing run on hand-made runs, a sweep's varied keys on the leaderboard."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from routerlib import compare, compare_plots, pricing, runfolder, sweep
from routerlib.atomic import write_json
from routerlib.stages import evaluate as evaluate_stage
from routerlib.stages import prepare as prepare_stage
from routerlib.stages import run as run_stage
from routerlib.tuning.base import SUCCEEDED, Job, TuningSpec
from tests.support.vertex_params import EDITS

NAN = float("nan")
Q = "route_plan_exact strict"
C = compare.SERVING_USD


def _board(rows: list[tuple[str, float, float, bool | None]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"model": m, "kind": "model", "run": f"{m}-run", Q: q, C: c, "gate_pass": g}
            for m, q, c, g in rows
        ]
    )


def test_pareto_front_on_hand_made_runs() -> None:
    board = _board(
        [
            ("a", 0.9, 3.0, True),  # best quality
            ("b", 0.8, 1.0, True),
            ("c", 0.7, 2.0, True),  # b is better and cheaper
            ("d", 0.9, 4.0, True),  # a has the same quality for less
            ("e", 0.5, 0.5, False),  # cheapest of all
            ("f", 0.95, NAN, True),  # no price: never on the front
            ("g", 0.8, 1.0, False),  # the same point as b: both on it
            ("h", NAN, 0.1, True),  # no quality
        ]
    )
    front = compare.pareto_front(board)
    assert list(board.loc[front, "model"]) == ["a", "b", "e", "g"]
    # Brute force over the definition: nothing on the front is dominated, everything off it is.
    known = board.dropna(subset=[Q, C])
    for i, row in known.iterrows():
        dominated = any(
            o[Q] >= row[Q] and o[C] <= row[C] and (o[Q] > row[Q] or o[C] < row[C])
            for _, o in known.iterrows()
        )
        assert front[i] == (not dominated)
    assert not compare.pareto_front(board.iloc[0:0]).any()
    assert compare.sweep_board(board).empty  # no sweep under this outputs root

    best = compare.cheapest_passing(board)
    assert best is not None and best["model"] == "b"  # e is cheaper but fails the gate
    assert "**b** (b-run) at $1.0000 per 1,000 routes" in compare.cost_line(board)
    none_pass = board.assign(gate_pass=False)
    assert compare.cheapest_passing(none_pass) is None
    assert compare.cost_line(none_pass).startswith("No priced run passes the gate")


def test_quality_vs_serving_cost_plot(tmp_path: Path) -> None:
    board = _board([("a", 0.9, 3.0, True), ("b", 0.8, 1.0, True), ("c", 0.7, 2.0, True)])
    plots = compare_plots.all_plots([], tmp_path, board)
    png = next(p for p in plots if p.stem == "quality_vs_serving_cost")
    assert png.name == "quality_vs_serving_cost.png" and png.read_bytes()[:4] == b"\x89PNG"


def test_cost_columns_follow_from_the_price_table(tmp_path: Path) -> None:
    table = pricing.load_pricing()
    model = "meta/llama3_1@llama-3.1-8b-instruct"
    run = run_stage.open_run(
        "params/llama31_8b.yaml", str(tmp_path / "run"), {**EDITS, "gcs_prefix": "gs://bucket-x/p"}
    )
    cfg = run.config
    spec = TuningSpec.build(
        base_model=model,
        training_dataset_uri="gs://bucket-x/p/train.jsonl",
        output_uri="gs://bucket-x/p/out",
        epochs=3,
    )
    job = Job(
        name="projects/p/locations/l/tuningJobs/1",
        backend="vertex",
        state=SUCCEEDED,
        spec=spec,
        tuning_data_stats={"total_billable_token_count": 1_234_567},
    )
    write_json(
        run.sub(runfolder.THROUGHPUT_FILE),
        {"rows": 40, "seconds": 90.0, "routes_per_hour": 1600.0},
    )
    report = {"latency": {"p50_s": 0.8, "p95_s": 2.5, "mean_s": 1.0, "n": 40}}
    cost = evaluate_stage.run_cost(run, job, report)

    price = table.price(model)
    hourly = table.machine_price(cfg.machine_type)
    assert price is not None and hourly is not None
    assert cost["tuning_usd"] == pytest.approx(1_234_567 * 3 * price / 1e6)
    assert cost["serving_usd_per_1000_routes"] == pytest.approx(hourly / 1600.0 * 1000)
    assert (cost["latency_p50_s"], cost["latency_p95_s"]) == (0.8, 2.5)
    assert cost["machine"] == cfg.machine_type and cost["verified"] is table.verified
    assert cost["table_date"] == table.date.isoformat()

    # The leaderboard carries them, from the run's metrics.json.
    write_json(run.sub("metrics.json"), {"run": {"name": "llama"}, "cost": cost})
    board = compare.leaderboard(compare.load_runs([run.path]))
    row = board[board["kind"] == "model"].iloc[0]
    assert row[compare.TUNING_USD] == pytest.approx(cost["tuning_usd"])
    assert row[C] == pytest.approx(cost["serving_usd_per_1000_routes"])
    assert row["routes_per_hour"] == 1600.0

    # A price the table lacks, and a run without measured throughput: no figure, not zero.
    unpriced = pricing.run_cost(
        base_model="someone/else",
        billable_tokens=10,
        epochs=1,
        machine="z9-mega",
        routes_per_hour=None,
    )
    assert unpriced.tuning_usd is None and unpriced.serving_usd_per_1000_routes is None
    # The local backend counts billable tokens over every epoch; the cost counts each once.
    local = job.model_copy(
        update={
            "backend": "local",
            "tuning_data_stats": {"total_billable_token_count": 300, "epochs": 3},
        }
    )
    assert evaluate_stage.run_cost(run, local, report)["billable_tokens"] == 100


def test_sweep_board_puts_varied_keys_first(tmp_path: Path) -> None:
    grid = {"adapter_size": [4, 16], "learning_rate": [0.001], "epochs": [1, 2]}
    folder = sweep.new_sweep("params/local.yaml", grid, stages=["01"])
    record = sweep.read_sweep(folder)
    rows = []
    for point, score in zip(record.points, (0.1, 0.4, 0.2, 0.3), strict=True):
        point.run_dir, point.status = str(tmp_path / f"{point.name}-x"), sweep.FINISHED
        rows.append(
            # the leaderboard has an adapter_size column of its own: the sweep's value replaces it
            {
                "model": point.name,
                "kind": "model",
                "run": f"{point.name}-x",
                Q: score,
                "adapter_size": None,
            }
        )
    write_json(folder / sweep.SWEEP_FILE, record.model_dump(mode="json"))
    rows.append({"model": "baseline:majority", "kind": "baseline", "run": "other", Q: 0.6})
    rows.append({"model": "other", "kind": "model", "run": "not-in-sweep", Q: 0.9})
    board = pd.DataFrame(rows)

    table = compare.sweep_board(board)
    assert list(table.columns[:2]) == ["adapter_size", "epochs"]  # learning_rate did not vary
    assert len(table) == 4 and set(table["model"]) == {p.name for p in record.points}
    got = {(r.adapter_size, r.epochs): r[Q] for _, r in table.iterrows()}
    assert got == {(4, 1): 0.1, (4, 2): 0.4, (16, 1): 0.2, (16, 2): 0.3}
    png = compare_plots.sweep_metric(table, tmp_path / "plots")
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert not math.isnan(table[Q].sum())
    assert json.loads((folder / "sweep.json").read_text())["grid"] == grid


def test_throughput_is_measured_on_new_rows_only(tmp_path: Path) -> None:
    """Notebook 04's evaluation records routes per hour from the rows it predicted; a resumed
    evaluation with nothing left to predict keeps the measurement it has."""
    from tests.support.fake_vertex_serving import ServingStandIn

    run = run_stage.open_run(
        "params/local.yaml", str(tmp_path / "run"), {"synth_rows": 60, "eval_limit": 3}
    )
    prepare_stage.prepare(run)
    with ServingStandIn() as stand_in:
        server, state = stand_in.fresh()
        endpoint = state.add_endpoint("p", "us-central1", "router")
        url = f"{server.url}/v1/{endpoint['name']}:predict"
        evaluate_stage.evaluate(run, url)
        measured = json.loads(run.sub(runfolder.THROUGHPUT_FILE).read_text())
        assert measured["rows"] == 3 and measured["seconds"] > 0
        assert measured["routes_per_hour"] == pytest.approx(
            3 / measured["seconds"] * 3600, rel=0.02
        )
        before = run.sub(runfolder.THROUGHPUT_FILE).stat().st_mtime_ns
        evaluate_stage.evaluate(run, url)  # every row cached: nothing new to measure
        assert run.sub(runfolder.THROUGHPUT_FILE).stat().st_mtime_ns == before


def test_throughput_is_the_headline_decodings(tmp_path: Path) -> None:
    """The serving cost is priced on the headline (first) decoding: a run that scores only
    constrained decoding records its throughput, and in a free-then-constrained run the
    constrained pass leaves the free measurement alone."""
    from tests.support.fake_vertex_serving import ServingStandIn

    overrides: dict[str, object] = {"synth_rows": 60, "eval_limit": 2}
    only = run_stage.open_run(
        "params/local.yaml", str(tmp_path / "only"), {**overrides, "constrained": True}
    )
    both = run_stage.open_run("params/local.yaml", str(tmp_path / "both"), overrides)
    with ServingStandIn() as stand_in:
        server, state = stand_in.fresh()
        endpoint = state.add_endpoint("p", "us-central1", "router")
        url = f"{server.url}/v1/{endpoint['name']}:predict"
        prepare_stage.prepare(only)
        evaluate_stage.evaluate(only, url, "constrained")
        assert json.loads(only.sub(runfolder.THROUGHPUT_FILE).read_text())["rows"] == 2
        prepare_stage.prepare(both)
        evaluate_stage.evaluate(both, url, "free")
        before = both.sub(runfolder.THROUGHPUT_FILE).read_bytes()
        evaluate_stage.evaluate(both, url, "constrained")
        assert both.sub(runfolder.THROUGHPUT_FILE).read_bytes() == before
