"""The per-model table, in one place: Vertex model ids, sequence limits, token estimate.

prepare warns on examples longer than the chosen model's limit, and tuning checks again against
the model it is about to tune. Limits are Vertex AI's documented open-model tuning limits
("Tune an open model", Vertex AI docs, read 2026-11).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: The embedded default: a tiny Llama-style model routerlib builds offline (see tinymodel.py).
EMBEDDED_MODEL = "routerlib/tiny-router-lm"


@dataclass(frozen=True)
class ModelInfo:
    """What routerlib knows about a base model."""

    display: str
    max_seq_len_peft: int
    max_seq_len_full: int
    managed_tuning: bool = True

    def max_seq_len(self, tuning_mode: str) -> int:
        """The sequence limit under ``tuning_mode`` (PEFT_ADAPTER or FULL)."""
        return self.max_seq_len_full if tuning_mode == "FULL" else self.max_seq_len_peft


MODELS: dict[str, ModelInfo] = {
    "meta/llama3_1@llama-3.1-8b-instruct": ModelInfo("Llama 3.1 8B Instruct", 4096, 8192),
    "meta/llama3_1@llama-3.1-8b": ModelInfo("Llama 3.1 8B", 4096, 8192),
    "google/gemma-3-27b-it": ModelInfo("Gemma 3 27B IT", 8192, 8192),
    "qwen/qwen3@qwen3-32b": ModelInfo("Qwen 3 32B", 8192, 8192),
    EMBEDDED_MODEL: ModelInfo("routerlib tiny LM (embedded, CPU)", 4096, 4096, False),
}

#: Used for a base model that is not in the table (a Hugging Face id or local path).
DEFAULT_MAX_SEQ_LEN = 4096

#: Characters per token of the estimate. Llama/Gemma/Qwen BPE vocabularies average about four
#: characters of English per token; the estimate is ceil(characters / 4) of prompt + completion.
CHARS_PER_TOKEN = 4.0


def model_info(base_model: str) -> ModelInfo | None:
    """The table row of ``base_model``, or None when it is not a known managed model."""
    return MODELS.get(base_model)


def max_seq_len(base_model: str, tuning_mode: str = "PEFT_ADAPTER") -> int:
    """The sequence limit to check examples against for this model and mode."""
    info = model_info(base_model)
    return info.max_seq_len(tuning_mode) if info else DEFAULT_MAX_SEQ_LEN


def estimate_tokens(text: str) -> int:
    """Estimated token count of ``text``: ceil(len(text) / CHARS_PER_TOKEN)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)
