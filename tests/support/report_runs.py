"""Run folders with executed notebooks (outputs included, no kernel needed) for report tests."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from tests.support.compare_runs import make_run

#: Appears only in code cells: must never reach a rendered page.
CODE_MARKER = "code_input_marker_7f3a"


def _png_base64() -> str:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 2), dpi=50)
    fig.add_subplot().plot([0, 1], [1, 0])
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def executed_notebook(title: str, extra_text: str = "") -> nbformat.NotebookNode:
    """A notebook as papermill leaves it: markdown, code with stream, table and image outputs."""
    code = new_code_cell(f"{CODE_MARKER}()\nprint('stage done')", execution_count=1)
    code.outputs = [
        new_output("stream", name="stdout", text=f"stage done {extra_text}\n"),
        new_output("stream", name="stderr", text="progress_bar_noise 100%\n"),
        new_output("display_data", data={"image/png": _png_base64(), "text/plain": "<Figure>"}),
        new_output(
            "execute_result",
            execution_count=1,
            data={
                "text/html": "<table class='dataframe'><tr><td>0.9</td></tr></table>",
                "text/plain": "0.9",
            },
        ),
    ]
    nb = new_notebook(cells=[new_markdown_cell(f"# {title}"), code])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    return nb


def add_notebooks(run: Path, names: list[str], extra_text: str = "") -> None:
    """Write executed notebooks ``names`` into ``run/notebooks``."""
    folder = run / "notebooks"
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        nbformat.write(executed_notebook(name, extra_text), folder / f"{name}.ipynb")


def make_report_runs(root: Path) -> list[Path]:
    """Two scored runs with notebooks 01–04 and a comparison run with notebook 05."""
    runs = [
        make_run(root, "good", "good"),
        make_run(root, "weak", "weak", tuning_mode="FULL", adapter_size=None, cost=3.0),
    ]
    for run in runs:
        add_notebooks(run, ["01_prepare", "02_smoke_tune", "03_full_tune", "04_deploy_eval"])
    comparison = root / "local-20260101-000009"
    add_notebooks(comparison, ["05_model_comparison"])
    return [*runs, comparison]
