"""The per-model contract table: what Vertex AI accepts for each base model (id, tuning modes,
adapter sizes, sequence limits, hyperparameters, tuning regions, default deploy hardware), read
once from routerlib/data/models.yaml (each row with its source and date: docs/vertex-facts.md),
and the rules built on it. Nothing else restates the table."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.dataclasses import dataclass

from routerlib.paths import packaged_file, resolve
from routerlib.tables import read_yaml

#: The embedded default: a tiny Llama-style model routerlib builds offline (see tinymodel.py).
EMBEDDED_MODEL = "routerlib/tiny-router-lm"
MODELS_FILE = "models.yaml"
#: A base model naming a file with this suffix is a GGUF file (local backend: transformers loads
#: it with ``gguf_file=``, de-quantized to float weights).
GGUF_SUFFIX = ".gguf"


def gguf_path(base_model: str) -> Path | None:
    """The GGUF file ``base_model`` names (a user path), or None when it names no ``.gguf`` file."""
    return resolve(base_model) if base_model.lower().endswith(GGUF_SUFFIX) else None


PEFT = "PEFT_ADAPTER"
FULL = "FULL"

#: The long form of a publisher model id Vertex also accepts (google/skills
#: skills/cloud/agent-platform-tuning/references/models.md, "Model Resource Name Format": "The
#: longer form `publishers/{publisher}/models/{model_id}@{version_id}` is also accepted").
LONG_ID = re.compile(r"publishers/([^/]+)/models/([^/]+)")
#: Hyperparameters Vertex takes for open models (SDK field names): google-genai 2.34.0
#: types.CreateTuningJobConfig says ``learning_rate`` "OSS models only",
#: ``learning_rate_multiplier`` "1P models only. Mutually exclusive with learning_rate" (Gemini
#: models), ``batch_size`` "only supported for OSS models".
OPEN_MODEL_HYPERPARAMETERS = frozenset({"epoch_count", "learning_rate", "adapter_size"})
#: LoRA ranks. The open-model page lists none; google-cloud-aiplatform 2.7.0
#: vertexai/tuning/_supervised_tuning.py ``train`` takes exactly ``Literal[1, 4, 8, 16, 32]``
#: (google-genai's AdapterSize enum also has 2).
ADAPTER_SIZES: tuple[int, ...] = (1, 4, 8, 16, 32)
#: Used for a base model that is not in the table (a Hugging Face id or local path).
DEFAULT_MAX_SEQ_LEN = 4096
#: Where endpoints live when the config does not say: a deployment needs a real region.
DEFAULT_DEPLOY_LOCATION = "us-central1"
#: Characters per token of the generic estimate (sequence limits at prepare, a model without a
#: billed ratio in the price table): ceil(characters / 4) of prompt + completion. The cost estimate
#: uses each model's billed tokens per character instead (routerlib/data/pricing.yaml).
CHARS_PER_TOKEN = 4.0


_STRICT = ConfigDict(extra="forbid")


@dataclass(frozen=True, config=_STRICT)
class DeployHardware:
    """The machine an endpoint for a tuned copy of the model runs on (``source``: where it was
    read; not part of equality, so a params file's three values compare equal to the row)."""

    machine_type: str
    accelerator_type: str
    accelerator_count: int
    source: str = field(default="", compare=False)


@dataclass(frozen=True, config=_STRICT)
class ModelContract:
    """What Vertex AI accepts for one base model, with where and when that was read."""

    model_id: str
    display: str
    tuning_modes: tuple[str, ...]
    max_seq_len_peft: int
    max_seq_len_full: int
    deploy: DeployHardware
    checked: str
    source: str
    adapter_sizes: tuple[int, ...] = ADAPTER_SIZES
    hyperparameters: frozenset[str] = OPEN_MODEL_HYPERPARAMETERS
    tuning_regions: tuple[str, ...] = ()
    regions_source: str = ""
    deploy_source: str = ""
    #: Other machines Google's own notebooks deploy this model on (e.g. H100 instead of L4).
    deploy_alternatives: tuple[DeployHardware, ...] = ()
    managed_tuning: bool = True
    note: str = ""

    def takes(self, hyperparameter: str) -> bool:
        """True when Vertex accepts ``hyperparameter`` (an SDK field name) for this model."""
        return hyperparameter in self.hyperparameters


class ModelTable(BaseModel):
    """routerlib/data/models.yaml: the contracts and the facts they share, with their sources."""

    model_config = _STRICT

    checked: str
    sources: dict[str, str]  # shared by the rows (YAML anchors)
    hardware: dict[str, DeployHardware]  # ditto
    open_model_regions: tuple[str, ...]
    regions_source: str
    global_runs_in: tuple[str, ...]  # where a global job runs (its tuned model carries that region)
    max_validation_rows: int
    max_validation_bytes_share: float
    validation_source: str
    renamed: dict[str, str]  # older id -> current id (config validation names the replacement)
    contracts: list[ModelContract]
    embedded: ModelContract


TABLE = read_yaml(packaged_file(MODELS_FILE), ModelTable, "model table")
CONTRACTS: dict[str, ModelContract] = {c.model_id: c for c in TABLE.contracts}
#: Every row routerlib knows, the embedded model (local only: limits, no Vertex contract) included.
MODELS: dict[str, ModelContract] = {**CONTRACTS, EMBEDDED_MODEL: TABLE.embedded}


def short_id(base_model: str) -> str:
    """``base_model`` in the table's short form: ``publishers/{publisher}/models/{model}@{v}``
    becomes ``{publisher}/{model}@{v}``; any other id comes back as it is."""
    match = LONG_ID.fullmatch(base_model.strip())
    return f"{match[1]}/{match[2]}" if match else base_model


def contract(base_model: str) -> ModelContract | None:
    """The Vertex contract of ``base_model`` (short or long id); None for any other."""
    return CONTRACTS.get(short_id(base_model))


def model_info(base_model: str) -> ModelContract | None:
    """The table row of ``base_model`` (the embedded model included), or None when unknown."""
    return MODELS.get(short_id(base_model))


def unchecked_line(base_model: str) -> str:
    """The one line printed when an id the table does not know goes to the server."""
    return (
        f"note: {base_model} is not in routerlib's model table (routerlib/data/models.yaml): "
        "preflight could not check its modes, adapter sizes, regions or sequence limit; the "
        "server decides"
    )


def max_seq_len(base_model: str, tuning_mode: str = PEFT) -> int:
    """The sequence limit to check examples against for this model and mode."""
    info = model_info(base_model)
    if info is None:
        return DEFAULT_MAX_SEQ_LEN
    return info.max_seq_len_full if tuning_mode == FULL else info.max_seq_len_peft


def tuning_problems(fields: Mapping[str, Any]) -> list[str]:
    """The cross-field tuning rules over a RunConfig's or a TuningSpec's ``fields`` (base_model,
    tuning_mode, adapter_size, learning_rate, learning_rate_multiplier); each line starts with
    its key."""
    base_model, tuning_mode = str(fields["base_model"]), str(fields["tuning_mode"])
    adapter_size = fields["adapter_size"]
    problems = []
    gguf = gguf_path(base_model)
    if gguf is not None and not gguf.is_file():
        problems.append(f"base_model: {gguf}: no such GGUF file")
    if fields["learning_rate"] is not None and fields["learning_rate_multiplier"] is not None:
        problems.append(
            "learning_rate: learning_rate and learning_rate_multiplier are exclusive; set one, not both"
        )
    info = model_info(base_model)  # routerlib's ranks for a model not in the table
    sizes = info.adapter_sizes if info else ADAPTER_SIZES
    if tuning_mode == PEFT and adapter_size not in sizes:
        problems.append(
            f"adapter_size: adapter_size {adapter_size} is not allowed under PEFT_ADAPTER; "
            f"use one of {sizes}"
        )
    if tuning_mode != PEFT and adapter_size is not None:
        problems.append(
            "adapter_size: adapter_size applies to PEFT_ADAPTER only; set it to null for FULL"
        )
    return problems


def contract_problems(fields: Mapping[str, Any]) -> list[str]:
    """What the table says Vertex would refuse for a request's ``fields`` (base_model x
    tuning_mode, learning_rate_multiplier, the tuning ``location`` when given; the adapter size is
    :func:`tuning_problems`'); each line starts with the key. An id the table does not know gives
    one line naming the current id when it was renamed."""
    base_model, tuning_mode = str(fields["base_model"]), str(fields["tuning_mode"])
    location, multiplier = fields.get("location"), fields.get("learning_rate_multiplier")
    current = TABLE.renamed.get(short_id(base_model))
    if current:
        return [
            f"base_model: {base_model} is an older id; the current Vertex id is {current} "
            f"(routerlib/data/models.yaml, checked {TABLE.checked})"
        ]
    row = contract(base_model)
    if row is None:
        return []
    problems = []
    if tuning_mode not in row.tuning_modes:
        problems.append(
            f"tuning_mode: {row.display} ({base_model}) is tuned with "
            f"{' or '.join(row.tuning_modes)} only, not {tuning_mode}"
        )
    if multiplier is not None and not row.takes("learning_rate_multiplier"):
        problems.append(
            f"learning_rate_multiplier: {row.display} is an open model; Vertex takes "
            "learning_rate for it (the multiplier is for Gemini models only): use learning_rate"
        )
    if location is not None and location not in row.tuning_regions:
        problems.append(
            f"location: {row.display} is not tuned in {location!r}; use one of "
            f"{', '.join(row.tuning_regions)} ({row.regions_source})"
        )
    return problems


def validation_problems(train_bytes: int, validation_bytes: int, validation_rows: int) -> list[str]:
    """Where a validation file breaks Vertex's limits (the table's max_validation_rows rows and
    max_validation_bytes_share of the training bytes); each line starts with the key to change."""
    problems = []
    if validation_rows > TABLE.max_validation_rows:
        problems.append(
            f"val_ratio: the validation file has {validation_rows:,} rows; Vertex takes at most "
            f"{TABLE.max_validation_rows:,}: lower val_ratio (or limit the validation rows)"
        )
    limit = TABLE.max_validation_bytes_share * train_bytes
    if validation_bytes > limit:
        share = validation_bytes / train_bytes if train_bytes else float("inf")
        problems.append(
            f"val_ratio: the validation file is {validation_bytes:,} bytes, {share:.1%} of the "
            f"training file's {train_bytes:,}; Vertex takes at most "
            f"{TABLE.max_validation_bytes_share:.0%}: lower val_ratio (0.1 leaves about 11%)"
        )
    return problems


#: Cloud Storage multi-regions and the region prefixes they hold (Cloud Storage bucket
#: locations: US, EU and ASIA are the multi-regions).
_MULTI_REGIONS = {"us": ("us-",), "eu": ("europe-",), "asia": ("asia-",)}


def bucket_problem(
    tuning_location: str,
    bucket: str,
    bucket_location: str,
    location_type: str,
    data_locations: tuple[str, ...] = (),
) -> str | None:
    """Why a bucket in ``bucket_location`` (``location_type`` region / dual-region /
    multi-region, as Cloud Storage reports them) may not serve tuning in ``tuning_location``, or
    None when it fits.

    google/skills data_prep.md (Bucket Considerations): a ``global`` job may run in us-central1 or
    europe-west4, so its bucket should be a multi-region (US, or EU); "Only pin the bucket to a
    single region when the tuning job itself is pinned to that region". vertex-ai-samples
    open-model data_prep.md: "create one in the same region as your tuning job".
    """
    where = bucket_location.lower()
    kind = location_type.lower()
    placed = tuple(d.lower() for d in data_locations)
    if tuning_location == "global":
        if kind == "multi-region" and where in ("us", "eu"):
            return None
        return (
            f"bucket gs://{bucket} is in {bucket_location} ({location_type}); a "
            f"global tuning job runs in {' or '.join(TABLE.global_runs_in)}, so Google advises a "
            "multi-region bucket (US, or EU): use one, or pin location to the bucket's region"
        )
    region = tuning_location.lower()
    held = kind == "multi-region" and region.startswith(_MULTI_REGIONS.get(where, ("\0",)))
    if where == region or region in placed or held:
        return None
    return (
        f"bucket gs://{bucket} is in {bucket_location} ({location_type}), not in "
        f"{tuning_location} where the job tunes: use a bucket in {tuning_location} (or a "
        "multi-region holding it), or tune where the bucket is"
    )


def estimate_tokens(text: str) -> int:
    """Estimated token count of ``text``: ceil(len(text) / CHARS_PER_TOKEN)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)
