"""prepare's progress bar follows tqdm's own rule for output that is not a terminal: none at all,
so logs and captured notebook streams never hold partial ``0%| | 0/7039058`` lines."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import pytest

from routerlib import dataset, synth

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
