"""Tuning backends behind one protocol (routerlib.tuning.base.TuningBackend).

``choose_backend`` picks vertex for gs:// datasets and local for local paths; ``get_backend`` builds
one. Both backend modules are imported lazily, so importing this package costs nothing.
"""

from __future__ import annotations

from typing import Any, Literal

from routerlib.errors import InputError
from routerlib.tuning.base import TuningBackend

BackendName = Literal["local", "vertex"]
BACKENDS: tuple[str, ...] = ("local", "vertex")


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
    if name == "vertex":
        from routerlib.tuning.vertex import VertexBackend

        return VertexBackend(project=project, location=location, api_endpoint=api_endpoint)
    if name == "local":
        from routerlib.tuning.local import LocalBackend

        return LocalBackend(**(local_options or {}))  # type: ignore[no-any-return]
    raise InputError(f"unknown tuning backend {name!r}: use one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "choose_backend", "get_backend"]
