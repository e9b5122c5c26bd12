"""Batch runs: the numbered notebooks executed with papermill into one run folder per params file,
each stage's status in its ``pipeline.json``; a finished run folder is never touched again, and
``resume`` continues an unfinished one from its first stage not ``ok`` (docs/notebooks.md)."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from routerlib import config, display, paths, runfolder
from routerlib.config import RunConfig, cloud_problems, dump_config, load_config
from routerlib.errors import InputError, RouterlibError, lines_from_notebook
from routerlib.metric_names import DECIDING_METRICS
from routerlib.metrics import failed_rows_line, gate_line
from routerlib.progress import WholeLines
from routerlib.report import COMPARISON_STAGE, scan_text
from routerlib.runfolder import FAILED, FINISHED, INTERRUPTED, RUNNING, PipelineRecord, StageRecord

DEFAULT_STAGES: tuple[str, ...] = ("01", "02", "03", "04")
#: ``--with all``: every finished run under the outputs root joins the comparison.
ALL_RUNS = "all"
#: ipykernel logs only CRITICAL lines (else each kernel warns it runs over TCP unencrypted, on
#: 127.0.0.1 only, and at shutdown of a KeyboardInterrupt); a failing cell still fails its stage.
KERNEL_ARGUMENTS = ("--IPKernelApp.log_level=CRITICAL",)

Out = Callable[[str], None]


@dataclass
class RunResult:
    """What happened to one params file: its run folder, final status and one message line."""

    params_file: str
    run_dir: Path
    status: str  # "finished" | "failed"
    message: str = ""
    stages: list[StageRecord] = field(default_factory=list)
    #: The failing routerlib error's lines before its summary (``file:line: field: …``).
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every stage finished."""
        return self.status == FINISHED


def require_notebooks() -> Path:
    """The project's notebooks/ folder; outside a clone, one InputError line saying so."""
    folder = paths.project_root() / "notebooks"
    if not any(folder.glob("[0-9][0-9]_*.ipynb")):
        raise InputError(
            f"routerlib run executes the project's notebooks, and there are none under {Path.cwd()}: "
            "run it inside a clone of the routerlib repository (or set ROUTERLIB_ROOT to one)"
        )
    return folder


def find_notebook(stage: str) -> Path:
    """``notebooks/<stage>_*.ipynb`` under the project root; InputError when none or several."""
    folder = paths.project_root() / "notebooks"
    found = sorted(p for p in folder.glob(f"{stage}_*.ipynb") if not p.name.startswith("."))
    if not found:
        raise InputError(f"stage {stage}: no notebook {folder}/{stage}_*.ipynb")
    if len(found) > 1:
        raise InputError(
            f"stage {stage}: several notebooks match ({', '.join(p.name for p in found)})"
        )
    return found[0]


def check_stages(stages: str | Sequence[str] | None, notebooks: bool = False) -> list[str]:
    """``--stages`` (comma-separated text or a list; default 01,02,03,04) as a list: at least
    one, none twice, and with ``notebooks`` each a notebook of the project."""
    stages = DEFAULT_STAGES if stages is None else stages
    items = stages.split(",") if isinstance(stages, str) else stages
    chosen = [str(s).strip() for s in items if str(s).strip()]
    if not chosen:
        raise InputError("--stages: name at least one stage (e.g. 01,02,03,04)")
    if len(set(chosen)) != len(chosen):
        raise InputError(f"--stages: a stage is listed twice ({','.join(chosen)})")
    for stage in chosen if notebooks else ():
        find_notebook(stage)
    return chosen


def find_unfinished_run(params_name: str, outputs: Path | None = None) -> Path | None:
    """The newest run folder of ``params_name`` under the outputs root that is not finished."""
    candidates = []
    for folder in runfolder.find_folders(runfolder.PIPELINE_FILE, root=outputs):
        try:
            state = runfolder.read_pipeline(folder)
        except runfolder.RunFolderError:  # not a pipeline state: not a run to resume
            continue
        if state.params_name == params_name and state.status != FINISHED:
            candidates.append((state.created or "", folder.name, folder))
    return max(candidates)[2] if candidates else None


def _failure(notebook: Path, exc: Exception) -> tuple[str, list[str]]:
    """One line naming the notebook, the failing cell (in the source notebook) and the error,
    and a routerlib error's problem lines (``file:line: field: …``), read back from the executed
    notebook when raised there."""
    from papermill.exceptions import PapermillExecutionError

    name = f"notebooks/{notebook.name}"
    if not isinstance(exc, PapermillExecutionError):
        problems = exc.lines()[:-1] if isinstance(exc, RouterlibError) else []
        return f"{name}: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}", problems
    # papermill inserted its injected-parameters cell right after the parameters cell (at the
    # top when there is none); count cells of the notebook as written.
    try:
        cells = json.loads(notebook.read_text(encoding="utf-8")).get("cells", [])
    except (OSError, json.JSONDecodeError):
        cells = []
    tags = [c.get("metadata", {}).get("tags", []) for c in cells]
    after = next((i for i, t in enumerate(tags) if "parameters" in t), -1)
    index = exc.cell_index - (exc.cell_index > after)
    first = next((ln.strip() for ln in str(exc.source).splitlines() if ln.strip()), "")
    where = f"cell {index + 1} (In [{exc.exec_count}]" + (f": {first[:60]!r})" if first else ")")
    line = f"{name}: {where} raised {exc.ename}: {' '.join(str(exc.evalue).split())[:200]}"
    return line, (lines_from_notebook(exc.traceback) or [])[:-1]  # the summary ends ``line``


def notebook_parameters(
    params_file: Path, run_dir: Path, runs: Sequence[Path] | None = None
) -> dict[str, Any]:
    """The only papermill parameters a stage gets: ``params_file`` and ``run_dir``, plus ``runs``
    (run folders) for the comparison notebook; never credentials (AssertionError)."""
    values = [str(Path(p).resolve()) for p in (params_file, run_dir, *(runs or []))]
    assert not any(scan_text(v) for v in values), "papermill parameters never carry credentials"
    parameters: dict[str, Any] = {"params_file": values[0], "run_dir": values[1]}
    return parameters if runs is None else {**parameters, "runs": values[2:]}


@contextlib.contextmanager
def _env(name: str, value: str | None) -> Iterator[None]:
    """Set the environment variable ``name`` to ``value`` for the block (None: leave it alone)."""
    if value is None:
        yield
        return
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def outputs_env(outputs: Path | None) -> contextlib.AbstractContextManager[None]:
    """Point ROUTERLIB_OUTPUTS at ``outputs`` (when given) for the block, so kernels agree."""
    return _env("ROUTERLIB_OUTPUTS", None if outputs is None else str(outputs))


def _execute_stage(
    notebook: Path, run_dir: Path, log: IO[str], runs: Sequence[Path] | None
) -> None:
    """Run one notebook, its output written to ``log`` as whole lines (a bar's final state)."""
    import papermill as pm

    if not notebook.is_file():
        raise InputError(f"notebook {notebook} is missing")
    stdout, stderr = WholeLines(log), WholeLines(log)
    output = run_dir / runfolder.NOTEBOOKS_DIR / notebook.name
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        for attempt in range(1, KERNEL_START_ATTEMPTS + 1):
            try:
                pm.execute_notebook(
                    str(notebook),
                    str(output),
                    parameters=notebook_parameters(run_dir / runfolder.PARAMS_FILE, run_dir, runs),
                    kernel_name="python3",
                    cwd=str(paths.project_root()),
                    progress_bar=False,
                    extra_arguments=list(KERNEL_ARGUMENTS),
                    stdout_file=stdout,
                    stderr_file=stderr,
                )
                return
            except Exception as exc:  # noqa: BLE001 - only a kernel that never started is retried
                if attempt == KERNEL_START_ATTEMPTS or not kernel_did_not_start(exc):
                    raise
                log.write(f"{notebook.name}: the kernel did not start ({exc}); starting it again\n")
    finally:
        stdout.finish()
        stderr.finish()


#: Kernels started at the same moment (runs side by side) can race for a port; a kernel that
#: never started ran no cell, so its stage is started again, this many times in all.
KERNEL_START_ATTEMPTS = 2
KERNEL_START_FAILURES = ("Kernel didn't respond", "Kernel died before replying", "Address already")


def kernel_did_not_start(exc: BaseException) -> bool:
    """Whether ``exc`` says the notebook's kernel never started (no cell ran; a cell's own
    error is never this, whatever it says)."""
    from papermill.exceptions import PapermillExecutionError

    if isinstance(exc, InputError | PapermillExecutionError):
        return False
    return any(text in str(exc) for text in KERNEL_START_FAILURES)


def start_run(
    params_file: str,
    stages: Sequence[str] = DEFAULT_STAGES,
    *,
    outputs: Path | None = None,
    name: str | None = None,
) -> Path:
    """A new run folder for ``params_file`` with its params.yaml and every stage pending (run it
    with :func:`continue_run`); named after ``name``, else the params file."""
    config = load_config(params_file)
    stages = check_stages(stages)
    notebooks = [find_notebook(stage).name for stage in stages]
    label = name or Path(params_file).stem
    run_dir = paths.new_run_dir(label, root=outputs)
    dump_config(config, run_dir / runfolder.PARAMS_FILE)
    state = PipelineRecord(
        params_file=str(paths.resolve(params_file)),
        params_name=label,
        run_dir=str(run_dir),
        stages=[StageRecord(stage=s, notebook=nb) for s, nb in zip(stages, notebooks, strict=True)],
        status=RUNNING,
        created=runfolder.now(),
    )
    runfolder.write_record(run_dir / runfolder.PIPELINE_FILE, state)
    return run_dir


def _refuse_finished(run_dir: Path, state: PipelineRecord) -> None:
    if state.status == FINISHED:
        raise InputError(f"{run_dir}: run is finished and is never edited again; start a new run")


def continue_run(run_dir: Path, out: Out = print, runs: Sequence[Path] | None = None) -> RunResult:
    """Execute every stage of ``run_dir`` that is not ``ok`` yet, in order, and stop at the first
    failure (a finished run is refused); ``runs``: the comparison notebook's run folders."""
    run_dir = Path(run_dir)
    state = runfolder.read_pipeline(run_dir)
    _refuse_finished(run_dir, state)
    label = state.params_name or run_dir.name

    def save(overall: runfolder.RunStatus, entry: StageRecord | None = None, **fields: Any) -> None:
        """Set the run's status (and a stage's ``fields``) and write pipeline.json."""
        state.status = overall
        for key, value in fields.items():
            setattr(entry, key, value)
        runfolder.write_record(run_dir / runfolder.PIPELINE_FILE, state)

    save(RUNNING)
    params_file = str(state.params_file)
    with open(run_dir / runfolder.LOG_FILE, "a", encoding="utf-8") as log:
        for entry in [e for e in state.stages if e.status != "ok"]:
            notebook = paths.project_root() / "notebooks" / entry.notebook
            name = notebook.stem
            save(RUNNING, entry, status=RUNNING, started=runfolder.now(), error=None, seconds=None)
            log.write(f"\n==== {runfolder.now()} {name} ====\n")
            log.flush()
            start = time.perf_counter()
            try:
                _execute_stage(notebook, run_dir, log, runs)
            except KeyboardInterrupt:
                seconds = round(time.perf_counter() - start, 3)
                save(INTERRUPTED, entry, status=INTERRUPTED, seconds=seconds)
                log.write(f"==== {name} interrupted\n")
                raise
            except Exception as exc:  # a stage failure never stops the other runs
                seconds = time.perf_counter() - start
                line, problems = _failure(notebook, exc)
                save(FAILED, entry, status=FAILED, seconds=round(seconds, 3), error=line)
                log.writelines(f"{problem}\n" for problem in problems)
                log.write(f"==== {name} FAILED ({seconds:.1f} s): {line}\n")
                executed = run_dir / runfolder.NOTEBOOKS_DIR / notebook.name
                out(f"[{label}] {name} ... FAILED ({seconds:.1f} s)")
                for text in problems:  # as the CLI prints them: one line each, no prefix
                    out(text)
                out(f"[{label}] {line}")
                out(f"[{label}] executed notebook: {executed}")
                return RunResult(params_file, run_dir, FAILED, line, state.stages, problems)
            seconds = time.perf_counter() - start
            save(RUNNING, entry, status="ok", seconds=round(seconds, 3))
            log.write(f"==== {name} ok ({seconds:.1f} s)\n")
            out(f"[{label}] {name} ... ok ({seconds:.1f} s)")
        state.finished = runfolder.now()
        save(FINISHED)
        log.write(f"==== {runfolder.now()} run finished\n")
    out(f"[{label}] finished: {run_dir}")
    return RunResult(params_file, run_dir, FINISHED, "", state.stages)


def _resume_target(target: str, outputs: Path | None, stages: Sequence[str] | None) -> Path:
    """A run folder given directly, or the newest unfinished run of a params file's name."""
    path = paths.resolve(target)
    run_dir = path if path.is_dir() else find_unfinished_run(Path(target).stem, outputs)
    if run_dir is None:
        root = outputs or paths.outputs_root()
        raise InputError(f"{target}: no unfinished run of {Path(target).stem!r} under {root}")
    state = runfolder.read_pipeline(run_dir)
    _refuse_finished(run_dir, state)
    if not (run_dir / runfolder.PARAMS_FILE).is_file():
        raise InputError(f"{run_dir}: {runfolder.PARAMS_FILE} is missing; cannot resume")
    edited = target if not path.is_dir() else str(state.params_file or "")
    changes = params_changes(edited, run_dir) if edited and paths.resolve(edited).is_file() else []
    if changes:
        raise InputError(
            f"{edited} was edited after {run_dir.name} started ({len(changes)} key(s) "
            f"above, started -> now); a resumed run keeps its own {runfolder.PARAMS_FILE}, so "
            f"the edit would not apply. Start a new run with the edited file: `routerlib run "
            f"{edited}` (or undo the edit to resume)",
            changes,
        )
    recorded = [e.stage for e in state.stages]
    if stages is not None and tuple(stages) != DEFAULT_STAGES and list(stages) != recorded:
        raise InputError(
            f"{run_dir}: --stages {','.join(stages)} differs from the run's own stages "
            f"{','.join(recorded)}; a resumed run continues its own stages"
        )
    return run_dir


def params_changes(params_file: str, run_dir: Path) -> list[str]:
    """``file: key: old -> new`` for each setting ``params_file`` now gives differently from the
    params.yaml ``run_dir`` started with."""
    frozen = load_config(run_dir / runfolder.PARAMS_FILE).model_dump()
    try:
        current = load_config(params_file).model_dump()
    except InputError:
        defaults = {key: config.run_default(key) for key in RunConfig.model_fields}
        current = {**defaults, **config.read_params_file(params_file)}
    return [
        f"{params_file}: {key}: {frozen.get(key)!r} -> {current.get(key)!r}"
        for key in RunConfig.model_fields
        if current.get(key) != frozen.get(key)
    ]


def side_by_side(backends: Sequence[str], requested: int | None = None) -> int:
    """How many runs go at once: ``requested`` when given (at most one per run); else local runs
    up to the core count, each kernel with its share of the cores (the tiny model gains little
    from a second thread; docs/development.md measures it), and any other run alone."""
    if requested is not None:
        return max(1, min(requested, len(backends)))
    if backends and all(backend == "local" for backend in backends):
        return max(1, min(len(backends), os.cpu_count() or 1))
    return 1


def _run_side_by_side(
    jobs: Sequence[Callable[[], RunResult]], at_once: int, out: Out, run_dirs: dict[int, Path]
) -> list[RunResult]:
    """Run ``jobs`` ``at_once`` at a time, each on a daemon thread; results in job order. Ctrl-C
    reaches only this thread (kernels run in a session of their own), so here every run still
    going is recorded as interrupted and the interrupt goes on at once: the threads end with the
    process, and so do their kernels, which watch it. ``run_dirs``: started jobs' run folders."""
    results: list[RunResult | None] = [None] * len(jobs)
    failures: list[BaseException] = []
    slots = threading.BoundedSemaphore(at_once)

    def worker(index: int, job: Callable[[], RunResult]) -> None:
        with slots:
            try:
                results[index] = None if failures else job()
            except BaseException as exc:  # a bug (a stage failure is a result)
                failures.append(exc)

    threads = [threading.Thread(target=worker, args=job, daemon=True) for job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    try:
        while any(thread.is_alive() for thread in threads):
            for thread in threads:
                thread.join(timeout=0.5)
    except KeyboardInterrupt:
        for index, run_dir in sorted(run_dirs.items()):
            if results[index] is None:
                state = runfolder.read_pipeline(run_dir)
                state.status = INTERRUPTED
                for entry in state.stages:
                    if entry.status == RUNNING:
                        entry.status = INTERRUPTED
                runfolder.write_record(run_dir / runfolder.PIPELINE_FILE, state)
                out(f"interrupted: {run_dir} (`routerlib run --resume {run_dir}` continues it)")
        raise
    if failures:
        raise failures[0]
    return [result for result in results if result is not None]


def run_pipeline(
    params_files: list[str],
    *,
    stages: Sequence[str] | None = DEFAULT_STAGES,
    outputs: Path | None = None,
    resume: bool = False,
    out: Out = print,
    parallel: int | None = None,
) -> list[RunResult]:
    """Run the notebook chain for each params file into its own run folder (with ``resume``:
    continue each run folder, or a params file's newest unfinished run); one result each.
    Every item is checked before any notebook runs; a failing stage stops its own run only.
    ``parallel``: runs at once (default :func:`side_by_side`)."""
    if not params_files:
        raise InputError("name at least one params file (e.g. params/local.yaml)")
    require_notebooks()
    chosen = check_stages(stages)
    plans: list[tuple[str, Path | None]] = []
    backends: list[str] = []
    problems: list[str] = []
    for item in params_files:
        try:
            run_dir = _resume_target(item, outputs, stages) if resume else None
            params = run_dir / runfolder.PARAMS_FILE if run_dir else item
            loaded = load_config(params)
            backends.append(loaded.backend)
            problems.extend(cloud_problems(loaded, str(params)))
            for stage in chosen if not resume else ():
                find_notebook(stage)
            plans.append((item, run_dir))
        except InputError as exc:
            if len(params_files) == 1 and not problems:
                raise  # one params file: its own error, summary last
            problems.extend(exc.lines())
    if problems:
        raise InputError.of(
            problems, f"{len(problems)} problem(s) in the arguments; nothing was run"
        )

    run_dirs: dict[int, Path] = {}

    def run_one(index: int, item: str, existing: Path | None) -> RunResult:
        run_dirs[index] = run_dir = existing or start_run(item, chosen, outputs=outputs)
        state = runfolder.read_pipeline(run_dir)
        first = next((e.stage for e in state.stages if e.status != "ok"), "(none left)")
        where = (
            f"run folder: {run_dir}"
            if existing is None
            else f"resuming {run_dir} from stage {first}"
        )
        out(f"[{state.params_name or run_dir.name}] {where}")
        return continue_run(run_dir, out)

    jobs = [functools.partial(run_one, i, *plan) for i, plan in enumerate(plans)]
    at_once = side_by_side(backends, parallel)
    # each kernel's torch threads: its share of the cores (a value the user set is kept)
    threads = str(max(1, (os.cpu_count() or 1) // at_once))
    keep = at_once <= 1 or os.environ.get("OMP_NUM_THREADS")
    with outputs_env(outputs), _env("OMP_NUM_THREADS", None if keep else threads):
        if at_once == 1:
            return [job() for job in jobs]
        out(f"{len(jobs)} runs, {at_once} at a time")
        return _run_side_by_side(jobs, at_once, out, run_dirs)


def run_headline(result: RunResult) -> list[str]:
    """What a run came to, for the end of ``routerlib run``: a failure's lines, or the deciding
    metrics, the gate, failed batch rows and where metrics.json and the report are."""
    run_dir = Path(result.run_dir)
    if not result.ok:
        return [f"FAILED {run_dir}: {result.message}", *result.problems]
    lines = [f"finished {run_dir}"]
    if not runfolder.has_evaluation(run_dir):
        stages = ",".join(s.stage for s in result.stages) or "-"
        return [*lines, f"  no evaluation in this run (stages {stages}); 04_deploy_eval scores it"]
    try:
        evaluation = runfolder.read_metrics(run_dir).evaluation or runfolder.EvaluationInfo()
        report = runfolder.read_report(run_dir / evaluation.report)
    except runfolder.RunFolderError as exc:
        return [*lines, f"  {exc}"]
    strict = (report.get("strict") or {}).get("overall", {})
    rows = (report.get("config") or {}).get("total_samples")
    figures = ", ".join(f"{m} {display.fmt(strict.get(m))}" for m in DECIDING_METRICS)
    lines.append(f"  {figures} (strict, {rows} test rows, {evaluation.decoding} decoding)")
    lines.append(f"  {gate_line(report.get('threshold_results'))}")
    if failed := failed_rows_line(report):
        lines.append(f"  batch: {failed}")
    lines.append(f"  metrics: {run_dir / runfolder.METRICS_FILE}")
    lines.append(f"  report: {run_dir / evaluation.report} (HTML of every run: `routerlib report`)")
    return lines


def comparison_runs(
    made: Sequence[Path],
    extra: Sequence[str] = (),
    outputs: Path | None = None,
) -> list[Path]:
    """The run folders a comparison shows, each once: the runs just made that finished an
    evaluation, then each ``extra`` one (a path, a folder name under the outputs root, or
    ``all``); InputError naming one that is no finished run folder."""
    root = outputs or paths.outputs_root()
    chosen = [Path(p) for p in made if runfolder.has_evaluation(p)]
    problems = []
    for item in extra:
        if item == ALL_RUNS:
            chosen.extend(runfolder.find_folders(runfolder.METRICS_FILE, root=root))
            continue
        given = Path(item).expanduser()
        candidates = [given] if given.is_absolute() else [Path.cwd() / given, root / given]
        found = next((c for c in candidates if runfolder.has_evaluation(c)), None)
        if found is None:
            problems.append(
                f"--with {item}: not a finished run folder (no {runfolder.METRICS_FILE})"
            )
        else:
            chosen.append(found)
    if problems:
        raise InputError.of(problems, f"{len(problems)} --with run(s) are not finished run folders")
    return list(dict.fromkeys(p.resolve() for p in chosen))


def run_comparison(
    params_file: str,
    *,
    outputs: Path | None = None,
    out: Out = print,
    runs: Sequence[Path] | None = None,
) -> RunResult:
    """Execute notebook 05 into its own ``comparison-<time>`` run folder over ``runs`` (default:
    every finished run under the outputs root), ``params_file`` giving its defaults."""
    require_notebooks()
    with outputs_env(outputs):
        run_dir = start_run(params_file, [COMPARISON_STAGE], outputs=outputs, name="comparison")
        out(f"[comparison] run folder: {run_dir}")
        return continue_run(run_dir, out, runs)
