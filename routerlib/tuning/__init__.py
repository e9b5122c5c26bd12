"""Tuning backends behind one protocol (routerlib.tuning.base.TuningBackend).

``choose_backend`` picks vertex for gs:// datasets and local for local paths; ``get_backend`` builds
one. Backends are registered by name as ``"module:Class"`` strings (:data:`REGISTRY`) and imported
when first asked for, so importing this package loads neither torch nor google-genai.
"""

from __future__ import annotations

import importlib
from typing import Any

from routerlib.errors import InputError
from routerlib.tuning.base import TuningBackend

#: Backend name -> the class that implements it, imported on first use.
REGISTRY: dict[str, str] = {
    "local": "routerlib.tuning.local:LocalBackend",
    "vertex": "routerlib.tuning.vertex:VertexBackend",
}


#: The options ``get_backend`` passes to the vertex backend (and ignores for local).
VERTEX_OPTIONS = {"project", "location", "api_endpoint"}


def _known(name: str) -> str:
    if name not in REGISTRY:
        raise InputError(f"unknown tuning backend {name!r}: use one of {', '.join(REGISTRY)}")
    return name


def choose_backend(train_uri: str, explicit: str | None = None) -> str:
    """The backend to use: ``explicit`` when given, else vertex for gs:// and local otherwise."""
    if explicit:
        return _known(explicit)
    return "vertex" if str(train_uri).strip().lower().startswith("gs:") else "local"


def get_backend(
    name: str, *, local_options: dict[str, Any] | None = None, **vertex_options: Any
) -> TuningBackend:
    """A backend instance: ``vertex_options`` (project, location, api_endpoint) apply to vertex
    only; ``local_options`` (batch_size, max_train_tokens, seed, ...) are LocalBackend's settings."""
    module, _, cls = REGISTRY[_known(name)].partition(":")
    backend = getattr(importlib.import_module(module), cls)
    unknown = set(vertex_options) - VERTEX_OPTIONS
    if unknown:
        raise TypeError(f"get_backend: unknown option(s) {', '.join(sorted(unknown))}")
    options = vertex_options if name == "vertex" else local_options or {}
    return backend(**options)  # type: ignore[no-any-return]


__all__ = ["choose_backend", "get_backend"]
