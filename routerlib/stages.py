"""The pipeline stages as the notebooks call them: one function per README step.

Each stage reads what the stage before it wrote into the run folder and writes its own part.
When an earlier stage's output is missing (a notebook run alone), ``ensure_*`` makes it first, so
every notebook runs by itself with its default parameters.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from routerlib import paths
from routerlib.atomic import write_json
from routerlib.config import RunConfig, dump_config, load_config
from routerlib.errors import InputError
from routerlib.tuning.base import Job, TuningSpec

SPLITS = ("train", "validation", "test")


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
    resolved = folder / paths.PARAMS_FILE
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

    target = run.sub(f"{paths.DATA_DIR}/synthetic_rows.jsonl")
    if not target.exists():
        synth.write_rows(target, cfg.synth_rows, cfg.synth_seed)
    return target


def prepare(run: Run, smoke: bool = False) -> Any:
    """Convert, validate and split the rows (the smoke subset keeps the first ``smoke_limit``)."""
    from routerlib import dataset

    cfg = run.config
    limit = cfg.smoke_limit if smoke else cfg.limit
    gcs_prefix = (
        cfg.gcs_prefix.rstrip("/") + ("/smoke" if smoke else "") if cfg.gcs_prefix else None
    )
    return dataset.prepare(
        source_rows(run),
        run.sub(paths.SMOKE_DATA_DIR if smoke else paths.DATA_DIR),
        val_ratio=cfg.val_ratio,
        test_ratio=cfg.test_ratio,
        seed=cfg.seed,
        limit=limit,
        max_seq_len=cfg.max_seq_len,
        base_model=cfg.base_model,
        tuning_mode=cfg.tuning_mode,
        strict=cfg.strict,
        gcs_prefix=gcs_prefix,
    )


def prepared_manifest(run: Run, smoke: bool = False) -> dict[str, Any]:
    """prepare.json of the run, running prepare first when it is missing."""
    manifest = run.sub(paths.SMOKE_DATA_DIR if smoke else paths.DATA_DIR) / "prepare.json"
    if not manifest.exists():
        prepare(run, smoke=smoke)
    return json.loads(manifest.read_text(encoding="utf-8"))


def split_table(run: Run, smoke: bool = False) -> Any:
    """A pandas table of the splits: rows, first-tool and difficulty mix, token estimate."""

    from routerlib import dataset

    prepared_manifest(run, smoke)
    frame = dataset.stats_frame(run.sub(paths.SMOKE_DATA_DIR if smoke else paths.DATA_DIR))
    table = frame.groupby("split", sort=False).agg(
        rows=("split", "size"),
        math_first=("first_tool", lambda s: float((s == "/math").mean())),
        four_plus_steps=("route_length", lambda s: float((s >= 4).mean())),
        advanced=("difficulty", lambda s: float((s == "advanced").mean())),
        est_tokens_mean=("est_tokens", "mean"),
        est_tokens_max=("est_tokens", "max"),
    )
    return table.reindex([s for s in SPLITS if s in table.index]).round(3)


def shown(fig: Any) -> Any:
    """Return ``fig`` ready to be a cell's last expression: displayed once, as PNG, in Jupyter,
    papermill and nbconvert alike (pyplot activates the inline formatter; closing the figure
    stops the inline backend from showing it a second time)."""
    import matplotlib.pyplot as plt

    plt.close(fig)
    return fig


def split_figure(run: Run) -> Any:
    """Per-split plots of first tool, route length, difficulty and token length."""
    from routerlib import data_plots, dataset

    prepared_manifest(run)
    return shown(data_plots.plot_split_stats(dataset.stats_frame(run.sub(paths.DATA_DIR))))


def dataset_uris(run: Run, smoke: bool = False) -> dict[str, str]:
    """Where tuning reads the splits: the gs:// URIs when uploaded, else local paths."""
    manifest = prepared_manifest(run, smoke)
    folder = run.sub(paths.SMOKE_DATA_DIR if smoke else paths.DATA_DIR)
    uploaded = manifest.get("uris") or {}
    return {name: uploaded.get(name) or str(folder / f"{name}.jsonl") for name in SPLITS}


# ---------------------------------------------------------------- 02/03 tune


def _output_uri(run: Run, smoke: bool) -> str:
    cfg = run.config
    leaf = paths.SMOKE_TUNING_DIR if smoke else paths.FULL_TUNING_DIR
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
        project=cfg.project or None,
        location=cfg.location,
        api_endpoint=cfg.api_endpoint or None,
        local_options={"batch_size": cfg.batch_size, "max_train_tokens": cfg.max_train_tokens},
    )
    write_json(
        run.sub(paths.SMOKE_TUNING_DIR if smoke else paths.FULL_TUNING_DIR) / "job.json",
        job.model_dump(mode="json"),
    )
    if not job.succeeded:
        raise InputError(f"tuning job {job.name} ended in {job.state}: {job.error or 'no message'}")
    return job


def tuned_job(run: Run, smoke: bool = False) -> Job:
    """The run's finished tuning job, tuning first when there is none yet."""
    record = run.sub(paths.SMOKE_TUNING_DIR if smoke else paths.FULL_TUNING_DIR) / "job.json"
    if record.exists():
        job = Job.model_validate_json(record.read_text(encoding="utf-8"))
        if job.succeeded:
            return job
    return tune(run, smoke)


def job_table(job: Job) -> Any:
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


def loss_figure(job: Job) -> Any:
    """Training and validation loss against step."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    curve = job.loss_curve
    train = [(p["step"], p["train_loss"]) for p in curve if p.get("train_loss") is not None]
    val = [(p["step"], p["val_loss"]) for p in curve if p.get("val_loss") is not None]
    if train:
        ax.plot(*zip(*train, strict=True), label="train", lw=1)
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (completion tokens)")
    ax.set_title(f"{job.spec.tuning_mode} · {job.spec.base_model.rsplit('/', 1)[-1]}")
    ax.legend()
    fig.tight_layout()
    return shown(fig)


# ---------------------------------------------------------------- 04 deploy & evaluate


@contextmanager
def serving(run: Run, job: Job) -> Iterator[str]:
    """Serve the tuned checkpoint for the block and always clean up: a local HTTP server, or a
    Vertex endpoint deployed for the block (or the configured ``endpoint``, left as it is)."""
    cfg = run.config
    if cfg.endpoint:
        yield cfg.endpoint
        return
    checkpoint = job.checkpoint_uri or job.spec.checkpoint_uri()
    if cfg.backend == "local":
        from routerlib.serving.local import LocalServer

        with LocalServer(checkpoint) as server:
            yield server.endpoint_url
        return
    import os

    from routerlib.serving import vertex

    project = cfg.project or os.environ.get("GOOGLE_CLOUD_PROJECT", "")
    if not project:
        raise InputError(f"{run.params_file}: project: set it or GOOGLE_CLOUD_PROJECT to deploy")
    with vertex.deployed(
        checkpoint,
        machine_type=cfg.machine_type,
        accelerator_type=cfg.accelerator_type,
        accelerator_count=cfg.accelerator_count,
        project=project,
        location=cfg.location,
        api_endpoint=cfg.api_endpoint,
    ) as deployment:
        yield deployment.endpoint_name


def thresholds_path(run: Run) -> Path:
    """The gate file: the configured one, else the team's original gates in params/."""
    from routerlib import metrics

    return (
        paths.resolve(run.config.thresholds)
        if run.config.thresholds
        else Path(metrics.DEFAULT_THRESHOLDS_PATH)
    )


def baselines(run: Run) -> dict[str, dict[str, Any]]:
    """Score the previous router logic (majority template and keyword rules) on the test split."""
    from routerlib import baselines as previous
    from routerlib import metrics

    gold = Path(dataset_uris(run)["test"])
    reports = {}
    for kind in ("majority", "rules"):
        folder = run.sub(f"{paths.EVAL_DIR}/baselines/{kind}")
        preds = folder / "predictions.jsonl"
        if not preds.exists():
            previous.write_baseline(gold, preds, kind=kind)
        reports[kind] = metrics.score_files(
            gold, preds, out_path=folder / "report.json", thresholds=thresholds_path(run)
        )
    return reports


def evaluate(run: Run, endpoint: str) -> dict[str, Any]:
    """Generate predictions for the test split through ``endpoint`` and score them against the
    gold completions, the gate and the previous router (the configured baseline)."""
    from routerlib import evaluate as runner

    cfg = run.config
    baseline_preds = run.sub(f"{paths.EVAL_DIR}/baselines/{cfg.baseline}/predictions.jsonl")
    if not baseline_preds.exists():
        baselines(run)
    return runner.evaluate(
        Path(dataset_uris(run)["test"]),
        endpoint=endpoint,
        out=run.sub(f"{paths.EVAL_DIR}/report.json"),
        thresholds=thresholds_path(run),
        compare_to=baseline_preds,
        concurrency=cfg.concurrency,
        max_tokens=cfg.max_tokens,
        limit=cfg.eval_limit,
        project=cfg.project or None,
        location=cfg.location,
        api_endpoint=cfg.api_endpoint or None,
    )


HEADLINE = (
    "json_valid",
    "route_plan_exact",
    "route_tool_precision",
    "route_tool_recall",
    "metrics_keys_match",
    "todo_tool_alignment",
    "handoff_tools_covered",
    "length_ratio",
)


def headline_table(reports: dict[str, dict[str, Any]]) -> Any:
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


def gate_table(report: dict[str, Any]) -> Any:
    """Every check of the gate, one row each (bucket, metric, value, threshold, kind, passed);
    the notebook filters it to the failed ones."""
    import pandas as pd

    results = report.get("threshold_results") or {}
    rows = []
    for bucket, checks in results.items():
        if not isinstance(checks, dict):
            continue
        for metric, check in checks.items():
            if isinstance(check, dict) and "passed" in check:
                rows.append({"bucket": bucket, "metric": metric, **check})
    return pd.DataFrame(rows)


def worst_errors(run: Run, n: int = 10) -> Any:
    """The n test rows the tuned model got most wrong (invalid first, then fewest metrics met)."""
    import pandas as pd

    samples = run.sub(f"{paths.EVAL_DIR}/samples.jsonl")
    records = [
        json.loads(line) for line in samples.read_text(encoding="utf-8").splitlines() if line
    ]
    binary = (
        "route_plan_exact",
        "route_first_tool_match",
        "metrics_keys_match",
        "todo_covers_all_tools",
        "handoff_tools_covered",
    )
    rows = []
    for rec in records:
        met = sum(bool(rec.get(m)) for m in binary) if rec.get("valid") else -1
        raw = str(rec.get("raw") or "")
        rows.append(
            {
                "index": rec.get("index"),
                "valid": rec.get("valid"),
                "metrics_met": met,
                "length_ratio": rec.get("length_ratio"),
                "output_start": raw[:120],
            }
        )
    frame = pd.DataFrame(rows)
    return frame.sort_values(["metrics_met", "index"]).head(n).set_index("index")


def bucket_figure(reports: dict[str, dict[str, Any]], metric: str = "route_plan_exact") -> Any:
    """A grouped bar chart of one metric per bucket, strict figures, for several reports."""
    import matplotlib.pyplot as plt
    import numpy as np

    buckets = sorted({b for r in reports.values() for b in (r.get("strict") or r["metrics"])})
    fig, ax = plt.subplots(figsize=(7, 3.2))
    width = 0.8 / max(len(reports), 1)
    for i, (label, report) in enumerate(reports.items()):
        table = report.get("strict") or report["metrics"]
        values = [table.get(b, {}).get(metric, np.nan) for b in buckets]
        ax.bar(np.arange(len(buckets)) + i * width, values, width, label=label)
    ax.set_xticks(np.arange(len(buckets)) + width * (len(reports) - 1) / 2, buckets)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(f"{metric} (strict)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return shown(fig)


def write_metrics(
    run: Run, job: Job, report: dict[str, Any], baseline_reports: dict[str, dict[str, Any]]
) -> Path:
    """Write the run's metrics.json: the run, its tuning, the evaluation and baseline summaries."""
    cfg = run.config
    overall = report["metrics"].get("overall", {})
    strict = (report.get("strict") or {}).get("overall", {})
    summary = {
        "run": {
            "name": cfg.name,
            "params_file": run.params_file,
            "backend": cfg.backend,
            "base_model": cfg.base_model,
            "tuning_mode": cfg.tuning_mode,
            "adapter_size": cfg.adapter_size,
            "epochs": cfg.epochs,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        },
        "tuning": {
            "job_name": job.name,
            "state": job.state,
            "train_seconds": job.train_seconds,
            "cost_estimate_usd": job.cost_estimate_usd,
            "tuning_data_stats": job.tuning_data_stats,
            "loss_curve": job.loss_curve,
        },
        "evaluation": {
            "report": f"{paths.EVAL_DIR}/report.json",
            "gate_pass": (report.get("threshold_results") or {}).get("overall_pass"),
            "headline": {m: overall.get(m) for m in HEADLINE},
            "strict": {m: strict.get(m) for m in HEADLINE},
        },
        "baselines": {
            kind: {
                "report": f"{paths.EVAL_DIR}/baselines/{kind}/report.json",
                "gate_pass": (r.get("threshold_results") or {}).get("overall_pass"),
            }
            for kind, r in baseline_reports.items()
        },
    }
    target = run.sub(paths.METRICS_FILE)
    write_json(target, summary)
    return target


def comparison_table(report: dict[str, Any], bucket: str = "overall") -> Any:
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


def build_run(params_file: str) -> Path:
    """Run stages 01–04 in-process into a new run folder (used when there is nothing to compare)."""
    run = open_run(params_file)
    prepare(run)
    job = tuned_job(run)
    previous = baselines(run)
    with serving(run, job) as endpoint:
        report = evaluate(run, endpoint)
    write_metrics(run, job, report, previous)
    return run.path


def runs_to_compare(run: Run, runs: list[str]) -> list[Any]:
    """The given run folders, else every finished run under the outputs root; when there is none,
    one is made from this notebook's params so the comparison always has a model to show."""
    from routerlib import compare

    found = [r for r in compare.load_runs(runs or None) if Path(r.path) != run.path]
    if not found and not runs:
        build_run(run.params_file)
        found = [r for r in compare.load_runs(None) if Path(r.path) != run.path]
    return found


def comparison_plots(run: Run, found: list[Any]) -> list[Path]:
    """Every comparison plot, saved as PNG in the run folder."""
    from routerlib import compare_plots

    return compare_plots.all_plots(found, run.sub("plots"))


def image(path: Path) -> Any:
    """A PNG for display in the notebook."""
    from IPython.display import Image

    return Image(filename=str(path))


def write_comparison(run: Run, board: Any, significance: Any) -> Path:
    """Save the leaderboard and significance table (CSV and JSON) in the comparison run folder."""
    from routerlib.atomic import write_text

    write_text(run.sub("leaderboard.csv"), board.to_csv())
    write_text(run.sub("significance.csv"), significance.to_csv())
    target = run.sub("comparison.json")
    write_json(
        target,
        {
            "leaderboard": json.loads(board.to_json(orient="index")),
            "significance": json.loads(significance.to_json(orient="records")),
        },
    )
    return target
