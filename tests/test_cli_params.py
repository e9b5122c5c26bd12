"""The CLI steps take the settings the notebooks use: ``routerlib prepare|tune|deploy|evaluate
--params FILE`` reads the params file (validated, placeholders refused), a flag given overrides
its key; ``routerlib record`` gathers the CLI steps into a run folder the report compares; the
report says what to run when there is nothing to compare, and when prices are not verified."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import yaml

from routerlib import compare, dataset, jobs, metrics, pricing, report
from routerlib.cli import build_parser, main
from routerlib.cli.data import PREPARE_PARAMS
from routerlib.cli.evaluate import EVALUATE_PARAMS
from routerlib.cli.params import Keys, apply_params
from routerlib.cli.serve import DEPLOY_PARAMS
from routerlib.cli.tune import TUNE_PARAMS
from routerlib.config import RunConfig, load_config, run_default
from routerlib.stages import prepare as prepare_stage
from routerlib.stages import run as run_stage
from routerlib.tuning.base import SUCCEEDED, Job
from tests.support.compare_runs import make_run
from tests.support.vertex_params import EDITS

ROOT = Path(__file__).resolve().parent.parent


def _edited(tmp_path: Path, name: str) -> Path:
    """A copy of a shipped Vertex params file with its two EDIT lines edited."""
    data = yaml.safe_load((ROOT / "params" / name).read_text(encoding="utf-8"))
    copy = tmp_path / name
    copy.write_text(yaml.safe_dump({**data, **EDITS}), encoding="utf-8")
    return copy


def _args(argv: list[str], keys: Keys) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    apply_params(args, keys)
    return args


def test_tune_takes_the_notebooks_settings_and_flags_override(tmp_path: Path) -> None:
    llama = _edited(tmp_path, "llama31_8b.yaml")
    cfg = load_config(llama)
    base = ["tune", "--train-uri", "gs://b/t.jsonl", "--output-uri", "gs://b/o"]
    args = _args([*base, "--params", str(llama)], TUNE_PARAMS)
    assert (args.epochs, cfg.epochs) == (3, 3)  # the file's 3, not the CLI's default 2
    assert run_default("epochs") == 2
    assert (args.backend, args.base_model) == ("vertex", cfg.base_model)
    args = _args(
        [*base, "--params", str(llama), "--epochs", "1", "--adapter-size", "8"], TUNE_PARAMS
    )
    assert (args.epochs, args.adapter_size) == (1, 8)
    # without --params nothing changes: every default is RunConfig's
    args = _args(base, TUNE_PARAMS)
    assert (args.epochs, args.tuning_mode, args.backend) == (2, "PEFT_ADAPTER", None)
    # a flag is checked with the file: every problem named by file and key
    with pytest.raises(Exception, match="problem"):
        _args([*base, "--params", str(llama), "--adapter-size", "3"], TUNE_PARAMS)


def test_the_unedited_params_file_is_refused_by_every_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = "params/gemma3_27b.yaml"
    gold = tmp_path / "g.jsonl"
    gold.write_text("")
    for argv in (
        ["tune", "--train-uri", "gs://b/t.jsonl", "--output-uri", "gs://b/o", "--dry-run"],
        ["deploy", "--checkpoint", "gs://b/o/checkpoints/final"],
        ["evaluate", "--gold", str(gold), "--pred", str(gold), "--out", str(tmp_path / "r.json")],
    ):
        assert main([*argv, "--params", path]) == 2
        err = capsys.readouterr().err
        assert f"{path}:" in err and "gcs_prefix: 'gs://your-bucket/router-agent'" in err
    assert not (tmp_path / "r.json").exists()


def test_deploy_and_evaluate_take_the_hardware_gate_and_limits(tmp_path: Path) -> None:
    gemma = _edited(tmp_path, "gemma3_27b.yaml")
    cfg = load_config(gemma)
    args = _args(["deploy", "--checkpoint", "gs://b/c", "--params", str(gemma)], DEPLOY_PARAMS)
    assert (args.machine_type, args.accelerator_type, args.accelerator_count) == (
        "g2-standard-48",
        "NVIDIA_L4",
        4,
    )
    assert (args.base_model, args.location) == (cfg.base_model, None)  # us-central1: default
    args = _args(
        ["deploy", "--checkpoint", "gs://b/c", "--params", str(gemma), "--accelerator-count", "8"],
        DEPLOY_PARAMS,
    )
    assert args.accelerator_count == 8
    own = tmp_path / "own.yaml"
    own.write_text("name: own\nbackend: local\nmax_tokens: 512\neval_limit: 5\n")
    argv = ["evaluate", "--gold", "g", "--pred", "p", "--out", "r.json", "--params", str(own)]
    args = _args(argv, EVALUATE_PARAMS)
    assert (args.max_tokens, args.limit, args.thresholds) == (512, 5, "default")  # gated as 04
    args = _args([*argv, "--thresholds", "mine.json", "--max-tokens", "64"], EVALUATE_PARAMS)
    assert (args.max_tokens, args.thresholds) == (64, "mine.json")
    args = _args(["evaluate", "--gold", "g", "--pred", "p", "--out", "r.json"], EVALUATE_PARAMS)
    assert (args.thresholds, args.max_tokens) == (None, RunConfig().max_tokens)


def test_prepare_with_params_makes_the_splits_notebook_01_makes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    own = tmp_path / "own.yaml"
    own.write_text("name: own\nbackend: local\nsynth_rows: 60\ntest_ratio: 0.2\nseed: 3\n")
    assert main(["prepare", "--params", str(own), "--output-dir", str(tmp_path / "a")]) == 0
    assert "validation 6, test 12" in capsys.readouterr().out  # 60 rows: 10% and 20%
    run = run_stage.open_run(str(own), str(tmp_path / "run"))
    prepare_stage.prepare(run)
    for split in ("train", "validation", "test"):
        notebook = (run.path / "data" / f"{split}.jsonl").read_bytes()
        assert (tmp_path / "a" / f"{split}.jsonl").read_bytes() == notebook
    args = _args(
        ["prepare", "--output-dir", "x", "--params", str(own), "--seed", "9"], PREPARE_PARAMS
    )
    assert (args.seed, args.synth_rows, args.input) == (9, 60, None)


def test_a_run_made_with_the_cli_steps_joins_the_comparison(
    real_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    monkeypatch.setenv("ROUTERLIB_PARAMS", "params/local_full.yaml")
    # nothing yet: the message names the params file in use and the way to gather CLI steps
    text = compare.conclusion(compare.leaderboard([]), None)
    assert "routerlib run params/local_full.yaml" in text and "routerlib record" in text
    assert "params/local.yaml" not in text

    dataset.prepare(real_data / "week2_rows_sample.jsonl", tmp_path / "splits", progress=False)
    gold = tmp_path / "splits" / "test.jsonl"  # the 14 real test rows routerlib prepare makes
    rows = gold.read_text("utf-8").splitlines()
    pred = tmp_path / "pred.jsonl"
    pred.write_text(
        "".join(json.dumps({"completion": json.loads(r)["completion"]}) + "\n" for r in rows)
    )
    out = tmp_path / "cli" / "report.json"
    params = tmp_path / "cli-run.yaml"
    params.write_text("name: cli-run\nbackend: local\nepochs: 3\n")
    argv = ["evaluate", "--params", str(params), "--gold", str(gold), "--pred", str(pred)]
    assert main([*argv, "--out", str(out)]) == 0  # gated as notebook 04: the packaged gates
    assert json.loads(out.read_text())["threshold_results"]["overall_pass"] is True
    spec = {"training_dataset_uri": "train.jsonl", "output_uri": str(tmp_path / "tuning")}
    jobs.record(Job(name="local/cli-run-1", backend="local", state=SUCCEEDED, spec=spec))
    capsys.readouterr()
    argv = ["record", "--params", str(params), "--report", str(out), "--job", "local/cli-run-1"]
    assert main(argv) == 0
    run = Path(capsys.readouterr().out.strip())
    assert run.parent == report.find_runs()[0].parent and run.name.startswith("cli-run-")
    assert (run / "data" / "test.jsonl").read_bytes() == gold.read_bytes()
    board = compare.leaderboard(compare.load_runs(report.find_runs()))
    models = board[board["kind"] == "model"]
    assert list(models["run"]) == [run.name] and models.iloc[0]["gate_pass"] == True  # noqa: E712
    assert set(board[board["kind"] == "baseline"]["model"]) == {
        "baseline:majority",
        "baseline:rules",
    }
    assert compare.conclusion(board, None).startswith("Ship **cli-run**")
    index = report.render_report(None, tmp_path / "site").read_text(encoding="utf-8")
    assert run.name in index and "No runs to compare yet" not in index
    # a job that did not succeed is not recorded
    jobs.record(Job(name="local/cli-run-2", backend="local", state="JOB_STATE_FAILED", spec=spec))
    argv[-1] = "local/cli-run-2"
    assert main(argv) == 2 and "not succeeded" in capsys.readouterr().err


def test_the_report_says_when_prices_are_not_verified(tmp_path: Path) -> None:
    run = make_run(tmp_path, "priced", "good")
    record = json.loads((run / "metrics.json").read_text())
    record["cost"] = {"tuning_usd": 1.0, "serving_usd_per_1000_routes": 0.5, "verified": False}
    (run / "metrics.json").write_text(json.dumps(record))
    board = compare.leaderboard(compare.load_runs([run]))
    assert board.loc[0, compare.PRICES_VERIFIED] is False
    text = compare.conclusion(board, None)
    assert "**Prices not verified:**" in text
    record["cost"]["verified"] = True
    (run / "metrics.json").write_text(json.dumps(record))
    board = compare.leaderboard(compare.load_runs([run]))
    assert "Prices not verified" not in compare.conclusion(board, None)
    # the flag as the price table says it (and rows that name themselves unverified)
    table = tmp_path / "prices.yaml"
    table.write_text("date: 2026-12-01\nsource: x\nverified: true\n")
    assert pricing.table_verified(table) is True
    table.write_text(
        "date: 2026-12-01\nsource: x\nverified: true\nmodels:\n"
        "  m: {usd_per_million_training_tokens: 1.0, verified: false}\n"
    )
    assert pricing.table_verified(table) is False  # a row's own flag wins
    assert pricing.table_verified() is False  # the packaged table: local rows are no Google price
    assert pricing.prices_verified({"verified": True, "unverified": ["g2-standard-12"]}) is False
    assert pricing.prices_verified(None) is None
    assert metrics.gate_line(None) == "gate: not checked"


def test_the_name_key_says_how_run_folders_are_named() -> None:
    text = RunConfig.model_fields["name"].description or ""
    assert "outputs/NAME-TIME" in text and "outputs/FILE-TIME" in text and "--name" in text
    assert "router-NAME" in text
