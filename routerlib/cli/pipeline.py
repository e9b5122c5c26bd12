"""CLI: ``routerlib pipeline compile | run --local | submit | list | show | cancel`` (Vertex AI
Pipelines; docs/pipelines.md). compile and run need the pipelines extra (kfp); the rest do not."""

from __future__ import annotations

import argparse
import os
from typing import Any

from routerlib.cli import echo, params
from routerlib.cli.params import pick
from routerlib.cli.run import sweep_args
from routerlib.serving.settings import DEFAULT_LOCATION


def _points_args(parser: argparse.ArgumentParser) -> None:
    """The arguments compile and run share: what ``routerlib run --grid`` takes."""
    parser.add_argument("params", nargs="+", metavar="PARAMS", help="params/*.yaml")
    sweep_args(
        parser,
        grid="one point per value of the cross product of every --grid (any params key), checked "
        "as `routerlib run --grid` checks them; without it, one point per params file",
        concurrent="points running at once (the ParallelFor's parallelism; for Vertex points the "
        "project's open-model tuning quota), default 1",
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
    note = "where each pipeline run writes its folder (run folders, comparison, report)"
    c.add_argument("--outputs", required=True, metavar="gs://BUCKET/PREFIX", help=note)
    c.add_argument(
        "--image",
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
    note = "run here (the only mode for now)"
    r.add_argument("--local", action="store_true", required=True, help=note)
    note = "outputs root (default: ROUTERLIB_OUTPUTS)"
    r.add_argument("--outputs", metavar="DIR", help=note)
    r.set_defaults(func=_run)

    s = sub.add_parser(
        "submit",
        help="create the Vertex AI PipelineJob (or a schedule) of a compiled pipeline",
        description="Create a PipelineJob from the compiled file (or, with --schedule, a schedule "
        "that starts one by the cron), recorded in <outputs>/pipelines.json. The same file "
        "submitted again re-attaches to its job instead of starting a second one.",
    )
    s.add_argument("pipeline", metavar="PIPELINE_YAML", help="the file `pipeline compile` wrote")
    note = "a recurring run, e.g. '0 3 * * *' (03:00 UTC nightly; 'TZ=Europe/Paris 0 3 * * *')"
    s.add_argument("--schedule", default="", metavar="CRON", help=note)
    note = "the service account the tasks run as (default: the project's Compute Engine one)"
    s.add_argument("--service-account", default="", metavar="EMAIL", help=note)
    region = os.environ.get("GOOGLE_CLOUD_REGION", DEFAULT_LOCATION)
    note = f"Vertex AI Pipelines region (default: $GOOGLE_CLOUD_REGION or {DEFAULT_LOCATION})"
    params.cloud_flags(s, note, region, api_endpoint="")
    s.set_defaults(func=_submit)

    ls = sub.add_parser("list", help="the recorded pipeline jobs and schedules")
    ls.add_argument("--no-refresh", action="store_true", help="show recorded states only")
    sh = sub.add_parser("show", help="one pipeline job or schedule, and its points when written")
    note = "cancel a running pipeline job, or pause a schedule (no more runs start)"
    ca = sub.add_parser("cancel", help=note)
    for action in (sh, ca):
        action.add_argument("ref", metavar="ID", help="a job id, schedule id or resource name")
    for action in (ls, sh, ca):
        action.set_defaults(func=_records)


def _points(args: argparse.Namespace) -> dict[str, Any]:
    """What compile and run pass on of the points' arguments."""
    from routerlib.sweep import DEFAULT_MAX_RUNS

    options = {"grid": args.grid or (), "max_runs": args.max_runs or DEFAULT_MAX_RUNS}
    return {**options, **pick(args, "stages max_concurrent")}


def _compile(args: argparse.Namespace) -> int:
    from routerlib import vertex_pipelines

    target, points = vertex_pipelines.compile_pipeline(
        args.params,
        args.out,
        outputs=args.outputs,
        image=args.image or vertex_pipelines.DEFAULT_IMAGE,
        **_points(args),
    )
    for point in points:
        echo(f"point {point.index:02d}: {point.name}")
    if not args.image:
        echo(
            f"note: the tasks run in {vertex_pipelines.DEFAULT_IMAGE}; Vertex needs an image in a "
            "registry: build and push it, then compile with --image (docs/pipelines.md)"
        )
    echo(f"wrote {target} ({len(points)} point(s), {args.max_concurrent} at once)")
    return 0


def _run(args: argparse.Namespace) -> int:
    from routerlib import vertex_pipelines

    options = {"outputs": args.outputs, "out": echo, **_points(args)}
    folder, record = vertex_pipelines.run_local(args.params, **options)
    echo(f"pipeline run folder: {folder}")
    return 0 if record.status == "finished" else 1


def _submit(args: argparse.Namespace) -> int:
    from routerlib import pipeline_jobs

    options = pick(args, "project location api_endpoint service_account schedule")
    record = pipeline_jobs.submit(args.pipeline, out=echo, **options)
    echo(pipeline_jobs.describe(record))
    return 0


def _records(args: argparse.Namespace) -> int:
    """``pipeline list``, ``show`` and ``cancel``: the recorded submissions."""
    from routerlib import pipeline_jobs

    action = args.pipeline_command
    if action == "list":
        echo(pipeline_jobs.table(pipeline_jobs.list_pipelines(not args.no_refresh, out=echo)))
    elif action == "show":
        echo(pipeline_jobs.describe(pipeline_jobs.refresh(pipeline_jobs.find(args.ref), echo)))
    else:
        pipeline_jobs.cancel(args.ref, out=echo)
    return 0
