"""Sweeps (``routerlib run PARAMS --grid KEY=V1,V2 ...``; docs/choosing-the-model.md): one run
folder per point of a grid over params keys, recorded in ``sweep-<time>/sweep.json``."""

from __future__ import annotations

import contextlib
import itertools
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import yaml

from routerlib import paths, pipeline, runfolder
from routerlib.atomic import write_text
from routerlib.config import RunConfig, dump_config, load_config
from routerlib.errors import InputError
from routerlib.runfolder import FAILED, FINISHED, INTERRUPTED, RUNNING, SWEEP_FILE, read_sweep

DEFAULT_MAX_RUNS = 16
#: How often one point waits for a tuning-quota slot before it fails.
MAX_QUOTA_WAITS = 30
#: How a refused create because of the tuning quota reads in a stage's failure line.
QUOTA_REFUSAL = re.compile(r"HTTP 429|RESOURCE_EXHAUSTED")
#: Keys a grid may not vary: the sweep names its points itself.
FIXED_KEYS = frozenset({"name"})


def parse_value(text: str) -> Any:
    """A grid value as YAML reads it, with ``1e-3`` read as a number (YAML 1.1 reads a string);
    text that is not YAML (``[1``) stays text, for the config check to name."""
    text = text.strip()
    for kind in (int, float):
        with contextlib.suppress(ValueError):
            return kind(text)
    with contextlib.suppress(yaml.YAMLError):
        return yaml.safe_load(text) if text else ""
    return text


def _grid_problem(key: str, rest: str, grid: dict[str, Any]) -> str:
    """What is wrong with one ``--grid KEY=VALUES`` item ("" when nothing)."""
    if key not in RunConfig.model_fields:
        return f"{key} is not a params key"
    if key in FIXED_KEYS:
        return f"{key} cannot vary (the sweep names its points)"
    if key in grid:
        return f"{key} is given twice; list its values once"
    values = [parse_value(v) for v in rest.split(",")]
    if any(v == "" for v in values):
        return "an empty value"
    return "a value is listed twice" if len(set(map(repr, values))) != len(values) else ""


def parse_grid(items: Sequence[str]) -> dict[str, list[Any]]:
    """``["key=v1,v2", ...]`` as ``{key: [v1, v2]}``; InputError naming the bad item."""
    grid: dict[str, list[Any]] = {}
    problems = []
    for item in items:
        key, sep, rest = item.partition("=")
        key = key.strip()
        problem = _grid_problem(key, rest, grid) if sep and key else "expected key=value[,value...]"
        if problem:
            problems.append(f"--grid {item}: {problem}")
        else:
            grid[key] = [parse_value(v) for v in rest.split(",")]
    if problems:
        raise InputError(f"{len(problems)} problem(s) in --grid; nothing was run", problems)
    if not grid:
        raise InputError("--grid: give at least one key=value[,value...]")
    return grid


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """The cross product, the first key varying slowest."""
    return [dict(zip(grid, combo, strict=True)) for combo in itertools.product(*grid.values())]


def point_name(base: str, values: dict[str, Any]) -> str:
    """A point's run name: the base params' name and its grid values (``local-adapter_size4``)."""
    text = "-".join(f"{k}{v}" for k, v in values.items())
    return f"{base}-{re.sub(r'[^A-Za-z0-9_.]+', '-', text).strip('-')}"


def check_points(
    params_file: str, grid: dict[str, list[Any]], max_runs: int
) -> list[tuple[str, dict[str, Any], RunConfig]]:
    """Every point's name, values and RunConfig (the base params with its values and name),
    each value first checked alone so a bad one is named; nothing runs when anything is wrong."""
    points = grid_points(grid)
    if len(points) > max_runs:
        raise InputError(
            f"--grid: {len(points)} points exceed --max-runs {max_runs}; raise --max-runs or "
            "narrow the grid; nothing was run"
        )
    base = load_config(params_file)
    problems: list[str] = []
    for key, value in ((k, v) for k, values in grid.items() for v in values):
        try:
            load_config(params_file, {key: value})
        except InputError as exc:
            problems.extend(f"--grid {key}={value}: {line}" for line in exc.problems or [str(exc)])
    if problems:
        raise InputError(f"{len(problems)} invalid grid value(s); nothing was run", problems)
    named = []
    for point in points:
        name = point_name(base.name, point)
        try:
            named.append((name, point, load_config(params_file, {**point, "name": name})))
        except InputError as exc:
            where = ", ".join(f"{k}={v}" for k, v in point.items())
            problems.extend(f"--grid point {where}: {line}" for line in exc.problems)
    if problems:
        raise InputError(f"{len(problems)} invalid grid point(s); nothing was run", problems)
    return named


def plan(
    named: Sequence[tuple[str, dict[str, Any], RunConfig]],
    params_file: str,
    grid: dict[str, list[Any]],
    stages: Sequence[str],
    params: Callable[[int], str],
) -> runfolder.SweepRecord:
    """The sweep.json of the points :func:`check_points` named, every one pending (``params``:
    a point's params file by index, relative to the sweep folder; backend ``mixed`` when several)."""
    backends = {config.backend for _, _, config in named}
    return runfolder.SweepRecord(
        sweep="",
        params_file=params_file,
        grid=grid,
        stages=list(stages),
        backend=backends.pop() if len(backends) == 1 else "mixed",
        points=[
            runfolder.SweepPoint(index=i, values=values, name=name, params=params(i))
            for i, (name, values, _) in enumerate(named)
        ],
    )


def find_unfinished_sweep(
    params_file: str, grid: dict[str, list[Any]], root: Path | None = None
) -> Path | None:
    """The newest unfinished sweep of the same params file and grid."""
    wanted = str(paths.resolve(params_file))
    for folder in reversed(runfolder.find_folders(SWEEP_FILE, root=root)):
        record = read_sweep(folder)
        if record.status != FINISHED and record.params_file == wanted and record.grid == grid:
            return folder
    return None


def new_sweep(
    params_file: str,
    grid: dict[str, list[Any]],
    *,
    stages: Sequence[str] = pipeline.DEFAULT_STAGES,
    outputs: Path | None = None,
    max_runs: int = DEFAULT_MAX_RUNS,
    max_concurrent: int = 1,
) -> Path:
    """Validate the grid, then make ``sweep-<time>/`` with one params file per point and its
    sweep.json (every point pending). Nothing is written when a point is invalid."""
    if max_concurrent < 1:
        raise InputError(f"--max-concurrent must be at least 1, got {max_concurrent}")
    named = check_points(params_file, grid, max_runs)
    chosen = pipeline.check_stages(stages, notebooks=True)
    folder = paths.new_run_dir("sweep", root=outputs)
    (folder / "points").mkdir()
    record = plan(named, str(paths.resolve(params_file)), grid, chosen, "points/{:02d}.yaml".format)
    record.sweep, record.created = folder.name, runfolder.now()
    record.max_concurrent = max_concurrent
    for point, (_, _, config) in zip(record.points, named, strict=True):
        dump_config(config, folder / point.params)
    write_text(folder / "grid.txt", "".join(f"{k}={v}\n" for k, v in grid.items()))
    runfolder.write_record(folder / SWEEP_FILE, record)
    return folder


class _Inline:
    """An executor running each call at once in this thread, so Ctrl-C reaches the notebook."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args))
        except Exception as exc:  # noqa: BLE001 - re-raised by future.result()
            future.set_exception(exc)
        return future

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """Nothing to wait for."""


def run_sweep(
    folder: Path,
    *,
    outputs: Path | None = None,
    out: Callable[[str], None] = print,
    quota_wait_s: float = 60.0,
) -> runfolder.SweepRecord:
    """Run (or continue) every unfinished point: Vertex points ``max_concurrent`` at a time,
    local ones one by one; a point refused by the tuning quota (HTTP 429) waits for a slot
    (``quota_wait_s`` when none runs) and resumes, at most MAX_QUOTA_WAITS times."""
    record = read_sweep(folder)
    if record.status == FINISHED:
        raise InputError(f"{folder}: sweep is finished; start a new one")
    lock = threading.Lock()

    def update(point: runfolder.SweepPoint | None = None, **fields: Any) -> None:
        """Set ``fields`` on the point (or the sweep) and write sweep.json, from any thread."""
        with lock:
            for key, value in fields.items():
                setattr(record if point is None else point, key, value)
            runfolder.write_record(Path(folder) / SWEEP_FILE, record)

    update(status=RUNNING, finished=None)
    slots = record.max_concurrent if record.backend == "vertex" else 1
    queue = [p for p in record.points if p.status != FINISHED]
    done = len(record.points) - len(queue)
    if done:
        out(f"[sweep] {done} of {len(record.points)} point(s) already finished; not run again")

    def run_point(point: runfolder.SweepPoint) -> pipeline.RunResult:
        if point.run_dir is None:
            run_dir = pipeline.start_run(
                str(Path(folder) / point.params), record.stages, outputs=outputs, name=point.name
            )
            update(point, run_dir=str(run_dir))
            out(f"[{point.name}] run folder: {run_dir}")
        else:
            out(f"[{point.name}] resuming {point.run_dir}")
        update(point, status=RUNNING, message="")
        return pipeline.continue_run(Path(str(point.run_dir)), out)

    limit, not_before = slots, 0.0
    running: dict[Future[pipeline.RunResult], runfolder.SweepPoint] = {}
    pool = ThreadPoolExecutor(max_workers=slots) if slots > 1 else _Inline()
    with pipeline.outputs_env(outputs):
        try:
            while queue or running:
                while queue and len(running) < limit and time.monotonic() >= not_before:
                    point = queue.pop(0)
                    running[pool.submit(run_point, point)] = point
                if not running:
                    time.sleep(max(0.0, not_before - time.monotonic()))
                    continue
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in finished:
                    point = running.pop(future)
                    result = future.result()  # bugs propagate; a stage failure is a result
                    quota = bool(QUOTA_REFUSAL.search(result.message or "")) and not result.ok
                    if result.ok:
                        update(point, status=FINISHED, message="")
                    elif quota and point.quota_waits < MAX_QUOTA_WAITS:
                        waits = point.quota_waits + 1
                        update(
                            point,
                            status=runfolder.WAITING,
                            message=result.message,
                            quota_waits=waits,
                        )
                        out(f"[{point.name}] tuning quota full (HTTP 429): waiting for a slot")
                        queue.insert(0, point)
                    else:
                        update(point, status=FAILED, message=result.message)
                    # The quota holds what runs now: wait for one of them (or a while).
                    limit = max(1, len(running)) if quota else slots
                    if quota and not running:
                        not_before = time.monotonic() + quota_wait_s
        except BaseException:
            for point in record.points:
                if point.status == RUNNING:
                    update(point, status=INTERRUPTED)
            update(status=INTERRUPTED)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    failed = [p for p in record.points if p.status != FINISHED]
    update(status=FAILED if failed else FINISHED, finished=None if failed else runfolder.now())
    out(f"[sweep] {len(record.points) - len(failed)} of {len(record.points)} point(s) finished")
    return record
