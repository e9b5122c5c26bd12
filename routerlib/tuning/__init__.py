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
BACKENDS: tuple[str, ...] = tuple(REGISTRY)


def choose_backend(train_uri: str, explicit: str | None = None) -> str:
    """The backend to use: ``explicit`` when given, else vertex for gs:// and local otherwise."""
    if explicit:
        if explicit not in BACKENDS:
            raise InputError(
                f"unknown tuning backend {explicit!r}: use one of {', '.join(BACKENDS)}"
            )
        return explicit
    return "vertex" if str(train_uri).strip().lower().startswith("gs:") else "local"


def get_backend(
    name: str,
    *,
    project: str | None = None,
    location: str | None = None,
    api_endpoint: str | None = None,
    local_options: dict[str, Any] | None = None,
) -> TuningBackend:
    """A backend instance. project/location/api_endpoint apply to vertex only; ``local_options``
    (batch_size, max_train_tokens, seed, ...) are LocalBackend's settings."""
    if name not in REGISTRY:
        raise InputError(f"unknown tuning backend {name!r}: use one of {', '.join(BACKENDS)}")
    module, _, cls = REGISTRY[name].partition(":")
    backend = getattr(importlib.import_module(module), cls)
    if name == "vertex":
        return backend(project=project, location=location, api_endpoint=api_endpoint)  # type: ignore[no-any-return]
    return backend(**(local_options or {}))  # type: ignore[no-any-return]


__all__ = ["BACKENDS", "choose_backend", "get_backend"]
