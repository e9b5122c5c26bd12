"""Shared reports: executed notebooks → HTML with code hidden, plus an ``index.html`` that links
every run and carries the comparison (plots as data URIs), so every page opens from disk. Nothing
is written when a notebook or page holds a credential-like string (``scan_for_secrets``)."""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from markupsafe import Markup

from routerlib import compare, compare_plots, display, runfolder
from routerlib.atomic import atomic_folder, write_text
from routerlib.errors import InputError, RouterlibError
from routerlib.metric_names import DECIDING_METRICS
from routerlib.paths import outputs_root, resolve
from routerlib.runfolder import (
    LEADERBOARD_FILE,
    METRICS_FILE,
    NOTEBOOKS_DIR,
    PIPELINE_FILE,
    SIGNIFICANCE_FILE,
)

#: (what it is, pattern). Kept specific so rendered numbers and base64 images do not match.
SECRET_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern))
    for kind, pattern in (
        ("private key", r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----"),
        ("service-account private key field", r"\"private_key(?:_id)?\"\s*:\s*\"[^\"\s]{8,}"),
        ("Google OAuth access token", r"\bya29\.[0-9A-Za-z_\-]{16,}"),
        ("Google OAuth refresh token", r"\b1//0[0-9A-Za-z_\-]{30,}"),
        ("Google API key", r"(?<![0-9A-Za-z_\-])AIza[0-9A-Za-z_\-]{35}"),
        ("OAuth client secret", r"(?i)client[_-]?secret[\"']?\s*[:=]\s*[\"']?[^\s\"',;<>]{6,}"),
        ("OAuth client secret", r"\bGOCSPX-[0-9A-Za-z_\-]{20,}"),
        ("bearer token", r"(?i)\bbearer\s+[A-Za-z0-9\-._~+/]{20,}=*"),
        (
            "password",
            r"(?i)\b(?:password|passwd|pwd)\s*[=:]\s*[\"']?(?!\*+[\"'\s])[^\s\"'<>,;&]{4,}",
        ),
        ("AWS access key", r"\bAKIA[0-9A-Z]{16}\b"),
        ("GitHub token", r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"),
    )
)
_DATA_URI = re.compile(r"data:[\w/+.\-]+;base64,[A-Za-z0-9+/=\s]+")

COMPARISON_STAGE = "05"
#: Metrics whose paired tests the index shows up front (the rest folded), as notebook 05 does.
SIGNIFICANCE_HEADLINE = DECIDING_METRICS
#: Plots shown at full page width (many panels or bars).
WIDE_PLOTS = ("bucket_scores", "route_confusion")


class SecretFound(RouterlibError):
    """A credential-like string was found in what would be published (exit 2)."""


def scan_text(text: str) -> list[str]:
    """Credential-like strings in ``text`` as ``"<kind> (<first chars>…)"`` (never the whole value).
    Base64 data URIs (embedded images) are skipped."""
    text = _DATA_URI.sub("data:,", text)
    hits = []
    for kind, pattern in SECRET_PATTERNS:
        for match in pattern.finditer(text):
            value = match.group(0).split("=")[-1].split(":")[-1].strip(" \"'")
            if value and set(value) <= {"*", "•", "x", "X"}:
                continue  # an already masked placeholder
            hits.append(f"{kind} ({match.group(0)[:6]}…)")  # every pattern matches > 6 chars
    return hits


def _notebook_texts(nb: dict[str, Any]) -> Iterable[tuple[str, str]]:
    """(where, text) pieces of a notebook, without base64 image payloads."""
    yield "metadata", json.dumps(nb.get("metadata", {}))
    for index, cell in enumerate(nb.get("cells", []), 1):
        where = f"cell {index}"
        source = cell.get("source", "")
        yield where, "".join(source) if isinstance(source, list) else str(source)
        for output in cell.get("outputs", []) or []:
            for key in ("text", "traceback", "evalue"):
                value = output.get(key)
                if value:
                    yield where, "\n".join(value) if isinstance(value, list) else str(value)
            for mime, value in (output.get("data") or {}).items():
                if mime.startswith("image/") and not mime.endswith("svg+xml"):
                    continue
                text = "".join(value) if isinstance(value, list) else value
                yield where, text if isinstance(text, str) else json.dumps(text)


def scan_for_secrets(targets: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Scan notebooks (.ipynb, cell by cell), HTML and any other text files, or folders of them;
    return one line per finding: ``<file>: <where>: <kind> (<first chars>…)``."""
    findings: list[str] = []
    paths = [Path(t) for t in targets]
    files = [f for p in paths for f in (sorted(p.rglob("*")) if p.is_dir() else [p]) if f.is_file()]
    for file in files:
        if file.suffix.lower() in (".png", ".jpg", ".jpeg", ".gif", ".pt", ".bin", ".safetensors"):
            continue
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if file.suffix == ".ipynb":
            try:
                pieces = list(_notebook_texts(json.loads(text)))
            except (json.JSONDecodeError, AttributeError):
                pieces = [("text", text)]
            findings.extend(
                f"{file}: {where}: {hit}" for where, t in pieces for hit in scan_text(t)
            )
        elif scan_text(text):  # whole file first (fast); line numbers only for a hit
            for number, line in enumerate(text.splitlines(), 1):
                findings.extend(f"{file}:{number}: {hit}" for hit in scan_text(line))
    return findings


# ----------------------------------------------------------------------------- rendering


def find_runs(root: Path | None = None) -> list[Path]:
    """Run folders under the outputs root (with pipeline.json, metrics.json or executed notebooks)."""
    return runfolder.find_folders(PIPELINE_FILE, METRICS_FILE, NOTEBOOKS_DIR, root=root)


def _run_status(run: Path) -> str:
    """The run's status; a failed run says which stage failed and why."""
    try:
        state = runfolder.read_pipeline(run)
    except runfolder.RunFolderError:  # no batch runner state (notebooks run by hand)
        return "finished" if (run / METRICS_FILE).is_file() else "unknown"
    failed = [s for s in state.stages if s.status == "failed" and s.error]
    return f"{state.status}: {failed[0].error}" if failed else state.status


@functools.cache
def _templates() -> jinja2.Environment:
    """The page templates shipped in routerlib/templates (autoescaped: every value is escaped
    unless it is passed as ``Markup``, trusted HTML)."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("routerlib", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _render(template: str, **values: Any) -> Markup:
    """One template of routerlib/templates filled with ``values``, as trusted HTML."""
    return Markup(_templates().get_template(template).render(**values))


def _markdown(text: str) -> Markup:
    """Markdown to HTML (the conclusion; routerlib writes it, so its inline HTML is trusted)."""
    import mistune  # nbconvert's own markdown library

    return Markup(str(mistune.html(text)))


def _table(frame: Any, **kwargs: Any) -> Markup:
    """A frame as an HTML table (pandas escapes the cells)."""
    return Markup(frame.to_html(index=False, border=0, **kwargs))


def _comparison(run_dirs: list[Path], out: Path) -> dict[str, Any]:
    """The index page's comparison: conclusion, leaderboard (compact table, the full one folded,
    both as CSV in ``out``), significance and plots (PNGs in ``out``, shown as data URIs)."""

    scored = [r for r in run_dirs if (r / METRICS_FILE).is_file()]
    runs = compare.load_runs(scored) if scored else []
    board = compare.leaderboard(runs)
    sig = compare.significance_table(runs)
    note = compare.embedded_note(board)
    board_values: dict[str, Any] = {"headline": None, "csv": LEADERBOARD_FILE}
    if not board.empty:
        write_text(out / LEADERBOARD_FILE, board.to_csv(index=False))
        full = display.full_board(board)
        board_values.update(
            headline=_table(
                display.headline_board(board), classes="leaderboard", table_id="leaderboard"
            ),
            full=_table(full, classes="leaderboard-full"),
            full_columns=len(full.columns),
        )
    sig_values: dict[str, Any] = {"headline": None, "csv": SIGNIFICANCE_FILE}
    if not sig.empty:
        write_text(out / SIGNIFICANCE_FILE, sig.to_csv(index=False))
        sig_values.update(
            headline=_table(
                display.significance_view(sig, SIGNIFICANCE_HEADLINE), classes="significance"
            ),
            full=_table(display.significance_view(sig), classes="significance-all"),
            count=len(sig),
        )
    plots = compare_plots.all_plots(runs, out / "plots", board)
    root = f"{outputs_root()}/"
    # files that could not be read leave gaps: the leaderboard block says which, each once (a
    # run's decodings share its problems list and baselines, and read the same loss curve)
    lines = (line for run in runs for r in (run, *run.baselines) for line in r.problems)
    board_values["problems"] = [line.replace(root, "") for line in dict.fromkeys(lines)]
    return {
        "conclusion": _markdown(compare.conclusion(board, sig, with_note=False)),
        "note": _markdown(note) if note else None,
        "leaderboard": _render("report_leaderboard.html", **board_values),
        "significance": _render("report_significance.html", **sig_values),
        "plots": {png.stem: base64.b64encode(png.read_bytes()).decode() for png in plots},
        "wide_plots": WIDE_PLOTS,
    }


def _refuse_secrets(targets: Sequence[Path]) -> None:
    """Raise SecretFound when :func:`scan_for_secrets` finds anything in ``targets``."""
    found = scan_for_secrets(targets)
    if found:
        raise SecretFound(
            f"refusing to write a report: {len(found)} credential-like string(s)", found
        )


def render_report(
    runs: Sequence[str | os.PathLike[str]] | None = None,
    out_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Render the runs' executed notebooks and an index into ``out_dir`` (default
    ``<outputs>/report``); return the path of ``index.html``. Raises SecretFound, writing nothing,
    when a notebook or page holds a credential-like string."""

    run_dirs = [resolve(r) for r in runs] if runs else find_runs()
    missing = [str(r) for r in run_dirs if not r.is_dir()]
    if missing:
        raise InputError(f"{missing[0]}: run folder not found")
    out = resolve(out_dir) if out_dir else outputs_root() / "report"
    notebooks = {run: sorted((run / NOTEBOOKS_DIR).glob("*.ipynb")) for run in run_dirs}
    _refuse_secrets([nb for nbs in notebooks.values() for nb in nbs])

    with atomic_folder(out) as staging:  # removed on any error or Ctrl-C
        run_links: list[dict[str, Any]] = []
        comparison_links: list[tuple[str, str]] = []
        used: set[str] = set()
        import nbformat
        from nbconvert import HTMLExporter  # one for every page: it compiles its templates once

        hide = {"exclude_input": True, "exclude_input_prompt": True, "exclude_output_prompt": True}
        exporter = HTMLExporter(embed_images=True, **hide)  # outputs only, images as data URIs
        for run in run_dirs:
            slug = run.name if run.name not in used else f"{run.name}-{len(used)}"
            used.add(slug)
            links = []
            for nb in notebooks[run]:
                notebook = nbformat.read(str(nb), as_version=4)
                for cell in notebook.cells:  # stderr streams (progress bars, warnings) left out
                    if cell.get("outputs"):  # only a stream output has a name: stdout or stderr
                        cell.outputs = [o for o in cell.outputs if o.get("name") != "stderr"]
                page = Path("runs") / slug / f"{nb.stem}.html"
                write_text(staging / page, exporter.from_notebook_node(notebook)[0])
                href = quote(page.as_posix())
                links.append((nb.stem, href))
                if nb.name.startswith(COMPARISON_STAGE):
                    comparison_links.append((f"{run.name} / {nb.stem}", href))
            run_links.append({"name": run.name, "status": _run_status(run), "links": links})
        index = _render(
            "report_index.html",
            generated=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            comparison_links=comparison_links,
            runs=run_links,
            **_comparison(run_dirs, staging),
        )
        write_text(staging / "index.html", index)
        _refuse_secrets([staging])
    return out / "index.html"
