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
from routerlib.config import RunConfig, default_params_file, dump_config, load_config
from routerlib.errors import InputError
from routerlib.metrics import HEADLINE
from routerlib.runfolder import SPLITS
from routerlib.serving import factory
from routerlib.serving.base import Predictor
from routerlib.serving.cache import load_cache
from routerlib.tuning.base import Job, TuningSpec

if TYPE_CHECKING:
    import pandas as pd
    from IPython.display import Image, Markdown

    from routerlib.checkpoints import CheckpointChoice, Scorer
    from routerlib.compare import RunSummary
    from routerlib.dataset import PrepareResult
    from routerlib.display import HTMLTable

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
        full = cfg.tuning_mode + (f" r={cfg.adapter_size}" if cfg.adapter_size else "")
        smoke = f"PEFT_ADAPTER r={cfg.adapter_size or 16}"
        return (
            f"**Run** `{self.path.name}` · params `{Path(self.params_file).name}` · backend "
            f"`{cfg.backend}` · base model `{cfg.base_model}`  \n"
            f"smoke tune (02): {smoke}, {cfg.smoke_epochs} epoch(s) on the first "
            f"{cfg.smoke_limit} rows · full tune (03): {full}, {cfg.epochs} epoch(s)"
        )


def open_run(params_file: str, run_dir: str = "", overrides: dict[str, Any] | None = None) -> Run:
    """Validate the params file and open the run folder (a new one when ``run_dir`` is empty).

    An empty ``params_file`` (the notebooks' default) is :func:`config.default_params_file`:
    ``$ROUTERLIB_PARAMS``, else params/local.yaml.

    The resolved params are written once as params.yaml; a run folder whose params.yaml differs
    from the given params is refused, so one folder never mixes two configurations.
    """
    params_file = params_file or default_params_file()
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


def gold_file(run: Run) -> Path:
    """The gold file evaluation reads: the test split in the run folder, which prepare writes
    whether or not it also uploads the splits (a gs:// URI serves tuning, not scoring)."""
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
    """A job as a two-column table: state, mode, adapter, epochs, data statistics, time, cost and
    where the checkpoint is (numbers rounded; the job.json keeps them whole)."""
    from routerlib import display

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
    for anchor in ("tuning",):
        if anchor in parts:
            return str(Path(*parts[parts.index(anchor) :]))
    return Path(uri).name


def spec_table(spec: TuningSpec) -> pd.DataFrame:
    """The tuning spec as a two-column table (field names as the Vertex SDK spells them)."""
    from routerlib import display

    fields = spec.model_dump()
    for key in ("training_dataset_uri", "validation_dataset_uri", "output_uri"):
        fields[key] = _short_path(fields.get(key)) if fields.get(key) else None
    return display.fields(fields)


def fields(mapping: dict[str, Any]) -> pd.DataFrame:
    """Any flat or nested dict (counts, statistics, URIs) as a two-column table."""
    from routerlib import display

    return display.fields(mapping)


def checkpoint_settings(run: Run) -> dict[str, Any]:
    """What this run scores each checkpoint with (recorded per checkpoint; a change re-scores):
    the generation limit, the validation rows, and the decoding, constrained when the run
    evaluates constrained decoding, else free (:func:`checkpoints.scoring_decoding`)."""
    from routerlib import checkpoints

    cfg = run.config
    return {
        "max_tokens": cfg.max_tokens,
        "limit": cfg.select_limit,
        "decoding": checkpoints.scoring_decoding(decodings(run)),
    }


def _checkpoint_scorer(run: Run) -> Scorer:
    """How this run scores a checkpoint on validation: each through the predictor the serving
    factory makes for it (served locally, or deployed on Vertex); the decoding comes with each
    call, from :func:`checkpoint_settings`."""
    from routerlib import checkpoints

    cfg = run.config
    settings = checkpoint_settings(run)

    def serve(uri: str) -> Predictor:
        spec = factory.for_run(cfg, uri, params_file=str(run.params_file), scoring=True)
        return factory.make_spec(spec)

    return checkpoints.predictor_scorer(
        serve,
        max_tokens=settings["max_tokens"],
        limit=settings["limit"],
        thresholds=thresholds_path(run),
    )


def choose_checkpoint(run: Run, job: Job) -> CheckpointChoice:
    """Score each epoch checkpoint of ``job`` on the validation split (skipping those already
    scored with the same :func:`checkpoint_settings`; constrained decoding when the run evaluates
    it), pick one by ``select_metric`` and record it in checkpoints.json. With ``checkpoint:
    final`` or ``epoch-N`` (or a configured ``endpoint``) nothing is scored: that one is served."""
    from routerlib import checkpoints, jobs

    cfg = run.config
    if cfg.checkpoint != checkpoints.BEST or cfg.endpoint:
        named = cfg.checkpoint if cfg.checkpoint != checkpoints.BEST else checkpoints.FINAL
        choice = checkpoints.CheckpointChoice(
            select_metric=cfg.select_metric,
            mode=cfg.checkpoint,
            chosen=named,
            chosen_uri=cfg.endpoint or jobs.select_checkpoint(job, named),
            reason=(
                f"endpoint: {cfg.endpoint} is evaluated as it is; checkpoints were not scored"
                if cfg.endpoint
                else f"checkpoint: {named} names it; checkpoints were not scored"
            ),
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
    """The checkpoint notebook 04 serves: ``final`` / ``epoch-N`` as named; ``best`` from
    checkpoints.json, scoring first when the record is missing or stale (a notebook run alone, or
    scored with other settings, e.g. free decoding by an older routerlib)."""
    from routerlib import checkpoints, jobs

    if run.config.checkpoint != checkpoints.BEST:
        return jobs.select_checkpoint(job, run.config.checkpoint)
    choice = checkpoints.read_choice(run.path)
    fresh = (
        choice is not None
        and choice.complete
        and choice.chosen_uri
        and choice.mode == run.config.checkpoint
        and choice.select_metric == run.config.select_metric
        and choice.scored_with(checkpoint_settings(run))
    )
    if not fresh:
        choice = choose_checkpoint(run, job)
    assert choice is not None and choice.chosen_uri
    return choice.chosen_uri


def checkpoint_table(choice: CheckpointChoice) -> pd.DataFrame:
    """One row per scored checkpoint: validation loss, the selection figures, the pick, as
    display text (rounded numbers, yes/no, ``–`` for a checkpoint that was not scored)."""
    from routerlib import checkpoints, display

    return display.readable(checkpoints.scores_frame(choice))


# ---------------------------------------------------------------- 04 deploy & evaluate


@contextmanager
def serving(run: Run, job: Job) -> Iterator[Predictor]:
    """The serving Predictor for the tuned checkpoint, for the block (routerlib.serving.base):
    a local server, a Vertex endpoint deployed for the block, a batch job (``eval_mode: batch``)
    or the configured ``endpoint`` left as it is. Whatever it started is cleaned up."""
    checkpoint = job.checkpoint_uri or job.spec.checkpoint_uri()
    if not run.config.endpoint:  # best (checkpoints.json), final, or epoch-N
        checkpoint = chosen_checkpoint(run, job)
    params_file = str(run.params_file)
    with factory.open_predictor(run.config, str(checkpoint), params_file=params_file) as predictor:
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
    """Score the previous router logic (majority template and keyword rules) on the test rows
    the models are scored on (the first ``eval_limit`` when set; the predictions cover the whole
    split, since they are also what each model is compared to)."""
    from routerlib import baselines as previous
    from routerlib import evaluate as runner

    gold = gold_file(run)
    reports = {}
    for kind in previous.KINDS:
        preds = _baseline_predictions(run, kind)
        if not preds.exists():
            previous.write_baseline(gold, preds, kind=kind)
        reports[kind] = runner.score_predictions(
            gold,
            preds,
            out=run.sub(runfolder.baseline_report_file(kind)),
            thresholds=thresholds_path(run),
            limit=run.config.eval_limit,
        )
    return reports


def decodings(run: Run) -> list[str]:
    """The decodings this run scores, headline first (``constrained`` overrides ``decoding``)."""
    cfg = run.config
    if cfg.constrained is not None:
        return ["constrained" if cfg.constrained else "free"]
    return list(cfg.decoding)


def report_path(run: Run, decoding: str = "free") -> Path:
    """Where a decoding's report lives: eval/report.json (free), eval/constrained/report.json
    (each with its samples.jsonl, cache and predictions beside it)."""
    return run.sub(runfolder.decoding_report_file(runfolder.EVAL_DIR, decoding))


def evaluation_settings(run: Run) -> dict[str, Any]:
    """The keyword arguments of ``routerlib.evaluate.evaluate`` that a run's evaluation uses
    besides its predictor, output and decoding: the gate, the previous router's predictions (the
    configured baseline, scored first when missing) and the limits. Anything scored on a run's
    test rows (its decodings, a reference model beside it) uses these."""
    cfg = run.config
    baseline_preds = _baseline_predictions(run, cfg.baseline)
    if not baseline_preds.exists():
        baselines(run)
    return {
        "thresholds": thresholds_path(run),
        "compare_to": baseline_preds,
        "max_tokens": cfg.max_tokens,
        "limit": cfg.eval_limit,
    }


def evaluate(run: Run, endpoint: Predictor | str, decoding: str = "free") -> Report:
    """Generate predictions for the test split through ``endpoint`` (a serving Predictor from
    :func:`serving`, or an endpoint address; ``decoding`` free or constrained) and score them
    against the gold completions, the gate and the previous router (the configured baseline)."""
    from routerlib import evaluate as runner

    cfg = run.config
    if isinstance(endpoint, str):  # an address: the predictor the run's settings make for it
        spec = factory.for_address(cfg, endpoint)
        with factory.opened(spec.kind, spec.target, **spec.options) as predictor:
            return evaluate(run, predictor, decoding)
    settings = evaluation_settings(run)
    cache = runner.artifact_paths(report_path(run, decoding))["cache"]
    before = len(load_cache(cache)) if cache.exists() else 0
    start = time.perf_counter()
    report = runner.evaluate(
        endpoint,
        gold_file(run),
        out=report_path(run, decoding),
        constrained=decoding == "constrained",
        **settings,
    )
    generated = len(load_cache(cache)) - before
    # rows answered now by the headline decoding, the one the serving cost is priced on (a
    # resumed evaluation measures only its new rows)
    if generated > 0 and decoding == decodings(run)[0]:
        seconds = time.perf_counter() - start
        runfolder.write_record(
            run.sub(THROUGHPUT_FILE),
            runfolder.ThroughputRecord(
                rows=generated,
                seconds=round(seconds, 3),
                routes_per_hour=round(generated / seconds * 3600, 3),
                concurrency=cfg.concurrency,
                max_tokens=cfg.max_tokens,
            ),
        )
    return report


#: Routes per hour measured while notebook 04 predicted the test split (with its scoring).
THROUGHPUT_FILE = runfolder.THROUGHPUT_FILE


def run_cost(run: Run, job: Job, report: dict[str, Any]) -> dict[str, Any]:
    """What the run cost or would cost (pricing.RunCost as a dict): tuning from the job's billable
    tokens x epochs, serving per 1,000 routes from the machine's hourly price and the measured
    throughput, latency p50/p95 from the report."""
    from dataclasses import asdict

    from routerlib import pricing

    cfg = run.config
    stats = job.tuning_data_stats or {}
    tokens = stats.get("total_billable_token_count")
    if isinstance(tokens, int) and job.backend == "local" and stats.get("epochs"):
        tokens //= int(stats["epochs"])  # the local backend counts every epoch; Vertex one pass
    throughput_file = run.sub(THROUGHPUT_FILE)
    throughput = (
        runfolder.read_json(throughput_file, runfolder.ThroughputRecord)
        if throughput_file.exists()
        else None
    )
    from routerlib.serving import hardware

    shape = hardware.choose(
        cfg.base_model, cfg.machine_type, cfg.accelerator_type, cfg.accelerator_count
    )
    machine = pricing.serving_machine(cfg.backend, shape.machine_type)
    cost = pricing.run_cost(
        base_model=job.spec.base_model,
        billable_tokens=tokens if isinstance(tokens, int) else None,
        epochs=job.spec.epochs,
        machine=machine,
        routes_per_hour=throughput.routes_per_hour if throughput else None,
        latency=report.get("latency"),
    )
    return asdict(cost)


#: Columns of the per-notebook headline table: (metric, label); strict values with intervals.
def evaluate_all(run: Run, endpoint: Predictor | str) -> dict[str, Report]:
    """:func:`evaluate` once per configured decoding, on the same test rows, headline first."""
    if isinstance(endpoint, str):  # an address: one predictor for every decoding
        spec = factory.for_address(run.config, endpoint)
        with factory.opened(spec.kind, spec.target, **spec.options) as predictor:
            return evaluate_all(run, predictor)
    return {decoding: evaluate(run, endpoint, decoding) for decoding in decodings(run)}


def headline_report(reports: dict[str, Report]) -> Report:
    """The report of the first decoding (the run's headline)."""
    return next(iter(reports.values()))


def decoding_table(reports: dict[str, Report]) -> pd.DataFrame:
    """Free against constrained on the same rows: strict figures, time per token and the paired
    test of constrained minus free per metric (McNemar / paired bootstrap, compare.py)."""
    import pandas as pd

    from routerlib import compare

    shown_metrics = ("json_valid", "schema_valid", *HEADLINE[1:6], "tool_sequence_exact")
    rows = {}
    for decoding, report in reports.items():
        strict = (report.get("strict") or {}).get("overall", {})
        row: dict[str, Any] = {m: strict.get(m) for m in shown_metrics}
        row["s_per_token"] = compare.seconds_per_token(report)
        rows[decoding] = row
    table = pd.DataFrame(rows).T
    if {"free", "constrained"} <= set(reports):
        tests = compare.paired_reports(reports["constrained"], reports["free"])
        for metric, test in tests.items():
            if metric in table.columns:
                table.loc["Δ constrained−free", metric] = test["delta"]
                table.loc["p (paired)", metric] = test["p_value"]
    return table


def confusion_figure(report: Report, bucket: str = "overall") -> Any:
    """The first-tool confusion matrix of a report (routerlib.diagnostics)."""
    from routerlib import diagnostics_plots
    from routerlib.data_plots import shown

    return shown(diagnostics_plots.confusion_matrix(report, bucket))


def tool_figure(reports: dict[str, Report], bucket: str = "overall") -> Any:
    """Per-tool precision / recall / F1 of several reports side by side."""
    from routerlib import diagnostics_plots
    from routerlib.data_plots import shown

    return shown(diagnostics_plots.tool_bars(reports, bucket))


HEADLINE_VIEW = (
    ("json_valid", "JSON valid"),
    ("route_plan_exact", "plan exact"),
    ("tool_sequence_exact", "tool sequence exact"),
    ("route_tool_recall", "tool recall"),
    ("route_tool_precision", "tool precision"),
)


def headline_table(reports: dict[str, Report]) -> pd.DataFrame:
    """Routers side by side: gate, the headline metrics (strict, with their 95% intervals) and the
    median length ratio of valid predictions; text rounded for reading."""
    import pandas as pd

    from routerlib import display

    rows = {}
    for label, report in reports.items():
        strict = (report.get("strict") or {}).get("overall", {})
        intervals = (report.get("intervals") or {}).get("overall", {})
        passed = (report.get("threshold_results") or {}).get("overall_pass")
        row: dict[str, Any] = {
            "gate": display.MISSING if passed is None else "pass" if passed else "fail"
        }
        for metric, name in HEADLINE_VIEW:
            lo, hi = (intervals.get(metric) or [None, None])[:2]
            row[name] = display.with_interval(
                {
                    f"{metric} strict": strict.get(metric),
                    f"{metric} strict lo": lo,
                    f"{metric} strict hi": hi,
                },
                metric,
            )
        ratio = report["metrics"].get("overall", {}).get("length_ratio")
        row["length ratio"] = display.fmt(ratio, 2)
        rows[label] = row
    return pd.DataFrame(rows).T


def gate_table(report: Report) -> pd.DataFrame:
    """Every check of the report's gate, one row each (indexed by bucket): metric, value, the rule
    (``≥ 0.98`` / ``≤ 0.30``) and ``passed``; a bucket the test split has no rows of is one line
    that says so. Empty when the report was not gated."""
    import pandas as pd

    from routerlib import display

    columns = ["bucket", "metric", "value", "rule", "passed"]
    results = report.get("threshold_results")
    if not results:
        return pd.DataFrame(columns=columns).set_index("bucket")
    gate = runfolder.validate(results, runfolder.GateResults, "threshold_results")
    rows = []
    for bucket, checks in gate.checks().items():
        if checks and all(c.value is None for c in checks.values()):
            rows.append(  # one line for a bucket the test split has no rows of
                {
                    "bucket": bucket,
                    "metric": f"all {len(checks)} checks",
                    "value": "no test rows",
                    "rule": display.MISSING,
                    "passed": all(c.passed for c in checks.values()),
                }
            )
            continue
        for metric, check in checks.items():
            sign = "≤" if check.kind == "max" else "≥"
            rows.append(
                {
                    "bucket": bucket,
                    "metric": metric,
                    "value": "no test rows" if check.value is None else display.fmt(check.value),
                    "rule": f"{sign} {display.fmt(check.threshold, 2)}",
                    "passed": check.passed,
                }
            )
    return pd.DataFrame(rows, columns=columns).set_index("bucket")


#: Per-sample yes/no checks counted in ``worst_errors``.
ERROR_CHECKS = (
    "route_plan_exact",
    "route_first_tool_match",
    "metrics_keys_match",
    "todo_covers_all_tools",
    "handoff_tools_covered",
)


def _problem(record: runfolder.SampleRecord) -> str:
    """What went wrong with one prediction, without character positions (so alike failures
    group together)."""
    import re

    if not record.valid:
        reason = record.reason or "invalid"
        return re.sub(r":? ?(line \d+ column \d+ )?\(char \d+\)", "", reason).strip()
    missed = [m for m in ERROR_CHECKS if not record.metrics.get(m)]
    return "missed " + ", ".join(missed) if missed else "all checks met"


def worst_errors(run: Run, n: int = 10) -> HTMLTable:
    """The tuned model's worst failures, alike ones grouped: each row is one kind of problem with
    how many test rows have it, which ones, the checks met and how the first one's output starts
    (shown whole; the table is in ``.frame``)."""
    import pandas as pd

    from routerlib import display

    records = runfolder.read_samples(runfolder.samples_path(run.sub(runfolder.REPORT_FILE)))
    groups: dict[tuple[str, int], list[int]] = {}
    starts: dict[tuple[str, int], str] = {}
    for rec in records:
        met = sum(bool(rec.metrics.get(m)) for m in ERROR_CHECKS) if rec.valid else -1
        key = (_problem(rec), met)
        groups.setdefault(key, []).append(rec.index)
        starts.setdefault(key, " ".join((rec.raw or "").split())[:60])
    rows = []
    for (problem, met), indices in groups.items():
        if met == len(ERROR_CHECKS):
            continue  # nothing wrong to show
        shown = ", ".join(str(i) for i in indices[:6]) + (
            f" … (+{len(indices) - 6})" if len(indices) > 6 else ""
        )
        rows.append(
            {
                "problem": problem,
                "rows": len(indices),
                "test rows": shown,
                "checks met": "invalid" if met < 0 else f"{met}/{len(ERROR_CHECKS)}",
                "first output starts": starts[(problem, met)] or "(empty)",
                "_met": met,
            }
        )
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame = frame.sort_values(["_met", "rows"], ascending=[True, False], kind="stable")
        frame = frame.drop(columns="_met").head(n).reset_index(drop=True)
    return display.whole(frame)


#: What metrics.json copies from the RunConfig and from the Job.
RUN_FIELDS = {"name", "backend", "base_model", "tuning_mode", "adapter_size", "epochs"}
TUNING_FIELDS = {"state", "train_seconds", "cost_estimate_usd", "tuning_data_stats", "loss_curve"}


def _checkpoint_summary(run: Run) -> dict[str, Any] | None:
    """What checkpoints.json says about the served checkpoint (None when there is none)."""
    from routerlib import checkpoints

    choice = checkpoints.read_choice(run.path)
    if choice is None:
        return None
    return {
        "served": choice.chosen,
        "best": choice.best,
        "mode": choice.mode,
        "select_metric": choice.select_metric,
        "reason": choice.reason,
        "record": runfolder.CHECKPOINTS_FILE,
    }


def write_metrics(
    run: Run,
    job: Job,
    report: Report,
    baseline_reports: dict[str, Report],
    decoding_reports: dict[str, Report] | None = None,
) -> Path:
    """Write the run's metrics.json: the run, its tuning, the evaluation (``report``: the headline
    decoding), one entry per scored decoding, and the baseline summaries."""
    from routerlib.compare import seconds_per_token
    from routerlib.runfolder import (
        BaselineInfo,
        DecodingInfo,
        EvaluationInfo,
        MetricsRecord,
        RunInfo,
        TuningInfo,
    )

    cfg = run.config
    decoding_reports = decoding_reports or {decodings(run)[0]: report}
    matching = [d for d, r in decoding_reports.items() if r is report]
    headline_decoding = matching[0] if matching else decodings(run)[0]

    def relative(decoding: str) -> str:
        return str(report_path(run, decoding).relative_to(run.path))

    def figures(r: Report, block: str) -> dict[str, Any]:
        values = (r.get(block) or {}).get("overall", {})
        return {m: values.get(m) for m in HEADLINE}

    overall = report["metrics"].get("overall", {})
    strict = (report.get("strict") or {}).get("overall", {})
    record = MetricsRecord(
        run=RunInfo(
            params_file=run.params_file,
            created=time.strftime("%Y-%m-%dT%H:%M:%S"),
            **cfg.model_dump(include=RUN_FIELDS),
        ),
        tuning=TuningInfo(
            job_name=job.name,
            checkpoint=_checkpoint_summary(run),
            **job.model_dump(include=TUNING_FIELDS),
        ),
        cost=run_cost(run, job, report),
        evaluation=EvaluationInfo(
            report=relative(headline_decoding),
            decoding=headline_decoding,
            gate_pass=(report.get("threshold_results") or {}).get("overall_pass"),
            headline={m: overall.get(m) for m in HEADLINE},
            strict={m: strict.get(m) for m in HEADLINE},
        ),
        decodings={
            decoding: DecodingInfo(
                report=relative(decoding),
                gate_pass=(r.get("threshold_results") or {}).get("overall_pass"),
                headline=figures(r, "metrics"),
                strict=figures(r, "strict"),
                schema_valid=(r.get("strict") or {}).get("overall", {}).get("schema_valid"),
                seconds_per_token=seconds_per_token(r),
            )
            for decoding, r in decoding_reports.items()
        },
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
    the number of test rows fixed and broken, one row per metric (rounded for reading)."""
    import pandas as pd

    from routerlib import display

    comparison = report.get("comparison") or {}
    deltas = (comparison.get("strict") or {}).get(bucket, {})
    tests = (comparison.get("significance") or {}).get(bucket, {})
    changes = comparison.get("changes") or {}
    rows = []
    for metric, values in deltas.items():
        test = tests.get(metric, {})
        delta = values.get("delta")
        rows.append(
            {
                "metric": metric,
                "previous": display.fmt(values.get("previous")),
                "tuned": display.fmt(values.get("new")),
                "delta": display.MISSING if display.missing(delta) else f"{delta:+.3f}",
                "test": display.fmt(test.get("test")),
                "p_value": display.fmt(test.get("p_value"), 4),
                "fixed": len(changes.get(metric, {}).get("fixed", [])),
                "broken": len(changes.get(metric, {}).get("broken", [])),
            }
        )
    return pd.DataFrame(rows).set_index("metric") if rows else pd.DataFrame()


# ---------------------------------------------------------------- 05 compare


#: The stages the comparison runs when it has nothing to compare (the smoke tune adds nothing).
BUILD_STAGES = ("01", "03", "04")


def runs_to_compare(run: Run, runs: list[str]) -> list[RunSummary]:
    """The given run folders that finished an evaluation (others are named in one printed line,
    never a model row), else every finished run under the outputs root; when there is none, the
    pipeline makes one from this notebook's params (stages 01, 03, 04) so the comparison always
    has a model to show. This notebook's own run folder is never among them."""
    from routerlib import compare, pipeline

    own = run.path.resolve()
    given = [Path(p) for p in runs]
    skipped = [p for p in given if not compare.has_evaluation(p) or p.resolve() == own]
    if skipped:
        names = ", ".join(p.name for p in skipped)
        print(f"Not compared (no finished evaluation, or this comparison's own folder): {names}")
    runs = [str(p) for p in given if p not in skipped]
    if given and not runs:
        raise InputError(f"runs: no finished run folder to compare among {len(given)} given")
    found = [r for r in compare.load_runs(runs or None) if Path(r.path) != own]
    if not found and not runs:
        (result,) = pipeline.run_pipeline(
            [run.params_file], stages=BUILD_STAGES, name=run.config.name
        )
        if not result.ok:
            raise InputError(f"building a run to compare failed: {result.message}")
        found = [r for r in compare.load_runs(None) if Path(r.path) != own]
    return found


def comparison_plots(run: Run, found: list[RunSummary]) -> list[Path]:
    """Every comparison plot, saved as PNG in the run folder."""
    from routerlib import compare_plots

    return compare_plots.all_plots(found, run.sub(runfolder.PLOTS_DIR))


def sweep_plot(run: Run, rows: Any) -> Path:
    """The newest sweep's metric against each varied key (``compare.sweep_board`` rows), as PNG."""
    from routerlib import compare_plots

    return compare_plots.sweep_metric(rows, run.sub(runfolder.PLOTS_DIR))


def image(path: Path) -> Image:
    """A PNG for display in the notebook."""
    from IPython.display import Image

    return Image(filename=str(path))


def saved(path: Path) -> Markdown:
    """A one-line Markdown note of a file written into the run folder (its name, not its path)."""
    from IPython.display import Markdown

    return Markdown(f"Saved `{path.name}` in `{path.parent.name}/`.")


COMPARISON_FILES = ("leaderboard.csv", "significance.csv", "comparison.json")


def write_comparison(run: Run, board: pd.DataFrame, significance: pd.DataFrame) -> Path:
    """Save the leaderboard and significance table (CSV and JSON) in the comparison run folder."""
    record = runfolder.ComparisonRecord(
        leaderboard=json.loads(board.to_json(orient="index")),
        significance=json.loads(significance.to_json(orient="records")),
    )
    return runfolder.write_comparison(run.path, board.to_csv(), significance.to_csv(), record)
