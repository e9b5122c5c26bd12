"""The serving interface evaluation drives: a Predictor turns a gold file into a prediction file.

Three backends sit behind it — a local HTTP server, a Vertex endpoint (shared or dedicated) and a
Vertex batch prediction job — so ``stages.serving`` / ``stages.evaluate`` and
``routerlib.evaluate.evaluate`` never ask which one they hold. :func:`open_predictor` is the one
place that picks a backend from the run's settings, and it always cleans up what it started.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from routerlib.config import run_default
from routerlib.errors import InputError


@runtime_checkable
class Predictor(Protocol):
    """Anything that writes one prediction line per gold row. ``name`` identifies the model
    (the cache key and the report's ``generation.source``)."""

    name: str

    def predict_file(
        self,
        gold_path: Path,
        *,
        cache_path: Path,
        pred_path: Path,
        max_tokens: int,
        progress: bool,
    ) -> Path: ...

    def summary(self) -> dict[str, Any]:
        """What the report records about this backend beyond the common generation fields."""
        ...


@dataclass
class OnlinePredictor:
    """Request by request through a client (a local server, a Vertex endpoint, any URL), with
    bounded concurrency, retries with jittered backoff and a resumable cache."""

    client: Any
    concurrency: int = run_default("concurrency")
    retries: int = 5
    timeout: float = 120.0
    name: str = ""

    def __post_init__(self) -> None:
        self.name = self.name or getattr(self.client, "name", type(self.client).__name__)

    def predict_file(
        self, gold_path: Path, *, cache_path: Path, pred_path: Path, max_tokens: int, progress: bool
    ) -> Path:
        from routerlib.evaluate import generate_predictions

        return generate_predictions(
            gold_path,
            client=self.client,
            cache_path=cache_path,
            pred_path=pred_path,
            concurrency=self.concurrency,
            max_tokens=max_tokens,
            retries=self.retries,
            timeout=self.timeout,
            progress=progress,
        )

    def summary(self) -> dict[str, Any]:
        return {"mode": "endpoint"}


@dataclass
class BatchPredictor:
    """One Vertex batch prediction job on a Model Registry model (routerlib.serving.batch).
    ``schema`` set: constrained decoding (each instance carries it)."""

    model: str
    gcs_prefix: str
    machine_type: str | None = None
    accelerator_type: str | None = None
    accelerator_count: int | None = None
    project: str | None = None
    location: str | None = None
    api_endpoint: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    schema: dict[str, Any] | None = None
    rerun_failed: bool = False
    poll_s: float = 30.0
    name: str = ""
    outcome: Any = None

    def __post_init__(self) -> None:
        self.name = self.name or f"batch:{self.model}"

    def predict_file(
        self, gold_path: Path, *, cache_path: Path, pred_path: Path, max_tokens: int, progress: bool
    ) -> Path:
        from routerlib.serving import batch

        out, self.outcome = batch.batch_predict(
            gold_path,
            model=self.model,
            gcs_prefix=self.gcs_prefix,
            cache_path=cache_path,
            pred_path=pred_path,
            max_tokens=max_tokens,
            machine_type=self.machine_type,
            accelerator_type=self.accelerator_type,
            accelerator_count=self.accelerator_count,
            project=self.project,
            location=self.location,
            api_endpoint=self.api_endpoint,
            extra=self.extra,
            schema=self.schema,
            rerun_failed=self.rerun_failed,
            progress=progress,
            poll_s=self.poll_s,
        )
        return out

    def summary(self) -> dict[str, Any]:
        o = self.outcome
        if o is None:
            return {"mode": "batch"}
        return {
            "mode": "batch",
            "batch_job": o.job_name,
            "batch_state": o.state,
            "batch_output_dir": o.output_dir,
            "batch_reattached": o.reattached,
            "failed_rows": sorted(o.failed_rows),
            "failed_reasons": {str(k): v for k, v in o.failed_rows.items()},
        }


def recorded_model(checkpoint_uri: str) -> str:
    """The Model Registry model the latest routerlib deploy of ``checkpoint_uri`` uploaded and
    that still exists (what ``eval_mode: batch`` predicts with)."""
    from routerlib.serving import vertex

    for record in reversed(vertex.read_registry()):
        if (
            record.get("checkpoint_uri") == checkpoint_uri
            and record.get("model_name")
            and record.get("model_state", "present") == "present"
        ):
            return str(record["model_name"])
    raise InputError(
        f"eval_mode batch: no Model Registry model recorded for {checkpoint_uri}; run "
        f"`routerlib deploy --checkpoint {checkpoint_uri}` then `routerlib endpoints delete "
        "NAME` (keeps the model), or use eval_mode: endpoint"
    )


@contextlib.contextmanager
def open_predictor(cfg: Any, checkpoint: str, *, params_file: str = "params") -> Iterator[Any]:
    """The Predictor a run's settings ask for, for the length of the block.

    ``endpoint`` set: that address as it is. ``eval_mode: batch``: a batch job on the model the
    checkpoint's deploy uploaded. Local backend: a local server. Vertex backend: an endpoint
    deployed for the block (endpoint and model deleted when it ends, also on error).
    """
    from routerlib.evaluate import PredictClient, make_client

    extra: dict[str, Any] = {}
    if cfg.enable_thinking is not None:
        extra["chat_template_kwargs"] = {"enable_thinking": cfg.enable_thinking}
    project = cfg.project or os.environ.get("GOOGLE_CLOUD_PROJECT", "")
    region = getattr(cfg, "deploy_location", "") or cfg.location  # endpoints live in a region
    cloud: dict[str, Any] = {
        "project": project or None,
        "location": region,
        "api_endpoint": cfg.api_endpoint or None,
    }
    online = {"concurrency": cfg.concurrency}
    if cfg.endpoint:
        yield OnlinePredictor(make_client(cfg.endpoint, extra=extra, **cloud), **online)
        return
    if cfg.eval_mode == "batch":
        if not cfg.gcs_prefix:
            raise InputError(f"{params_file}: gcs_prefix: eval_mode batch writes instances there")
        yield BatchPredictor(
            recorded_model(checkpoint),
            cfg.gcs_prefix,
            machine_type=cfg.machine_type,
            accelerator_type=cfg.accelerator_type,
            accelerator_count=cfg.accelerator_count,
            extra=extra,
            **cloud,
        )
        return
    if cfg.backend == "local":
        from routerlib.serving.local import LocalServer

        with LocalServer(checkpoint) as server:
            yield OnlinePredictor(PredictClient(server.endpoint_url, extra=extra), **online)
        return
    from routerlib.evaluate import VertexEndpointClient
    from routerlib.serving import vertex

    if not project:
        raise InputError(f"{params_file}: project: set it or GOOGLE_CLOUD_PROJECT to deploy")
    with vertex.deployed(
        checkpoint,
        machine_type=cfg.machine_type,
        accelerator_type=cfg.accelerator_type,
        accelerator_count=cfg.accelerator_count,
        base_model=cfg.base_model,
        project=project,
        location=region,
        api_endpoint=cfg.api_endpoint,
    ) as deployment:
        endpoint = VertexEndpointClient(deployment.endpoint_name, extra=extra, **cloud)
        yield OnlinePredictor(endpoint, **online)
