"""`routerlib run A B`: local runs go side by side, each kernel with its share of the cores; other
runs one at a time; Ctrl-C leaves every run it stopped resumable."""

from __future__ import annotations

import _thread
import json
import os
import threading
from pathlib import Path

import nbformat
import pytest

from routerlib import pipeline
from routerlib.cli import main
from tests.support.toy_project import _notebook, make_project

pytestmark = pytest.mark.timeout(180)

# Each run records when it started and ended. With CLOCK_MEET set, a run waits (at most 60 s)
# until every run of the batch has started: runs that go side by side all meet at once, and runs
# that went one at a time would each wait out the 60 s (the test's timeout stops that first).
CLOCK = (
    "import json, os, time\n"
    "start = time.time()\n"
    "(run / 'started').touch()\n"
    "meet = int(os.environ.get('CLOCK_MEET', '0'))\n"
    "while meet and len(list(run.parent.glob('*/started'))) < meet and time.time() < start + 60:\n"
    "    time.sleep(0.1)\n"
    "(run / 'clock.json').write_text(json.dumps({'start': start, 'end': time.time(), "
    "'threads': os.environ.get('OMP_NUM_THREADS')}))"
)


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = make_project(tmp_path / "proj")
    nbformat.write(_notebook(CLOCK, title="03 clock"), root / "notebooks" / "03_clock.ipynb")
    monkeypatch.setenv("ROUTERLIB_ROOT", str(root))
    monkeypatch.setenv("ROUTERLIB_OUTPUTS", str(tmp_path / "outputs"))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.chdir(root)
    return root


def _clocks(outputs: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(outputs.glob("*/clock.json"))]


def test_how_many_runs_go_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert pipeline.side_by_side(["local", "local", "local"]) == 2
    assert pipeline.side_by_side(["local"]) == 1
    assert pipeline.side_by_side(["local", "vertex"]) == 1  # a cloud run: its quota, its costs
    assert pipeline.side_by_side(["vertex", "vertex"], requested=2) == 2
    assert pipeline.side_by_side(["local", "local"], requested=5) == 2
    assert pipeline.side_by_side(["local", "local"], requested=0) == 1
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert pipeline.side_by_side(["local", "local"]) == 1


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="side by side needs two cores")
def test_local_runs_go_side_by_side_with_their_share_of_the_cores(
    project: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CLOCK_MEET", "2")
    assert main(["run", "params/ok.yaml", "params/flaky.yaml", "--stages", "03"]) == 0
    assert "2 runs, 2 at a time" in capsys.readouterr().out
    first, second = _clocks(tmp_path / "outputs")
    assert first["start"] < second["end"] and second["start"] < first["end"]  # they overlapped
    share = str(max(1, (os.cpu_count() or 1) // 2))
    assert first["threads"] == second["threads"] == share
    assert "OMP_NUM_THREADS" not in os.environ  # put back after the runs


def test_one_at_a_time_when_asked(project: Path, tmp_path: Path) -> None:
    assert (
        main(["run", "params/ok.yaml", "params/flaky.yaml", "--stages", "03", "--parallel", "1"])
        == 0
    )
    first, second = sorted(_clocks(tmp_path / "outputs"), key=lambda c: c["start"])
    assert first["end"] <= second["start"]
    assert first["threads"] is None  # the user's setting (none) is left alone


def test_ctrl_c_marks_every_unfinished_run_interrupted(tmp_path: Path) -> None:
    """Kernels run in their own session, so Ctrl-C reaches only the runner's main thread: it
    records each run still going as interrupted (resumable) and stops at once."""
    release = threading.Event()
    run_dirs: dict[int, Path] = {}

    def job(index: int) -> pipeline.RunResult:
        folder = tmp_path / f"run-{index}"
        folder.mkdir()
        stage = {"stage": "03", "notebook": "03_clock.ipynb", "status": "running"}
        state = {"status": "running", "stages": [stage]}
        (folder / "pipeline.json").write_text(json.dumps(state))
        run_dirs[index] = folder
        release.wait(30)
        raise AssertionError("the run outlived the interrupt")

    threading.Timer(1.0, _thread.interrupt_main).start()
    lines: list[str] = []
    jobs = [lambda i=i: job(i) for i in range(2)]
    with pytest.raises(KeyboardInterrupt):
        pipeline._run_side_by_side(jobs, 2, lines.append, run_dirs)
    release.set()
    for index in range(2):
        state = json.loads((run_dirs[index] / "pipeline.json").read_text())
        assert state["status"] == "interrupted"
        assert state["stages"][0]["status"] == "interrupted"
    assert sum("routerlib run --resume" in line for line in lines) == 2
