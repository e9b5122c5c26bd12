"""Batch runs: execute the numbered notebook chain with papermill into one run folder per params file.

Each run folder records its stages in ``pipeline.json`` (written atomically after every change):
``{"params_file", "params_name", "run_dir", "stages": [{"stage", "notebook", "status", "seconds",
"error"}], "status": "running" | "failed" | "interrupted" | "finished", "created", "finished"}``.
A stage status is ``pending``, ``running``, ``ok``, ``failed`` or ``interrupted`` (Ctrl-C). A
finished run folder is never touched again; ``resume`` continues an unfinished one from its first
stage that is not ``ok``, with the run's own params.yaml and stage list.

Each notebook gets exactly two papermill parameters: ``params_file`` (the run's resolved
params.yaml, so a resumed run uses the params it started with) and ``run_dir``.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from routerlib import paths, runfolder
from routerlib.atomic import write_json
from routerlib.config import dump_config, load_config
from routerlib.errors import InputError
from routerlib.progress import WholeLines
from routerlib.report import scan_text

DEFAULT_STAGES: tuple[str, ...] = ("01", "02", "03", "04")
PIPELINE_FILE = runfolder.PIPELINE_FILE
#: The only parameters papermill ever passes to a notebook (never credentials); ``runs`` (the
#: run folders to compare) goes to the comparison notebook only.
NOTEBOOK_PARAMETERS = frozenset({"params_file", "run_dir"})
COMPARISON_PARAMETERS = NOTEBOOK_PARAMETERS | {"runs"}

#: Arguments for every kernel papermill starts: ipykernel's own log (the kernel process's stderr,
#: which is the console's) keeps only CRITICAL lines. Below that it printed a "Kernel is running
#: over TCP without encryption" warning once per notebook (the kernel listens on 127.0.0.1 only)
#: and, now and then, "ERROR | KeyboardInterrupt caught in kernel" after a notebook had finished:
#: jupyter_client interrupts every kernel (SIGINT) before asking it to shut down. A failing cell
#: still fails the stage (papermill raises), and the notebook's own output is not affected.
KERNEL_ARGUMENTS = ("--IPKernelApp.log_level=CRITICAL",)

STATUS_RUNNING = "running"
STATUS_FAILED = "failed"
STATUS_FINISHED = "finished"


@dataclass
class RunResult:
    """What happened to one params file: its run folder, final status and one message line."""

    params_file: str
    run_dir: Path
    status: str  # "finished" | "failed"
    message: str = ""
    stages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every stage finished."""
        return self.status == STATUS_FINISHED


def require_notebooks() -> Path:
    """The project's notebooks/ folder; outside a clone, one InputError line saying so."""
    folder = paths.project_root() / "notebooks"
    if not any(folder.glob("[0-9][0-9]_*.ipynb")):
        raise InputError(
            f"routerlib run executes the project's notebooks, and there are none under {Path.cwd()}: "
            "run it inside a clone of the routerlib repository (or set ROUTERLIB_ROOT to one)"
        )
    return folder


def find_notebook(stage: str, root: Path | None = None) -> Path:
    """``notebooks/<stage>_*.ipynb`` under the project root; InputError when none or several."""
    folder = (root or paths.project_root()) / "notebooks"
    found = sorted(p for p in folder.glob(f"{stage}_*.ipynb") if not p.name.startswith("."))
    if not found:
        raise InputError(f"stage {stage}: no notebook {folder}/{stage}_*.ipynb")
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise InputError(f"stage {stage}: several notebooks match ({names})")
    return found[0]


def read_state(run_dir: Path) -> dict[str, Any]:
    """The run's pipeline.json (checked against ``runfolder.PipelineRecord``); InputError when it
    is missing, unreadable or not a pipeline state."""
    file = Path(run_dir) / PIPELINE_FILE
    if not file.is_file():
        raise InputError(f"{file}: not a pipeline run folder (no {PIPELINE_FILE})")
    state: dict[str, Any] = runfolder.read_pipeline(run_dir).model_dump(exclude_unset=True)
    return state


def _save_state(run_dir: Path, state: dict[str, Any]) -> None:
    """Write pipeline.json (checked against ``runfolder.PipelineRecord`` first)."""
    file = run_dir / PIPELINE_FILE
    runfolder.validate(state, runfolder.PipelineRecord, str(file))
    write_json(file, state)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _params_name(params_file: str | os.PathLike[str]) -> str:
    return Path(params_file).stem


def find_unfinished_run(params_name: str, outputs: Path | None = None) -> Path | None:
    """The newest run folder of ``params_name`` under the outputs root that is not finished."""
    candidates = []
    for folder in runfolder.find_folders(PIPELINE_FILE, root=outputs):
        try:
            state = runfolder.read_pipeline(folder)
        except runfolder.RunFolderError:  # not a pipeline state: not a run to resume
            continue
        if state.params_name == params_name and state.status != STATUS_FINISHED:
            candidates.append((state.created or "", folder.name, folder))
    return max(candidates)[2] if candidates else None


def _failure_line(notebook: str, exc: Exception, params_cell: int | None) -> str:
    """One line naming the notebook, the failing cell (in the source notebook) and the error."""
    from papermill.exceptions import PapermillExecutionError

    if isinstance(exc, PapermillExecutionError):
        index = exc.cell_index
        # papermill inserted its injected-parameters cell right after the parameters cell (at the
        # top when there is none); count cells of the notebook as written.
        after = params_cell if params_cell is not None else -1
        if index > after:
            index -= 1
        first = next((ln.strip() for ln in str(exc.source).splitlines() if ln.strip()), "")
        where = f"cell {index + 1} (In [{exc.exec_count}]"
        where += f": {first[:60]!r})" if first else ")"
        evalue = " ".join(str(exc.evalue).split())[:200]
        return f"{notebook}: {where} raised {exc.ename}: {evalue}"
    text = " ".join(str(exc).split())[:200]
    return f"{notebook}: {type(exc).__name__}: {text}"


def _parameters_cell_index(notebook: Path) -> int | None:
    try:
        nb = json.loads(notebook.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    for index, cell in enumerate(nb.get("cells", [])):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            return index
    return None


def notebook_parameters(
    params_file: Path, run_dir: Path, runs: Sequence[Path] | None = None
) -> dict[str, Any]:
    """The papermill parameters for one stage: exactly ``params_file`` and ``run_dir``, plus
    ``runs`` (run folders) for the comparison notebook."""
    parameters: dict[str, Any] = {
        "params_file": str(Path(params_file).resolve()),
        "run_dir": str(Path(run_dir).resolve()),
    }
    if runs is not None:
        parameters["runs"] = [str(Path(r).resolve()) for r in runs]
    allowed = COMPARISON_PARAMETERS if runs is not None else NOTEBOOK_PARAMETERS
    assert set(parameters) == allowed, "papermill receives only params_file and run_dir"

    values = [parameters["params_file"], parameters["run_dir"], *parameters.get("runs", [])]
    leaks = [hit for value in values for hit in scan_text(value)]
    assert not leaks, "papermill parameters must never carry credentials"
    return parameters


@contextlib.contextmanager
def _outputs_env(outputs: Path | None) -> Iterator[None]:
    """Point ROUTERLIB_OUTPUTS at ``outputs`` while kernels start, so notebooks agree with us."""
    if outputs is None:
        yield
        return
    old = os.environ.get("ROUTERLIB_OUTPUTS")
    os.environ["ROUTERLIB_OUTPUTS"] = str(outputs)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("ROUTERLIB_OUTPUTS", None)
        else:
            os.environ["ROUTERLIB_OUTPUTS"] = old


def _execute_stage(
    notebook: Path, run_dir: Path, params_file: Path, log: IO[str], runs: Sequence[Path] | None
) -> None:
    """Run one notebook; its stdout and stderr go to ``log`` as whole lines (a progress bar's
    carriage-return redraws leave only the state each line ends with)."""
    import papermill as pm

    stdout, stderr = WholeLines(log), WholeLines(log)
    output = run_dir / runfolder.NOTEBOOKS_DIR / notebook.name
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        pm.execute_notebook(
            str(notebook),
            str(output),
            parameters=notebook_parameters(params_file, run_dir, runs),
            kernel_name="python3",
            cwd=str(paths.project_root()),
            progress_bar=False,
            extra_arguments=list(KERNEL_ARGUMENTS),
            stdout_file=stdout,
            stderr_file=stderr,
        )
    finally:
        stdout.finish()
        stderr.finish()


def _run_one(
    run_dir: Path,
    state: dict[str, Any],
    label: str,
    out: Callable[[str], None],
    runs: Sequence[Path] | None = None,
) -> RunResult:
    """Execute every stage of ``state`` that is not ``ok`` yet, in order; stop at the first failure."""
    root = paths.project_root()
    params_copy = run_dir / runfolder.PARAMS_FILE
    state["status"] = STATUS_RUNNING
    _save_state(run_dir, state)
    with open(run_dir / runfolder.LOG_FILE, "a", encoding="utf-8") as log:
        for entry in state["stages"]:
            if entry["status"] == "ok":
                continue
            notebook = root / "notebooks" / entry["notebook"]
            name = notebook.stem
            entry.update(status=STATUS_RUNNING, started=_now(), error=None, seconds=None)
            _save_state(run_dir, state)
            log.write(f"\n==== {_now()} {name} ====\n")
            log.flush()
            start = time.perf_counter()
            try:
                if not notebook.is_file():
                    raise InputError(f"notebook {notebook} is missing")
                _execute_stage(notebook, run_dir, params_copy, log, runs)
            except KeyboardInterrupt:
                entry.update(status="interrupted", seconds=round(time.perf_counter() - start, 3))
                state["status"] = "interrupted"
                _save_state(run_dir, state)
                log.write(f"==== {name} interrupted\n")
                raise
            except Exception as exc:  # a stage failure never stops the other runs
                seconds = time.perf_counter() - start
                line = _failure_line(
                    f"notebooks/{notebook.name}", exc, _parameters_cell_index(notebook)
                )
                entry.update(status=STATUS_FAILED, seconds=round(seconds, 3), error=line)
                state["status"] = STATUS_FAILED
                _save_state(run_dir, state)
                log.write(f"==== {name} FAILED ({seconds:.1f} s): {line}\n")
                out(f"[{label}] {name} ... FAILED ({seconds:.1f} s)")
                out(f"[{label}] {line}")
                out(
                    f"[{label}] executed notebook: {run_dir / runfolder.NOTEBOOKS_DIR / notebook.name}"
                )
                return RunResult(
                    state["params_file"], run_dir, STATUS_FAILED, line, state["stages"]
                )
            seconds = time.perf_counter() - start
            entry.update(status="ok", seconds=round(seconds, 3))
            _save_state(run_dir, state)
            log.write(f"==== {name} ok ({seconds:.1f} s)\n")
            out(f"[{label}] {name} ... ok ({seconds:.1f} s)")
        state["status"] = STATUS_FINISHED
        state["finished"] = _now()
        _save_state(run_dir, state)
        log.write(f"==== {_now()} run finished\n")
    out(f"[{label}] finished: {run_dir}")
    return RunResult(state["params_file"], run_dir, STATUS_FINISHED, "", state["stages"])


def _new_run(
    params_file: str, stages: Sequence[str], outputs: Path | None, name: str | None = None
) -> tuple[Path, dict]:

    config = load_config(params_file)
    notebooks = [find_notebook(stage).name for stage in stages]
    label = name or _params_name(params_file)
    run_dir = paths.new_run_dir(label, root=outputs)
    dump_config(config, run_dir / runfolder.PARAMS_FILE)
    state = {
        "params_file": str(paths.resolve(params_file)),
        "params_name": label,
        "run_dir": str(run_dir),
        "stages": [
            {"stage": s, "notebook": nb, "status": "pending", "seconds": None, "error": None}
            for s, nb in zip(stages, notebooks, strict=True)
        ],
        "status": STATUS_RUNNING,
        "created": _now(),
        "finished": None,
    }
    _save_state(run_dir, state)
    return run_dir, state


def _resume_target(target: str, outputs: Path | None, stages: Sequence[str] | None) -> Path:
    """A run folder given directly, or the newest unfinished run of a params file's name."""
    path = paths.resolve(target)
    if path.is_dir():
        run_dir = path
    else:
        found = find_unfinished_run(_params_name(target), outputs)
        if found is None:
            root = outputs or paths.outputs_root()
            raise InputError(
                f"{target}: no unfinished run of {_params_name(target)!r} under {root}"
            )
        run_dir = found
    state = read_state(run_dir)
    if state.get("status") == STATUS_FINISHED:
        raise InputError(f"{run_dir}: run is finished and is never edited again; start a new run")
    if not (run_dir / runfolder.PARAMS_FILE).is_file():
        raise InputError(f"{run_dir}: {runfolder.PARAMS_FILE} is missing; cannot resume")
    recorded = [str(e.get("stage")) for e in state["stages"]]
    if stages is not None and tuple(stages) != DEFAULT_STAGES and list(stages) != recorded:
        raise InputError(
            f"{run_dir}: --stages {','.join(stages)} differs from the run's own stages "
            f"{','.join(recorded)}; a resumed run continues its own stages"
        )
    return run_dir


def _check_stages(stages: Sequence[str]) -> list[str]:
    stages = [str(s).strip() for s in stages if str(s).strip()]
    if not stages:
        raise InputError("--stages: name at least one stage (e.g. 01,02,03,04)")
    if len(set(stages)) != len(stages):
        raise InputError(f"--stages: a stage is listed twice ({','.join(stages)})")
    return stages


def run_pipeline(
    params_files: list[str],
    *,
    stages: Sequence[str] | None = DEFAULT_STAGES,
    outputs: str | os.PathLike[str] | None = None,
    resume: bool = False,
    out: Callable[[str], None] = print,
    name: str | None = None,
) -> list[RunResult]:
    """Run the notebook chain for each params file into its own run folder; return one result each.

    Every params file (and, with ``resume``, every run folder or params name) is checked before any
    notebook runs, so a typo fails at once. A failing stage stops its own run only. With ``resume``,
    each item is a run folder, or a params file whose newest unfinished run is continued from its
    first stage that is not ``ok``; a finished run is refused. ``name`` names new run folders
    (default: the params file's stem).
    """
    if not params_files:
        raise InputError("name at least one params file (e.g. params/local.yaml)")
    require_notebooks()
    outputs_dir = paths.resolve(outputs) if outputs else None
    chosen = _check_stages(stages if stages is not None else DEFAULT_STAGES)
    # Check everything first: bad input fails before hours of work start.
    plans: list[tuple[str, Path | None]] = []
    problems: list[str] = []
    for item in params_files:
        try:
            if resume:
                plans.append((item, _resume_target(item, outputs_dir, stages)))
            else:
                load_config(item)
                for stage in chosen:
                    find_notebook(stage)
                plans.append((item, None))
        except InputError as exc:
            problems.extend(exc.lines())
    if len(problems) == 1:
        raise InputError(problems[0])
    if problems:
        raise InputError(f"{len(problems)} problem(s) in the arguments; nothing was run", problems)

    results: list[RunResult] = []
    with _outputs_env(outputs_dir):
        for item, existing in plans:
            if existing is None:
                run_dir, state = _new_run(item, chosen, outputs_dir, name=name)
                label = state["params_name"]
                out(f"[{label}] run folder: {run_dir}")
            else:
                run_dir, state = existing, read_state(existing)
                label = str(state.get("params_name") or run_dir.name)
                todo = [e["stage"] for e in state["stages"] if e.get("status") != "ok"]
                out(f"[{label}] resuming {run_dir} from stage {todo[0] if todo else '(none left)'}")
            results.append(_run_one(run_dir, state, label, out))
    return results


COMPARISON_STAGE = "05"


#: ``--with all``: every finished run under the outputs root joins the comparison.
ALL_RUNS = "all"


def comparison_runs(
    made: Sequence[Path],
    extra: Sequence[str] = (),
    outputs: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """The run folders a comparison shows: the runs just made that finished an evaluation (a run
    of only the comparison stage, or one that stopped early, is no candidate), then each ``extra``
    one (a run folder path, or a folder name under the outputs root; ``all`` adds every finished
    run), each once. A name that is no finished run folder is an InputError naming it."""
    root = paths.resolve(outputs) if outputs else paths.outputs_root()
    chosen = [Path(p).resolve() for p in made if runfolder.has_evaluation(p)]
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
    if len(problems) == 1:
        raise InputError(problems[0])
    if problems:
        raise InputError(f"{len(problems)} --with run(s) are not finished run folders", problems)
    unique: list[Path] = []
    for path in (p.resolve() for p in chosen):
        if path not in unique:
            unique.append(path)
    return unique


def run_comparison(
    params_file: str,
    *,
    outputs: str | os.PathLike[str] | None = None,
    out: Callable[[str], None] = print,
    runs: Sequence[Path] | None = None,
) -> RunResult:
    """Execute the comparison notebook (05) into its own ``comparison-<time>`` run folder, with
    ``params_file`` for its defaults. It compares ``runs`` (see comparison_runs) when given, else
    every finished run under the outputs root."""
    require_notebooks()
    outputs_dir = paths.resolve(outputs) if outputs else None
    with _outputs_env(outputs_dir):
        run_dir, state = _new_run(params_file, [COMPARISON_STAGE], outputs_dir, name="comparison")
        out(f"[comparison] run folder: {run_dir}")
        return _run_one(run_dir, state, "comparison", out, runs)


def start_run(
    params_file: str,
    stages: Sequence[str] = DEFAULT_STAGES,
    *,
    outputs: Path | None = None,
    name: str | None = None,
) -> Path:
    """Make a new run folder for ``params_file`` (named ``name``, default the file's stem) with
    every stage pending; run it with :func:`continue_run`. Used by sweeps, which record the
    folder before its first notebook starts."""
    run_dir, _ = _new_run(params_file, _check_stages(stages), outputs, name=name)
    return run_dir


def continue_run(run_dir: Path, out: Callable[[str], None] = print) -> RunResult:
    """Execute every stage of ``run_dir`` that is not ``ok`` yet (a finished run is refused)."""
    state = read_state(run_dir)
    if state.get("status") == STATUS_FINISHED:
        raise InputError(f"{run_dir}: run is finished and is never edited again; start a new run")
    label = str(state.get("params_name") or Path(run_dir).name)
    return _run_one(Path(run_dir), state, label, out)


outputs_env = _outputs_env
