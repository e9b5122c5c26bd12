"""`routerlib run --compare`: the comparison shows the runs just made (plus ``--with`` ones),
kernels start without the plain-TCP warning, and outside a clone `run` says so in one line.

Toy notebooks (tests/support/toy_project.py) in a temporary project root keep kernels few.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from routerlib import pipeline
from routerlib.cli import main
from tests.support.toy_project import make_project

pytestmark = pytest.mark.timeout(180)


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = make_project(tmp_path / "proj")
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
