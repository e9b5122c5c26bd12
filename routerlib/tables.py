"""Packaged YAML tables (the model contract, prices, baseline texts) read and validated: a
mistake is one line per problem naming the file, the line and the field."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from routerlib.errors import InputError, problem_lines

M = TypeVar("M", bound=BaseModel)


def read_yaml(
    path: str | os.PathLike[str], model: type[M], what: str, *, with_lines: bool = True
) -> M:
    """A YAML file validated as ``model``. InputError ``<file>: <what> not found``, ``<file>: not
    valid YAML: …`` or ``<file>: invalid <what>`` with one line per problem
    (:func:`problem_lines`; ``with_lines=False`` leaves the line numbers out)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except FileNotFoundError:
        raise InputError(f"{file}: {what} not found") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{file}: not valid YAML: {exc}") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = problem_lines(exc, str(file), text if with_lines else None)
        raise InputError(f"{file}: invalid {what}", lines) from None
