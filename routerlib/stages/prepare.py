"""Notebook 01: the Week-2 rows converted, validated and split into the run folder (and uploaded
to Cloud Storage when ``gcs_prefix`` is set), with the tables the notebook shows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from routerlib import dataset, paths, runfolder, storage
from routerlib.config import cloud_problems
from routerlib.dataset import PrepareResult
from routerlib.errors import InputError
from routerlib.runfolder import SPLITS
from routerlib.stages.run import Run, fields
from routerlib.stages.run import open_run as open_run

#: The settings ``dataset.prepare`` takes from the run's params as they are.
PREPARE_KEYS = {"val_ratio", "test_ratio", "seed", "max_seq_len", "base_model", "tuning_mode"}
PREPARE_KEYS |= {"strict", "data_format", "synth_rows", "synth_seed"}


def prepare(run: Run, smoke: bool = False) -> PrepareResult:
    """Convert, validate and split the rows (the smoke subset keeps the first ``smoke_limit``):
    the configured file or gs:// URI, else synthetic rows made beside the splits. A vertex run
    without a project is refused first, before anything is written or uploaded."""
    cfg = run.config
    if problems := cloud_problems(cfg, run.params_file):
        raise InputError.of(problems, f"{len(problems)} problem(s); nothing was written")
    source = cfg.input_path
    gcs_prefix = (
        cfg.gcs_prefix.rstrip("/") + ("/smoke" if smoke else "") if cfg.gcs_prefix else None
    )
    return dataset.prepare(
        paths.resolve(source) if source and not storage.is_gcs_uri(source) else source or None,
        run.sub(runfolder.data_dir(smoke)),
        limit=cfg.smoke_limit if smoke else cfg.limit,
        gcs_prefix=gcs_prefix,
        **cfg.model_dump(include=PREPARE_KEYS),
    )


def prepared_manifest(run: Run, smoke: bool = False) -> dict[str, Any]:
    """prepare.json of the run, running prepare first when it is missing."""
    manifest = run.sub(runfolder.data_dir(smoke)) / runfolder.PREPARE_FILE
    if not manifest.exists():
        prepare(run, smoke=smoke)
    return dict(json.loads(manifest.read_text(encoding="utf-8")))


def split_frame(run: Run, smoke: bool = False) -> pd.DataFrame:
    """One row per prepared example (``dataset.stats_frame``), preparing first when needed."""
    prepared_manifest(run, smoke)
    return dataset.stats_frame(run.sub(runfolder.data_dir(smoke)))


def split_table(run: Run, smoke: bool = False) -> pd.DataFrame:
    """A pandas table of the splits: rows, first-tool and difficulty mix, token estimate."""
    frame = split_frame(run, smoke)
    table = frame.groupby("split", sort=False).agg(
        rows=("split", "size"),
        math_first=("first_tool", lambda s: float((s == "/math").mean())),
        four_plus_steps=("route_length", lambda s: float((s >= 4).mean())),
        advanced=("difficulty", lambda s: float((s == "advanced").mean())),
        est_tokens_mean=("est_tokens", "mean"),
        est_tokens_max=("est_tokens", "max"),
    )
    return table.reindex([s for s in SPLITS if s in table.index]).round(3)


def dataset_uris(run: Run, smoke: bool = False) -> dict[str, str]:
    """Where tuning reads the splits: the gs:// URIs when uploaded, else local paths."""
    manifest = prepared_manifest(run, smoke)
    uploaded = manifest.get("uris") or {}
    return {
        name: uploaded.get(name) or str(run.sub(runfolder.split_file(name, smoke)))
        for name in SPLITS
    }


def gold_file(run: Run) -> Path:
    """The test split in the run folder (what evaluation reads, uploaded or not)."""
    prepared_manifest(run)
    return run.sub(runfolder.split_file("test"))


def split_files(run: Run, smoke: bool = False) -> pd.DataFrame:
    """Where each split is, as a table: the gs:// URI when uploaded, else the path in the run."""
    rows = {}
    for name, uri in dataset_uris(run, smoke).items():
        local = Path(uri)
        rows[name] = (
            uri
            if uri.startswith("gs://") or not local.is_relative_to(run.path)
            else str(local.relative_to(run.path))
        )
    return fields(rows)
