"""The committed notebooks: no outputs, one tagged parameters cell of literals, thin cells."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
EXPECTED = ["01_prepare", "02_smoke_tune", "03_full_tune", "04_deploy_eval", "05_model_comparison"]


def test_the_five_notebooks_exist() -> None:
    assert [p.stem for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path: Path) -> None:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    dirty = [
        i
        for i, c in enumerate(cells)
        if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))
    ]
    assert not dirty, f"{path.name}: cells {dirty} have outputs; strip them (nbstripout), keep tags"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_one_parameters_cell_of_typed_literals(path: Path) -> None:
    book = json.loads(path.read_text(encoding="utf-8"))
    assert book["metadata"]["kernelspec"]["name"] == "python3"
    tagged = [c for c in book["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    tree = ast.parse("".join(tagged[0]["source"]))
    names = {}
    for node in tree.body:
        assert isinstance(node, ast.Assign), "only assignments in the parameters cell"
        names[node.targets[0].id] = ast.literal_eval(node.value)  # literals only
    assert names["params_file"] == ""  # config.default_params_file(): $ROUTERLIB_PARAMS or local
    assert names["run_dir"] == ""


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_reads_every_parameter(path: Path) -> None:
    """papermill parses the parameters cell (else it warns "Unable to parse line" and calls the
    parameters a chain passes unknown)."""
    import nbformat
    from papermill.translators import PythonTranslator

    book = nbformat.read(path, as_version=4)
    cell = next(c for c in book.cells if "parameters" in c.metadata.get("tags", []))
    found = [p.name for p in PythonTranslator.inspect(cell)]
    assert found[:2] == ["params_file", "run_dir"]
    assert len(found) == len(cell.source.strip().splitlines())


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_thin_cells(path: Path) -> None:
    code = [
        c for c in json.loads(path.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code"
    ]
    assert 5 <= len(code) <= 12
    for cell in code:
        tree = ast.parse("".join(cell["source"]))
        defs = [
            n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.Lambda))
        ]
        assert not defs, f"{path.name}: logic belongs in routerlib, not in the notebook"
        assert len("".join(cell["source"]).splitlines()) <= 6
