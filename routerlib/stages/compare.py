"""Notebook 05: finished runs side by side (which runs, the plots, the saved comparison). It never
starts papermill; run alone with nothing to compare, it makes one run of its own params here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from routerlib import compare, compare_plots, runfolder
from routerlib.atomic import write_text
from routerlib.compare import RunSummary
from routerlib.errors import InputError
from routerlib.stages.evaluate import evaluate_run
from routerlib.stages.run import Run, open_run
from routerlib.stages.run import image as image


def runs_to_compare(run: Run, runs: list[str]) -> list[RunSummary]:
    """The given run folders that finished an evaluation (others named in one line), else every
    finished run; with none, one run of these params is made here first. Never this folder."""
    own = run.path.resolve()
    given = [Path(p) for p in runs]
    skipped = [p for p in given if not runfolder.has_evaluation(p) or p.resolve() == own]
    if skipped:
        names = ", ".join(p.name for p in skipped)
        print(f"Not compared (no finished evaluation, or this comparison's own folder): {names}")
    runs = [str(p) for p in given if p not in skipped]
    if given and not runs:
        raise InputError(f"runs: no finished run folder to compare among {len(given)} given")
    found = [r for r in compare.load_runs(runs or None) if Path(r.path) != own]
    if not found and not runs:
        built = open_run(run.params_file)
        print(
            f"No finished run to compare: making {built.path.name} from {run.params_file} "
            "(`routerlib run PARAMS... --compare` makes runs before comparing them)"
        )
        evaluate_run(built)
        found = [r for r in compare.load_runs(None) if Path(r.path) != own]
    return found


def comparison_plots(run: Run, found: list[RunSummary], board: pd.DataFrame) -> list[Path]:
    """Every comparison plot (``board``: the runs' leaderboard), saved as PNG in the run folder."""
    return compare_plots.all_plots(found, run.sub(runfolder.PLOTS_DIR), board)


def sweep_plot(run: Run, rows: Any) -> Path:
    """The newest sweep's metric against each varied key (``compare.sweep_board`` rows), as PNG."""
    return compare_plots.sweep_metric(rows, run.sub(runfolder.PLOTS_DIR))


COMPARISON_FILES = (
    runfolder.LEADERBOARD_FILE,
    runfolder.SIGNIFICANCE_FILE,
    runfolder.COMPARISON_FILE,
)


def write_comparison(run: Run, board: pd.DataFrame, significance: pd.DataFrame) -> Path:
    """Save the leaderboard and significance table (CSV, and both in comparison.json) in the
    comparison run folder."""
    write_text(run.sub(runfolder.LEADERBOARD_FILE), board.to_csv())
    write_text(run.sub(runfolder.SIGNIFICANCE_FILE), significance.to_csv())
    record = runfolder.ComparisonRecord(
        leaderboard=json.loads(board.to_json(orient="index")),
        significance=json.loads(significance.to_json(orient="records")),
    )
    return runfolder.write_record(run.sub(runfolder.COMPARISON_FILE), record)
