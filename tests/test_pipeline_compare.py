"""`routerlib run --compare`: the comparison shows the runs just made (plus ``--with`` ones),
kernels start without the plain-TCP warning, and outside a clone `run` says so in one line.

Toy notebooks (tests/support/toy_project.py) in a temporary project root keep kernels few.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from routerlib import pipeline
from routerlib.cli import main
from routerlib.errors import InputError
from routerlib.stages import compare as compare_stage
from routerlib.stages import run as run_stage
from tests.support.toy_project import _notebook, make_project

pytestmark = pytest.mark.timeout(180)


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = make_project(tmp_path / "proj")
    # Stage 01 stands for a whole run here: it also writes the run's metrics.json, as notebook 04
    # does when its evaluation finishes (only such a run is a comparison candidate).
    nbformat.write(
        _notebook(
            "import json\n(run / 'stage01.txt').write_text('ran')\n"
            "(run / 'metrics.json').write_text(json.dumps({'run': {'name': cfg['name']}}))",
            title="01 evaluate",
        ),
        root / "notebooks" / "01_write.ipynb",
    )
    monkeypatch.setenv("ROUTERLIB_ROOT", str(root))
    monkeypatch.setenv("ROUTERLIB_OUTPUTS", str(tmp_path / "outputs"))
    monkeypatch.chdir(root)
    return root


def _finished_run(outputs: Path, name: str) -> Path:
    """A run folder made earlier (by another `make run` or the test suite): it has metrics.json."""
    folder = outputs / name
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"run": {"name": "ok"}}))
    return folder


def _compared(outputs: Path) -> list[str]:
    (comparison,) = outputs.glob("comparison-*")
    return json.loads((comparison / "compared.json").read_text())


def test_compare_shows_the_runs_just_made_and_with_adds_more(
    project: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    outputs = tmp_path / "outputs"
    older = _finished_run(outputs, "ok-20000101-000000")

    assert main(["run", "params/ok.yaml", "--stages", "01", "--compare"]) == 0
    made = [p for p in outputs.glob("ok-*") if p != older]
    assert len(made) == 1
    assert _compared(outputs) == [str(made[0].resolve())]  # not the older run
    # kernels start without ipykernel's "running over TCP without encryption" warning
    assert "without encryption" not in capfd.readouterr().err

    for comparison in outputs.glob("comparison-*"):
        comparison.rename(tmp_path / comparison.name)
    assert main(["run", "params/ok.yaml", "--stages", "01", "--with", older.name]) == 0
    newest = max(p for p in outputs.glob("ok-*") if p not in (older, made[0]))
    assert _compared(outputs) == [str(newest.resolve()), str(older.resolve())]


def test_with_all_adds_every_finished_run_once(project: Path, tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    older = _finished_run(outputs, "ok-20000101-000000")
    other = _finished_run(outputs, "boom-20000101-000000")
    assert main(["run", "params/ok.yaml", "--stages", "01", "--with", "all", str(older)]) == 0
    compared = _compared(outputs)
    assert sorted(compared[1:]) == sorted(str(p.resolve()) for p in (older, other))
    assert compared[0].startswith(str((outputs / "ok-").resolve()))


def test_a_bad_with_fails_before_any_run(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "params/ok.yaml", "--stages", "01", "--with", "nope-123"]) == 2
    err = capsys.readouterr().err
    assert "--with nope-123: not a finished run folder (no metrics.json)" in err
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").iterdir())


def test_a_comparison_only_run_is_not_a_candidate(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--stages 05 --compare`: the folder that ran only the comparison has no evaluation, so it is
    not handed to the comparison (which then compares every finished run), and the CLI says so."""
    outputs = tmp_path / "outputs"
    older = _finished_run(outputs, "ok-20000101-000000")
    assert main(["run", "params/ok.yaml", "--stages", "05", "--compare"]) == 0
    (made,) = [p for p in outputs.glob("ok-*") if p != older]
    assert not (made / "metrics.json").exists()
    assert (
        f"[comparison] {made.name}: no finished evaluation, not compared" in capsys.readouterr().out
    )
    assert _compared(outputs) == []  # empty: every finished run, found by metrics.json
    assert pipeline.comparison_runs([made], [], outputs) == []
    assert pipeline.comparison_runs([made, older], [], outputs) == [older.resolve()]


def test_runs_without_an_evaluation_are_never_model_rows(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Notebook 05 given run folders: an unevaluated one and its own folder are named in a line
    and left out; given only unevaluated ones, it stops with a clear error."""
    outputs = tmp_path / "outputs"
    older = _finished_run(outputs, "ok-20000101-000000")
    empty = outputs / "ok-20000101-000001"
    empty.mkdir()
    comparison = run_stage.open_run("params/ok.yaml", str(outputs / "comparison-1"))
    found = compare_stage.runs_to_compare(
        comparison, [str(empty), str(older), str(comparison.path)]
    )
    assert [r.path for r in found] == [older.resolve()]
    out = capsys.readouterr().out
    assert "Not compared" in out and empty.name in out and "comparison-1" in out
    with pytest.raises(InputError, match="runs: no finished run folder to compare among 1 given"):
        compare_stage.runs_to_compare(comparison, [str(empty)])


def test_run_outside_a_clone_says_so_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    monkeypatch.setenv("ROUTERLIB_ROOT", str(empty))
    monkeypatch.chdir(empty)
    assert main(["run", "params/local.yaml"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "inside a clone of the routerlib repository" in err[0]
    assert main(["run", "x.yaml", "--compare"]) == 2


def test_comparison_parameters_carry_run_folders_only(tmp_path: Path) -> None:
    params = pipeline.notebook_parameters(tmp_path / "a.yaml", tmp_path / "run", [tmp_path / "r"])
    assert params["runs"] == [str((tmp_path / "r").resolve())]
    assert set(params) == {"params_file", "run_dir", "runs"}
    with pytest.raises(AssertionError):
        pipeline.notebook_parameters(
            tmp_path / "a.yaml", tmp_path, [tmp_path / "ya29.a0AfH6SMBxxxxxxxxxxxxxxxxxxxxxxx"]
        )


def test_two_runs_of_one_model_are_told_apart_by_their_run_folder(tmp_path: Path) -> None:
    from routerlib import compare
    from tests.support.compare_runs import make_run

    first = make_run(tmp_path, "local", "good")
    second = first.rename(tmp_path / "local-20260101-000001")
    make_run(tmp_path, "local", "weak")
    runs = compare.load_runs([second, tmp_path / "local-20260101-000000"])
    board = compare.leaderboard(runs)
    models = board[board["kind"] == "model"]
    assert list(models["model"]) == ["local", "local"]
    assert sorted(models["run"]) == ["local-20260101-000000", "local-20260101-000001"]
