"""User-facing errors: the CLI prints them as one line each, without a traceback."""

from __future__ import annotations

import re
from collections.abc import Sequence


class RouterlibError(Exception):
    """An error the user can act on. ``problems`` holds one line per problem (file:line: field: msg)."""

    exit_code = 2

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems or [])

    def lines(self) -> list[str]:
        """Every line to print: the problems, then the summary message."""
        return [*self.problems, str(self)] if self.problems else [str(self)]


class InputError(RouterlibError):
    """Bad input file or value (exit 2)."""


class GateFailed(RouterlibError):
    """An evaluation gate did not pass (exit 1)."""

    exit_code = 1


class RemoteError(RouterlibError):
    """A remote service refused or failed a request (exit 3)."""

    exit_code = 3


class PermissionDenied(RemoteError):
    """The credentials lack a permission for the request (HTTP 403); the message names it."""


#: The first line of a RouterlibError's error output in a notebook (routerlib.stages shows the
#: error this way in a kernel): the lines after it are exactly what the CLI prints, no traceback,
#: and the batch runner reads them back from the executed notebook.
NOTEBOOK_MARKER = "routerlib stopped (what to fix is below; no traceback):"

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def notebook_traceback(exc: RouterlibError) -> list[str]:
    """The "traceback" a notebook shows for ``exc``: the marker, then ``exc.lines()``."""
    return [NOTEBOOK_MARKER, *exc.lines()]


def lines_from_notebook(traceback: Sequence[str] | None) -> list[str] | None:
    """The error's lines from a notebook error output written by :func:`notebook_traceback`;
    None for an ordinary traceback."""
    lines = [_ANSI.sub("", str(line)) for line in traceback or []]
    if not lines or lines[0].strip() != NOTEBOOK_MARKER:
        return None
    return [line for line in lines[1:] if line.strip()]
