"""The run folder a notebook works in, and the display helpers every notebook shares."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from IPython import get_ipython
from IPython.display import Image, Markdown

from routerlib import metrics, paths, runfolder
from routerlib.config import RunConfig, default_params_file, dump_config, load_config
from routerlib.display import fields as fields
from routerlib.errors import NOTEBOOK_MARKER, InputError, RouterlibError

#: A scored report (``runfolder.ReportRecord``) as the scorer returns it.
Report = dict[str, Any]


@dataclass
class Run:
    """One run folder and its validated config."""

    path: Path
    config: RunConfig
    params_file: str

    def sub(self, relative: str) -> Path:
        """A path inside the run folder."""
        return self.path / relative

    def _repr_markdown_(self) -> str:
        cfg = self.config
        full = cfg.tuning_mode + (f" r={cfg.adapter_size}" if cfg.adapter_size else "")
        smoke = f"PEFT_ADAPTER r={cfg.adapter_size or 16}"
        return (
            f"**Run** `{self.path.name}` · params `{Path(self.params_file).name}` · backend "
            f"`{cfg.backend}` · base model `{cfg.base_model}`  \n"
            f"smoke tune (02): {smoke}, {cfg.smoke_epochs} epoch(s) on the first "
            f"{cfg.smoke_limit} rows · full tune (03): {full}, {cfg.epochs} epoch(s)"
        )


def open_run(
    params_file: str, run_dir: str = "", overrides: dict[str, Any] | None = None, name: str = ""
) -> Run:
    """Validate the params file (empty: :func:`config.default_params_file`) and open the run
    folder (when ``run_dir`` is empty, a new one named ``name``, else the config's name); a
    folder made with other params is refused."""
    params_file = params_file or default_params_file()
    config = load_config(params_file, overrides)
    folder = Path(run_dir).resolve() if run_dir else paths.new_run_dir(name or config.name)
    folder.mkdir(parents=True, exist_ok=True)
    resolved = folder / runfolder.PARAMS_FILE
    if not resolved.exists():
        dump_config(config, resolved)
    elif load_config(resolved) != config:
        raise InputError(
            f"{resolved}: the run folder was made with other params; use an empty run_dir for a new run"
        )
    return Run(folder, config, str(params_file))


def thresholds_path(run: Run) -> Path:
    """The gate file: the configured one, else the team's original gates in params/."""
    configured = run.config.thresholds
    return paths.resolve(configured) if configured else Path(metrics.DEFAULT_THRESHOLDS_PATH)


def decodings(run: Run) -> list[str]:
    """The decodings this run scores, headline first (``constrained`` overrides ``decoding``)."""
    cfg = run.config
    if cfg.constrained is not None:
        return ["constrained" if cfg.constrained else "free"]
    return list(cfg.decoding)


def image(path: Path) -> Image:
    """A PNG for display in the notebook."""
    return Image(filename=str(path))


def saved(path: Path) -> Markdown:
    """A one-line Markdown note of a file written into the run folder (its name, not its path)."""
    return Markdown(f"Saved `{path.name}` in `{path.parent.name}/`.")


def _error_lines(
    shell: Any, etype: type, value: BaseException, tb: Any, tb_offset: int | None = None
) -> list[str]:
    """IPython's handler for a RouterlibError: its lines as the cell's error output."""
    if not isinstance(value, RouterlibError):  # pragma: no cover - IPython filters by type
        return list(shell.InteractiveTB.structured_traceback(etype, value, tb, tb_offset))
    lines = [NOTEBOOK_MARKER, *value.lines()]
    shell._showtraceback(etype, value, lines)  # what showtraceback ends with: the error output
    return lines


def show_errors_as_lines() -> bool:
    """In an IPython kernel, show a RouterlibError as its lines (as the CLI prints them) instead of
    a traceback; the cell still fails. Returns whether there was a kernel."""
    shell = get_ipython()
    if shell is None:
        return False
    shell.set_custom_exc((RouterlibError,), _error_lines)
    return True


show_errors_as_lines()
