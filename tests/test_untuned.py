"""The untuned base model beside a finished local run (routerlib.untuned, and
benchmarks/bench_router_quality.py over it): scored on the run's own test rows with the run's
settings, outside the run folder; the table's rows; the paired figures are compare.py's."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import re
from pathlib import Path
from types import ModuleType

import pytest

from routerlib import compare, untuned
from routerlib.errors import InputError
from tests.support import compare_runs

ROOT = Path(__file__).resolve().parent.parent
ROWS = 3  # eval_limit of the tiny run: the test rows every router is scored on
MAX_TOKENS = 24


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished local run of tests/data/e2e_tiny.yaml, both decodings scored through a local
    server as notebook 04 does; a tiny random checkpoint stands in for the tuned one."""
    from routerlib.serving.local import LocalPredictor, LocalServer
    from routerlib.stages import evaluate as evaluate_stage
    from routerlib.stages import prepare as prepare_stage
    from routerlib.stages import run as run_stage
    from routerlib.stages import tune as tune_stage
    from routerlib.tuning.base import Job
    from tests.support.tiny_serving_model import load_plain, make_checkpoint

    root = tmp_path_factory.mktemp("untuned")
    overrides = {"name": "quality", "synth_rows": 40, "eval_limit": ROWS, "max_tokens": MAX_TOKENS}
    run = run_stage.open_run("tests/data/e2e_tiny.yaml", str(root / "run"), overrides)
    prepare_stage.prepare(run)
    job = Job(
        name="local/q",
        backend="local",
        state="JOB_STATE_SUCCEEDED",
        spec=tune_stage.tuning_spec(run),
    )
    previous = evaluate_stage.baselines(run)
    predictor = LocalPredictor(make_checkpoint(root / "ckpt"), loader=load_plain)
    with LocalServer(predictor=predictor) as server:
        reports = evaluate_stage.evaluate_all(run, server.endpoint_url)
    evaluate_stage.write_metrics(
        run, job, evaluate_stage.headline_report(reports), previous, reports
    )
    return run.path


def _fingerprint(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _bench() -> ModuleType:
    path = ROOT / "benchmarks" / "bench_router_quality.py"
    spec = importlib.util.spec_from_file_location("bench_router_quality", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_script_scores_the_base_model_beside_the_run(
    tiny_run: Path, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _fingerprint(tiny_run)
    out = tmp_path / "quality"
    code = _bench().main([str(tiny_run), "--out", str(out), "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert _fingerprint(tiny_run) == before, "the run folder was edited"

    # the base model's reports: its own folder, the run's test rows and settings, both decodings
    base = {
        d: json.loads((out / tiny_run.name / d / "report.json").read_text())
        for d in ("free", "constrained")
    }
    for decoding, report in base.items():
        assert report["config"]["total_samples"] == ROWS
        assert report["generation"]["max_tokens"] == MAX_TOKENS
        assert report["generation"]["decoding"] == decoding
        assert report["comparison"]["strict"]  # against the run's previous router, as the run

    # the printed table: one row per router, every shown metric as a column
    table = printed.split("strict figures")[1].split("paired tests")[0]
    names = [line.rsplit(" ", 1)[0] for line in table.splitlines()]
    for name in ("tuned free", "tuned constrained", "base free", "base constrained"):
        assert any(re.match(rf"{name}\s+{ROWS}\s", line) for line in table.splitlines()), names
    assert all(m in table for m in untuned.SHOWN)
    # the previous routers are scored on the same test rows (eval_limit's); the majority
    # template is always valid JSON
    assert re.search(rf"baseline majority\s+{ROWS}\s+1\.000\s+1\.000", table)
    assert "scored on all" not in printed

    # the paired figures are compare.paired_reports' on the same reports, subject minus reference
    loads: list[Path] = []
    load_run = compare.load_run

    def counted(path: Path) -> compare.RunSummary:
        loads.append(path)
        return load_run(path)

    monkeypatch.setattr(compare, "load_run", counted)
    _, own = untuned.finished_local_run(tiny_run)
    reports = untuned.router_reports(own, base)
    assert len(loads) == 1  # the run's reports are read once
    assert list(reports)[:4] == ["tuned free", "tuned constrained", "base free", "base constrained"]
    tests = untuned.paired_table(reports)
    assert set(tests["reference"]) == set(untuned.REFERENCES)
    subject = json.loads((tiny_run / "eval" / "constrained" / "report.json").read_text())
    subject["samples_path"] = str(tiny_run / "eval" / "constrained" / "samples.jsonl")
    files = {
        "base constrained": out / tiny_run.name / "constrained" / "report.json",
        "tuned free": tiny_run / "eval" / "report.json",
        "baseline majority": tiny_run / "eval" / "baselines" / "majority" / "report.json",
    }
    for reference, file in files.items():
        other = json.loads(file.read_text())
        other["samples_path"] = str(file.parent / "samples.jsonl")
        direct = compare.paired_reports(subject, other, untuned.SHOWN)
        rows = tests[tests["reference"] == reference].set_index("metric")
        assert sorted(rows.index) == sorted(untuned.SHOWN)
        for metric, expected in direct.items():
            row = rows.loc[metric]
            assert row["n"] == expected["n"] == ROWS
            assert row["delta"] == pytest.approx(expected["delta"])
            assert row["p_value"] == pytest.approx(expected["p_value"], nan_ok=True)
            assert row["test"] == expected["test"]
            for count in ("b01", "b10"):  # rows fixed / broken (McNemar); none for a rate
                if expected[count] is None:
                    assert math.isnan(row[count])
                else:
                    assert row[count] == expected[count]
    # the majority baseline writes the template's tools on every row: valid where the tiny
    # models are not, so the tuned model's delta against it is negative
    majority = tests[tests["reference"] == "baseline majority"].set_index("metric")
    assert majority.loc["json_valid", "delta"] == pytest.approx(
        reports["tuned constrained"]["strict"]["overall"]["json_valid"] - 1.0
    )

    result = printed.strip().splitlines()[-1]
    assert result.startswith("RESULT bench_router_quality rows=3 ")
    assert "p_tool_seq_vs_majority=" in result and "plan_base_c=" in result

    # a second call reuses the cached predictions and prints the same figures
    assert _bench().main([str(tiny_run), "--out", str(out), "--no-progress"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == result


def test_paired_table_reads_subject_minus_reference(tmp_path: Path) -> None:
    """On hand-made reports with known outcomes (tests/support/compare_runs): constrained is
    the ``good`` router, free the ``weak`` one, beside the majority baseline."""
    run = compare_runs.add_constrained(
        compare_runs.make_run(tmp_path, "known", "weak"), compare_runs.predictions("good")
    )

    def read(relative: str) -> dict:
        report = json.loads((run / relative / "report.json").read_text())
        report["samples_path"] = str(run / relative / "samples.jsonl")
        return report

    reports = {
        "tuned free": read("eval"),
        "tuned constrained": read("eval/constrained"),
        "baseline majority": read("eval/baselines/majority"),
    }
    tests = untuned.paired_table(reports).set_index(["reference", "metric"])
    exact = tests.loc[("tuned free", "route_plan_exact")]
    assert exact["test"] == "mcnemar" and exact["n"] == 40
    assert exact["delta"] == pytest.approx(16 / 40)  # 36/40 against 20/40
    assert (exact["b01"], exact["b10"]) == (20, 4)
    assert exact["p_value"] < 0.05
    against_majority = tests.loc[("baseline majority", "route_plan_exact")]
    assert against_majority["delta"] == pytest.approx((36 - 24) / 40)
    assert tests.loc[("tuned free", "route_tool_recall"), "test"] == "paired_bootstrap"
    # no base report among them: that reference is left out, not invented
    assert "base constrained" not in tests.index.get_level_values("reference")
    figures = untuned.figures_table(reports)
    assert list(figures.index) == list(reports)
    assert figures.loc["tuned constrained", "route_plan_exact"] == pytest.approx(36 / 40)


def test_a_folder_that_is_not_a_finished_local_run_is_refused(
    tiny_run: Path, tmp_path: Path
) -> None:
    with pytest.raises(InputError, match="no such run folder"):
        untuned.finished_local_run(tmp_path / "nowhere")
    partial = compare_runs.make_partial_run(tmp_path)
    with pytest.raises(
        InputError, match=r"not a finished local run: no params\.yaml, data/prepare\.json"
    ):
        untuned.finished_local_run(partial)
    # a hand-made run with one decoding: the constrained one the question is about is missing
    one = compare_runs.make_run(tmp_path, "one", "weak")
    (one / "params.yaml").write_text((tiny_run / "params.yaml").read_text())
    (one / "data" / "prepare.json").write_text("{}")
    with pytest.raises(InputError, match="records no constrained decoding"):
        untuned.finished_local_run(one)
    # a copy of the finished run without the constrained decoding's per-sample records
    import shutil

    copy = Path(shutil.copytree(tiny_run, tmp_path / "copy"))
    (copy / "eval" / "constrained" / "samples.jsonl").unlink()
    with pytest.raises(InputError, match=r"no eval/constrained/samples\.jsonl"):
        untuned.finished_local_run(copy)
    run, _ = untuned.finished_local_run(tiny_run)
    with pytest.raises(InputError, match="inside the run folder"):
        untuned.evaluate_base(run, tiny_run / "base")
