"""CLI: ``routerlib run`` (papermill batch runs of the notebook chain), ``routerlib report`` and
``routerlib record`` (a run made with the CLI steps, gathered into a run folder)."""

from __future__ import annotations

import argparse
from typing import Any

from routerlib.cli import echo
from routerlib.errors import InputError
from routerlib.paths import resolve
from routerlib.runfolder import has_evaluation


def sweep_args(parser: argparse.ArgumentParser, grid: str, concurrent: str) -> None:
    """--stages, --grid, --max-runs and --max-concurrent, as ``run`` and ``pipeline`` take them."""
    note = "comma-separated stages each run goes through, default 01,02,03,04"
    parser.add_argument("--stages", default=None, help=note)
    parser.add_argument("--grid", action="append", metavar="KEY=V1,V2", help=grid)
    note = "refuse a grid of more than N points (default 16)"
    parser.add_argument("--max-runs", type=int, metavar="N", help=note)
    parser.add_argument("--max-concurrent", type=int, default=1, metavar="N", help=concurrent)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``run``, ``report`` and ``record`` subcommands."""
    run = subparsers.add_parser(
        "run",
        help="execute the notebook chain for each params file into its own run folder",
        description="Execute notebooks/01_… to 04_… with papermill for each params file into "
        "outputs/<params-name>-<time>/. A failing stage stops that run only. With --resume, "
        "each argument is a run folder, or a params file whose newest unfinished run continues "
        "from its first unfinished stage. With --grid, one params file is swept: one run "
        "folder per point, recorded in outputs/sweep-<time>/sweep.json (--resume with the same "
        "--grid, or with the sweep folder, continues it).",
    )
    note = "params/*.yaml (or, with --resume, a run folder)"
    run.add_argument("params", nargs="+", metavar="PARAMS_OR_RUN", help=note)
    note = "outputs root for run folders (default: ROUTERLIB_OUTPUTS or outputs/)"
    run.add_argument("--outputs", metavar="DIR", help=note)
    note = "continue unfinished runs instead of starting new ones"
    run.add_argument("--resume", action="store_true", help=note)
    sweep_args(
        run,
        grid="sweep: one run per point of the cross product of every --grid (any params key); "
        "records sweep-<time>/sweep.json; with --resume continues it",
        concurrent="vertex sweeps: tuning jobs at once, the project's tuning quota (default 1); "
        "local points always run one at a time",
    )
    note = (
        "runs at once (several params files); default: local runs side by side up to the core "
        "count, each kernel with its share of the cores; other runs one at a time"
    )
    run.add_argument("--parallel", type=int, metavar="N", help=note)
    note = "then run notebook 05 over the runs just made into outputs/comparison-<time>/"
    run.add_argument("--compare", action="store_true", help=note)
    run.add_argument(
        "--with",
        dest="with_runs",
        nargs="+",
        default=[],
        metavar="RUN",
        help="compare these finished run folders too ('all': every finished run); implies --compare",
    )
    note = "then render the HTML report of every run and print the path of index.html"
    run.add_argument("--report", action="store_true", help=note)
    run.set_defaults(func=_run)

    report = subparsers.add_parser(
        "report",
        help="render executed notebooks to HTML (code hidden) with an index and the comparison",
        description="Render run folders to HTML and print the path of index.html.",
    )
    note = "run folders (default: every run under the outputs root)"
    report.add_argument("runs", nargs="*", metavar="RUN", help=note)
    note = "report folder (default: <outputs>/report)"
    report.add_argument("--out", metavar="DIR", help=note)
    report.set_defaults(func=_report)

    record = subparsers.add_parser(
        "record",
        help="gather a run made with the CLI steps into a run folder the comparison reads",
        description="Make outputs/<params-name>-<time>/ from a run done step by step (routerlib prepare, "
        "tune, deploy, evaluate --params): params.yaml, the test split, the evaluation report "
        "and its per-sample records, both previous routers scored on the same rows, the "
        "tuning job and metrics.json, as notebook 04 writes them. `routerlib report` and "
        "notebook 05 then compare it with every other run. Prints the run folder.",
    )
    record.add_argument(
        "--params", required=True, metavar="FILE", help="the params file the steps used"
    )
    note = "the report `routerlib evaluate --out` wrote (samples.jsonl beside it)"
    record.add_argument("--report", required=True, metavar="REPORT.json", help=note)
    note = "the tuning job whose checkpoint was evaluated (`routerlib jobs list` names it)"
    record.add_argument("--job", required=True, metavar="NAME", help=note)
    record.add_argument(
        "--name", default="", help="run folder name (default: the params file's name)"
    )
    record.set_defaults(func=_record)


def _sweep(args: argparse.Namespace) -> list[Any] | None:
    """Run or resume the sweep(s) of --grid or --resume: a RunResult per point (None: no sweep)."""
    from routerlib import sweep
    from routerlib.pipeline import DEFAULT_STAGES, RunResult

    if args.grid:
        if len(args.params) != 1:
            raise InputError("--grid: give exactly one params file (the base of the sweep)")
        grid, params = sweep.parse_grid(args.grid), args.params[0]
        found = sweep.find_unfinished_sweep(params, grid, args.outputs) if args.resume else None
        if args.resume and found is None:
            raise InputError(f"{params}: no unfinished sweep with this --grid to resume")
        folder = found or sweep.new_sweep(
            params,
            grid,
            stages=args.stages.split(",") if args.stages else DEFAULT_STAGES,
            outputs=args.outputs,
            max_runs=args.max_runs or sweep.DEFAULT_MAX_RUNS,
            max_concurrent=args.max_concurrent,
        )
        folders = [folder]
    else:
        given = [resolve(p) for p in args.params] if args.resume else []
        folders = [f for f in given if (f / sweep.SWEEP_FILE).is_file()]
        if not folders:
            return None
    results = []
    for folder in folders:
        echo(f"[sweep] {folder / sweep.SWEEP_FILE}")
        for point in sweep.run_sweep(folder, outputs=args.outputs, out=echo).points:
            run_dir = folder if point.run_dir is None else resolve(point.run_dir)
            status = "finished" if point.status == sweep.FINISHED else "failed"
            results.append(RunResult(str(folder / point.params), run_dir, status, point.message))
    return results


def _run(args: argparse.Namespace) -> int:
    from routerlib import pipeline

    args.outputs = resolve(args.outputs) if args.outputs else None  # runs, comparison, report
    pipeline.comparison_runs([], args.with_runs, args.outputs)  # a bad --with fails first
    results = _sweep(args)
    if results is None:
        default = None if args.resume else pipeline.DEFAULT_STAGES
        results = pipeline.run_pipeline(
            args.params,
            stages=args.stages.split(",") if args.stages else default,
            outputs=args.outputs,
            resume=args.resume,
            out=echo,
            parallel=args.parallel,
        )
    failed = [r for r in results if not r.ok]
    echo("\n".join(line for r in results for line in pipeline.run_headline(r)))  # where eyes land
    if len(results) > 1:
        echo(f"{len(results) - len(failed)} of {len(results)} run(s) finished")
    if (args.compare or args.with_runs) and len(failed) < len(results):
        made = [r.run_dir for r in results if r.ok]
        for folder in made:
            if not has_evaluation(folder):
                echo(f"[comparison] {folder.name}: no finished evaluation, not compared")
        runs = pipeline.comparison_runs(made, args.with_runs, args.outputs)
        comparison = pipeline.run_comparison(
            results[0].params_file, outputs=args.outputs, out=echo, runs=runs
        )
        if not comparison.ok:
            echo(f"FAILED {comparison.run_dir}: {comparison.message}")
            failed.append(comparison)
    if args.report:
        from routerlib.report import render_report

        with pipeline.outputs_env(args.outputs):  # the runs' outputs root
            echo(f"report: {render_report()}")
    return 1 if failed else 0


def _report(args: argparse.Namespace) -> int:
    from routerlib.report import render_report

    print(render_report(args.runs or None, args.out))
    return 0


def _record(args: argparse.Namespace) -> int:
    from routerlib.stages.evaluate import record_run

    print(record_run(args.params, args.report, args.job, args.name))
    return 0
