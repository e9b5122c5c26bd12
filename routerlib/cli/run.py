"""CLI: ``routerlib run`` (papermill batch runs of the notebook chain) and ``routerlib report``."""

from __future__ import annotations

import argparse
import os


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``run`` and ``report`` subcommands."""
    run = subparsers.add_parser(
        "run",
        help="execute the notebook chain for each params file into its own run folder",
        description=(
            "Execute notebooks/01_… to 04_… with papermill for each params file into "
            "outputs/<params-name>-<time>/. A failing stage stops that run only. With --resume, "
            "each argument is a run folder, or a params file whose newest unfinished run continues "
            "from its first unfinished stage. With --grid, one params file is swept: one run "
            "folder per point, recorded in outputs/sweep-<time>/sweep.json (--resume with the same "
            "--grid, or with the sweep folder, continues it)."
        ),
    )
    run.add_argument(
        "params",
        nargs="+",
        metavar="PARAMS_OR_RUN",
        help="params/*.yaml (or, with --resume, a run folder)",
    )
    run.add_argument(
        "--stages", default=None, help="comma-separated stages to run, default 01,02,03,04"
    )
    run.add_argument(
        "--outputs",
        default=None,
        metavar="DIR",
        help="outputs root for run folders (default: ROUTERLIB_OUTPUTS or outputs/)",
    )
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue unfinished runs instead of starting new ones",
    )
    run.add_argument(
        "--grid",
        action="append",
        default=None,
        metavar="KEY=V1,V2",
        help="sweep: one run per point of the cross product of every --grid (any params key); "
        "records sweep-<time>/sweep.json; with --resume continues it",
    )
    run.add_argument(
        "--max-runs",
        type=int,
        default=None,
        metavar="N",
        help="refuse a sweep of more than N points (default 16)",
    )
    run.add_argument(
        "--max-concurrent",
        type=int,
        default=1,
        metavar="N",
        help="vertex sweeps: tuning jobs at once, the project's tuning quota (default 1); "
        "local points always run one at a time",
    )
    run.add_argument(
        "--compare",
        action="store_true",
        help="then run notebook 05 over the runs just made into outputs/comparison-<time>/",
    )
    run.add_argument(
        "--with",
        dest="with_runs",
        nargs="+",
        default=[],
        metavar="RUN",
        help="compare these finished run folders too ('all': every finished run); implies --compare",
    )
    run.add_argument(
        "--report",
        action="store_true",
        help="then render the HTML report of every run and print the path of index.html",
    )
    run.set_defaults(func=_run)

    report = subparsers.add_parser(
        "report",
        help="render executed notebooks to HTML (code hidden) with an index and the comparison",
        description="Render run folders to HTML and print the path of index.html.",
    )
    report.add_argument(
        "runs",
        nargs="*",
        metavar="RUN",
        help="run folders (default: every run under the outputs root)",
    )
    report.add_argument(
        "--out", default=None, metavar="DIR", help="report folder (default: <outputs>/report)"
    )
    report.set_defaults(func=_report)


def _sweep_folders(args: argparse.Namespace) -> list[str]:
    """With --resume and no --grid: the arguments that are sweep folders."""
    from routerlib.paths import resolve
    from routerlib.sweep import SWEEP_FILE

    if not args.resume or args.grid:
        return []
    return [p for p in args.params if (resolve(p) / SWEEP_FILE).is_file()]


def _sweep(args: argparse.Namespace, folders: list[str]) -> list:
    """Run or resume a sweep; one RunResult-like (params_file, ok) per point."""
    from routerlib import sweep
    from routerlib.errors import InputError
    from routerlib.paths import resolve
    from routerlib.pipeline import DEFAULT_STAGES, RunResult

    outputs = resolve(args.outputs) if args.outputs else None
    out = lambda line: print(line, flush=True)  # noqa: E731
    if folders:
        targets = [resolve(f) for f in folders]
    else:
        if len(args.params) != 1:
            raise InputError("--grid: give exactly one params file (the base of the sweep)")
        grid = sweep.parse_grid(args.grid)
        params = args.params[0]
        if args.resume:
            found = sweep.find_unfinished_sweep(params, grid, outputs)
            if found is None:
                raise InputError(f"{params}: no unfinished sweep with this --grid to resume")
            targets = [found]
        else:
            stages = args.stages.split(",") if args.stages else DEFAULT_STAGES
            targets = [
                sweep.new_sweep(
                    params,
                    grid,
                    stages=stages,
                    outputs=outputs,
                    max_runs=args.max_runs or sweep.DEFAULT_MAX_RUNS,
                    max_concurrent=args.max_concurrent,
                )
            ]
    results = []
    for folder in targets:
        print(f"[sweep] {folder / sweep.SWEEP_FILE}", flush=True)
        record = sweep.run_sweep(folder, outputs=outputs, out=out)
        for point in record.points:
            results.append(
                RunResult(
                    str(folder / point.params),
                    folder if point.run_dir is None else resolve(point.run_dir),
                    "finished" if point.status == sweep.FINISHED else "failed",
                    point.message,
                )
            )
    return results


def _run(args: argparse.Namespace) -> int:
    from routerlib.pipeline import DEFAULT_STAGES, comparison_runs, run_pipeline

    comparison_runs([], args.with_runs, args.outputs)  # a bad --with fails before any run starts
    folders = _sweep_folders(args)
    if args.grid or folders:
        results = _sweep(args, folders)
    else:
        stages = (
            args.stages.split(",") if args.stages else (None if args.resume else DEFAULT_STAGES)
        )
        results = run_pipeline(
            args.params,
            stages=stages,
            outputs=args.outputs,
            resume=args.resume,
            out=lambda line: print(line, flush=True),
        )
    failed = [r for r in results if not r.ok]
    for result in failed:
        print(f"FAILED {result.run_dir}: {result.message}", flush=True)
    if len(results) > 1:
        print(f"{len(results) - len(failed)} of {len(results)} run(s) finished", flush=True)
    compare = args.compare or bool(args.with_runs)
    if compare and len(failed) < len(results):
        from routerlib.pipeline import run_comparison
        from routerlib.runfolder import has_evaluation

        made = [r.run_dir for r in results if r.ok]
        for folder in made:
            if not has_evaluation(folder):
                print(
                    f"[comparison] {folder.name}: no finished evaluation, not compared", flush=True
                )
        comparison = run_comparison(
            results[0].params_file,
            outputs=args.outputs,
            out=lambda line: print(line, flush=True),
            runs=comparison_runs(made, args.with_runs, args.outputs),
        )
        if not comparison.ok:
            print(f"FAILED {comparison.run_dir}: {comparison.message}", flush=True)
            failed.append(comparison)
    if args.report:
        from routerlib.paths import resolve
        from routerlib.report import render_report

        if args.outputs:  # the report reads the same outputs root the runs were written to
            os.environ["ROUTERLIB_OUTPUTS"] = str(resolve(args.outputs))
        index = render_report(None, None)
        print(f"report: {index}", flush=True)
    return 1 if failed else 0


def _report(args: argparse.Namespace) -> int:
    from routerlib.report import render_report

    index = render_report(args.runs or None, args.out)
    print(index)
    return 0
