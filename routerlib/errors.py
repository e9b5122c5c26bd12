"""User-facing errors: the CLI prints them as one line each, without a traceback."""

from __future__ import annotations


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
