"""The pipeline stages as the notebooks call them: one function per README step.

Each stage reads what the stage before it wrote into the run folder and writes its own part, by
the names and records of ``runfolder``. When an earlier stage's output is missing (a notebook run
alone), the stage makes it first, so every notebook runs by itself with its default parameters.
Figures live in the ``*_plots`` modules; the batch runner is ``pipeline``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from routerlib import paths, runfolder
from routerlib.config import RunConfig, dump_config, load_config
from routerlib.errors import InputError
from routerlib.metrics import HEADLINE
from routerlib.runfolder import SPLITS
from routerlib.tuning.base import Job, TuningSpec

if TYPE_CHECKING:
    import pandas as pd
    from IPython.display import Image

    from routerlib.compare import RunSummary
    from routerlib.dataset import PrepareResult
    from routerlib.serving.base import Predictor

#: A scored report (``runfolder.ReportRecord``) as the scorer returns it.
Report = dict[str, Any]


@dataclass
class Run:
    """One run folder and its validated config."""

    path: Path
    config: RunConfig
    params_file: str

    def sub(self, relative: str) -> Path:
        """A path inside the run folder."""
        return self.path / relative

    def _repr_markdown_(self) -> str:
        cfg = self.config
        mode = cfg.tuning_mode + (f" r={cfg.adapter_size}" if cfg.adapter_size else "")
        return (
            f"**Run** `{self.path.name}` · params `{self.params_file}` · backend `{cfg.backend}` · "
            f"base model `{cfg.base_model}` · {mode} · {cfg.epochs} epoch(s)"
        )


def open_run(params_file: str, run_dir: str = "", overrides: dict[str, Any] | None = None) -> Run:
    """Validate the params file and open the run folder (a new one when ``run_dir`` is empty).

    The resolved params are written once as params.yaml; a run folder whose params.yaml differs
    from the given params is refused, so one folder never mixes two configurations.
    """
    config = load_config(params_file, overrides)
    folder = Path(run_dir).resolve() if run_dir else paths.new_run_dir(config.name)
    folder.mkdir(parents=True, exist_ok=True)
    resolved = folder / runfolder.PARAMS_FILE
    if resolved.exists():
        recorded = load_config(resolved)
        if recorded != config:
            raise InputError(
                f"{resolved}: the run folder was made with other params; "
                "use an empty run_dir for a new run"
            )
    else:
        dump_config(config, resolved)
    return Run(folder, config, str(params_file))


# ---------------------------------------------------------------- 01 prepare


def source_rows(run: Run) -> Path:
    """The Week-2 input: the configured file, or synthetic rows written into the run folder."""
    cfg = run.config
    if cfg.input_path:
        path = paths.resolve(cfg.input_path)
        if not path.is_file():
            raise InputError(f"{cfg.input_path}: input file not found")
        return path
    from routerlib import synth

    target = run.sub(f"{runfolder.DATA_DIR}/{runfolder.SYNTHETIC_ROWS_FILE}")
    if not target.exists():
        synth.write_rows(target, cfg.synth_rows, cfg.synth_seed)
    return target


def prepare(run: Run, smoke: bool = False) -> PrepareResult:
    """Convert, validate and split the rows (the smoke subset keeps the first ``smoke_limit``)."""
    from routerlib import dataset

    cfg = run.config
    limit = cfg.smoke_limit if smoke else cfg.limit
    gcs_prefix = (
        cfg.gcs_prefix.rstrip("/") + ("/smoke" if smoke else "") if cfg.gcs_prefix else None
    )
    return dataset.prepare(
        source_rows(run),
        run.sub(runfolder.data_dir(smoke)),
        val_ratio=cfg.val_ratio,
        test_ratio=cfg.test_ratio,
        seed=cfg.seed,
        limit=limit,
        max_seq_len=cfg.max_seq_len,
        base_model=cfg.base_model,
        tuning_mode=cfg.tuning_mode,
        strict=cfg.strict,
        gcs_prefix=gcs_prefix,
        data_format=cfg.data_format,
    )


def prepared_manifest(run: Run, smoke: bool = False) -> dict[str, Any]:
    """prepare.json of the run, running prepare first when it is missing."""
    manifest = run.sub(runfolder.data_dir(smoke)) / runfolder.PREPARE_FILE
    if not manifest.exists():
        prepare(run, smoke=smoke)
    data: dict[str, Any] = json.loads(manifest.read_text(encoding="utf-8"))
    return data


def split_frame(run: Run, smoke: bool = False) -> pd.DataFrame:
    """One row per prepared example (``dataset.stats_frame``), preparing first when needed."""
    from routerlib import dataset

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


# ---------------------------------------------------------------- 02/03 tune


def _output_uri(run: Run, smoke: bool) -> str:
    cfg = run.config
    leaf = runfolder.tuning_dir(smoke)
    if cfg.output_uri:
        return cfg.output_uri.rstrip("/") + ("/smoke" if smoke else "")
    if cfg.backend == "vertex":
        if not cfg.gcs_prefix:
            raise InputError(f"{run.params_file}: output_uri: set it (or gcs_prefix) for vertex")
        return f"{cfg.gcs_prefix.rstrip('/')}/{run.path.name}/{leaf}"
    return str(run.sub(leaf))


def tuning_spec(run: Run, smoke: bool = False) -> TuningSpec:
    """The TuningSpec of the smoke run (PEFT, few epochs, smoke subset) or the full run."""
    cfg = run.config
    uris = dataset_uris(run, smoke)
    name = cfg.tuned_model_display_name or f"router-{cfg.name}"
    return TuningSpec.build(
        base_model=cfg.base_model,
        training_dataset_uri=uris["train"],
        validation_dataset_uri=uris["validation"],
        output_uri=_output_uri(run, smoke),
        tuning_mode="PEFT_ADAPTER" if smoke else cfg.tuning_mode,
        adapter_size=(cfg.adapter_size or 16) if smoke else cfg.adapter_size,
        epochs=cfg.smoke_epochs if smoke else cfg.epochs,
        learning_rate=cfg.learning_rate,
        learning_rate_multiplier=cfg.learning_rate_multiplier,
        tuned_model_display_name=name + ("-smoke" if smoke else ""),
        labels={"routerlib-run": _label(run.path.name), **cfg.labels},
        custom_base_model=None if smoke else (cfg.custom_base_model or None),
    )


def _label(value: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in value.lower())[:63]


def tune(run: Run, smoke: bool = False) -> Job:
    """Submit (or re-attach to) the tuning job, wait for it, record it as job.json in the run."""
    from routerlib import jobs

    cfg = run.config
    job = jobs.tune(
        tuning_spec(run, smoke),
        backend=cfg.backend,
        wait=True,
        strict=cfg.strict,
        project=cfg.project or None,
        location=cfg.location,
        api_endpoint=cfg.api_endpoint or None,
        local_options={"batch_size": cfg.batch_size, "max_train_tokens": cfg.max_train_tokens},
    )
    runfolder.write_job(run.sub(runfolder.job_file(smoke)), job)
    if not job.succeeded:
        raise InputError(f"tuning job {job.name} ended in {job.state}: {job.error or 'no message'}")
    return job


def tuned_job(run: Run, smoke: bool = False) -> Job:
    """The run's finished tuning job, tuning first when there is none yet."""
    record = run.sub(runfolder.job_file(smoke))
    if record.exists():
        job = runfolder.read_job(record)
        if job.succeeded:
            return job
    return tune(run, smoke)


def job_table(job: Job) -> pd.DataFrame:
    """One-row pandas table of a job: state, mode, adapter, epochs, stats, time, cost."""
    import pandas as pd

    stats = job.tuning_data_stats or {}
    row = {
        "job": job.name,
        "state": job.state,
        "base_model": job.spec.base_model,
        "tuning_mode": job.spec.tuning_mode,
        "adapter_size": job.spec.adapter_size,
        "epochs": job.spec.epochs,
        "examples": stats.get("tuning_dataset_example_count"),
        "billable_tokens": stats.get("total_billable_token_count"),
        "steps": stats.get("tuning_step_count"),
        "train_seconds": job.train_seconds,
        "cost_estimate_usd": job.cost_estimate_usd,
        "checkpoint": job.checkpoint_uri,
    }
    return pd.DataFrame([row]).set_index("job")


# ---------------------------------------------------------------- 04 deploy & evaluate


@contextmanager
def serving(run: Run, job: Job) -> Iterator[Predictor]:
    """The serving Predictor for the tuned checkpoint, for the block (routerlib.serving.base):
    a local server, a Vertex endpoint deployed for the block, a batch job (``eval_mode: batch``)
    or the configured ``endpoint`` left as it is. Whatever it started is cleaned up."""
    from routerlib.serving.base import open_predictor

    checkpoint = job.checkpoint_uri or job.spec.checkpoint_uri()
    if run.config.checkpoint != "final" and not run.config.endpoint:  # checkpoint: epoch-N
        from routerlib import jobs

        checkpoint = jobs.select_checkpoint(job, run.config.checkpoint)
    with open_predictor(run.config, str(checkpoint), params_file=str(run.params_file)) as predictor:
        yield predictor


def thresholds_path(run: Run) -> Path:
    """The gate file: the configured one, else the team's original gates in params/."""
    from routerlib import metrics

    return (
        paths.resolve(run.config.thresholds)
        if run.config.thresholds
        else Path(metrics.DEFAULT_THRESHOLDS_PATH)
    )


def _baseline_predictions(run: Run, kind: str) -> Path:
    return runfolder.predictions_path(run.sub(runfolder.baseline_report_file(kind)))


def baselines(run: Run) -> dict[str, Report]:
    """Score the previous router logic (majority template and keyword rules) on the test split."""
    from routerlib import baselines as previous
    from routerlib import metrics

    gold = Path(dataset_uris(run)["test"])
    reports = {}
    for kind in previous.KINDS:
        preds = _baseline_predictions(run, kind)
        if not preds.exists():
            previous.write_baseline(gold, preds, kind=kind)
        reports[kind] = metrics.score_files(
            gold,
            preds,
            out_path=run.sub(runfolder.baseline_report_file(kind)),
            thresholds=thresholds_path(run),
        )
    return reports


def evaluate(run: Run, endpoint: Predictor | str) -> Report:
    """Generate predictions for the test split through ``endpoint`` (a serving Predictor from
    :func:`serving`, or an endpoint address) and score them against the gold completions, the
    gate and the previous router (the configured baseline)."""
    from routerlib import evaluate as runner

    cfg = run.config
    baseline_preds = _baseline_predictions(run, cfg.baseline)
    if not baseline_preds.exists():
        baselines(run)
    source = {"endpoint": endpoint} if isinstance(endpoint, str) else {"predictor": endpoint}
    return runner.evaluate(
        Path(dataset_uris(run)["test"]),
        **source,
        out=run.sub(runfolder.REPORT_FILE),
        thresholds=thresholds_path(run),
        compare_to=baseline_preds,
        concurrency=cfg.concurrency,
        max_tokens=cfg.max_tokens,
        limit=cfg.eval_limit,
        project=cfg.project or None,
        location=cfg.deploy_location,
        api_endpoint=cfg.api_endpoint or None,
    )


def headline_table(reports: dict[str, Report]) -> pd.DataFrame:
    """Overall original and strict figures of several reports, side by side."""
    import pandas as pd

    rows = {}
    for label, report in reports.items():
        overall = report["metrics"].get("overall", {})
        strict = (report.get("strict") or {}).get("overall", {})
        row = {m: overall.get(m) for m in HEADLINE}
        row.update(
            {f"strict:{m}": strict.get(m) for m in ("route_plan_exact", "route_tool_recall")}
        )
        row["gate_pass"] = (report.get("threshold_results") or {}).get("overall_pass")
        rows[label] = row
    return pd.DataFrame(rows).T


def gate_table(report: Report) -> pd.DataFrame:
    """Every check of the report's gate, passed or failed, one row each: bucket, metric, value,
    threshold, kind (min/max) and passed. Empty when the report was not gated."""
    import pandas as pd

    results = report.get("threshold_results")
    if not results:
        return pd.DataFrame()
    gate = runfolder.validate(results, runfolder.GateResults, "threshold_results")
    rows = [
        {"bucket": bucket, "metric": metric, **check.model_dump()}
        for bucket, checks in gate.checks().items()
        for metric, check in checks.items()
    ]
    return pd.DataFrame(rows)


def worst_errors(run: Run, n: int = 10) -> pd.DataFrame:
    """The n test rows the tuned model got most wrong (invalid first, then fewest metrics met)."""
    import pandas as pd

    records = runfolder.read_samples(runfolder.samples_path(run.sub(runfolder.REPORT_FILE)))
    binary = (
        "route_plan_exact",
        "route_first_tool_match",
        "metrics_keys_match",
        "todo_covers_all_tools",
        "handoff_tools_covered",
    )
    rows = []
    for rec in records:
        met = sum(bool(rec.metrics.get(m)) for m in binary) if rec.valid else -1
        rows.append(
            {
                "index": rec.index,
                "valid": rec.valid,
                "metrics_met": met,
                "length_ratio": rec.metrics.get("length_ratio"),
                "output_start": (rec.raw or "")[:120],
            }
        )
    frame = pd.DataFrame(rows)
    return frame.sort_values(["metrics_met", "index"]).head(n).set_index("index")


#: What metrics.json copies from the RunConfig and from the Job.
RUN_FIELDS = {"name", "backend", "base_model", "tuning_mode", "adapter_size", "epochs"}
TUNING_FIELDS = {"state", "train_seconds", "cost_estimate_usd", "tuning_data_stats", "loss_curve"}


def write_metrics(run: Run, job: Job, report: Report, baseline_reports: dict[str, Report]) -> Path:
    """Write the run's metrics.json: the run, its tuning, the evaluation and baseline summaries."""
    from routerlib.runfolder import (
        BaselineInfo,
        EvaluationInfo,
        MetricsRecord,
        RunInfo,
        TuningInfo,
    )

    cfg = run.config
    overall = report["metrics"].get("overall", {})
    strict = (report.get("strict") or {}).get("overall", {})
    record = MetricsRecord(
        run=RunInfo(
            params_file=run.params_file,
            created=time.strftime("%Y-%m-%dT%H:%M:%S"),
            **cfg.model_dump(include=RUN_FIELDS),
        ),
        tuning=TuningInfo(job_name=job.name, **job.model_dump(include=TUNING_FIELDS)),
        evaluation=EvaluationInfo(
            report=runfolder.REPORT_FILE,
            gate_pass=(report.get("threshold_results") or {}).get("overall_pass"),
            headline={m: overall.get(m) for m in HEADLINE},
            strict={m: strict.get(m) for m in HEADLINE},
        ),
        baselines={
            kind: BaselineInfo(
                report=runfolder.baseline_report_file(kind),
                gate_pass=(r.get("threshold_results") or {}).get("overall_pass"),
            )
            for kind, r in baseline_reports.items()
        },
    )
    return runfolder.write_metrics(run.path, record)


def comparison_table(report: Report, bucket: str = "overall") -> pd.DataFrame:
    """Strict per-metric deltas against the previous router, with the paired test's p-value and
    the number of test rows fixed and broken, one row per metric."""
    import pandas as pd

    comparison = report.get("comparison") or {}
    deltas = (comparison.get("strict") or {}).get(bucket, {})
    tests = (comparison.get("significance") or {}).get(bucket, {})
    changes = comparison.get("changes") or {}
    rows = []
    for metric, values in deltas.items():
        test = tests.get(metric, {})
        rows.append(
            {
                "metric": metric,
                "previous": values.get("previous"),
                "tuned": values.get("new"),
                "delta": values.get("delta"),
                "test": test.get("test"),
                "p_value": test.get("p_value"),
                "fixed": len(changes.get(metric, {}).get("fixed", [])),
                "broken": len(changes.get(metric, {}).get("broken", [])),
            }
        )
    return pd.DataFrame(rows).set_index("metric") if rows else pd.DataFrame()


# ---------------------------------------------------------------- 05 compare


def runs_to_compare(run: Run, runs: list[str]) -> list[RunSummary]:
    """The given run folders, else every finished run under the outputs root; when there is none,
    the pipeline makes one from this notebook's params (stages 01–04) so the comparison always
    has a model to show."""
    from routerlib import compare, pipeline

    found = [r for r in compare.load_runs(runs or None) if Path(r.path) != run.path]
    if not found and not runs:
        (result,) = pipeline.run_pipeline([run.params_file], name=run.config.name)
        if not result.ok:
            raise InputError(f"building a run to compare failed: {result.message}")
        found = [r for r in compare.load_runs(None) if Path(r.path) != run.path]
    return found


def comparison_plots(run: Run, found: list[RunSummary]) -> list[Path]:
    """Every comparison plot, saved as PNG in the run folder."""
    from routerlib import compare_plots

    return compare_plots.all_plots(found, run.sub(runfolder.PLOTS_DIR))


def image(path: Path) -> Image:
    """A PNG for display in the notebook."""
    from IPython.display import Image

    return Image(filename=str(path))


def write_comparison(run: Run, board: pd.DataFrame, significance: pd.DataFrame) -> Path:
    """Save the leaderboard and significance table (CSV and JSON) in the comparison run folder."""
    record = runfolder.ComparisonRecord(
        leaderboard=json.loads(board.to_json(orient="index")),
        significance=json.loads(significance.to_json(orient="records")),
    )
    return runfolder.write_comparison(run.path, board.to_csv(), significance.to_csv(), record)
