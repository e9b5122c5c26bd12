"""`routerlib run --grid`: sweeps validated before anything runs, one run folder per point,
sweep.json, resume without redoing finished points, a 429 on create waits for a slot.

Toy notebooks (tests/support/toy_project.py) in a temporary project root keep kernels few.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
import yaml

from routerlib import sweep
from routerlib.cli import main
from routerlib.errors import InputError
from tests.support.toy_project import _notebook, make_project

pytestmark = pytest.mark.timeout(300)

QUOTA_CELL = (
    "import os\n"
    "try:\n"
    "    os.rename('QUOTA_ONCE', 'QUOTA_TAKEN_' + cfg['name'])\n"
    "except FileNotFoundError:\n"
    "    (run / 'stage03.txt').write_text('ok')\n"
    "else:\n"
    "    raise RuntimeError('submit failed: HTTP 429 RESOURCE_EXHAUSTED: tuning quota')"
)


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = make_project(tmp_path / "proj")
    nbformat.write(_notebook(QUOTA_CELL, title="03 quota"), root / "notebooks" / "03_quota.ipynb")
    (root / "params" / "vx.yaml").write_text(
        "name: vx\nbackend: vertex\ngcs_prefix: gs://routerlib-sweep-test/p\nepochs: 1\n"
        "allow_synthetic: true\n"
    )
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


def test_grid_parsing_and_cross_product() -> None:
    grid = sweep.parse_grid(["adapter_size=4,16", "learning_rate=1e-3,4e-3", "strict=true"])
    assert grid == {"adapter_size": [4, 16], "learning_rate": [0.001, 0.004], "strict": [True]}
    points = sweep.grid_points(grid)
    assert len(points) == 4 and points[1] == {
        "adapter_size": 4,
        "learning_rate": 0.004,
        "strict": True,
    }
    with pytest.raises(InputError) as err:
        sweep.parse_grid(["epochz=1,2", "name=a,b", "epochs=1,1", "seed"])
    lines = err.value.lines()
    assert "--grid epochz=1,2: epochz is not a params key" in lines
    assert any(ln.startswith("--grid name=a,b: name cannot vary") for ln in lines)
    assert "--grid epochs=1,1: a value is listed twice" in lines
    assert "--grid seed: expected key=value[,value...]" in lines


def test_invalid_grid_value_is_refused_before_anything_runs(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["run", "params/ok.yaml", "--grid", "adapter_size=4,3", "--grid", "epochs=1,2"]
        + ["--stages", "01,02"]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert (
        "--grid adapter_size=3: params/ok.yaml: adapter_size: adapter_size 3 is not allowed" in err
    )
    assert "adapter_size=4:" not in err and "Traceback" not in err
    assert "nothing was run" in err
    outputs = tmp_path / "outputs"
    assert not outputs.exists() or not any(outputs.iterdir())

    # A combination only some points make invalid is named by the whole point.
    code = main(
        ["run", "params/ok.yaml", "--grid", "val_ratio=0.1,0.5", "--grid", "test_ratio=0.05,0.5"]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "--grid point val_ratio=0.5, test_ratio=0.5: params/ok.yaml: val_ratio: " in err
    # A value that is not YAML is named by the config check, not a traceback.
    assert main(["run", "params/ok.yaml", "--grid", "epochs=[1,2"]) == 2
    err = capsys.readouterr().err
    assert "--grid epochs=[1: params/ok.yaml: epochs: " in err and "Traceback" not in err
    # The size guard.
    assert main(["run", "params/ok.yaml", "--grid", "seed=1,2,3", "--max-runs", "2"]) == 2
    assert "3 points exceed --max-runs 2" in capsys.readouterr().err
    assert not outputs.exists() or not any(outputs.iterdir())


def test_interrupted_sweep_resumes_without_redoing_finished_points(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    grid = sweep.parse_grid(["epochs=1,2,3"])
    folder = sweep.new_sweep("params/ok.yaml", grid, stages=["01", "02"])
    assert folder.parent == tmp_path / "outputs" and folder.name.startswith("sweep-")
    lines: list[str] = []

    def ctrl_c_in_second_point(line: str) -> None:
        lines.append(line)
        if line.startswith("[ok-epochs2] 01_write ... ok"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(folder, out=ctrl_c_in_second_point)
    record = json.loads((folder / "sweep.json").read_text())
    assert record["status"] == "interrupted"
    assert record["grid"] == {"epochs": [1, 2, 3]}
    assert [p["status"] for p in record["points"]] == ["finished", "interrupted", "pending"]
    first, second = (Path(p["run_dir"]) for p in record["points"][:2])
    assert record["points"][2]["run_dir"] is None
    before = _snapshot(first)

    code = main(["run", "params/ok.yaml", "--grid", "epochs=1,2,3", "--resume"])
    out = capsys.readouterr().out
    assert code == 0
    assert "1 of 3 point(s) already finished; not run again" in out
    assert "[ok-epochs1]" not in out
    assert _snapshot(first) == before  # the finished point was not touched
    # The interrupted point continued in its own folder from its first unfinished stage.
    assert (second / "stage01.txt").read_text() == "ran\n" and (second / "stage02.txt").exists()
    record = json.loads((folder / "sweep.json").read_text())
    assert record["status"] == "finished" and record["finished"]
    assert [p["status"] for p in record["points"]] == ["finished"] * 3
    third = Path(record["points"][2]["run_dir"])
    assert (third / "stage02.txt").exists()
    # One run folder per point under the outputs root, each with the point's values and name.
    for point, run in zip(record["points"], (first, second, third), strict=True):
        assert run.parent == tmp_path / "outputs"
        params = yaml.safe_load((run / "params.yaml").read_text())
        assert params["epochs"] == point["values"]["epochs"]
        assert params["name"] == point["name"] == f"ok-epochs{point['values']['epochs']}"
    # A finished sweep is not resumed again.
    assert main(["run", "params/ok.yaml", "--grid", "epochs=1,2,3", "--resume"]) == 2
    assert "no unfinished sweep" in capsys.readouterr().err


def test_a_429_on_create_waits_for_a_slot(project: Path, tmp_path: Path) -> None:
    (project / "QUOTA_ONCE").write_text("")
    grid = sweep.parse_grid(["epochs=1,2"])
    folder = sweep.new_sweep("params/vx.yaml", grid, stages=["01", "03"], max_concurrent=2)
    lines: list[str] = []
    record = sweep.run_sweep(folder, out=lines.append, quota_wait_s=0.2)
    assert record.status == "finished"
    assert [p.status for p in record.points] == ["finished", "finished"]
    waited = [p for p in record.points if p.quota_waits]
    assert len(waited) == 1 and waited[0].message == ""
    assert any(f"[{waited[0].name}]" in ln and "HTTP 429" in ln for ln in lines)
    assert any("tuning quota full (HTTP 429): waiting for a slot" in ln for ln in lines)
    run = Path(str(waited[0].run_dir))
    # Resumed from the refused stage: stage 01 ran once, stage 03 finished after the wait.
    assert (run / "stage01.txt").read_text() == "ran\n" and (run / "stage03.txt").exists()
    assert not (project / "QUOTA_ONCE").exists()
