"""The test session's environment reaches the notebook kernels nbval starts: run folders go to a
temporary outputs root (never the checkout's outputs/) and tunings to the session's own cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

ROOT = Path(__file__).resolve().parent.parent

PROBE = """\
import os
from routerlib import paths
root = paths.outputs_root()
assert "routerlib-tests-" in str(root), root
assert root != paths.project_root() / "outputs", root
assert os.environ["ROUTERLIB_TUNING_CACHE"].endswith("tuning-cache"), os.environ
from routerlib import config
assert config.default_params_file().endswith("tests/data/e2e_tiny.yaml"), os.environ
"""


def test_nbval_kernels_get_the_temporary_outputs_root(tmp_path: Path) -> None:
    probe = tmp_path / "probe.ipynb"
    nb = new_notebook(cells=[new_code_cell(PROBE)])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, probe)
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in (
            "ROUTERLIB_OUTPUTS",
            "ROUTERLIB_TUNING_CACHE",
            "ROUTERLIB_PARAMS",
            "ROUTERLIB_TEST_SESSION",
            "PYTEST_XDIST_WORKER",
        )
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-c",
            str(ROOT / "pyproject.toml"),
            "--rootdir",
            str(ROOT),
            "-p",
            "conftest",  # the project root's conftest.py, as a run inside the checkout loads it
            str(probe),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "1 passed" in proc.stdout
