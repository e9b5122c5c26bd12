"""`make lab`: JupyterLab at the project root opened on notebooks/, --allow-root only as root, and
JupyterLab installed once (a stamp), not on every call. Checked with ``make -n`` (nothing runs)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _dry_run(venv: Path) -> str:
    result = subprocess.run(
        ["make", "-n", "lab", f"VENV={venv}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


def test_lab_installs_once_and_opens_the_project_root(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    venv.mkdir()
    first = _dry_run(venv)
    assert "pip install --quiet -e '.[dev,lab]'" in first  # no stamp yet: install
    for stamp in (".routerlib-installed", ".routerlib-lab-installed"):
        (venv / stamp).touch()  # newer than pyproject.toml
    again = _dry_run(venv)
    assert "pip install" not in again  # installed: straight to the server
    assert f'--ServerApp.root_dir="{ROOT}"' in again
    assert "--ContentsManager.preferred_dir=notebooks" in again
    assert ("--allow-root" in again) == (os.getuid() == 0)
