"""Notebooks 02 and 03: the smoke and the full tuning job of a run (submitted, or re-attached to,
and recorded in the run folder), and the checkpoint the run serves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from routerlib import checkpoints, display, jobs, paths, runfolder
from routerlib.checkpoint_names import BEST, FINAL
from routerlib.checkpoints import CheckpointChoice, Scorer
from routerlib.errors import InputError
from routerlib.serving import factory
from routerlib.serving.base import Predictor
from routerlib.stages.prepare import dataset_uris, prepared_manifest
from routerlib.stages.prepare import prepare as prepare
from routerlib.stages.prepare import split_table as split_table
from routerlib.stages.run import Run, decodings, thresholds_path
from routerlib.stages.run import fields as fields
from routerlib.stages.run import open_run as open_run
from routerlib.tuning.base import Job, TuningSpec


def _output_uri(run: Run, smoke: bool) -> str:
    cfg = run.config
    leaf = runfolder.tuning_dir(smoke)
    if cfg.output_uri:
        return cfg.output_uri.rstrip("/") + ("/smoke" if smoke else "")
    if cfg.backend == "vertex":  # RunConfig requires output_uri or gcs_prefix for it
        return f"{cfg.gcs_prefix.rstrip('/')}/{run.path.name}/{leaf}"
    return str(run.sub(leaf))


def tuning_spec(run: Run, smoke: bool = False) -> TuningSpec:
    """The TuningSpec of the smoke run (PEFT, few epochs, smoke subset) or the full run."""
    cfg = run.config
    uris = dataset_uris(run, smoke)
    name = cfg.tuned_model_display_name or f"router-{cfg.name}"
    return TuningSpec.build(
        training_dataset_uri=uris["train"],
        validation_dataset_uri=uris["validation"],
        output_uri=_output_uri(run, smoke),
        tuning_mode="PEFT_ADAPTER" if smoke else cfg.tuning_mode,
        adapter_size=(cfg.adapter_size or 16) if smoke else cfg.adapter_size,
        epochs=cfg.smoke_epochs if smoke else cfg.epochs,
        **cfg.model_dump(include={"base_model", "learning_rate", "learning_rate_multiplier"}),
        tuned_model_display_name=name + ("-smoke" if smoke else ""),
        labels={"routerlib-run": _label(run.path.name), **cfg.labels},
        custom_base_model=None if smoke else (cfg.custom_base_model or None),
    )


def _label(value: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in value.lower())[:63]


def tune(run: Run, smoke: bool = False) -> Job:
    """Submit (or re-attach to) the tuning job, wait for it, record it as job.json in the run
    (a local job's output folder is the run's tuning folder: its record is already there)."""
    cfg = run.config
    job = jobs.tune(
        tuning_spec(run, smoke),
        project=cfg.project or None,
        api_endpoint=cfg.api_endpoint or None,
        local_options={"batch_size": cfg.batch_size, "max_train_tokens": cfg.max_train_tokens},
        **cfg.model_dump(include={"backend", "strict", "location"}),
    )
    record = run.sub(runfolder.job_file(smoke))
    output = job.spec.output_uri
    if "://" in output or paths.resolve(output).resolve() != record.parent.resolve():
        runfolder.write_record(record, job)  # a local job's own record is there already
    if not job.succeeded:
        raise InputError(f"tuning job {job.name} ended in {job.state}: {job.error or 'no message'}")
    return _deploy_where_it_ran(run, job)


def _deploy_where_it_ran(run: Run, job: Job) -> Job:
    """A ``global`` job ran in a region Vertex chose: deploy there (``jobs.deploy_region``)."""
    region, was = jobs.deploy_region(job, run.config.deploy_location), run.config.deploy_location
    if region != was:
        print(f"{job.name} ran in {region}: deploy_location {region} (was {was})")
        run.config.deploy_location = region
    return job


def tuned_job(run: Run, smoke: bool = False) -> Job:
    """The run's finished tuning job, tuning first when there is none yet."""
    record = run.sub(runfolder.job_file(smoke))
    if record.exists():
        job = runfolder.read_json(record, Job)
        if job.succeeded:
            return _deploy_where_it_ran(run, job)
    return tune(run, smoke)


def job_table(job: Job) -> pd.DataFrame:
    """A job as a two-column table: state, mode, adapter, epochs, data statistics, time, cost and
    where the checkpoint is (numbers rounded; the job.json keeps them whole)."""
    stats = job.tuning_data_stats or {}
    cost = job.cost_estimate_usd
    seconds = job.train_seconds
    return display.fields(
        {
            "job": job.name,
            "state": job.state,
            "base model": job.spec.base_model,
            "tuning mode": job.spec.tuning_mode,
            "adapter size": job.spec.adapter_size,
            "epochs": job.spec.epochs,
            "examples": stats.get("tuning_dataset_example_count"),
            "billable tokens": stats.get("total_billable_token_count"),
            "steps": stats.get("tuning_step_count"),
            "train time": None if seconds is None else f"{seconds:,.0f} s",
            "cost estimate": None if cost is None else f"${cost:,.2f}",
            "checkpoint": _short_path(job.checkpoint_uri),
        }
    )


def _short_path(uri: str | None) -> str | None:
    """A checkpoint location for reading: gs:// URIs whole, local paths from the run folder on."""
    if not uri or uri.startswith("gs://"):
        return uri
    parts = Path(uri).parts
    return str(Path(*parts[parts.index("tuning") :])) if "tuning" in parts else Path(uri).name


def spec_table(spec: TuningSpec) -> pd.DataFrame:
    """The tuning spec as a two-column table (field names as the Vertex SDK spells them)."""
    values = spec.model_dump()
    for key in ("training_dataset_uri", "validation_dataset_uri", "output_uri"):
        values[key] = _short_path(values.get(key)) if values.get(key) else None
    return display.fields(values)


def checkpoint_settings(run: Run) -> dict[str, Any]:
    """What this run scores each checkpoint with (a change re-scores): the generation limit,
    the validation rows and the decoding (:func:`checkpoints.scoring_decoding`)."""
    return {
        "max_tokens": run.config.max_tokens,
        "limit": run.config.select_limit,
        "decoding": checkpoints.scoring_decoding(decodings(run)),
    }


def _checkpoint_scorer(run: Run) -> Scorer:
    """Scores a checkpoint on validation through the predictor the serving factory makes for it."""

    def serve(uri: str) -> Predictor:
        return factory.for_run(run.config, uri, params_file=run.params_file, scoring=True).make()

    return checkpoints.predictor_scorer(
        serve,
        max_tokens=run.config.max_tokens,
        limit=run.config.select_limit,
        thresholds=thresholds_path(run),
    )


def choose_checkpoint(run: Run, job: Job) -> CheckpointChoice:
    """Score each epoch checkpoint on validation (not again with the same settings), pick one by
    ``select_metric``, record it in checkpoints.json; a named checkpoint or ``endpoint`` is
    recorded without scoring."""
    cfg = run.config
    if cfg.checkpoint != BEST or cfg.endpoint:
        named = cfg.checkpoint if cfg.checkpoint != BEST else FINAL
        why = f"checkpoint: {named} names it"
        why = f"endpoint: {cfg.endpoint} is evaluated as it is" if cfg.endpoint else why
        choice = checkpoints.CheckpointChoice(
            select_metric=cfg.select_metric,
            mode=cfg.checkpoint,
            chosen=named,
            chosen_uri=cfg.endpoint or jobs.select_checkpoint(job, named),
            reason=f"{why}; checkpoints were not scored",
            complete=True,
        )
        checkpoints.write_choice(run.path, choice)
        return choice
    prepared_manifest(run)
    return checkpoints.score_checkpoints(
        job,
        run.sub(runfolder.split_file("validation")),
        run.path,
        _checkpoint_scorer(run),
        select_metric=cfg.select_metric,
        mode=cfg.checkpoint,
        settings=checkpoint_settings(run),
        out=print,
    )


def chosen_checkpoint(run: Run, job: Job) -> str:
    """The checkpoint notebook 04 serves: as named, or ``best`` by :func:`choose_checkpoint`
    (checkpoints.json's scores made with the same settings are reused, not scored again)."""
    if run.config.checkpoint != BEST:
        return jobs.select_checkpoint(job, run.config.checkpoint)
    choice = choose_checkpoint(run, job)
    assert choice.chosen_uri
    return choice.chosen_uri


def checkpoint_table(choice: CheckpointChoice) -> pd.DataFrame:
    """One row per scored checkpoint (loss, selection figures, the pick) as display text."""
    return display.readable(checkpoints.scores_frame(choice))
