"""The notebook chain and sweeps as a Kubeflow (KFP 2.x) pipeline for Vertex AI Pipelines
(docs/pipelines.md: what compile writes, what a pipeline run's folder holds, what it costs):
one component per point inside a ``ParallelFor``, then a fan-in that compares and reports.
kfp is an optional extra (``pip install '.[pipelines]'``), imported inside functions only.

No ``from __future__ import annotations`` here: KFP reads the component functions' annotations
at run time, and a component's source runs alone in the task, so it imports its body from here.
"""

import collections
import json
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from routerlib import paths, pipeline, runfolder, storage, sweep
from routerlib.atomic import write_text
from routerlib.config import RunConfig, load_config
from routerlib.errors import InputError, RouterlibError
from routerlib.report import render_report
from routerlib.runfolder import FAILED, FINISHED, SweepPoint, SweepRecord

#: The pipeline's name in the IR (``pipelineInfo.name``); submit recognises its own files by it.
PIPELINE_NAME = "routerlib-chain"
#: The image the components run in when ``--image`` is not given (a local build; Vertex needs an
#: image in a registry it can pull from, e.g. Artifact Registry).
DEFAULT_IMAGE = "routerlib:latest"
#: Where each point's params and outputs root live inside the pipeline run's folder.
POINTS_DIR = "points"
#: The report the fan-in renders inside the pipeline run's folder.
REPORT_DIR = "report"
#: Cloud Storage FUSE: how a Vertex AI Pipelines task sees ``gs://BUCKET/PATH``.
FUSE_ROOT = "/gcs"


def require_kfp() -> Any:
    """The ``kfp`` module, or an InputError saying how to install it."""
    try:
        import kfp
    except ImportError:
        raise InputError(
            "routerlib pipeline needs the kfp package: pip install 'routerlib[pipelines]' "
            "(in a clone: pip install -e '.[pipelines]'; `make setup` installs it)"
        ) from None
    return kfp


def plan_points(
    params_files: Sequence[str], grid_items: Sequence[str], stages: list[str], max_runs: int
) -> tuple[SweepRecord, list[RunConfig]]:
    """The sweep.json the fan-in completes and each point's params, every one validated first: a
    ``--grid`` over one params file exactly as ``routerlib run --grid`` checks it, else one point
    per params file."""
    if not params_files:
        raise InputError("name at least one params file (e.g. params/local.yaml)")
    pipeline.require_notebooks()
    grid: dict[str, list[Any]] = {}
    named: list[tuple[str, dict[str, Any], RunConfig]] = []
    if grid_items:
        if len(params_files) != 1:
            raise InputError("--grid: give exactly one params file (the base of the sweep)")
        grid = sweep.parse_grid(list(grid_items))
        named = sweep.check_points(params_files[0], grid, max_runs)  # as run --grid names them
    else:
        problems: list[str] = []
        for item in params_files:
            try:
                named.append((Path(item).stem, {}, load_config(item)))
            except InputError as exc:
                problems.extend(exc.lines())
        if problems:
            raise InputError(
                f"{len(problems)} problem(s) in the params; nothing was written", problems
            )
        if len({n for n, _, _ in named}) != len(named):
            raise InputError("two params files share a name; each point needs its own run name")
    files = ", ".join(str(paths.resolve(p)) for p in params_files)
    where = f"{POINTS_DIR}/{{:02d}}/{runfolder.PARAMS_FILE}".format
    return sweep.plan(named, files, grid, stages, where), [c for _, _, c in named]


def fuse_path(uri: str) -> Path:
    """Where a task sees ``uri``: ``gs://BUCKET/PATH`` is ``/gcs/BUCKET/PATH`` (Cloud Storage
    FUSE); a local path stays as it is."""
    if storage.is_gcs_uri(uri):
        bucket, path = storage.parse_gcs_uri(uri)
        return Path(FUSE_ROOT, bucket, *([path] if path else []))
    return paths.resolve(uri)


def run_folder_name(job: str) -> str:
    """The pipeline run's folder name: the job id, from the id, the resource name
    (``projects/.../pipelineJobs/ID``) or KFP's local ``RUN/for-loop-...``."""
    head = str(job).split("/pipelineJobs/", 1)[-1].split("/", 1)[0]
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", head).strip("-.") or "pipeline-run"


def pipeline_run_folder(outputs: str, job: str) -> Path:
    """``<outputs>/<pipeline job>`` as a task sees it."""
    return fuse_path(outputs) / run_folder_name(job)


PointOutputs = collections.namedtuple("PointOutputs", ["run_dir", "status", "outcome"])


def run_point(
    index: str, label: str, params_yaml: str, stages: str, outputs: str, job: str
) -> PointOutputs:
    """One point: ``pipeline.start_run`` and ``continue_run`` under the pipeline run's folder,
    points/NN/ its outputs root. Never raises (but on Ctrl-C): a failure is its status."""
    run_dir, status = "", FAILED
    try:
        folder = pipeline_run_folder(outputs, job)
        point_root = folder / POINTS_DIR / index
        params = point_root / runfolder.PARAMS_FILE
        write_text(params, params_yaml)
        made = pipeline.start_run(str(params), stages, outputs=folder, name=label)
        run_dir = str(made)
        with pipeline.outputs_env(point_root):
            result = pipeline.continue_run(made, out=lambda line: print(line, flush=True))
        status, message = result.status, result.message
    except Exception as exc:  # noqa: BLE001 - the fan-in reports it; the pipeline goes on
        lines = exc.lines() if isinstance(exc, RouterlibError) else [str(exc)]
        message = f"{type(exc).__name__}: " + " ".join("; ".join(lines).split())[:500]
        print(f"[{label}] FAILED: {message}", flush=True)
    outcome = {"index": index, "name": label, "run_dir": run_dir, "status": status}
    return PointOutputs(run_dir, status, json.dumps({**outcome, "message": message}))


def point_task(
    index: str, label: str, params_yaml: str, stages: str, outputs: str, job: str
) -> NamedTuple("PointOutputs", [("run_dir", str), ("status", str), ("outcome", str)]):  # type: ignore[valid-type]
    """One grid point into its own run folder: its run folder, status and JSON outcome."""
    from routerlib.vertex_pipelines import run_point

    return run_point(index, label, params_yaml, stages, outputs, job)


def report_points(outcomes: list, outputs: str, job: str, plan: str) -> str:
    """The fan-in: record the points in sweep.json, compare those that finished an evaluation
    (notebook 05), render the report; return a one-line-per-point summary."""
    folder = pipeline_run_folder(outputs, job)
    folder.mkdir(parents=True, exist_ok=True)
    record = SweepRecord.model_validate_json(plan)
    done = {o["index"]: o for o in (json.loads(str(x)) for x in outcomes)}
    for point in record.points:
        got = done.get(f"{point.index:02d}", {})
        ok = got.get("status") == FINISHED
        point.run_dir = got.get("run_dir") or None
        point.status = FINISHED if ok else FAILED
        point.message = "" if ok else got.get("message") or "the point's task returned nothing"
    points = record.points
    failed = [p for p in points if p.status != FINISHED]
    record.sweep, record.created = folder.name, runfolder.now()
    record.status = FAILED if failed else FINISHED
    runfolder.write_record(folder / runfolder.SWEEP_FILE, record)
    runs = [Path(p.run_dir) for p in points if p.run_dir]
    shown = list(runs)
    lines = [f"{p.name}: {p.status}" + (f": {p.message}" if p.message else "") for p in points]
    with pipeline.outputs_env(folder):
        if any(runfolder.has_evaluation(r) for r in runs):
            first = next(folder / p.params for p in points if (folder / p.params).is_file())
            result = pipeline.run_comparison(
                str(first), outputs=folder, runs=runs, out=lambda x: print(x, flush=True)
            )
            shown.append(result.run_dir)
            lines.append(f"comparison: {result.status} {result.run_dir}")
        else:
            lines.append("comparison: none (no point finished an evaluation)")
        index = render_report(shown, folder / REPORT_DIR)
    lines.append(f"report: {index}")
    lines.insert(0, f"{len(points) - len(failed)} of {len(points)} point(s) finished")
    summary = "\n".join(lines)
    print(summary, flush=True)
    return summary


def report_task(outcomes: list, outputs: str, job: str, plan: str) -> str:
    """Compare the points' run folders and render the report (never skipped: points do not raise)."""
    from routerlib.vertex_pipelines import report_points

    return report_points(outcomes, outputs, job, plan)


def build_pipeline(
    params_files: Sequence[str],
    *,
    grid: Sequence[str] = (),
    stages: str | Sequence[str] | None = None,
    outputs: str,
    image: str = DEFAULT_IMAGE,
    max_concurrent: int = 1,
    max_runs: int = sweep.DEFAULT_MAX_RUNS,
    pipeline_root: str | None = None,
) -> tuple[Any, list[SweepPoint]]:
    """The KFP pipeline function (a ParallelFor over the points, ``max_concurrent`` at once, then
    the fan-in; caching off) and its points, every one validated first."""
    require_kfp()
    from kfp import dsl

    if max_concurrent < 1:
        raise InputError(f"--max-concurrent must be at least 1, got {max_concurrent}")
    chosen = pipeline.check_stages(stages, notebooks=True)
    record, configs = plan_points(params_files, grid, chosen, max_runs)
    point_op = dsl.component(point_task, base_image=image, install_kfp_package=False)
    report_op = dsl.component(report_task, base_image=image, install_kfp_package=False)
    # the ParallelFor items are strings; ``name`` is a channel attribute: the key is ``label``
    items = [
        {
            "index": f"{p.index:02d}",
            "label": p.name,
            "params": yaml.safe_dump(c.model_dump(mode="json"), sort_keys=False),
        }
        for p, c in zip(record.points, configs, strict=True)
    ]
    plan = record.model_dump_json()
    default_outputs, default_stages = outputs, ",".join(chosen)

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="routerlib: the notebook chain per point, then the comparison and report",
        pipeline_root=pipeline_root,
    )
    def routerlib_chain(outputs: str = default_outputs, stages: str = default_stages) -> str:
        job = dsl.PIPELINE_JOB_NAME_PLACEHOLDER
        with dsl.ParallelFor(items, parallelism=max_concurrent) as item:
            point = point_op(
                index=item.index,
                label=item.label,
                params_yaml=item.params,
                stages=stages,
                outputs=outputs,
                job=job,
            )
            point.set_caching_options(False).set_display_name("point")
        collected = dsl.Collected(point.outputs["outcome"])
        fan_in = report_op(outcomes=collected, outputs=outputs, job=job, plan=plan)
        return fan_in.set_caching_options(False).set_display_name("compare-and-report").output

    return routerlib_chain, record.points


def compile_pipeline(
    params_files: Sequence[str], out: str | os.PathLike[str], *, outputs: str, **options: Any
) -> tuple[Path, list[SweepPoint]]:
    """Validate every point, then write the pipeline's IR YAML to ``out`` atomically (the
    ``options`` of :func:`build_pipeline`); no network, no account."""
    kfp = require_kfp()
    root = storage.join_uri(outputs, "pipeline-root")
    func, points = build_pipeline(
        params_files, outputs=outputs.rstrip("/"), pipeline_root=root, **options
    )
    target = paths.resolve(out)
    with tempfile.TemporaryDirectory() as folder:
        compiled = Path(folder) / "pipeline.yaml"
        kfp.compiler.Compiler().compile(func, str(compiled))
        write_text(target, compiled.read_text(encoding="utf-8"))
    return target, points


def run_local(
    params_files: Sequence[str],
    *,
    outputs: str | os.PathLike[str] | None = None,
    out: Callable[[str], None] = print,
    **options: Any,
) -> tuple[Path, SweepRecord]:
    """Run the pipeline here with KFP's local runner (``SubprocessRunner``, this Python, no
    Docker) under ``outputs`` (default: the outputs root); its folder and sweep record."""
    require_kfp()
    from kfp import local

    root = paths.resolve(outputs) if outputs else paths.outputs_root()
    func, _ = build_pipeline(params_files, outputs=str(root), **options)
    root.mkdir(parents=True, exist_ok=True)
    local.init(
        runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root / ".kfp-local")
    )
    before = set(runfolder.find_folders(runfolder.SWEEP_FILE, root=root))
    with warnings.catch_warnings():
        # The local runner ignores display names and runs the tasks with this Python, not in
        # the image: both are what a local run means, not something to fix.
        warnings.filterwarnings("ignore", message=r"Task '.*': settings \['display_name'\]")
        warnings.filterwarnings("ignore", message=r"You may be attemping to run a task")
        task = func()
    summary = str(task.output)
    made = [f for f in runfolder.find_folders(runfolder.SWEEP_FILE, root=root) if f not in before]
    if len(made) != 1:
        raise InputError(f"{root}: the local pipeline left {len(made)} new run folder(s), not 1")
    out(summary)
    return made[0], runfolder.read_sweep(made[0])


def read_compiled(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A pipeline file this module compiled (InputError naming the file otherwise)."""
    file = paths.resolve(path)
    try:
        spec = yaml.safe_load(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{file}: not found (make it with `routerlib pipeline compile`)") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{file}: not YAML ({exc})") from None
    name = (spec or {}).get("pipelineInfo", {}).get("name") if isinstance(spec, dict) else None
    if name != PIPELINE_NAME:
        raise InputError(
            f"{file}: pipelineInfo.name is {name!r}, not {PIPELINE_NAME!r}: not a pipeline "
            "`routerlib pipeline compile` wrote"
        )
    return dict(spec)
