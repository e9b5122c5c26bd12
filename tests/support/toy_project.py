"""A tiny project root for pipeline tests: params/*.yaml and two toy notebooks that papermill runs.

``01_write.ipynb`` appends one line to ``<run_dir>/stage01.txt``. ``02_check.ipynb`` raises
``ValueError("planted failure …")`` when the run's name is ``boom`` or the file ``FAIL_02`` exists
in the project root, else writes ``<run_dir>/stage02.txt``. Both have one ``parameters``-tagged
cell with ``params_file`` and ``run_dir``. ``05_compare.ipynb`` (the comparison stage) also takes
``runs`` and writes it to ``<run_dir>/compared.json``.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

PARAMS_CELL = 'params_file = "params/local.yaml"\nrun_dir = ""'
READ = (
    "from pathlib import Path\n"
    "import yaml\n"
    "cfg = yaml.safe_load(Path(params_file).read_text())\n"
    "run = Path(run_dir)\n"
    "print('stage for', cfg['name'])"
)


def _notebook(*cells: str, title: str, params_cell: str = PARAMS_CELL) -> nbformat.NotebookNode:
    params = new_code_cell(params_cell)
    params.metadata["tags"] = ["parameters"]
    nb = new_notebook(
        cells=[new_markdown_cell(f"# {title}"), params, new_code_cell(READ)]
        + [new_code_cell(c) for c in cells]
    )
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    return nb


def make_project(root: Path) -> Path:
    """Write the toy project under ``root`` and return it."""
    (root / "params").mkdir(parents=True)
    (root / "notebooks").mkdir()
    for name in ("ok", "boom", "flaky"):
        (root / "params" / f"{name}.yaml").write_text(f"name: {name}\nepochs: 1\n")
    nbformat.write(
        _notebook(
            "with open(run / 'stage01.txt', 'a') as f:\n    f.write('ran\\n')", title="01 write"
        ),
        root / "notebooks" / "01_write.ipynb",
    )
    nbformat.write(
        _notebook(
            "if cfg['name'] == 'boom' or Path('FAIL_02').exists():\n"
            "    raise ValueError('planted failure in stage 02')",
            "(run / 'stage02.txt').write_text('ok')",
            title="02 check",
        ),
        root / "notebooks" / "02_check.ipynb",
    )
    nbformat.write(
        _notebook(
            "import json\n(run / 'compared.json').write_text(json.dumps(runs))",
            title="05 compare",
            params_cell=PARAMS_CELL + "\nruns = []",
        ),
        root / "notebooks" / "05_compare.ipynb",
    )
    return root
