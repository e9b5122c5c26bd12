"""CLI: ``routerlib pipeline compile | run --local | submit | list | show | cancel`` (Vertex AI
Pipelines; docs/pipelines.md). compile and run need the pipelines extra (kfp); the rest do not."""

from __future__ import annotations

import argparse
import os

DEFAULT_LOCATION = "us-central1"


def _points_args(parser: argparse.ArgumentParser) -> None:
    """The arguments compile and run share: what ``routerlib run --grid`` takes."""
    parser.add_argument("params", nargs="+", metavar="PARAMS", help="params/*.yaml")
    parser.add_argument(
        "--grid",
        action="append",
        default=None,
        metavar="KEY=V1,V2",
        help="one point per value of the cross product of every --grid (any params key), checked "
        "as `routerlib run --grid` checks them; without it, one point per params file",
    )
    parser.add_argument(
        "--stages", default=None, help="comma-separated stages each point runs, default 01,02,03,04"
    )
    parser.add_argument(
        "--max-concurrent",
        type=int,
        default=1,
        metavar="N",
        help="points running at once (the ParallelFor's parallelism; for Vertex points the "
        "project's open-model tuning quota), default 1",
    )
    parser.add_argument(
        "--max-runs",
        type=int,
        default=None,
        metavar="N",
        help="refuse a grid of more than N points (default 16)",
    )


def _cloud_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--project",
        default=os.environ.get("GOOGLE_CLOUD_PROJECT", ""),
        help="Google Cloud project (default: $GOOGLE_CLOUD_PROJECT)",
    )
    parser.add_argument(
        "--location",
        default=os.environ.get("GOOGLE_CLOUD_REGION", DEFAULT_LOCATION),
        help=f"Vertex AI Pipelines region (default: $GOOGLE_CLOUD_REGION or {DEFAULT_LOCATION})",
    )
    parser.add_argument(
        "--api-endpoint",
        default="",
        help="Vertex API address, e.g. http://127.0.0.1:PORT for a stand-in",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``pipeline`` and its actions."""
    p = subparsers.add_parser(
        "pipeline",
        help="the notebook chain and sweeps as a Vertex AI pipeline: compile, run, submit, ...",
        description="The points of `routerlib run` (a params file each, or a --grid) as a "
        "Kubeflow pipeline for Vertex AI Pipelines: one task per point runs the notebook chain, "
        "one fan-in task compares the points and renders the report. See docs/pipelines.md.",
    )
    sub = p.add_subparsers(dest="pipeline_command", metavar="ACTION", required=True)

    c = sub.add_parser(
        "compile",
        help="check every point, then write the pipeline (KFP IR YAML); no network, no account",
        description="Check every point exactly as `routerlib run --grid` does (nothing is "
        "written when one is wrong), then write the pipeline to --out.",
    )
    _points_args(c)
    c.add_argument(
        "--outputs",
        required=True,
        metavar="gs://BUCKET/PREFIX",
        help="where each pipeline run writes its folder (run folders, comparison, report)",
    )
    c.add_argument(
        "--image",
        default=None,
        metavar="URI",
        help="the image the tasks run in (Dockerfile; docs/pipelines.md), e.g. "
        "us-central1-docker.pkg.dev/PROJECT/REPO/routerlib:TAG (default routerlib:latest)",
    )
    c.add_argument("--out", required=True, metavar="FILE", help="the pipeline file to write")
    c.set_defaults(func=_compile)

    r = sub.add_parser(
        "run",
        help="run the pipeline on this machine with KFP's local runner (no Docker, no account)",
        description="The same pipeline compile writes, executed by kfp.local's SubprocessRunner "
        "with this Python. The pipeline run's folder goes under --outputs (default: the outputs "
        "root). Exit 1 when a point failed (the report says which and why).",
    )
    _points_args(r)
    r.add_argument(
        "--local", action="store_true", required=True, help="run here (the only mode for now)"
    )
    r.add_argument(
        "--outputs", default=None, metavar="DIR", help="outputs root (default: ROUTERLIB_OUTPUTS)"
    )
    r.set_defaults(func=_run)

    s = sub.add_parser(
        "submit",
        help="create the Vertex AI PipelineJob (or a schedule) of a compiled pipeline",
        description="Create a PipelineJob from the compiled file (or, with --schedule, a schedule "
        "that starts one by the cron), recorded in <outputs>/pipelines.json. The same file "
        "submitted again re-attaches to its job instead of starting a second one.",
    )
    s.add_argument("pipeline", metavar="PIPELINE_YAML", help="the file `pipeline compile` wrote")
    s.add_argument(
        "--schedule",
        default="",
        metavar="CRON",
        help="a recurring run, e.g. '0 3 * * *' (03:00 UTC nightly; 'TZ=Europe/Paris 0 3 * * *')",
    )
    s.add_argument(
        "--service-account",
        default="",
        metavar="EMAIL",
        help="the service account the tasks run as (default: the project's Compute Engine one)",
    )
    _cloud_args(s)
    s.set_defaults(func=_submit)

    ls = sub.add_parser("list", help="the recorded pipeline jobs and schedules")
    ls.add_argument("--no-refresh", action="store_true", help="show recorded states only")
    ls.set_defaults(func=_list)

    sh = sub.add_parser("show", help="one pipeline job or schedule, and its points when written")
    sh.add_argument("ref", metavar="ID", help="a job id, schedule id or resource name")
    sh.set_defaults(func=_show)

    ca = sub.add_parser(
        "cancel", help="cancel a running pipeline job, or pause a schedule (no more runs start)"
    )
    ca.add_argument("ref", metavar="ID", help="a job id, schedule id or resource name")
    ca.set_defaults(func=_cancel)


def _out(line: str) -> None:
    print(line, flush=True)


def _max_runs(args: argparse.Namespace) -> int:
    from routerlib.sweep import DEFAULT_MAX_RUNS

    return args.max_runs or DEFAULT_MAX_RUNS


def _compile(args: argparse.Namespace) -> int:
    from routerlib import vertex_pipelines

    target, points = vertex_pipelines.compile_pipeline(
        args.params,
        args.out,
        outputs=args.outputs,
        grid=args.grid or (),
        stages=args.stages,
        image=args.image or vertex_pipelines.DEFAULT_IMAGE,
        max_concurrent=args.max_concurrent,
        max_runs=_max_runs(args),
    )
    for point in points:
        _out(f"point {point.index}: {point.name}")
    if not args.image:
        _out(
            f"note: the tasks run in {vertex_pipelines.DEFAULT_IMAGE}; Vertex needs an image in a "
            "registry: build and push it, then compile with --image (docs/pipelines.md)"
        )
    _out(f"wrote {target} ({len(points)} point(s), {args.max_concurrent} at once)")
    return 0


def _run(args: argparse.Namespace) -> int:
    from routerlib import vertex_pipelines

    result = vertex_pipelines.run_local(
        args.params,
        grid=args.grid or (),
        stages=args.stages,
        outputs=args.outputs,
        max_concurrent=args.max_concurrent,
        max_runs=_max_runs(args),
        out=_out,
    )
    _out(f"pipeline run folder: {result.folder}")
    return 0 if result.ok else 1


def _submit(args: argparse.Namespace) -> int:
    from routerlib import pipeline_jobs

    record = pipeline_jobs.submit(
        args.pipeline,
        project=args.project,
        location=args.location,
        api_endpoint=args.api_endpoint,
        service_account=args.service_account,
        schedule=args.schedule,
        out=_out,
    )
    _out(pipeline_jobs.describe(record))
    return 0


def _list(args: argparse.Namespace) -> int:
    from routerlib import pipeline_jobs

    _out(pipeline_jobs.table(pipeline_jobs.list_pipelines(not args.no_refresh, out=_out)))
    return 0


def _show(args: argparse.Namespace) -> int:
    from routerlib import pipeline_jobs

    _out(pipeline_jobs.describe(pipeline_jobs.refresh(pipeline_jobs.find(args.ref), _out)))
    return 0


def _cancel(args: argparse.Namespace) -> int:
    from routerlib import pipeline_jobs

    pipeline_jobs.cancel(args.ref, out=_out)
    return 0
