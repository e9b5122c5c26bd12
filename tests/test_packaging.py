"""routerlib as a user installs it: a wheel built from the sources ships its default files
(routerlib/data: the gates and the price table), `routerlib evaluate --thresholds default` works
from outside the repository, and `routerlib run` says in one line that it needs a clone.

The wheel is installed with pip (no index, no dependencies) into a fresh virtual environment;
that environment then sees the shared one's site-packages for the dependencies, after the
wheel's own copy of routerlib, so nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from routerlib import metrics, paths, pricing
from tests.test_synth import PINNED_DIGESTS

ROOT = Path(__file__).resolve().parent.parent
GOLD_ROWS = 6


def test_packaged_defaults_are_found_through_the_package() -> None:
    assert metrics.DEFAULT_THRESHOLDS_PATH == paths.packaged_file("thresholds.yaml")
    assert pricing.default_pricing_path() == paths.packaged_file("pricing.yaml")
    assert metrics.DEFAULT_THRESHOLDS_PATH.is_file() and pricing.default_pricing_path().is_file()
    assert pricing.load_pricing().price("routerlib/tiny-router-lm") == 0.0


def test_default_names_the_packaged_gates_unless_a_file_has_that_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    packaged = metrics.load_thresholds(metrics.DEFAULT_THRESHOLDS_PATH)
    assert metrics.load_thresholds("default") == packaged
    own = {"overall": {"min": {"json_valid": 0.5}}}
    (tmp_path / "default").write_text(json.dumps(own), encoding="utf-8")
    assert metrics.load_thresholds("default") == own  # an existing file of that name wins


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A temporary venv with the routerlib wheel installed; (its bin folder, a clean env)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"  # build from a copy: the build writes build/ and *.egg-info beside it
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "routerlib", source / "routerlib", ignore=shutil.ignore_patterns("__pycache__")
    )
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "ROUTERLIB_", "PIP_"))
    }
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", NO_GCE_CHECK="True")
    pip = [sys.executable, "-m", "pip"]
    built = _run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(work / "dist"), str(source)],
        work,
        env,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    (wheel,) = (work / "dist").glob("routerlib-*.whl")

    venv = work / "venv"
    made = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], work, env)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    done = _run([*pip, "--python", str(python), "install", "--no-deps", str(wheel)], work, env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    # then the dependencies: the shared site-packages, after the venv's own (so the wheel wins)
    purelib = Path(
        _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            work,
            env,
        ).stdout.strip()
    )
    shared = [p for p in site.getsitepackages() if Path(p).is_dir()] or [
        sysconfig.get_paths()["purelib"]
    ]
    lines = "".join(f"import site; site.addsitedir({p!r})\n" for p in shared)
    (purelib / "zz_shared_site.pth").write_text(lines, encoding="utf-8")
    return venv / "bin", env


def test_wheel_evaluates_with_packaged_gates_outside_the_repository(
    installed: tuple[Path, dict[str, str]], real_data: Path, tmp_path: Path
) -> None:
    bin_dir, env = installed
    where = _run(
        [str(bin_dir / "python"), "-c", "import routerlib; print(routerlib.__file__)"],
        tmp_path,
        env,
    )
    assert where.stdout.strip().startswith(str(bin_dir.parent)), where.stdout + where.stderr

    rows = (real_data / "deep_router_benchmark.jsonl").read_text(encoding="utf-8").splitlines()
    gold = tmp_path / "gold.jsonl"
    gold.write_text("\n".join(rows[:GOLD_ROWS]) + "\n", encoding="utf-8")
    pred = tmp_path / "pred.jsonl"
    pred.write_text(
        "".join(
            json.dumps({"completion": json.loads(r)["completion"]}) + "\n" for r in rows[:GOLD_ROWS]
        ),
        encoding="utf-8",
    )
    cli = str(bin_dir / "routerlib")
    args = ["evaluate", "--gold", str(gold), "--pred", str(pred), "--thresholds", "default"]
    proc = _run([cli, *args, "--out", "packaged.json", "--no-progress"], tmp_path, env)
    assert proc.returncode in (0, 1), proc.stdout[-2000:] + proc.stderr[-2000:]
    gate = json.loads((tmp_path / "packaged.json").read_text())["threshold_results"]
    packaged = metrics.load_thresholds(metrics.DEFAULT_THRESHOLDS_PATH)
    assert set(gate) - {"overall_pass", "failed", "figures"} == set(
        packaged
    )  # every packaged bucket

    # a file called "default" in the working folder wins over the packaged gates
    (tmp_path / "default").write_text(
        json.dumps({"overall": {"min": {"json_valid": 0.5}}}), encoding="utf-8"
    )
    proc = _run([cli, *args, "--out", "own.json", "--no-progress"], tmp_path, env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    gate = json.loads((tmp_path / "own.json").read_text())["threshold_results"]
    assert (
        set(gate) - {"overall_pass", "failed", "figures"} == {"overall"}
        and gate["overall_pass"] is True
    )


def test_wheel_run_outside_a_clone_says_so_in_one_line(
    installed: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    bin_dir, env = installed
    proc = _run([str(bin_dir / "routerlib"), "run", "params/local.yaml"], tmp_path, env)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "inside a clone of the routerlib repository" in lines[0], proc.stderr


def test_wheel_ships_the_synthetic_tables(
    installed: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """The generator's YAML tables are in the wheel: its default rows are byte for byte those of
    the clone (the digest tests/test_synth.py pins)."""
    bin_dir, env = installed
    proc = _run([str(bin_dir / "routerlib"), "synth", "--out", "rows.jsonl"], tmp_path, env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    digest = hashlib.sha256((tmp_path / "rows.jsonl").read_bytes()).hexdigest()
    assert digest == PINNED_DIGESTS[(300, 7)]


def test_wheel_ships_the_report_templates(
    installed: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    bin_dir, env = installed
    code = (
        "from routerlib import report; "
        "print(report._render('report_significance.html', headline=None, csv='s.csv'))"
    )
    proc = _run([str(bin_dir / "python"), "-c", code], tmp_path, env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert proc.stdout.strip() == "<p>No paired per-sample records to test.</p>"
