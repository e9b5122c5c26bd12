"""The per-model contract table, in one place: what Vertex AI accepts for each base model.

Every rule about a base model lives here: its Vertex model id, the tuning modes and adapter sizes
it takes, its sequence limit per mode, the hyperparameters it accepts, the regions it is tuned in
and the hardware a tuned copy is deployed on by default. Config validation (config.py), the tuning
spec (tuning/base.py), routerlib's preflight (jobs.py) and the Vertex stand-in
(tests/support/fake_vertex.py) all read this table; nothing else restates it.

Each block names the page it was read from and the date it was checked. The docs move fast:
re-check them (and the installed google-genai's ``CreateTuningJobConfig``) before trusting a row.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from routerlib import paths

#: The embedded default: a tiny Llama-style model routerlib builds offline (see tinymodel.py).
EMBEDDED_MODEL = "routerlib/tiny-router-lm"
#: A base model naming a file with this suffix is a GGUF file (local backend: transformers loads
#: it with ``gguf_file=``, de-quantized to float weights).
GGUF_SUFFIX = ".gguf"


def gguf_path(base_model: str) -> Path | None:
    """The GGUF file ``base_model`` names (absolute, or relative to the project root like every
    user path), or None when it names no ``.gguf`` file."""
    if not base_model.lower().endswith(GGUF_SUFFIX):
        return None
    return paths.resolve(base_model)


#: Pages the table was read from (stored copies, read 2026-12-01).
#: OPEN_MODEL_TUNING: "Supervised and distillation fine-tuning for open models", footer
#: "Last updated 2026-09-25 UTC" (the page moved from vertex-ai/generative-ai/docs/models/
#: open-model-tuning, whose older copy listed us-central1 and europe-west4 only).
OPEN_MODEL_TUNING = (
    "https://docs.cloud.google.com/gemini-enterprise-agent-platform/models/tuning/open-model-tuning"
)
OPEN_MODEL_TUNING_OLD = (
    "https://docs.cloud.google.com/vertex-ai/generative-ai/docs/models/open-model-tuning"
)
#: google-genai 2.34.0 types.CreateTuningJobConfig: ``learning_rate`` "OSS models only",
#: ``learning_rate_multiplier`` "1P models only. Mutually exclusive with learning_rate",
#: ``batch_size`` "only supported for OSS models"; AdapterSize has 1, 2, 4, 8, 16, 32.
SDK_SOURCE = "google-genai 2.34.0 google/genai/types.py CreateTuningJobConfig, AdapterSize"
#: google-cloud-aiplatform 2.7.0 vertexai/tuning/_supervised_tuning.py ``train``: adapter_size is
#: ``Literal[1, 4, 8, 16, 32]``; learning_rate "Can only be used with OSS models",
#: learning_rate_multiplier "Can only be used with 1P models".
AIPLATFORM_SOURCE = "google-cloud-aiplatform 2.7.0 vertexai/tuning/_supervised_tuning.py train"
CHECKED = "2026-12-01"

PEFT = "PEFT_ADAPTER"
FULL = "FULL"

#: Where the tuning regions were read: Google's agent skill for open-model tuning (google/skills,
#: skills/cloud/agent-platform-tuning/SKILL.md section 0.2 "Open Models", commit 1730bfd of
#: 2026-08-19; the file states no date of its own): "These are the only locations available for
#: open model tuning": ``global`` (recommended: the service picks a region with capacity) and five
#: regions. vertex-ai-samples skills/vertex-tuning/open-model/SKILL.md (2026-03-11) lists the same
#: five regions. No source read lists asia-southeast2, which the table held before.
REGIONS_SOURCE = (
    "google/skills skills/cloud/agent-platform-tuning/SKILL.md (0.2 Open Models; commit "
    "2026-08-19, no date stated in the file)"
)
OPEN_MODEL_REGIONS = (
    "global",
    "us-central1",
    "europe-west4",
    "us-west1",
    "us-east5",
    "asia-southeast1",
)
#: Where a ``global`` job really runs (same SKILL.md: "`global` currently runs the job in either
#: `us-central1` or `europe-west4`"); its tuned model and checkpoints carry that region.
GLOBAL_RUNS_IN = ("us-central1", "europe-west4")
#: The long form of a publisher model id Vertex also accepts (google/skills
#: skills/cloud/agent-platform-tuning/references/models.md, "Model Resource Name Format": "The
#: longer form `publishers/{publisher}/models/{model_id}@{version_id}` is also accepted").
LONG_ID = re.compile(r"publishers/([^/]+)/models/([^/]+)")
#: Hyperparameters Vertex takes for open models (SDK field names). ``learning_rate_multiplier``
#: is documented for Google's own (Gemini) models only.
OPEN_MODEL_HYPERPARAMETERS = frozenset({"epoch_count", "learning_rate", "adapter_size"})
#: LoRA ranks. The open-model page lists none; the Vertex AI SDK's sft.train takes exactly
#: 1, 4, 8, 16, 32 (AIPLATFORM_SOURCE); google-genai's AdapterSize enum also has 2.
ADAPTER_SIZES: tuple[int, ...] = (1, 4, 8, 16, 32)
#: Used for a base model that is not in the table (a Hugging Face id or local path).
DEFAULT_MAX_SEQ_LEN = 4096
#: Where endpoints live when the config does not say: a deployment needs a real region.
DEFAULT_DEPLOY_LOCATION = "us-central1"

#: Validation split limits of open-model tuning (google/skills
#: skills/cloud/agent-platform-tuning/references/data_prep.md, "Dataset Requirements": "no more
#: than 25% of the training dataset **file size in bytes**, and no more than 5000 rows"; its
#: scripts/prepare_dataset.py: MAX_VALIDATION_RATIO = 0.25; commit 2026-08-19, no date stated).
MAX_VALIDATION_ROWS = 5000
MAX_VALIDATION_BYTES_SHARE = 0.25
VALIDATION_SOURCE = (
    "google/skills skills/cloud/agent-platform-tuning/references/data_prep.md (Dataset "
    "Requirements; commit 2026-08-19, no date stated in the file)"
)

#: Characters per token of the generic estimate (sequence limits at prepare, a model without a
#: billed ratio in the price table): ceil(characters / 4) of prompt + completion. The cost estimate
#: uses each model's billed tokens per character instead (routerlib/data/pricing.yaml).
CHARS_PER_TOKEN = 4.0


@dataclass(frozen=True)
class DeployHardware:
    """The machine an endpoint for a tuned copy of the model runs on (``source``: where it was
    read; not part of equality, so a params file's three values compare equal to the row)."""

    machine_type: str
    accelerator_type: str
    accelerator_count: int
    source: str = field(default="", compare=False)


@dataclass(frozen=True)
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
    tuning_regions: tuple[str, ...] = OPEN_MODEL_REGIONS
    regions_source: str = REGIONS_SOURCE
    deploy_source: str = ""
    #: Other machines Google's own notebooks deploy this model on (e.g. H100 instead of L4).
    deploy_alternatives: tuple[DeployHardware, ...] = ()
    managed_tuning: bool = True
    note: str = ""

    def max_seq_len(self, tuning_mode: str) -> int:
        """The sequence limit under ``tuning_mode`` (PEFT_ADAPTER or FULL)."""
        return self.max_seq_len_full if tuning_mode == FULL else self.max_seq_len_peft

    def takes(self, hyperparameter: str) -> bool:
        """True when Vertex accepts ``hyperparameter`` (an SDK field name) for this model."""
        return hyperparameter in self.hyperparameters


#: Kept for callers of the older name: a contract row is what ``model_info`` returns.
ModelInfo = ModelContract

#: Deploy hardware, each row read from a Google notebook that deploys that model (dates: the
#: notebook's last commit in GoogleCloudPlatform/vertex-ai-samples; the notebooks state none).
VAS = "GoogleCloudPlatform/vertex-ai-samples"
_LLAMA_NOTEBOOK = (
    f"{VAS} notebooks/community/model_garden/model_garden_pytorch_llama3_1_deployment.ipynb "
    "(vLLM: an 8B model on g2-standard-12 with 1 NVIDIA_L4; Fast Deployment of "
    "llama-3.1-8b-instruct on a2-ultragpu-1g; last commit 2026-02-05)"
)
_AGENT_NOTEBOOK = (
    f"{VAS} notebooks/community/model_garden/model_garden_integration_with_agent.ipynb "
    "(deploy cell: gemma-3-27b-it and Qwen3-32B on g2-standard-48 with 4 NVIDIA_L4, or "
    "a3-highgpu-2g with 2 NVIDIA_H100_80GB; last commit 2026-06-03)"
)
#: The open-model tuning page deploys a tuned Llama 3.1 8B with g2-standard-12 + 1 NVIDIA_L4.
_DEPLOY_DOC = OPEN_MODEL_TUNING + " (Deploy tuned model)"
_L4_ONE = DeployHardware("g2-standard-12", "NVIDIA_L4", 1, _LLAMA_NOTEBOOK)
_A100_80_ONE = DeployHardware("a2-ultragpu-1g", "NVIDIA_A100_80GB", 1, _LLAMA_NOTEBOOK)
_L4_FOUR = DeployHardware("g2-standard-48", "NVIDIA_L4", 4, _AGENT_NOTEBOOK)
_H100_TWO = DeployHardware("a3-highgpu-2g", "NVIDIA_H100_80GB", 2, _AGENT_NOTEBOOK)

CONTRACTS: dict[str, ModelContract] = {
    c.model_id: c
    for c in (
        ModelContract(
            model_id="meta/llama3_1@llama-3.1-8b-instruct",
            display="Llama 3.1 8B Instruct",
            tuning_modes=(PEFT, FULL),
            max_seq_len_peft=4096,
            max_seq_len_full=8192,
            deploy=_L4_ONE,
            deploy_source=f"{_LLAMA_NOTEBOOK}; {_DEPLOY_DOC}",
            deploy_alternatives=(_A100_80_ONE,),
            checked=CHECKED,
            source=OPEN_MODEL_TUNING,
            note="4,096 (PEFT) / 8,192 (FULL) as the older page states; the 2026-09-25 page's "
            "table (flattened in the copy read) shows 8,192: the stricter limit is kept",
        ),
        ModelContract(
            model_id="meta/llama3_1@llama-3.1-8b",
            display="Llama 3.1 8B",
            tuning_modes=(PEFT, FULL),
            max_seq_len_peft=4096,
            max_seq_len_full=8192,
            deploy=_L4_ONE,
            deploy_source=f"{_LLAMA_NOTEBOOK}; {_DEPLOY_DOC}",
            deploy_alternatives=(_A100_80_ONE,),
            checked=CHECKED,
            source=OPEN_MODEL_TUNING,
        ),
        ModelContract(
            model_id="google/gemma3@gemma-3-27b-it",
            display="Gemma 3 27B IT",
            tuning_modes=(PEFT, FULL),
            max_seq_len_peft=8192,
            max_seq_len_full=8192,
            deploy=_L4_FOUR,
            deploy_source=_AGENT_NOTEBOOK,
            deploy_alternatives=(_H100_TWO,),
            checked=CHECKED,
            source=OPEN_MODEL_TUNING,
            note="was google/gemma-3-27b-it on the older page",
        ),
        ModelContract(
            model_id="qwen/qwen3@qwen3-32b",
            display="Qwen 3 32B",
            tuning_modes=(PEFT, FULL),
            max_seq_len_peft=8192,
            max_seq_len_full=8192,
            deploy=_L4_FOUR,
            deploy_source=_AGENT_NOTEBOOK,
            deploy_alternatives=(_H100_TWO,),
            checked=CHECKED,
            source=OPEN_MODEL_TUNING,
            note="listed as tunable (PEFT and FULL); the seed's refusal was for "
            "qwen3-30b-a3b-instruct-2507, which the page does not list",
        ),
    )
}

#: Older ids that now have a current one: config validation names the replacement.
RENAMED: dict[str, str] = {"google/gemma-3-27b-it": "google/gemma3@gemma-3-27b-it"}

#: The embedded model trains locally only; it has limits but no Vertex contract.
EMBEDDED_INFO = ModelContract(
    model_id=EMBEDDED_MODEL,
    display="routerlib tiny LM (embedded, CPU)",
    tuning_modes=(PEFT, FULL),
    max_seq_len_peft=4096,
    max_seq_len_full=4096,
    deploy=DeployHardware("local-cpu", "", 0),
    checked=CHECKED,
    source="routerlib/tinymodel.py",
    hyperparameters=frozenset({"epoch_count", "learning_rate", "learning_rate_multiplier"}),
    tuning_regions=(),
    managed_tuning=False,
)

#: Kept for callers of the older name: every row routerlib knows, the embedded model included.
MODELS: dict[str, ModelContract] = {**CONTRACTS, EMBEDDED_MODEL: EMBEDDED_INFO}


def short_id(base_model: str) -> str:
    """``base_model`` in the table's short form: ``publishers/{publisher}/models/{model}@{v}``
    becomes ``{publisher}/{model}@{v}``; any other id comes back as it is."""
    match = LONG_ID.fullmatch(base_model.strip())
    return f"{match[1]}/{match[2]}" if match else base_model


def contract(base_model: str) -> ModelContract | None:
    """The Vertex contract of ``base_model``, short or ``publishers/…/models/…`` form (None for
    the embedded model and unknown ids)."""
    return CONTRACTS.get(short_id(base_model))


def model_info(base_model: str) -> ModelContract | None:
    """The table row of ``base_model`` (the embedded model included), or None when unknown."""
    return MODELS.get(short_id(base_model))


def unchecked_line(base_model: str) -> str:
    """The one line printed when an id the table does not know goes to the server."""
    return (
        f"note: {base_model} is not in routerlib's model table (routerlib/models.py): preflight "
        "could not check its modes, adapter sizes, regions or sequence limit; the server decides"
    )


def max_seq_len(base_model: str, tuning_mode: str = PEFT) -> int:
    """The sequence limit to check examples against for this model and mode."""
    info = model_info(base_model)
    return info.max_seq_len(tuning_mode) if info else DEFAULT_MAX_SEQ_LEN


def adapter_sizes(base_model: str) -> tuple[int, ...]:
    """The LoRA ranks allowed for ``base_model`` (routerlib's set for models not in the table)."""
    info = model_info(base_model)
    return info.adapter_sizes if info else ADAPTER_SIZES


def tuning_problems(
    base_model: str,
    tuning_mode: str,
    adapter_size: int | None,
    learning_rate: float | None,
    learning_rate_multiplier: float | None,
) -> list[str]:
    """The cross-field rules of a tuning setup, for RunConfig and TuningSpec alike.

    Each line starts with the key to change.
    """
    problems = []
    gguf = gguf_path(base_model)
    if gguf is not None and not gguf.is_file():
        problems.append(f"base_model: {gguf}: no such GGUF file")
    if learning_rate is not None and learning_rate_multiplier is not None:
        problems.append(
            "learning_rate: learning_rate and learning_rate_multiplier are exclusive; set one, not both"
        )
    sizes = adapter_sizes(base_model)
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


def contract_problems(
    base_model: str,
    *,
    tuning_mode: str,
    adapter_size: int | None,
    learning_rate_multiplier: float | None = None,
    location: str | None = None,
) -> list[str]:
    """What the table says Vertex would refuse for this request; each line starts with the key.

    Only rules the table holds are checked here (model x mode x adapter, hyperparameters,
    tuning region); an id the table does not know gives one line naming the current id when it
    was renamed, and nothing otherwise (the server decides).
    """
    if short_id(base_model) in RENAMED:
        return [
            f"base_model: {base_model} is an older id; the current Vertex id is "
            f"{RENAMED[short_id(base_model)]} (routerlib/models.py, checked {CHECKED})"
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
    if tuning_mode == PEFT and adapter_size not in row.adapter_sizes:
        problems.append(
            f"adapter_size: {adapter_size} is not offered for {row.display}: use one of "
            f"{', '.join(map(str, row.adapter_sizes))}"
        )
    if learning_rate_multiplier is not None and not row.takes("learning_rate_multiplier"):
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
    """Where a validation file breaks Vertex's limits (at most MAX_VALIDATION_ROWS rows and
    MAX_VALIDATION_BYTES_SHARE of the training file's bytes); each line names the numbers and the
    fix and starts with the key to change."""
    problems = []
    if validation_rows > MAX_VALIDATION_ROWS:
        problems.append(
            f"val_ratio: the validation file has {validation_rows:,} rows; Vertex takes at most "
            f"{MAX_VALIDATION_ROWS:,}: lower val_ratio (or limit the validation rows)"
        )
    limit = MAX_VALIDATION_BYTES_SHARE * train_bytes
    if validation_bytes > limit:
        share = validation_bytes / train_bytes if train_bytes else float("inf")
        problems.append(
            f"val_ratio: the validation file is {validation_bytes:,} bytes, {share:.1%} of the "
            f"training file's {train_bytes:,}; Vertex takes at most "
            f"{MAX_VALIDATION_BYTES_SHARE:.0%}: lower val_ratio (0.1 leaves about 11%)"
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
            f"global tuning job runs in {' or '.join(GLOBAL_RUNS_IN)}, so Google advises a "
            "multi-region bucket (US, or EU): use one, or pin location to the bucket's region"
        )
    region = tuning_location.lower()
    if where == region or region in placed:
        return None
    if kind == "multi-region" and region.startswith(_MULTI_REGIONS.get(where, ("\0",))):
        return None
    return (
        f"bucket gs://{bucket} is in {bucket_location} ({location_type}), not in "
        f"{tuning_location} where the job tunes: use a bucket in {tuning_location} (or a "
        "multi-region holding it), or tune where the bucket is"
    )


def estimate_tokens(text: str) -> int:
    """Estimated token count of ``text``: ceil(len(text) / CHARS_PER_TOKEN)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)
