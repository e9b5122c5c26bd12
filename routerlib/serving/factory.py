"""The one place that decides how a checkpoint is served, and the only constructor of predictors:
kinds registered as lazy ``"module:Class"`` strings (lm-evaluation-harness's model registry), so
local serving never loads a Google SDK and a Vertex path never loads torch. Doors and adding a
backend: docs/serving.md.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from routerlib.errors import InputError
from routerlib.serving.base import Predictor
from routerlib.serving.client import public_url
from routerlib.serving.settings import PLACE, VertexSettings

#: Serving kind -> the class that serves it, imported on first use.
REGISTRY: dict[str, str] = {
    "local": "routerlib.serving.local:InProcessPredictor",
    "local-server": "routerlib.serving.online:LocalServerPredictor",
    "predict": "routerlib.serving.online:PredictURLPredictor",
    "openai": "routerlib.serving.online:OpenAIPredictor",
    "endpoint": "routerlib.serving.online:EndpointPredictor",
    "vertex": "routerlib.serving.online:DeployedPredictor",
    "batch": "routerlib.serving.batch:BatchPredictor",
}

#: The kind being built right now (None outside :func:`make`; tests check it).
building: contextvars.ContextVar[str | None] = contextvars.ContextVar("building", default=None)


def predictor_class(kind: str) -> type[Any]:
    """The class registered for ``kind`` (its module is imported now)."""
    if kind not in REGISTRY:
        raise InputError(f"serving kind {kind!r}: not one of {', '.join(sorted(REGISTRY))}")
    module, _, name = REGISTRY[kind].partition(":")
    cls: type[Any] = getattr(importlib.import_module(module), name)
    return cls


def make(kind: str, target: str, **options: Any) -> Predictor:
    """A predictor of ``kind`` serving ``target`` (a checkpoint, URL, endpoint or model);
    ``options`` go to the kind's class. Close it when done (or use :func:`opened`)."""
    cls = predictor_class(kind)
    token = building.set(kind)
    try:
        predictor: Predictor = cls(target, **options)
    finally:
        building.reset(token)
    return predictor


def opened(kind: str, target: str, **options: Any) -> contextlib.closing[Predictor]:
    """:func:`make` for the length of a ``with`` block; closed when it ends (also on error)."""
    return contextlib.closing(make(kind, target, **options))


_VERTEX_ENDPOINT = re.compile(r"projects/[^/]+/locations/[^/]+/endpoints/[^/]+")
_ENDPOINT_PATH = re.compile(r"/endpoints/[^/:]+$")


def kind_of(target: str) -> tuple[str, str]:
    """The serving kind of an address and the address as that kind takes it: ``…/v1``
    (``…/v1/completions``) ``openai``; ``…:predict`` (``…/endpoints/ID``, ``:predict`` added)
    ``predict``; ``projects/P/locations/L/endpoints/ID`` or a numeric id ``endpoint``."""
    target = target.strip()
    if target.startswith(("http://", "https://")):
        path = urlsplit(target).path.rstrip("/")
        if path.endswith("/v1") or path.endswith("/v1/completions"):
            return "openai", target
        if path.endswith(":predict"):
            return "predict", target
        if _ENDPOINT_PATH.search(path):
            return "predict", target.rstrip("/") + ":predict"
        raise InputError(
            f"--endpoint {public_url(target)}: cannot tell the protocol; end the URL with ':predict' "
            "(vLLM predict JSON) or '/v1' (OpenAI-compatible)"
        )
    if target.isdigit() or _VERTEX_ENDPOINT.fullmatch(target):
        return "endpoint", target
    raise InputError(
        f"--endpoint {public_url(target)!r}: expected an http(s) URL (…:predict or …/v1), "
        "projects/P/locations/L/endpoints/ID, or a numeric endpoint id"
    )


def address_options(
    kind: str,
    settings: VertexSettings,
    *,
    model: str | None = None,
    extra: dict[str, Any] | None = None,
    **online: Any,
) -> dict[str, Any]:
    """The options of an address kind (:func:`kind_of`): ``online`` (concurrency, retries,
    timeout), ``model`` (openai) or ``extra`` (predict JSON), a Vertex endpoint's project, region
    and API address (empty ones are looked up in the endpoint registry)."""
    options = dict(online)
    if kind == "openai":
        options["model"] = model
    else:
        options["extra"] = extra
    if kind == "endpoint":
        options |= {k: getattr(settings, k) or None for k in PLACE}
    return options


@dataclass(frozen=True)
class ServingSpec:
    """What :func:`for_run` decided: the kind, its target and the options to make it with."""

    kind: str
    target: str
    options: dict[str, Any] = field(default_factory=dict)

    def make(self) -> Predictor:
        """The predictor this spec describes (:func:`make`); close it when done."""
        return make(self.kind, self.target, **self.options)

    def opened(self) -> contextlib.closing[Predictor]:
        """:meth:`make` for the length of a ``with`` block."""
        return contextlib.closing(self.make())


def _extra(cfg: Any) -> dict[str, Any]:
    """Instance fields a run sends with every request (Qwen 3's thinking switch)."""
    if cfg.enable_thinking is None:
        return {}
    return {"chat_template_kwargs": {"enable_thinking": cfg.enable_thinking}}


def for_address(cfg: Any, address: str) -> ServingSpec:
    """How a run (a RunConfig) asks an address (:func:`kind_of`): with its concurrency, its
    instance fields and, for a Vertex endpoint, its project, region and API address."""
    kind, target = kind_of(address)
    settings = VertexSettings.from_config(cfg)
    options = address_options(kind, settings, concurrency=cfg.concurrency, extra=_extra(cfg))
    return ServingSpec(kind, target, options)


def for_run(
    cfg: Any, checkpoint: str, *, params_file: str = "params", scoring: bool = False
) -> ServingSpec:
    """How a run (a RunConfig) serves ``checkpoint`` (docs/serving.md, "The factory");
    ``scoring``: each checkpoint itself, whatever ``endpoint`` and ``eval_mode`` say."""
    if cfg.endpoint and not scoring:
        return for_address(cfg, cfg.endpoint)
    settings = VertexSettings.from_config(cfg)
    online: dict[str, Any] = {"concurrency": cfg.concurrency, "extra": _extra(cfg)}
    if cfg.eval_mode == "batch" and not scoring:
        if not cfg.gcs_prefix:
            raise InputError(f"{params_file}: gcs_prefix: eval_mode batch writes instances there")
        batch = {"gcs_prefix": cfg.gcs_prefix, "settings": settings, "extra": online["extra"]}
        return ServingSpec("batch", checkpoint, batch)  # the model its deploy uploaded
    if cfg.backend == "local":
        return ServingSpec("local-server", checkpoint, online)
    if not settings.project:
        raise InputError(f"{params_file}: project: set it or GOOGLE_CLOUD_PROJECT to deploy")
    return ServingSpec(
        "vertex", checkpoint, {**online, "settings": settings, "base_model": cfg.base_model}
    )


def open_predictor(
    cfg: Any, checkpoint: str, *, params_file: str = "params", scoring: bool = False
) -> contextlib.closing[Predictor]:
    """The predictor a run's settings ask for (:func:`for_run`), for the length of the block;
    whatever it started (a server, an endpoint) is cleaned up when the block ends."""
    spec = for_run(cfg, checkpoint, params_file=params_file, scoring=scoring)
    return spec.opened()
