"""Models and checkpoints of the local trainer: what is loaded (the embedded model, a Hugging Face
id or folder, a ``.gguf`` file), how LoRA is put on (r = adapter_size, alpha = 2r), how a
checkpoint is written and read back. A checkpoint loads on its own: a PEFT one holds the adapter,
the tokenizer and a CHECKPOINT_MARKER (its kind and base model); a FULL one the whole model.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from routerlib import paths
from routerlib.atomic import atomic_folder, file_lock, write_json
from routerlib.checkpoint_names import CHECKPOINT_MARKER, EPOCH_NAME
from routerlib.errors import InputError
from routerlib.models import EMBEDDED_MODEL, gguf_path
from routerlib.tinymodel import quiet_transformers, resolve_base_model
from routerlib.tuning.base import TuningSpec
from routerlib.tuning.cache import library_version, model_file_digest

#: Optimizer state and progress of a finished epoch, kept in the last epoch checkpoint only.
TRAINING_STATE = "training_state.pt"

#: LoRA goes on every linear projection of attention and MLP ("all-linear" in peft: any
#: architecture, the output head excluded).
LORA_TARGETS = "all-linear"
#: The embedded model's weights are random, so its embeddings and output head carry no meaning an
#: adapter on the projections alone could build on (validation loss stalls near 7.5 nats against
#: 5.1 with these): on it, LoRA also adapts the token embeddings and the LM head.
EMBEDDED_LORA_TARGETS = tuple(
    "q_proj k_proj v_proj o_proj gate_proj up_proj down_proj embed_tokens lm_head".split()
)


def _marker(folder: Path) -> dict[str, Any] | None:
    marker = folder / CHECKPOINT_MARKER
    return dict(json.loads(marker.read_text(encoding="utf-8"))) if marker.is_file() else None


def checkpoint_kind(folder: Path) -> str | None:
    """ "peft", "full" or None (not a local folder / not a model)."""
    if not folder.is_dir():
        return None
    if (marker := _marker(folder)) is not None:
        return str(marker["kind"])
    if (folder / "adapter_config.json").is_file():
        return "peft"
    return "full" if (folder / "config.json").is_file() else None


def adapter_base_of(folder: Path) -> str:
    """The base model a PEFT checkpoint sits on (routerlib marker, else peft's own config)."""
    if (marker := _marker(folder)) is not None:
        return str(marker["base_model"])
    config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    return str(config["base_model_name_or_path"])


def local_or_id(name: str) -> str:
    """An existing local folder (or a GGUF file) as an absolute path; anything else (a hub id)
    unchanged."""
    gguf = gguf_path(name)
    if gguf is not None:
        return str(gguf.resolve())
    path = Path(name).expanduser()
    return str(path.resolve()) if path.is_dir() else name


def _pretrained_args(name_or_path: str) -> tuple[str, dict[str, Any]]:
    """What ``from_pretrained`` takes for a model name: (folder or id, extra keyword arguments);
    a GGUF file is its de-quantized copy (:func:`dequantized`) or, when too large to keep, its
    folder plus ``gguf_file``."""
    gguf = gguf_path(name_or_path)
    if gguf is None:
        return resolve_base_model(name_or_path), {}
    if not gguf.is_file():
        raise InputError(f"base_model: {gguf}: no such GGUF file")
    if gguf.stat().st_size > GGUF_CACHE_MAX_BYTES:
        return str(gguf.parent), {"gguf_file": gguf.name}
    return str(dequantized(gguf)), {}


#: GGUF files up to this size are de-quantized once and kept (their float32 copy is about four
#: to eight times the file); larger ones are parsed again at every load.
GGUF_CACHE_MAX_BYTES = 2 * 1024**3


def dequantized_dir(gguf: Path) -> Path:
    """Where :func:`dequantized` keeps ``gguf``'s copy: ``<ROUTERLIB_CACHE>/gguf/<sha256[:32]>-
    transformers-<version>/`` (another transformers may de-quantize differently)."""
    digest = model_file_digest(gguf)[:32]
    return paths.cache_root() / "gguf" / f"{digest}-transformers-{library_version('transformers')}"


def dequantized(gguf: Path) -> Path:
    """A Hugging Face folder holding ``gguf``'s de-quantized weights, tokenizer and config, made
    on first use in :func:`dequantized_dir`: transformers parses and de-quantizes a GGUF file at
    every ``from_pretrained`` (about 20 s for a 135M model on a CPU), which tuning and every later
    load of the base would otherwise repeat."""
    folder = dequantized_dir(gguf)
    with file_lock(folder.with_name(folder.name + ".lock")):
        if (folder / "config.json").is_file():
            return folder
        import torch
        from safetensors.torch import save_model
        from transformers import AutoModelForCausalLM, AutoTokenizer

        with quiet_transformers():
            source = {"pretrained_model_name_or_path": gguf.parent, "gguf_file": gguf.name}
            tokenizer = AutoTokenizer.from_pretrained(**source)
            model = AutoModelForCausalLM.from_pretrained(**source, dtype=torch.float32)
        # save_pretrained refuses a GGUF-loaded model: the weights, then the config without the
        # GGUF quantization entry (the weights are plain float32 now), then the tokenizer
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        with atomic_folder(folder) as tmp:
            save_model(model, str(tmp / "model.safetensors"))
            type(model.config).from_dict(config).save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            record = {"gguf": str(gguf.resolve()), "sha256": model_file_digest(gguf)}
            write_json(tmp / "source.json", record)
    return folder


def load_lm(name_or_path: str) -> Any:
    """A causal LM in float32 on the CPU (the embedded model, an id, a folder or a GGUF file)."""
    import torch
    from transformers import AutoModelForCausalLM

    source, extra = _pretrained_args(name_or_path)
    return AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32, **extra)


def _merged(adapter: Path) -> Any:
    """A PEFT checkpoint's adapter merged into its base model."""
    from peft import PeftModel

    return PeftModel.from_pretrained(
        load_lm(adapter_base_of(adapter)), str(adapter)
    ).merge_and_unload()


def load_tokenizer(name_or_path: str) -> Any:
    """The tokenizer of a model or checkpoint, with a pad token (EOS when it has none)."""
    from transformers import AutoTokenizer

    source, extra = _pretrained_args(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(source, **extra)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_for_inference(checkpoint_dir: str | os.PathLike[str]) -> tuple[Any, Any]:
    """(model, tokenizer) of a checkpoint, ready to generate: LoRA merged, eval mode.

    Takes a PEFT or FULL checkpoint folder written by the local trainer, any Hugging Face model
    folder, a hub id, a GGUF file or EMBEDDED_MODEL (the untuned base)."""
    folder = Path(checkpoint_dir).expanduser()
    kind = checkpoint_kind(folder)
    gguf = gguf_path(str(checkpoint_dir))
    if kind is None and gguf is None and (folder.exists() or folder.is_absolute()):
        raise InputError(f"{checkpoint_dir}: not a model checkpoint folder")
    name = str(folder.resolve()) if kind else str(checkpoint_dir)
    with quiet_transformers():
        model = _merged(folder.resolve()) if kind == "peft" else load_lm(name)
        tokenizer = load_tokenizer(name)
    model.eval()
    return model, tokenizer


@dataclass
class Plan:
    """How the trainable model is made for a spec."""

    adapter_base: str | None  # PEFT: the model the adapter sits on (recorded in the marker)
    custom: Path | None
    custom_kind: str | None


def plan_for(spec: TuningSpec) -> Plan:
    """The Plan of ``spec``; a custom base that is no local checkpoint raises InputError."""
    custom = kind = None
    if spec.custom_base_model:  # a gs:// one was refused by the backend's preflight
        custom = Path(spec.custom_base_model).expanduser().resolve()
        kind = checkpoint_kind(custom)
        if kind is None:
            raise InputError(f"custom_base_model: {custom} is not a checkpoint folder")
    adapter_base = None
    if spec.tuning_mode == "PEFT_ADAPTER":
        if custom is None:
            adapter_base = local_or_id(spec.base_model)
        else:
            adapter_base = adapter_base_of(custom) if kind == "peft" else str(custom)
    return Plan(adapter_base, custom, kind)


def lora_targets(spec: TuningSpec, plan: Plan) -> str | list[str]:
    """Modules LoRA adapts for this spec: see LORA_TARGETS and EMBEDDED_LORA_TARGETS."""
    if spec.base_model == EMBEDDED_MODEL and plan.custom is None:
        return list(EMBEDDED_LORA_TARGETS)
    return LORA_TARGETS


def build_model(spec: TuningSpec, plan: Plan, resume: Path | None, seed: int) -> Any:
    """The trainable model: from the resume checkpoint, the custom base, or the base model."""
    import torch

    custom_peft = plan.custom if plan.custom_kind == "peft" else None
    if spec.tuning_mode == "FULL":
        if resume is not None:
            model = load_lm(str(resume))
        elif custom_peft is not None:
            model = _merged(custom_peft)
        else:
            model = load_lm(str(plan.custom) if plan.custom else spec.base_model)
        return model.requires_grad_(True)  # a merged adapter leaves the base frozen

    from peft import LoraConfig, PeftModel, get_peft_model

    assert plan.adapter_base is not None
    base = load_lm(plan.adapter_base)
    source = resume
    if source is None and custom_peft is not None:
        config = json.loads((custom_peft / "adapter_config.json").read_text(encoding="utf-8"))
        if config.get("r") != spec.adapter_size:
            raise InputError(
                f"custom_base_model: {custom_peft} is an adapter of size {config.get('r')}; "
                f"continue it with adapter_size {config.get('r')} (or tune FULL from it)"
            )
        source = custom_peft
    if source is not None:
        return PeftModel.from_pretrained(base, str(source), is_trainable=True)
    size = int(spec.adapter_size or 16)
    lora = LoraConfig(
        r=size,
        lora_alpha=2 * size,
        lora_dropout=0.0,
        target_modules=lora_targets(spec, plan),
        bias="none",
        task_type="CAUSAL_LM",
    )
    torch.manual_seed(seed)
    return get_peft_model(base, lora)


def save_checkpoint(
    model: Any, tokenizer: Any, dest: Path, marker: dict[str, Any], state: dict[str, Any]
) -> None:
    """Write a loadable checkpoint to ``dest`` atomically, ``state`` with it as TRAINING_STATE."""
    with atomic_folder(dest) as tmp, quiet_transformers():
        # a PEFT model saves its adapter only, not the frozen embeddings
        peft = {"save_embedding_layers": False} if hasattr(model, "peft_config") else {}
        model.save_pretrained(tmp, safe_serialization=True, **peft)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / CHECKPOINT_MARKER, marker)
        import torch

        torch.save(state, tmp / TRAINING_STATE)


def epoch_folders(root: Path) -> list[tuple[int, Path]]:
    """(epoch, folder) of the ``epoch-<n>`` checkpoint folders under ``root``, oldest first."""
    found = ((EPOCH_NAME.match(p.name), p) for p in root.glob("epoch-*") if p.is_dir())
    return sorted((int(match[1]), p) for match, p in found if match)


def copy_checkpoint(src: Path, dest: Path) -> None:
    """Copy a checkpoint (without its training state) atomically."""
    with atomic_folder(dest) as tmp:
        shutil.copytree(src, tmp, ignore=shutil.ignore_patterns(TRAINING_STATE), dirs_exist_ok=True)


@contextlib.contextmanager
def threads() -> Iterator[None]:
    """``$OMP_NUM_THREADS`` torch threads when set, else one per core."""
    import torch

    before = torch.get_num_threads()
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    count = int(env) if env.isdigit() else os.cpu_count()
    torch.set_num_threads(max(1, count or 1))
    try:
        yield
    finally:
        torch.set_num_threads(before)
