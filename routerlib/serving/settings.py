"""Where and on what Vertex serves a checkpoint: the six values a deploy, an endpoint deployed for
a block and a batch job share, in one object built from the run's settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from routerlib.config import default_project, run_default
from routerlib.serving import hardware as hw

#: Where endpoints live by default (RunConfig ``deploy_location``, a region, never global).
DEFAULT_LOCATION: str = run_default("deploy_location")
#: The fields that say where a Vertex resource lives (of settings, a deployment, a record).
PLACE = ("project", "location", "api_endpoint")
#: The fields that say what machine it runs on (RunConfig keys of the same names).
MACHINE = ("machine_type", "accelerator_type", "accelerator_count")


@dataclass(frozen=True)
class VertexSettings:
    """Project, region and API address of the endpoints and jobs, and the machine they run on
    (None: the base model's contract, else ``hardware.FALLBACK``)."""

    project: str = ""
    #: A region; empty: the one recorded for the resource, else DEFAULT_LOCATION.
    location: str = ""
    api_endpoint: str = ""
    machine_type: str | None = None
    accelerator_type: str | None = None
    accelerator_count: int | None = None

    @classmethod
    def from_config(cls, cfg: Any) -> VertexSettings:
        """From a RunConfig: ``project`` (else ``$GOOGLE_CLOUD_PROJECT``), ``deploy_location``
        (else ``location``), ``api_endpoint`` and the machine keys."""
        return cls(
            project=default_project(cfg.project),
            location=cfg.deploy_location or cfg.location,
            api_endpoint=cfg.api_endpoint or "",
            **{key: getattr(cfg, key) for key in MACHINE},
        )

    def hardware(self, base_model: str = "") -> hw.Hardware:
        """The machine: each value given wins, the rest from ``base_model``'s contract."""
        return hw.choose(
            base_model, self.machine_type, self.accelerator_type, self.accelerator_count
        )

    @property
    def region(self) -> str:
        """``location``, or :data:`DEFAULT_LOCATION` when unset."""
        return self.location or DEFAULT_LOCATION
