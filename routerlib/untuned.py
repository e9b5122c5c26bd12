"""The untuned base model beside a finished local run: does tuning beat it, and the majority?
Scored on the run's test rows, outside the run folder (docs/scoring.md, "Tuned against the
untuned base and the majority baseline")."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from routerlib import compare, evaluate, runfolder, tinymodel
from routerlib.errors import InputError
from routerlib.serving.factory import open_predictor
from routerlib.stages.evaluate import evaluation_settings, strict_figures
from routerlib.stages.prepare import gold_file
from routerlib.stages.run import Report, Run, open_run

DECODINGS = ("free", "constrained")
#: Strict metrics the tables show and test, in this order.
SHOWN = tuple(
    "json_valid schema_valid tool_sequence_exact route_plan_exact route_tool_recall "
    "route_first_tool_match".split()
)
#: The router the question is about, and the references it is tested against (when present).
SUBJECT = "tuned constrained"
REFERENCES = ("base constrained", "tuned free", "baseline majority")


def finished_local_run(run_dir: str | Path) -> tuple[Run, compare.RunSummary]:
    """The run folder opened with its own params.yaml and its scored routers (read once, for
    :func:`router_reports`), or InputError naming what a finished local run lacks (params, test
    split, metrics.json with a constrained decoding, reports and samples, a finished
    pipeline.json); runs evaluated elsewhere are refused."""
    folder = Path(run_dir).resolve()
    if not folder.is_dir():
        raise InputError(f"{run_dir}: no such run folder")
    needed = (
        runfolder.PARAMS_FILE,
        f"{runfolder.DATA_DIR}/{runfolder.PREPARE_FILE}",
        runfolder.split_file("test"),
        runfolder.METRICS_FILE,
    )
    missing = [name for name in needed if not (folder / name).is_file()]
    if missing:
        raise InputError(f"{folder}: not a finished local run: no {', '.join(missing)}")
    if (folder / runfolder.PIPELINE_FILE).is_file():
        status = runfolder.read_pipeline(folder).status
        if status != "finished":
            raise InputError(
                f"{folder}: not a finished local run: {runfolder.PIPELINE_FILE} says {status}"
            )
    run = open_run(str(folder / runfolder.PARAMS_FILE), str(folder))
    cfg = run.config
    if cfg.backend != "local" or cfg.endpoint or cfg.eval_mode != "endpoint":
        how = f"backend {cfg.backend}, eval_mode {cfg.eval_mode}, endpoint {cfg.endpoint or '-'}"
        raise InputError(
            f"{folder}: not a local run served on this machine ({how}); only such a run's base "
            "model is evaluated here"
        )
    own = compare.load_run(folder)
    if own.problems:
        raise InputError(f"{folder}: not a finished local run", own.problems)
    files = {r.decoding: r.report_path for r in (own, *own.variants)}
    if "constrained" not in files:
        raise InputError(
            f"{folder}: {runfolder.METRICS_FILE} records no constrained decoding (decoding: "
            f"{', '.join(files) or 'none'}); the comparison is about the constrained tuned model"
        )
    files[f"baseline {cfg.baseline}"] = folder / runfolder.baseline_report_file(cfg.baseline)
    absent = [
        str(needed_file.relative_to(folder) if folder in needed_file.parents else needed_file)
        for file in files.values()
        for needed_file in (file, runfolder.samples_path(file), runfolder.predictions_path(file))
        if not needed_file.is_file()
    ]
    if absent:
        raise InputError(f"{folder}: not a finished local run: no {', '.join(absent)}")
    return run, own


def _scored(router: compare.RunSummary) -> Report:
    """A router's report with its ``samples_path`` pointing at the samples.jsonl beside it (a run
    folder may have been moved since it was scored)."""
    assert router.report is not None
    return {**router.report, "samples_path": str(runfolder.samples_path(router.report_path))}


def base_dir(run: Run, out_root: str | Path) -> Path:
    """Where the base model's reports of ``run`` go: ``out_root/<run folder name>``."""
    return Path(out_root) / run.path.name


def evaluate_base(run: Run, out_dir: str | Path, *, progress: bool = True) -> dict[str, Report]:
    """Score the untuned ``base_model`` of a finished local run on its test rows, free then
    constrained, into ``out_dir/<decoding>/report.json``, served and scored as the run's own
    evaluation was; a second call reuses the prediction cache beside each report."""
    out = Path(out_dir).resolve()
    if out == run.path or run.path in out.parents:
        raise InputError(f"{out}: inside the run folder; a finished run folder is never edited")
    settings = evaluation_settings(run)
    base = tinymodel.resolve_base_model(run.config.base_model)
    reports = {}
    with open_predictor(run.config, base, params_file=run.params_file) as predictor:
        for decoding in DECODINGS:
            reports[decoding] = evaluate.evaluate(
                predictor,
                gold_file(run),
                out=out / decoding / "report.json",
                constrained=decoding == "constrained",
                progress=progress,
                **settings,
            )
    return reports


def router_reports(own: compare.RunSummary, base: dict[str, Report]) -> dict[str, Report]:
    """Every router on the run's test rows (``own``: :func:`finished_local_run`'s), in table
    order: tuned free and constrained (as scored), base free and constrained (``base``:
    :func:`evaluate_base`'s reports), then each previous router the run scored."""
    tuned = sorted((own, *own.variants), key=lambda r: r.decoding != "free")
    return {
        **{f"tuned {r.decoding}": _scored(r) for r in tuned},
        **{f"base {d}": _with_samples(report) for d, report in base.items()},
        **{f"baseline {b.baseline_kind}": _scored(b) for b in own.baselines if b.report},
    }


def _with_samples(report: Report) -> Report:
    """``report`` when the samples.jsonl it names exists (the paired test reads it)."""
    file = Path(str(report.get("samples_path") or ""))
    if not file.is_file():
        raise InputError(f"{file}: the report's samples file is missing")
    return report


def figures_table(reports: dict[str, Report]) -> pd.DataFrame:
    """One row per router: test rows scored and the strict overall figure of each SHOWN metric."""
    table = strict_figures(reports, SHOWN)
    table.insert(
        0, "rows", [(r.get("config") or {}).get("total_samples") for r in reports.values()]
    )
    return table


def paired_table(reports: dict[str, Report]) -> pd.DataFrame:
    """SUBJECT against each of REFERENCES present, per SHOWN metric: compare.paired_reports
    (McNemar for yes/no metrics, paired bootstrap for rates) on the strict per-sample values of
    the same test rows; ``delta`` is subject minus reference, ``b01``/``b10`` the rows it
    fixed/broke."""
    # table column <- paired test field
    fields = {"test": "test", "n": "n", "subject_rate": "model_rate"}
    fields |= {k: k for k in ("reference_rate", "delta", "p_value", "b01", "b10")}
    if SUBJECT not in reports:
        raise InputError(f"no {SUBJECT!r} report to test (routers: {', '.join(reports)})")
    rows = []
    for reference in (r for r in REFERENCES if r in reports):
        tests = compare.paired_reports(reports[SUBJECT], reports[reference], SHOWN)
        for metric in (m for m in SHOWN if m in tests):
            figures = {column: tests[metric][key] for column, key in fields.items()}
            rows.append({"reference": reference, "metric": metric, **figures})
    return pd.DataFrame(rows, columns=["reference", "metric", *fields])
