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
from dataclasses import dataclass

#: The embedded default: a tiny Llama-style model routerlib builds offline (see tinymodel.py).
EMBEDDED_MODEL = "routerlib/tiny-router-lm"

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

#: The page's "Supported regions": ``global`` (recommended; Vertex picks a region with capacity)
#: and the region-specific ones.
OPEN_MODEL_REGIONS = (
    "global",
    "us-central1",
    "europe-west4",
    "us-west1",
    "us-east5",
    "asia-southeast1",
    "asia-southeast2",
)
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

#: Characters per token of the estimate. Llama/Gemma/Qwen BPE vocabularies average about four
#: characters of English per token; the estimate is ceil(characters / 4) of prompt + completion.
CHARS_PER_TOKEN = 4.0


@dataclass(frozen=True)
class DeployHardware:
    """The machine an endpoint for a tuned copy of the model runs on."""

    machine_type: str
    accelerator_type: str
    accelerator_count: int


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
    deploy_source: str = ""
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

_L4_ONE = DeployHardware("g2-standard-12", "NVIDIA_L4", 1)
_L4_FOUR = DeployHardware("g2-standard-48", "NVIDIA_L4", 4)
#: The open-model page deploys a tuned Llama 3.1 8B with g2-standard-12 + 1 NVIDIA_L4.
_DEPLOY_DOC = OPEN_MODEL_TUNING + " (Deploy tuned model)"
#: No page gives a per-model machine for the 27B/32B models; Google's MedGemma 27B Model Garden
#: quick start deploys that size class on g2-standard-48 with 4 NVIDIA_L4 (bf16 weights ~54 GB).
#: Confirm with `gcloud ai model-garden models list-deployment-config --model=<id>`.
_DEPLOY_27B = (
    "google-health/medgemma notebooks/quick_start_with_model_garden.ipynb (27B on 4x L4); "
    "not a per-model doc"
)

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
            deploy_source=_DEPLOY_DOC,
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
            deploy_source=_DEPLOY_DOC,
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
            deploy_source=_DEPLOY_27B,
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
            deploy_source=_DEPLOY_27B,
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


def contract(base_model: str) -> ModelContract | None:
    """The Vertex contract of ``base_model`` (None for the embedded model and unknown ids)."""
    return CONTRACTS.get(base_model)


def model_info(base_model: str) -> ModelContract | None:
    """The table row of ``base_model`` (the embedded model included), or None when unknown."""
    return MODELS.get(base_model)


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
    if base_model in RENAMED:
        return [
            f"base_model: {base_model} is an older id; the current Vertex id is "
            f"{RENAMED[base_model]} (routerlib/models.py, checked {CHECKED})"
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
            f"{', '.join(row.tuning_regions)}"
        )
    return problems


def estimate_tokens(text: str) -> int:
    """Estimated token count of ``text``: ceil(len(text) / CHARS_PER_TOKEN)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)
