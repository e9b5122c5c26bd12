"""User-facing errors: the CLI prints them as one line each, without a traceback; and the one
way a validated file's problems become such lines (``file:line: field: message``)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import yaml
from pydantic import ValidationError


class RouterlibError(Exception):
    """An error the user can act on. ``problems`` holds one line per problem (file:line: field: msg)."""

    exit_code = 2

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems or [])

    def lines(self) -> list[str]:
        """Every line to print: the problems, then the summary message."""
        return [*self.problems, str(self)] if self.problems else [str(self)]

    @classmethod
    def of(cls, problems: list[str], summary: str) -> RouterlibError:
        """A ``cls`` of ``problems``: one alone is the message, several go under ``summary``."""
        return cls(problems[0]) if len(problems) == 1 else cls(summary, problems)


class InputError(RouterlibError):
    """Bad input file or value (exit 2)."""


class RemoteError(RouterlibError):
    """A remote service refused or failed a request (exit 3)."""

    exit_code = 3


class PermissionDenied(RemoteError):
    """The credentials lack a permission for the request (HTTP 403); the message names it."""


#: The first line of a RouterlibError's error output in a notebook (routerlib.stages shows the
#: error this way in a kernel): the lines after it are ``exc.lines()``, exactly what the CLI
#: prints, no traceback, and the batch runner reads them back from the executed notebook.
NOTEBOOK_MARKER = "routerlib stopped (what to fix is below; no traceback):"

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def lines_from_notebook(traceback: Sequence[str] | None) -> list[str] | None:
    """The error's lines in a notebook error output, or None when it lacks NOTEBOOK_MARKER."""
    lines = [_ANSI.sub("", str(line)) for line in traceback or []]
    if not lines or lines[0].strip() != NOTEBOOK_MARKER:
        return None
    return [line for line in lines[1:] if line.strip()]


def yaml_line(text: str, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the YAML node at ``loc`` (the deepest one that exists)."""
    try:
        node: Any = yaml.compose(text)
    except yaml.YAMLError:
        return None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = [v for k, v in node.value if k.value == str(part)]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            match = node.value[part : part + 1]
        else:
            match = []
        if not match:
            break
        node = match[0]
    return None if node is None else int(node.start_mark.line) + 1


def problem_lines(error: ValidationError, where: str, text: str | None = None) -> list[str]:
    """One ``where: field: message`` line per problem of ``error`` (``where:line:`` when the
    YAML ``text`` it was read from is given); a problem of no field (a cross-field check) gives
    one line per line of its message, each already naming its key."""
    lines = []
    for item in error.errors():
        loc = tuple(item["loc"])
        field = ".".join(str(part) for part in loc)
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
            message = "unknown key"
        line = yaml_line(text, loc) if text is not None and loc else None
        place = f"{where}:{line}" if line else where
        if field:
            lines.append(f"{place}: {field}: {message}")
        else:
            lines.extend(f"{place}: {part}" for part in message.splitlines())
    return lines
