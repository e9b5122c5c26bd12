"""`routerlib run`: papermill chains into run folders, failures, resume, finished runs untouched.

Toy notebooks (tests/support/toy_project.py) in a temporary project root keep kernels few.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
import yaml

from routerlib import pipeline
from routerlib.cli import main
from routerlib.errors import InputError
from tests.support.toy_project import make_project

pytestmark = pytest.mark.timeout(120)


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = make_project(tmp_path / "proj")
    monkeypatch.setenv("ROUTERLIB_ROOT", str(root))
    monkeypatch.setenv("ROUTERLIB_OUTPUTS", str(tmp_path / "outputs"))
    monkeypatch.chdir(root)
    return root


def _snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _state(run: Path) -> dict:
    return json.loads((run / "pipeline.json").read_text())


def test_failing_stage_stops_its_run_only(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["run", "params/boom.yaml", "params/ok.yaml", "--stages", "01,02", "--parallel", "1"]
    )
    out = capsys.readouterr().out
    assert code == 1
    outputs = tmp_path / "outputs"
    boom = next(outputs.glob("boom-*"))
    ok = next(outputs.glob("ok-*"))

    # One progress line per stage, with its time.
    assert [ln.split(" ... ")[0] for ln in out.splitlines() if " ... " in ln] == [
        "[boom] 01_write",
        "[boom] 02_check",
        "[ok] 01_write",
        "[ok] 02_check",
    ]
    assert "[ok] 02_check ... ok (" in out and " s)" in out

    # The failure: one line naming the notebook and the cell (source cell 4, In [4]).
    state = _state(boom)
    assert state["status"] == "failed"
    assert [s["status"] for s in state["stages"]] == ["ok", "failed"]
    error = state["stages"][1]["error"]
    assert "\n" not in error
    assert error.startswith("notebooks/02_check.ipynb: cell 4 (In [4]")
    assert "ValueError: planted failure in stage 02" in error
    assert f"FAILED {boom}: {error}" in out
    # The executed notebook shows the error; the run log has the cell output and the failure.
    executed = nbformat.read(boom / "notebooks" / "02_check.ipynb", as_version=4)
    errors = [
        o
        for c in executed.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.output_type == "error"
    ]
    assert errors and errors[0].ename == "ValueError"
    assert not (boom / "stage02.txt").exists()
    log = (boom / "run.log").read_text()
    assert "stage for boom" in log and "FAILED" in log

    # The other params file still ran to the end.
    assert _state(ok)["status"] == "finished"
    assert (ok / "stage01.txt").read_text() == "ran\n" and (ok / "stage02.txt").exists()
    assert yaml.safe_load((ok / "params.yaml").read_text())["name"] == "ok"
    # Papermill got exactly the two parameters, as absolute paths, and nothing else.
    params = nbformat.read(ok / "notebooks" / "01_write.ipynb", as_version=4).metadata.papermill
    assert params["parameters"] == {"params_file": str(ok / "params.yaml"), "run_dir": str(ok)}


def test_resume_continues_from_first_unfinished_stage(project: Path, tmp_path: Path) -> None:
    (project / "FAIL_02").write_text("")
    lines: list[str] = []
    batch = tmp_path / "batch"
    [first] = pipeline.run_pipeline(
        ["params/flaky.yaml"], stages=["01", "02"], outputs=batch, out=lines.append
    )
    assert first.status == "failed" and "02_check.ipynb" in first.message
    run = first.run_dir
    assert run.parent == batch and run.name.startswith("flaky-")
    with pytest.raises(InputError, match="differs from the run's own stages"):
        pipeline.run_pipeline([str(run)], stages=["01"], resume=True, out=lines.append)

    (project / "FAIL_02").unlink()
    lines.clear()
    [again] = pipeline.run_pipeline(
        ["params/flaky.yaml"], resume=True, outputs=batch, out=lines.append
    )
    assert again.ok and again.run_dir == run
    # Stage 01 was not executed again (it appends a line each time it runs).
    assert (run / "stage01.txt").read_text() == "ran\n"
    assert (run / "stage02.txt").read_text() == "ok"
    assert not any("01_write ..." in ln for ln in lines)
    assert any("02_check ... ok" in ln for ln in lines)
    state = _state(run)
    assert state["status"] == "finished" and state["finished"]
    assert [s["status"] for s in state["stages"]] == ["ok", "ok"]

    # A finished run is never edited again: resume refuses it, by folder or by params name.
    before = _snapshot(run)
    with pytest.raises(InputError, match="finished"):
        pipeline.run_pipeline([str(run)], resume=True, out=lines.append)
    with pytest.raises(InputError, match="no unfinished run"):
        pipeline.run_pipeline(["params/flaky.yaml"], resume=True, outputs=batch, out=lines.append)
    assert _snapshot(run) == before


def test_bad_input_fails_before_anything_runs(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "params" / "typo.yaml").write_text("name: typo\nepochz: 3\n")
    code = main(["run", "params/ok.yaml", "params/typo.yaml", "params/missing.yaml"])
    err = capsys.readouterr().err
    assert code == 2
    assert "epochz: unknown key" in err and "missing.yaml: params file not found" in err
    assert "Traceback" not in err
    assert "nothing was run" in err
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").iterdir())
    assert main(["run", "params/ok.yaml", "--stages", "07"]) == 2
    assert "stage 07: no notebook" in capsys.readouterr().err


def test_parameters_never_carry_credentials(tmp_path: Path) -> None:
    params = pipeline.notebook_parameters(tmp_path / "a.yaml", tmp_path / "run")
    assert set(params) == {"params_file", "run_dir"}
    with pytest.raises(AssertionError):
        pipeline.notebook_parameters(tmp_path / "ya29.a0AfH6SMBxxxxxxxxxxxxxxxxxxxxxxx", tmp_path)


def test_a_kernel_that_never_started_is_started_again_once(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two kernels started at one moment can race for a port (seen: ZMQError 'Address already in
    use', then "Kernel didn't respond in 60 seconds"); no cell ran, so the stage starts again.
    A cell's own error, whatever it says, is not retried."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    real = pm.execute_notebook
    calls: list[str] = []

    def flaky(notebook: str, *args: object, **kwargs: object) -> object:
        calls.append(Path(notebook).name)
        if len(calls) == 1:
            raise RuntimeError("Kernel didn't respond in 60 seconds")
        return real(notebook, *args, **kwargs)

    monkeypatch.setattr(pm, "execute_notebook", flaky)
    assert main(["run", "params/ok.yaml", "--stages", "01"]) == 0
    assert calls == ["01_write.ipynb", "01_write.ipynb"]
    run = next((tmp_path / "outputs").glob("ok-*"))
    assert "the kernel did not start" in (run / "run.log").read_text()

    cell_error = PapermillExecutionError(0, 1, "Address already in use", "OSError", "", [])
    assert not pipeline.kernel_did_not_start(cell_error)
    assert not pipeline.kernel_did_not_start(InputError("Kernel didn't respond"))
    assert pipeline.kernel_did_not_start(RuntimeError("Kernel died before replying to kernel_info"))
