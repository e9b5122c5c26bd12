"""The embedded base model: a tiny Llama-style causal LM that routerlib builds offline on first
use (a byte-level BPE tokenizer trained on synthetic rows, a small ``LlamaForCausalLM`` from a
fixed seed) under ``cache_root()/tiny-router-lm-<hash>``. Its weights are random: tuning it proves
the pipeline runs end to end on a CPU and says nothing about routing quality.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from routerlib import paths, schema, synth
from routerlib.atomic import atomic_folder, file_lock
from routerlib.models import EMBEDDED_MODEL

#: Bump when the build recipe changes in a way the settings below do not capture.
RECIPE_VERSION = 1

#: Special tokens; ids 0, 1, 2 in this order.
PAD_TOKEN, BOS_TOKEN, EOS_TOKEN = "<|pad|>", "<|bos|>", "<|eos|>"

#: Tokenizer settings: vocabulary size and the synthetic corpus it is trained on.
TOKENIZER: dict[str, Any] = {
    "vocab_size": 4096,
    "min_frequency": 2,
    "corpus_rows": 1000,
    "corpus_seed": 20261125,
}

#: Model architecture (about 5.3M parameters) and the seed of its random initialisation.
ARCHITECTURE: dict[str, Any] = {
    "hidden_size": 256,
    "intermediate_size": 704,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "initializer_range": 0.02,
    "tie_word_embeddings": False,
}
INIT_SEED = 0

#: File written last into a built model folder; its presence means the build finished.
BUILD_MARKER = "routerlib_build.json"


def corpus_texts(rows: int, seed: int) -> list[str]:
    """Prompt + completion text of ``rows`` synthetic Week-2 rows: the tokenizer's corpus."""
    return [
        schema.build_prompt(row["user_query"]) + schema.completion_text(row)
        for row in synth.generate_rows(rows, seed)
    ]


#: Rows of the corpus hashed into the cache name: a cheap fingerprint of the generator's output.
FINGERPRINT_ROWS = 64


@functools.cache
def _corpus_digest(rows: int, seed: int) -> str:
    digest = hashlib.sha256(f"{rows}:{seed}:".encode())
    for text in corpus_texts(min(rows, FINGERPRINT_ROWS), seed):
        digest.update(text.encode("utf-8") + b"\0")
    return digest.hexdigest()


def build_settings(seed: int = INIT_SEED) -> dict[str, Any]:
    """Everything that determines the built model's bytes, including a digest of the corpus."""
    return {
        "recipe_version": RECIPE_VERSION,
        "tokenizer": dict(TOKENIZER),
        "architecture": dict(ARCHITECTURE),
        "init_seed": seed,
        "corpus_fingerprint": _corpus_digest(TOKENIZER["corpus_rows"], TOKENIZER["corpus_seed"]),
    }


def config_hash(seed: int = INIT_SEED) -> str:
    """Short hash of :func:`build_settings`; names the cache folder."""
    blob = json.dumps(build_settings(seed), sort_keys=True).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:12]


def embedded_model_dir(seed: int = INIT_SEED) -> Path:
    """Where the embedded model for these settings lives (built or not)."""
    return paths.cache_root() / f"tiny-router-lm-{config_hash(seed)}"


def train_tokenizer(texts: list[str], vocab_size: int, min_frequency: int = 2) -> Any:
    """A byte-level BPE ``tokenizers.Tokenizer`` trained on ``texts``; prepends BOS on encode."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[PAD_TOKEN, BOS_TOKEN, EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))
    bos = tokenizer.token_to_id(BOS_TOKEN)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A", pair=f"{BOS_TOKEN} $A $B:1", special_tokens=[(BOS_TOKEN, bos)]
    )
    return tokenizer


def build_model(dest: Path, seed: int = INIT_SEED) -> Path:
    """Build the embedded model into ``dest`` atomically (a temp folder beside it, renamed);
    returns ``dest``."""
    import torch
    import transformers as hf

    settings = build_settings(seed)
    with atomic_folder(Path(dest)) as tmp:
        texts = corpus_texts(TOKENIZER["corpus_rows"], TOKENIZER["corpus_seed"])
        raw = train_tokenizer(texts, TOKENIZER["vocab_size"], TOKENIZER["min_frequency"])
        tokenizer = hf.PreTrainedTokenizerFast(
            tokenizer_object=raw,
            bos_token=BOS_TOKEN,
            eos_token=EOS_TOKEN,
            pad_token=PAD_TOKEN,
            model_max_length=ARCHITECTURE["max_position_embeddings"],
            padding_side="right",
            clean_up_tokenization_spaces=False,
        )
        ids: dict[str, Any] = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
        assert [tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id] == [0, 1, 2]
        config = hf.LlamaConfig(vocab_size=raw.get_vocab_size(), **ARCHITECTURE, **ids)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = hf.LlamaForCausalLM(config)
        model.generation_config = hf.GenerationConfig(**ids)
        with quiet_transformers():
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
        params = sum(p.numel() for p in model.parameters())
        info = {"model": EMBEDDED_MODEL, "parameters": params, **settings}
        (tmp / BUILD_MARKER).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return Path(dest)


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Hide transformers' per-file progress bars and peft's deprecation noise (peft asks
    transformers a deprecated question; nothing a user can act on)."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", ".*is_gradient_checkpointing", FutureWarning)
            yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def ensure_embedded_model(seed: int = INIT_SEED) -> Path:
    """The folder of the embedded model, building it on first use (a few seconds)."""
    dest = embedded_model_dir(seed)
    if (dest / BUILD_MARKER).exists():
        return dest
    # Runs started together (``routerlib run A B`` runs local chains side by side) build it once.
    with file_lock(dest.with_name(dest.name + ".lock")):
        if (dest / BUILD_MARKER).exists():
            return dest
        return build_model(dest, seed)  # replaces a folder without the marker (a half copy)


def resolve_base_model(base_model: str) -> str:
    """The path or Hugging Face id to load: the built folder for EMBEDDED_MODEL, else unchanged."""
    if base_model == EMBEDDED_MODEL:
        return str(ensure_embedded_model())
    return base_model
