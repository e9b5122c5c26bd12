"""Progress a log can hold. prepare's bar follows tqdm's own rule for output that is not a terminal
(none at all); prediction and tuning progress (routerlib/progress.py) write whole lines there; and
run.log keeps whole lines of whatever a notebook prints, so it never holds partial
``0%| | 0/7039058`` redraws."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import pytest

from routerlib import dataset, pipeline, synth
from routerlib.progress import LineProgress, WholeLines, progress_bar
from tests.support.toy_project import make_project

SCALED = re.compile(r"0\.00/\d+(\.\d+)?k ")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _prepare(tmp_path: Path, name: str) -> None:
    rows = synth.write_rows(tmp_path / "rows.jsonl", 30, 7)
    dataset.prepare(rows, tmp_path / name, progress=True, workers=1)


def test_no_bar_when_stderr_is_not_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = io.StringIO()  # a file or a pipe: isatty() is False
    monkeypatch.setattr(sys, "stderr", log)
    _prepare(tmp_path, "out")
    assert "%|" not in log.getvalue() and "it/s" not in log.getvalue()


def test_bar_on_a_terminal_with_scaled_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tty = _Terminal()
    monkeypatch.setattr(sys, "stderr", tty)
    _prepare(tmp_path, "out")
    text = tty.getvalue()
    assert "prepare: reading rows.jsonl" in text and "%|" in text
    assert SCALED.search(text), text[:200]  # bytes scaled (178k), not 0/178342


def test_whole_lines_keep_what_a_terminal_finally_shows() -> None:
    log = io.StringIO()
    sink = WholeLines(log)
    for part in ["start\n", "\r 1/3", "\r 2/3", "\r 3/3", "\n", "crlf\r", "\nnext", "\r\n"]:
        sink.write(part)
    sink.write("open\rlast state")
    assert log.getvalue() == "start\n 3/3\ncrlf\nnext\n"  # the open line waits
    sink.finish()
    assert log.getvalue() == "start\n 3/3\ncrlf\nnext\nlast state\n"
    sink.write("\r   ")
    sink.finish()  # a blank open line is dropped
    assert log.getvalue().endswith("last state\n")


def test_line_progress_writes_a_line_per_tenth_and_one_at_the_end() -> None:
    out = io.StringIO()
    bar = LineProgress(25, desc="predict", unit="row", initial=5, file=out)
    for _ in range(20):
        bar.update()
    bar.set_postfix(failed=0)
    bar.close()
    bar.close()  # the same state is not written twice
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert [ln.split(" row")[0] for ln in lines] == [
        f"predict: {n}/25" for n in (6, 9, 12, 15, 18, 21, 24, 25)
    ]  # every 3 rows (a tenth, rounded up), from where it resumed
    assert lines[0] == "predict: 6/25 row (24%)"
    assert lines[-1] == "predict: 25/25 row (100%) failed=0"


def test_progress_bar_is_lines_off_a_terminal_and_tqdm_on_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert isinstance(progress_bar(True, 10, desc="x"), LineProgress)
    monkeypatch.setattr(sys, "stderr", _Terminal())
    bar = progress_bar(True, 10, desc="x")
    assert not isinstance(bar, LineProgress)
    bar.close()


def test_run_log_gets_whole_lines_of_a_notebooks_redrawn_bar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell

    root = make_project(tmp_path / "proj")
    monkeypatch.setenv("ROUTERLIB_ROOT", str(root))
    monkeypatch.setenv("ROUTERLIB_OUTPUTS", str(tmp_path / "outputs"))
    monkeypatch.chdir(root)
    notebook = root / "notebooks" / "01_write.ipynb"
    nb = nbformat.read(notebook, as_version=4)
    nb.cells.append(
        new_code_cell(
            "import sys, time\n"
            "for i in range(1, 4):\n"
            "    sys.stderr.write(f'\\rbar {i}/3'); sys.stderr.flush(); time.sleep(0.05)\n"
            "sys.stderr.write('\\n'); print('done', end='')"
        )
    )
    nbformat.write(nb, notebook)
    (result,) = pipeline.run_pipeline(["params/ok.yaml"], stages=["01"], out=lambda line: None)
    log = (result.run_dir / "run.log").read_text(encoding="utf-8")
    assert "\r" not in log and log.endswith("\n"), log
    assert "bar 3/3\n" in log and "bar 1/3" not in log
    assert "done\n" in log  # a last line without a newline still ends whole
