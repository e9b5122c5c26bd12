"""Progress on stderr that a log can hold: a live tqdm bar on a terminal; elsewhere (a notebook
kernel, the batch runner's run.log) one whole line per milestone (:class:`LineProgress`)."""

from __future__ import annotations

import math
import sys
from typing import IO, Any


def is_terminal(stream: Any) -> bool:
    """True for an interactive terminal (a Jupyter kernel's stderr and a log file are not)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class LineProgress:
    """tqdm's ``update``/``set_postfix``/``refresh``/``close`` as whole lines:
    ``<desc>: <n>/<total> <unit> (<pct>%) key=value …``."""

    def __init__(
        self,
        total: int,
        *,
        desc: str,
        unit: str = "it",
        initial: int = 0,
        every: float | None = 0.1,
        file: IO[str] | None = None,
    ) -> None:
        self.total, self.n, self.desc, self.unit = total, initial, desc, unit
        self.every = every
        self.file = file
        self.postfix: dict[str, Any] = {}
        self._shown: int | None = None
        self._next = self._milestone_after(initial)

    def _milestone_after(self, n: int) -> int | None:
        if not self.every or self.total <= 0:
            return None
        step = max(1, math.ceil(self.total * self.every))
        return (n // step + 1) * step

    def line(self) -> str:
        """The current state as one line (no newline)."""
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        extra = "".join(f" {k}={v}" for k, v in self.postfix.items())
        return f"{self.desc}: {self.n}/{self.total} {self.unit}{pct}{extra}"

    def refresh(self) -> None:
        """Write the current state now (once per state: a repeated refresh writes nothing)."""
        if self._shown != self.n:
            self._shown = self.n
            print(self.line(), file=self.file or sys.stderr, flush=True)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._next is not None and self.n >= self._next:
            self._next = self._milestone_after(self.n)
            if self.n < self.total:  # the end is written by close(), with the last postfix
                self.refresh()

    def set_postfix(self, refresh: bool = True, **values: Any) -> None:
        self.postfix = dict(values)

    def close(self) -> None:
        self.refresh()


def progress_bar(
    enabled: bool, total: int, *, desc: str, every: float | None = 0.1, **tqdm_options: Any
) -> Any:
    """A tqdm bar on stderr when it is a terminal, :class:`LineProgress` (one whole line per
    ``every`` of ``total``, per ``refresh()`` and at the end) when it is not, and a silent tqdm
    when ``enabled`` is False. Either way ``refresh()`` shows the current state now."""
    from tqdm import tqdm  # plain text bar: no ipywidgets needed in notebooks

    if enabled and not is_terminal(sys.stderr):
        unit, initial = tqdm_options.get("unit", "it"), tqdm_options.get("initial", 0)
        return LineProgress(total, desc=desc, unit=unit, initial=initial, every=every)
    return tqdm(total=total, desc=desc, disable=not enabled, file=sys.stderr, **tqdm_options)


class WholeLines:
    """A text sink for a log file that receives only whole lines: each line is written once it
    ends, as a terminal would finally show it (the text after its last carriage return), so a
    redrawn bar leaves its final state, not every redraw. :meth:`finish` ends a last open line."""

    def __init__(self, target: IO[str]) -> None:
        self.target = target
        self._open = ""

    @staticmethod
    def _shown(text: str) -> str:
        return text.rstrip("\r").rpartition("\r")[2]

    def write(self, text: str) -> int:
        *ended, self._open = (self._open + text).split("\n")
        for line in ended:
            self.target.write(self._shown(line) + "\n")
        head, _, tail = self._open.rpartition("\r")
        if head:  # only the last redraw can still show; keep a trailing CR for a CRLF split
            self._open = tail or head.rpartition("\r")[2] + "\r"
        return len(text)

    def flush(self) -> None:
        self.target.flush()

    def finish(self) -> None:
        """Write the open line (if it shows anything) as a whole line."""
        shown, self._open = self._shown(self._open), ""
        if shown.strip():
            self.target.write(shown + "\n")
        self.target.flush()
