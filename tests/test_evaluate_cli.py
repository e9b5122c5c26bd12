"""``routerlib evaluate`` and ``routerlib baseline`` from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from routerlib.cli import main
from tests.support.fault_server import FaultServer, gold_answers


def _gold(real_data: Path, tmp_path: Path, n: int = 30) -> Path:
    lines = (real_data / "deep_router_benchmark.jsonl").read_text(encoding="utf-8").splitlines()
    path = tmp_path / "gold.jsonl"
    path.write_text("\n".join(lines[:n]) + "\n", encoding="utf-8")
    return path


def _perfect(gold: Path, tmp_path: Path) -> Path:
    pred = tmp_path / "perfect.jsonl"
    rows = [json.loads(line) for line in gold.read_text(encoding="utf-8").splitlines()]
    pred.write_text("".join(json.dumps({"completion": r["completion"]}) + "\n" for r in rows))
    return pred


def _gate(tmp_path: Path) -> Path:
    """A gate the gold itself passes (the original file needs buckets 30 rows may lack)."""
    path = tmp_path / "gate.json"
    path.write_text(
        json.dumps(
            {
                "overall": {
                    "min": {"json_valid": 0.98, "route_plan_exact": 0.8},
                    "max": {"length_ratio_gt_1.1": 0.3},
                },
                "advanced": {"min": {"route_tool_recall": 0.9}},
            }
        )
    )
    return path


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _one_clean_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_pred_perfect_scores_one_and_passes_gate(
    real_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gold = _gold(real_data, tmp_path)
    out = tmp_path / "eval" / "report.json"
    code, stdout, _ = _run(
        [
            "evaluate",
            "--gold",
            str(gold),
            "--pred",
            str(_perfect(gold, tmp_path)),
            "--out",
            str(out),
            "--thresholds",
            str(_gate(tmp_path)),
        ],
        capsys,
    )
    assert code == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["metrics"]["overall"]["route_plan_exact"] == 1.0
    assert report["threshold_results"]["overall_pass"] is True
    table = {line.split()[0]: line.split()[1:] for line in stdout.splitlines()[2:] if line.strip()}
    assert table["route_plan_exact"] == ["1.000", "1.000"]
    assert table["json_valid"] == ["1.000", "1.000"]
    assert "gate: PASS" in stdout


def test_gate_failure_exits_one(
    real_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gold = _gold(real_data, tmp_path)
    base = tmp_path / "majority.jsonl"
    assert _run(["baseline", "--gold", str(gold), "--out", str(base)], capsys)[0] == 0
    assert len(base.read_text(encoding="utf-8").splitlines()) == 30
    code, stdout, _ = _run(
        [
            "evaluate",
            "--gold",
            str(gold),
            "--pred",
            str(base),
            "--out",
            str(tmp_path / "r.json"),
            "--thresholds",
            str(_gate(tmp_path)),
        ],
        capsys,
    )
    assert code == 1
    assert "gate: FAIL" in stdout and "overall.route_plan_exact" in stdout
    report = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert report["threshold_results"]["overall_pass"] is False


def test_compare_to_previous_router(
    real_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gold = _gold(real_data, tmp_path)
    rules = tmp_path / "rules.jsonl"
    assert (
        _run(["baseline", "--gold", str(gold), "--out", str(rules), "--kind", "rules"], capsys)[0]
        == 0
    )
    out = tmp_path / "r.json"
    code, stdout, _ = _run(
        [
            "evaluate",
            "--gold",
            str(gold),
            "--pred",
            str(_perfect(gold, tmp_path)),
            "--out",
            str(out),
            "--compare-to",
            str(rules),
        ],
        capsys,
    )
    assert code == 0
    comparison = json.loads(out.read_text(encoding="utf-8"))["comparison"]
    row = comparison["strict"]["overall"]["route_plan_exact"]
    assert row["new"] == 1.0 and row["delta"] == pytest.approx(1.0 - row["previous"])
    assert "Δ strict" in stdout.splitlines()[1]


def test_count_mismatch_is_one_line(
    real_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gold = _gold(real_data, tmp_path)
    pred = _perfect(gold, tmp_path)
    pred.write_text("".join(pred.read_text(encoding="utf-8").splitlines(True)[:29]))
    code, _, err = _run(
        ["evaluate", "--gold", str(gold), "--pred", str(pred), "--out", str(tmp_path / "r.json")],
        capsys,
    )
    assert code == 2
    line = _one_clean_line(err)
    assert "30 rows" in line and "29 rows" in line
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("which", ["gold", "pred", "thresholds", "compare-to"])
def test_missing_file_is_one_line(
    real_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], which: str
) -> None:
    gold = _gold(real_data, tmp_path)
    files = {"gold": str(gold), "pred": str(_perfect(gold, tmp_path))}
    files[which] = str(tmp_path / "nowhere.jsonl")
    argv = [
        "evaluate",
        "--gold",
        files["gold"],
        "--pred",
        files["pred"],
        "--out",
        str(tmp_path / "r.json"),
    ]
    if which in ("thresholds", "compare-to"):
        argv += [f"--{which}", files[which]]
    code, _, err = _run(argv, capsys)
    assert code == 2
    assert "nowhere.jsonl" in _one_clean_line(err) and "not found" in err


def test_unreadable_pred_line_names_file_and_line(
    real_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gold = _gold(real_data, tmp_path, 3)
    pred = tmp_path / "p.jsonl"
    pred.write_text('{"completion": "{}"}\n{oops\n{"completion": "{}"}\n')
    code, _, err = _run(
        ["evaluate", "--gold", str(gold), "--pred", str(pred), "--out", str(tmp_path / "r.json")],
        capsys,
    )
    assert code == 2 and "Traceback" not in err
    assert f"{pred}:2: not valid JSON" in err


def test_endpoint_with_limit(
    real_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gold = _gold(real_data, tmp_path)
    out = tmp_path / "eval" / "report.json"
    with FaultServer(gold_answers(gold), wrap=lambda t: f"```json\n{t}\n```") as srv:
        code, stdout, _ = _run(
            [
                "evaluate",
                "--gold",
                str(gold),
                "--endpoint",
                srv.predict_url,
                "--out",
                str(out),
                "--limit",
                "5",
                "--concurrency",
                "3",
                "--no-progress",
            ],
            capsys,
        )
        assert len(srv.requests) == 5
    assert code == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["config"]["total_samples"] == 5
    assert report["strict"]["overall"]["route_plan_exact"] == 1.0
    assert report["latency"]["n"] == 5 and "latency p50" in stdout
    preds = (tmp_path / "eval" / "report.predictions.jsonl").read_text().splitlines()
    assert len(preds) == 5 and json.loads(preds[0])["raw"].startswith("```json")


def test_endpoint_giving_up_is_one_line(
    real_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gold = _gold(real_data, tmp_path, 2)
    with FaultServer(gold_answers(gold), plan=lambda p, a: "503") as srv:
        code, _, err = _run(
            [
                "evaluate",
                "--gold",
                str(gold),
                "--endpoint",
                srv.openai_url,
                "--out",
                str(tmp_path / "r.json"),
                "--retries",
                "1",
                "--concurrency",
                "1",
                "--no-progress",
            ],
            capsys,
        )
    assert code == 3
    line = _one_clean_line(err)
    assert "gave up after 2 attempts" in line and "run again to resume" in line


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--endpoint", "not-an-endpoint"], "expected an http"),
        (["--endpoint", "http://127.0.0.1:9/v1", "--concurrency", "0"], "--concurrency must be"),
        (["--endpoint", "http://127.0.0.1:9/v1", "--limit", "0"], "--limit must be"),
    ],
)
def test_bad_values_are_one_line(
    real_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    needle: str,
) -> None:
    gold = _gold(real_data, tmp_path, 2)
    code, _, err = _run(
        ["evaluate", "--gold", str(gold), "--out", str(tmp_path / "r.json"), *extra], capsys
    )
    assert code == 2
    assert needle in _one_clean_line(err)


def test_baseline_bad_gold_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(
        ["baseline", "--gold", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "b.jsonl")],
        capsys,
    )
    assert code == 2 and "not found" in _one_clean_line(err)
