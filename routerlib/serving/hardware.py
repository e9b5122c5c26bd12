"""Deploy hardware that fits: accelerator memory per type, the checkpoint's size, the fit check,
(Vertex's own recommendations are ``serving.vertex.deploy_options``).

Accelerator memory (GB of device memory per accelerator) is read from Google Cloud's GPU
machine-type page ("GPU machine types", Compute Engine docs: G2 = L4 24 GB, A2 = A100 40/80 GB,
A3 = H100 80 GB, A3 Ultra = H200 141 GB, A4 = B200 180 GB, N1 = T4/V100 16 GB, P100 16 GB,
P4 8 GB). A checkpoint fits when its weights take at most ``WEIGHT_SHARE`` (80 %) of the
machine's accelerator memory: the vLLM serving container claims 90 % of device memory by default
(``--gpu-memory-utilization 0.9``) and what the weights leave of that must hold the KV cache.
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

    def label(self) -> str:
        return f"{self.machine_type} with {self.accelerator_count} x {self.accelerator_type}"


def contract_hardware(base_model: str) -> Hardware | None:
    """The deploy hardware of ``base_model``'s contract (routerlib.models), when it has one."""
    row = models.contract(base_model) if base_model else None
    deploy = getattr(row, "deploy", None)
    if deploy is None or not deploy.accelerator_type or deploy.accelerator_count < 1:
        return None  # no Vertex deploy shape (e.g. the embedded CPU model)
    return Hardware(deploy.machine_type, deploy.accelerator_type, int(deploy.accelerator_count))


def choose(
    base_model: str,
    machine_type: str | None,
    accelerator_type: str | None,
    accelerator_count: int | None,
) -> Hardware:
    """What to deploy on: each value given wins, the rest come from the model's contract, then
    from FALLBACK."""
    default = contract_hardware(base_model) or Hardware(*FALLBACK)
    return Hardware(
        machine_type or default.machine_type,
        accelerator_type or default.accelerator_type,
        int(accelerator_count or default.accelerator_count),
    )


def checkpoint_bytes(checkpoint_uri: str, client: Any = None) -> int | None:
    """Size of the weights in a checkpoint folder (gs:// or local): ``metadata.total_size`` of
    ``model.safetensors.index.json`` when present, else the sum of ``*.safetensors`` (or
    ``*.bin``) sizes. None when the folder holds no weights routerlib recognises."""
    if not storage.is_gcs_uri(checkpoint_uri):
        folder = Path(checkpoint_uri)
        files = {p.name: p.stat().st_size for p in folder.glob("*") if p.is_file()}
        index_text = (
            (folder / "model.safetensors.index.json").read_text(encoding="utf-8")
            if "model.safetensors.index.json" in files
            else None
        )
    else:
        bucket, prefix = storage.parse_gcs_uri(checkpoint_uri)
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        client = client or storage.gcs_client()
        try:
            blobs = list(client.list_blobs(bucket, prefix=prefix, delimiter="/"))
        except Exception as exc:
            raise RemoteError(f"listing {checkpoint_uri} failed: {exc}") from exc
        files = {b.name[len(prefix) :]: int(b.size or 0) for b in blobs}
        index_text = None
        if "model.safetensors.index.json" in files:
            index_text = storage.read_text(
                f"gs://{bucket}/{prefix}model.safetensors.index.json", client
            )
    if index_text is not None:
        try:
            total = json.loads(index_text)["metadata"]["total_size"]
            return int(total)
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


def fitting(weights: int, options: list[Hardware]) -> list[Hardware]:
    """The options among ``options`` whose accelerator memory is known to hold ``weights``."""
    return [o for o in options if fits(weights, o)]


#: Shapes offered when a deploy is refused (Vertex machine types and their accelerators).
KNOWN_SHAPES = (
    Hardware("g2-standard-12", "NVIDIA_L4", 1),
    Hardware("g2-standard-24", "NVIDIA_L4", 2),
    Hardware("g2-standard-48", "NVIDIA_L4", 4),
    Hardware("g2-standard-96", "NVIDIA_L4", 8),
    Hardware("a2-highgpu-1g", "NVIDIA_TESLA_A100", 1),
    Hardware("a2-highgpu-2g", "NVIDIA_TESLA_A100", 2),
    Hardware("a2-highgpu-4g", "NVIDIA_TESLA_A100", 4),
    Hardware("a2-ultragpu-1g", "NVIDIA_A100_80GB", 1),
    Hardware("a2-ultragpu-2g", "NVIDIA_A100_80GB", 2),
    Hardware("a3-highgpu-1g", "NVIDIA_H100_80GB", 1),
    Hardware("a3-highgpu-2g", "NVIDIA_H100_80GB", 2),
)


def check_fit(checkpoint_uri: str, hardware: Hardware, client: Any = None) -> int | None:
    """Refuse (InputError, before any deploy request) a machine whose accelerator memory is known
    to be too small for the checkpoint; the message lists shapes that fit. Returns the size.

    A checkpoint whose size cannot be read here (no Cloud Storage access from this machine) is
    not refused: a warning says the fit was not checked and Vertex judges the deploy itself."""
    try:
        weights = checkpoint_bytes(checkpoint_uri, client)
    except RemoteError as exc:
        print(f"warning: fit not checked: {exc}", file=sys.stderr)
        return None
    if weights is None or fits(weights, hardware) is not False:
        return weights
    options = fitting(weights, list(KNOWN_SHAPES))
    listed = "; ".join(o.label() for o in options[:5]) or "none of the known shapes"
    raise InputError(
        f"{checkpoint_uri}: {weights / GB:.1f} GB of weights do not fit {hardware.label()} "
        f"({hardware.memory_gb():g} GB, weights may use {WEIGHT_SHARE:.0%}); shapes that fit: "
        f"{listed} (`routerlib deploy --list-options --checkpoint {checkpoint_uri}` asks Vertex)"
    )
