"""The pipeline image's Dockerfile, checked statically (no Docker engine runs here): it installs
routerlib with the pipelines extra, its notebooks and params and the `python3` kernel papermill
starts; what it copies exists and is not ignored; a root with only what it copies is enough for
the notebook chain to find its notebooks and params."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from routerlib import pipeline, tinymodel
from routerlib.config import load_config
from tests.support.vertex_params import edits_for

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), " ".join(rest.split())))
    return found


def _args(word: str) -> list[str]:
    return [rest for w, rest in _instructions() if w == word]


def test_base_image_python_meets_requires_python() -> None:
    [base] = _args("FROM")
    match = re.fullmatch(r"python:(\d+)\.(\d+)-slim", base)
    assert match, base
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    low = re.match(r">=(\d+)\.(\d+)", meta["requires-python"])
    assert low and tuple(map(int, match.groups())) >= tuple(map(int, low.groups()))


def test_installs_the_package_with_the_pipelines_extra_and_the_python3_kernel() -> None:
    run = " && ".join(_args("RUN"))
    assert 'pip install ".[pipelines]"' in run
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert any(dep.startswith("kfp==") for dep in extras["pipelines"])
    assert "ipykernel install --sys-prefix --name python3" in run
    # the kernel papermill starts for every stage is that one
    assert 'kernel_name="python3"' in (ROOT / "routerlib" / "pipeline.py").read_text()
    # the embedded model is built in the image by the function that exists
    assert "tinymodel.ensure_embedded_model()" in run and callable(tinymodel.ensure_embedded_model)


def test_the_torch_pin_the_image_installs_is_pyprojects() -> None:
    run = " && ".join(_args("RUN"))
    snippet = re.search(r'python -c "(import re; .*?)"\)', run)
    assert snippet, "the Dockerfile reads torch's pin from pyproject.toml"
    code = snippet.group(1).replace('\\"', '"')
    pin = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert pin in deps and pin.startswith("torch==")


def test_root_env_is_the_workdir_and_copies_exist_and_are_not_ignored() -> None:
    [workdir] = _args("WORKDIR")
    env = " ".join(_args("ENV"))
    assert f"ROUTERLIB_ROOT={workdir}" in env
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", "outputs", ".cache", ".git"} <= ignored
    copied = []
    for args in _args("COPY"):
        *sources, _dest = args.split()
        copied += sources
    assert {"pyproject.toml", "README.md", "routerlib", "notebooks", "params"} <= set(copied)
    for source in copied:
        assert (ROOT / source).exists(), source
        assert source not in ignored


def test_what_the_image_copies_is_enough_for_the_chain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for folder in ("notebooks", "params"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    monkeypatch.setenv("ROUTERLIB_ROOT", str(tmp_path))
    assert pipeline.require_notebooks() == tmp_path / "notebooks"
    for stage in ("01", "02", "03", "04", "05"):
        assert pipeline.find_notebook(stage).parent == tmp_path / "notebooks"
    for params in sorted((tmp_path / "params").glob("*.yaml")):
        load_config(params, edits_for(params))  # the Vertex files with their EDIT lines edited
