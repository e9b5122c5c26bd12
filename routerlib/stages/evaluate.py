"""Notebook 04: serve the run's checkpoint, evaluate it (each configured decoding) against the
gold completions, the gate and the previous router, and write the run's metrics.json."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd
from IPython.display import Markdown

from routerlib import baselines as previous
from routerlib import checkpoints, compare, diagnostics_plots, display, metrics, paths, runfolder
from routerlib import evaluate as runner
from routerlib.data_plots import shown
from routerlib.errors import InputError
from routerlib.jobs import find as find_job
from routerlib.metric_names import HEADLINE
from routerlib.pricing import run_cost as cost_of_run
from routerlib.pricing import serving_machine
from routerlib.serving import factory
from routerlib.serving.base import Predictor
from routerlib.serving.cache import load_cache
from routerlib.serving.settings import VertexSettings
from routerlib.stages.prepare import gold_file
from routerlib.stages.run import Report, Run, decodings, open_run, thresholds_path
from routerlib.stages.run import saved as saved
from routerlib.stages.tune import chosen_checkpoint, tuned_job
from routerlib.stages.tune import job_table as job_table
from routerlib.tuning.base import Job


def serving(run: Run, job: Job) -> AbstractContextManager[Predictor]:
    """The Predictor of the tuned checkpoint for the block (``factory.for_run`` decides)."""
    # an endpoint is served as it is; else best (checkpoints.json), final, or epoch-N
    checkpoint = run.config.endpoint or chosen_checkpoint(run, job)
    return factory.open_predictor(run.config, checkpoint, params_file=str(run.params_file))


def _baseline_predictions(run: Run, kind: str) -> Path:
    return runfolder.report_artifact(run.sub(runfolder.baseline_report_file(kind)), "predictions")


def baselines(run: Run, gold: Path | None = None) -> dict[str, Report]:
    """Score the previous router logic (majority and rules) on the test rows the models are
    scored on (``gold``: the run's test split unless given)."""
    gold = gold or gold_file(run)
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


def report_path(run: Run, decoding: str = "free") -> Path:
    """A decoding's report: eval/report.json (free), eval/constrained/report.json."""
    return run.sub(runfolder.decoding_report_file(runfolder.EVAL_DIR, decoding))


def evaluation_settings(run: Run) -> dict[str, Any]:
    """``routerlib.evaluate.evaluate``'s settings for anything scored on the run's test rows: the
    gate, the configured baseline's predictions (scored first when missing) and the limits."""
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


def _predictor(run: Run, endpoint: Predictor | str) -> AbstractContextManager[Predictor]:
    """``endpoint`` itself, or for an address the predictor the run's settings make for it."""
    if not isinstance(endpoint, str):
        return nullcontext(endpoint)
    return factory.for_address(run.config, endpoint).opened()


def evaluate(run: Run, endpoint: Predictor | str, decoding: str = "free") -> Report:
    """Predict the test split through ``endpoint`` (a Predictor or an address) with ``decoding``
    and score it against gold, the gate and the configured baseline."""
    cfg, settings = run.config, evaluation_settings(run)
    cache = runner.artifact_paths(report_path(run, decoding))["cache"]
    before = len(load_cache(cache))
    with _predictor(run, endpoint) as predictor:
        start = time.perf_counter()
        report = runner.evaluate(
            predictor,
            gold_file(run),
            out=report_path(run, decoding),
            constrained=decoding == "constrained",
            **settings,
        )
        seconds = time.perf_counter() - start
    generated = len(load_cache(cache)) - before
    # rows answered now by the headline decoding, the one the serving cost is priced on (a
    # resumed evaluation measures only its new rows)
    if generated > 0 and decoding == decodings(run)[0]:
        runfolder.write_record(
            run.sub(runfolder.THROUGHPUT_FILE),
            runfolder.ThroughputRecord(
                rows=generated,
                seconds=round(seconds, 3),
                routes_per_hour=round(generated / seconds * 3600, 3),
                **cfg.model_dump(include={"concurrency", "max_tokens"}),
            ),
        )
    return report


def run_cost(run: Run, job: Job, report: dict[str, Any]) -> dict[str, Any]:
    """What the run cost or would cost (``pricing.RunCost`` as a dict): tuning, serving per
    1,000 routes at the measured throughput, and latency."""
    cfg = run.config
    stats = job.tuning_data_stats or {}
    tokens = stats.get("total_billable_token_count")
    if isinstance(tokens, int) and job.backend == "local" and stats.get("epochs"):
        tokens //= int(stats["epochs"])  # the local backend counts every epoch; Vertex one pass
    file = run.sub(runfolder.THROUGHPUT_FILE)
    throughput = runfolder.read_json(file, runfolder.ThroughputRecord) if file.exists() else None
    shape = VertexSettings.from_config(cfg).hardware(cfg.base_model)
    cost = cost_of_run(
        base_model=job.spec.base_model,
        billable_tokens=tokens if isinstance(tokens, int) else None,
        epochs=job.spec.epochs,
        machine=serving_machine(cfg.backend, shape.machine_type),
        routes_per_hour=throughput.routes_per_hour if throughput else None,
        latency=report.get("latency"),
    )
    return asdict(cost)


def evaluate_all(run: Run, endpoint: Predictor | str) -> dict[str, Report]:
    """:func:`evaluate` once per configured decoding, on the same test rows, headline first."""
    with _predictor(run, endpoint) as predictor:  # an address: one predictor for every decoding
        return {decoding: evaluate(run, predictor, decoding) for decoding in decodings(run)}


def headline_report(reports: dict[str, Report]) -> Report:
    """The report of the first decoding (the run's headline)."""
    return next(iter(reports.values()))


def strict_figures(reports: dict[str, Report], metrics: Sequence[str]) -> pd.DataFrame:
    """One row per report: the strict overall figure of each of ``metrics``."""
    rows = {name: {m: _overall(r, "strict").get(m) for m in metrics} for name, r in reports.items()}
    return pd.DataFrame.from_dict(rows, orient="index")


def decoding_table(reports: dict[str, Report]) -> pd.DataFrame:
    """Free against constrained on the same rows: strict figures, time per token and the paired
    test of constrained minus free per metric (McNemar / paired bootstrap, compare.py)."""
    shown_metrics = ("json_valid", "schema_valid", *HEADLINE[1:6], "tool_sequence_exact")
    table = strict_figures(reports, shown_metrics)
    table["s_per_token"] = [compare.seconds_per_token(r) for r in reports.values()]
    if {"free", "constrained"} <= set(reports):
        tests = compare.paired_reports(reports["constrained"], reports["free"])
        for metric, test in tests.items():
            if metric in table.columns:
                table.loc["Δ constrained−free", metric] = test["delta"]
                table.loc["p (paired)", metric] = test["p_value"]
    return table


def confusion_figure(report: Report, bucket: str = "overall") -> Any:
    """The first-tool confusion matrix of a report (routerlib.diagnostics)."""
    return shown(diagnostics_plots.confusion_matrix(report, bucket))


def tool_figure(reports: dict[str, Report], bucket: str = "overall") -> Any:
    """Per-tool precision / recall / F1 of several reports side by side."""
    return shown(diagnostics_plots.tool_bars(reports, bucket))


HEADLINE_VIEW = (
    ("json_valid", "JSON valid"),
    ("route_plan_exact", "plan exact"),
    ("tool_sequence_exact", "tool sequence exact"),
    ("route_tool_recall", "tool recall"),
    ("route_tool_precision", "tool precision"),
)


def _overall(report: Report, block: str) -> dict[str, Any]:
    """The ``overall`` bucket of one block of a report (``strict``, ``metrics``, ...)."""
    return dict((report.get(block) or {}).get("overall", {}))


def _gate_pass(report: Report) -> bool | None:
    return (report.get("threshold_results") or {}).get("overall_pass")


def headline_table(reports: dict[str, Report]) -> pd.DataFrame:
    """Routers side by side: gate, the headline metrics (strict, with their 95% intervals) and the
    median length ratio of valid predictions; text rounded for reading."""
    rows = {}
    for label, report in reports.items():
        strict, intervals = _overall(report, "strict"), _overall(report, "intervals")
        row = {"gate": display.gate_cell({"gate_pass": _gate_pass(report)})}
        for metric, name in HEADLINE_VIEW:
            lo, hi = (intervals.get(metric) or [None, None])[:2]
            cell = {metric: strict.get(metric), f"{metric} strict lo": lo}
            row[name] = display.with_interval({**cell, f"{metric} strict hi": hi}, metric)
        row["length ratio"] = display.fmt(_overall(report, "metrics").get("length_ratio"), 2)
        rows[label] = row
    return pd.DataFrame(rows).T


def gate_verdict(report: Report) -> Markdown:
    """The gate's verdict in one line (metrics.gate_line): pass or fail, the failed checks, and
    each bucket skipped because the test split has no rows of it."""
    return Markdown(f"**{metrics.gate_line(report.get('threshold_results'))}**")


def gate_table(report: Report) -> pd.DataFrame:
    """Every check of the report's gate, one row each (indexed by bucket); a bucket without test
    rows is one ``skipped`` line. Empty when the report was not gated."""
    results = report.get("threshold_results")
    gate = (
        runfolder.validate(results, runfolder.GateResults, "threshold_results") if results else None
    )
    rows: list[tuple[str, ...]] = []
    skipped = gate.skipped_buckets() if gate else {}  # buckets the test rows have none of
    for bucket, checks in (gate.checks() if gate else {}).items():
        if bucket in skipped:
            found = f"no test rows ({skipped[bucket]})"
            rows.append((bucket, f"all {len(checks)} checks", found, display.MISSING, "skipped"))
            continue
        for metric, c in checks.items():
            value = "no value" if c.value is None else display.fmt(c.value)
            rule = f"{'≤' if c.kind == 'max' else '≥'} {display.fmt(c.threshold, 2)}"
            passed = "skipped" if c.skipped else "pass" if c.passed else "fail"
            rows.append((bucket, metric, value, rule, passed))
    columns = ["bucket", "metric", "value", "rule", "passed"]
    return pd.DataFrame(rows, columns=columns).set_index("bucket")


#: Per-sample yes/no checks counted in ``worst_errors``.
ERROR_CHECKS = tuple(
    "route_plan_exact route_first_tool_match metrics_keys_match todo_covers_all_tools "
    "handoff_tools_covered".split()
)


def _problem(record: runfolder.SampleRecord) -> str:
    """What went wrong with one prediction, without positions (so alike failures group)."""
    if not record.valid:
        reason = record.reason or "invalid"
        return re.sub(r":? ?(line \d+ column \d+ )?\(char \d+\)", "", reason).strip()
    missed = [m for m in ERROR_CHECKS if not record.metrics.get(m)]
    return "missed " + ", ".join(missed) if missed else "all checks met"


def worst_errors(run: Run, n: int = 10) -> display.HTMLTable:
    """The tuned model's failures grouped by kind of problem: how many rows, which, the checks
    met, how the first output starts (the table is in ``.frame``)."""
    records = runfolder.read_samples(runfolder.samples_path(run.sub(runfolder.REPORT_FILE)))
    checks = len(ERROR_CHECKS)
    samples = pd.DataFrame(
        {
            "problem": _problem(rec),
            "_met": sum(bool(rec.metrics.get(m)) for m in ERROR_CHECKS) if rec.valid else -1,
            "index": rec.index,
            "start": " ".join((rec.raw or "").split())[:60],
        }
        for rec in records
    )
    if samples.empty or (samples["_met"] == checks).all():  # nothing wrong to show
        return display.whole(pd.DataFrame())
    groups = samples[samples["_met"] != checks].groupby(["problem", "_met"], sort=False)
    frame = groups.agg(rows=("index", "size"), indices=("index", list), start=("start", "first"))
    frame = frame.reset_index().sort_values(
        ["_met", "rows"], ascending=[True, False], kind="stable"
    )
    more = frame["indices"].map(lambda i: f" … (+{len(i) - 6})" if len(i) > 6 else "")
    frame["test rows"] = frame["indices"].map(lambda i: ", ".join(map(str, i[:6]))) + more
    frame["checks met"] = frame["_met"].map(lambda m: "invalid" if m < 0 else f"{m}/{checks}")
    frame["first output starts"] = frame["start"].replace("", "(empty)")
    columns = ["problem", "rows", "test rows", "checks met", "first output starts"]
    frame = frame[columns].head(n).reset_index(drop=True)
    return display.whole(frame)


def _checkpoint_summary(run: Run) -> dict[str, Any] | None:
    """What checkpoints.json says about the served checkpoint (None when there is none)."""
    choice = checkpoints.read_choice(run.path)
    if choice is None:
        return None
    figures = choice.model_dump(include={"best", "mode", "select_metric", "reason"})
    return {"served": choice.chosen, **figures, "record": runfolder.CHECKPOINTS_FILE}


def write_metrics(
    run: Run,
    job: Job,
    report: Report,
    baseline_reports: dict[str, Report],
    decoding_reports: dict[str, Report] | None = None,
) -> Path:
    """Write the run's metrics.json: the run, its tuning, the evaluation (``report``: the headline
    decoding), one entry per scored decoding, and the baseline summaries."""
    decoding_reports = decoding_reports or {decodings(run)[0]: report}
    matching = (d for d, r in decoding_reports.items() if r is report)
    headline_decoding = next(matching, decodings(run)[0])

    def info(r: Report, decoding: str) -> runfolder.DecodingInfo:
        return runfolder.DecodingInfo(
            report=str(report_path(run, decoding).relative_to(run.path)),
            gate_pass=_gate_pass(r),
            headline={m: _overall(r, "metrics").get(m) for m in HEADLINE},
            strict={m: _overall(r, "strict").get(m) for m in HEADLINE},
            schema_valid=_overall(r, "strict").get("schema_valid"),
            seconds_per_token=compare.seconds_per_token(r),
        )

    record = runfolder.MetricsRecord(
        run=runfolder.RunInfo(
            params_file=run.params_file,
            created=runfolder.now(),
            **run.config.model_dump(include=set(runfolder.RunInfo.model_fields)),
        ),
        tuning=runfolder.TuningInfo(
            job_name=job.name,
            checkpoint=_checkpoint_summary(run),
            **job.model_dump(include=set(runfolder.TuningInfo.model_fields)),
        ),
        cost=run_cost(run, job, report),
        evaluation=runfolder.EvaluationInfo(
            decoding=headline_decoding, **dict(info(report, headline_decoding))
        ),
        decodings={decoding: info(r, decoding) for decoding, r in decoding_reports.items()},
        baselines={
            kind: runfolder.BaselineInfo(
                report=runfolder.baseline_report_file(kind), gate_pass=_gate_pass(r)
            )
            for kind, r in baseline_reports.items()
        },
    )
    return runfolder.write_record(run.sub(runfolder.METRICS_FILE), record)


def comparison_table(report: Report, bucket: str = "overall") -> pd.DataFrame:
    """Strict per-metric deltas against the previous router, with the paired test's p-value and
    the number of test rows fixed and broken, one row per metric (rounded for reading)."""
    comparison = report.get("comparison") or {}
    tests = (comparison.get("significance") or {}).get(bucket, {})
    changes = comparison.get("changes") or {}
    rows = []
    for metric, values in (comparison.get("strict") or {}).get(bucket, {}).items():
        test, delta, changed = tests.get(metric, {}), values.get("delta"), changes.get(metric, {})
        rows.append(
            {
                "metric": metric,
                "previous": display.fmt(values.get("previous")),
                "tuned": display.fmt(values.get("new")),
                "delta": display.MISSING if display.missing(delta) else f"{delta:+.3f}",
                "test": display.fmt(test.get("test")),
                "p_value": display.fmt(test.get("p_value"), 4),
                "fixed": len(changed.get("fixed", [])),
                "broken": len(changed.get("broken", [])),
            }
        )
    return pd.DataFrame(rows).set_index("metric") if rows else pd.DataFrame()


def evaluate_run(run: Run) -> Path:
    """What notebook 04 does, without its tables; returns the metrics.json written. Notebook 05
    uses it to make a run when it has none to compare."""
    job = tuned_job(run)
    baseline_reports = baselines(run)
    with serving(run, job) as endpoint:
        reports = evaluate_all(run, endpoint)
    return write_metrics(run, job, headline_report(reports), baseline_reports, reports)


def record_run(params_file: str, report_file: str | Path, job_name: str, name: str = "") -> Path:
    """Gather a run made with the CLI steps (prepare, tune, deploy, evaluate --params) into a
    run folder ``<outputs>/<name>-<time>`` as notebook 04 writes it; returns the folder."""
    source = Path(report_file)
    report = runfolder.read_report(source)
    gold = paths.resolve(report["config"]["gold_path"])
    samples = runfolder.samples_path(source)
    for needed, what in ((gold, "its gold file"), (samples, "its samples.jsonl")):
        if not needed.is_file():
            raise InputError(f"{source}: {what} {needed} is missing; cannot record the run")
    job = find_job(job_name)
    if not job.succeeded:
        raise InputError(f"{job.name}: ended {job.state}, not succeeded; record a tuned run")
    run = open_run(params_file, name=name or Path(params_file).stem)
    test = run.sub(runfolder.split_file("test"))
    test.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(gold, test)
    report["config"]["gold_path"] = str(test)
    records = [line.model_dump(exclude_unset=True) for line in runfolder.read_samples(samples)]
    metrics.write_report(report, records, report_path(run))
    baseline_reports = baselines(run, gold=test)
    runfolder.write_record(run.sub(runfolder.job_file(False)), job)
    write_metrics(run, job, report, baseline_reports)
    return run.path
