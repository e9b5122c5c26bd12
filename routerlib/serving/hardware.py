"""Deploy hardware that fits: accelerator memory per type (Google Cloud "GPU machine types",
Compute Engine docs), the checkpoint's size, the fit check (weights may take ``WEIGHT_SHARE`` of
the accelerator memory: docs/serving.md, "Hardware that fits").
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from routerlib import models, storage
from routerlib.errors import InputError, RemoteError

#: GB of memory per accelerator, by the Vertex AcceleratorType name.
ACCELERATOR_MEMORY_GB: dict[str, float] = {
    "NVIDIA_L4": 24,
    "NVIDIA_TESLA_T4": 16,
    "NVIDIA_TESLA_V100": 16,
    "NVIDIA_TESLA_P100": 16,
    "NVIDIA_TESLA_P4": 8,
    "NVIDIA_TESLA_A100": 40,
    "NVIDIA_A100_80GB": 80,
    "NVIDIA_H100_80GB": 80,
    "NVIDIA_H100_MEGA_80GB": 80,
    "NVIDIA_H200_141GB": 141,
    "NVIDIA_B200": 180,
}
#: Largest share of accelerator memory the weights may take (the rest is KV cache).
WEIGHT_SHARE = 0.8
#: Deploy hardware when neither the caller nor the model's contract names one.
FALLBACK = ("g2-standard-12", "NVIDIA_L4", 1)
GB = 1e9


@dataclass(frozen=True)
class Hardware:
    """One machine shape: machine type, accelerator type and count."""

    machine_type: str
    accelerator_type: str
    accelerator_count: int

    def memory_gb(self) -> float | None:
        """Total accelerator memory, or None for an accelerator routerlib has no figure for."""
        per = ACCELERATOR_MEMORY_GB.get(self.accelerator_type)
        return per * self.accelerator_count if per is not None else None

    @classmethod
    def of(cls, row: Any) -> Hardware:
        """The shape of a row with the three fields (``models.DeployHardware``, a record)."""
        return cls(row.machine_type, row.accelerator_type, int(row.accelerator_count))

    def label(self) -> str:
        return f"{self.machine_type} with {self.accelerator_count} x {self.accelerator_type}"


def choose(
    base_model: str,
    machine_type: str | None,
    accelerator_type: str | None,
    accelerator_count: int | None,
) -> Hardware:
    """What to deploy on: each value given wins, the rest come from the model's contract
    (``routerlib.models``), then from FALLBACK."""
    row = models.contract(base_model) if base_model else None
    default = Hardware(*FALLBACK)
    if row is not None and row.deploy.accelerator_type and row.deploy.accelerator_count >= 1:
        default = Hardware.of(row.deploy)  # not the embedded model's CPU
    return Hardware(
        machine_type or default.machine_type,
        accelerator_type or default.accelerator_type,
        int(accelerator_count or default.accelerator_count),
    )


def checkpoint_bytes(checkpoint_uri: str) -> int | None:
    """Size of the weights in a checkpoint folder (gs:// or local): ``metadata.total_size`` of
    ``model.safetensors.index.json`` when present, else the sum of ``*.safetensors`` (or
    ``*.bin``) sizes. None when the folder holds no weights routerlib recognises."""
    index = "model.safetensors.index.json"
    if not storage.is_gcs_uri(checkpoint_uri):
        files = {p.name: p.stat().st_size for p in Path(checkpoint_uri).glob("*") if p.is_file()}
        index_uri = str(Path(checkpoint_uri) / index)
    else:
        bucket, prefix = storage.parse_gcs_uri(checkpoint_uri)
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        try:
            blobs = list(storage.gcs_client().list_blobs(bucket, prefix=prefix, delimiter="/"))
        except Exception as exc:
            raise RemoteError(f"listing {checkpoint_uri} failed: {exc}") from exc
        files = {b.name[len(prefix) :]: int(b.size or 0) for b in blobs}
        index_uri = f"gs://{bucket}/{prefix}{index}"
    if index in files:
        try:
            return int(json.loads(storage.read_text(index_uri))["metadata"]["total_size"])
        except (ValueError, KeyError, TypeError):
            pass  # fall back to the file sizes
    for suffix in (".safetensors", ".bin"):
        sizes = [size for name, size in files.items() if name.endswith(suffix)]
        if sizes:
            return sum(sizes)
    return None


def fits(weights: int, hardware: Hardware) -> bool | None:
    """Whether ``weights`` bytes fit ``hardware`` (None: accelerator memory unknown)."""
    memory = hardware.memory_gb()
    return None if memory is None else weights <= WEIGHT_SHARE * memory * GB


def check_fit(checkpoint_uri: str, hardware: Hardware) -> int | None:
    """Refuse (InputError) a machine known to be too small for the checkpoint, listing shapes
    that fit; returns the size (None, with a warning, when it cannot be read)."""
    try:
        weights = checkpoint_bytes(checkpoint_uri)
    except RemoteError as exc:
        print(f"warning: fit not checked: {exc}", file=sys.stderr)
        return None
    if weights is None or fits(weights, hardware) is not False:
        return weights
    # the model contracts' deploy shapes that fit, smallest accelerator memory first
    rows = {d for c in models.CONTRACTS.values() for d in (c.deploy, *c.deploy_alternatives)}
    shapes = {Hardware.of(d) for d in rows}
    options = [h for h in shapes if fits(weights, h)]
    options.sort(key=lambda h: (h.memory_gb() or 0, h.machine_type))
    listed = "; ".join(o.label() for o in options[:5]) or "none of the known shapes"
    raise InputError(
        f"{checkpoint_uri}: {weights / GB:.1f} GB of weights do not fit {hardware.label()} "
        f"({hardware.memory_gb():g} GB, weights may use {WEIGHT_SHARE:.0%}); shapes that fit: "
        f"{listed} (`routerlib deploy --list-options --checkpoint {checkpoint_uri}` asks Vertex)"
    )
