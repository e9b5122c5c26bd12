"""The local training loop: one TuningSpec trained on this machine with torch, transformers and
peft, epoch by epoch, each finished epoch a loadable checkpoint (docs/architecture.md, "The local
tuning backend"). AdamW, no weight decay, gradients clipped to MAX_GRAD_NORM; the last finished
epoch's checkpoint also holds the optimizer state and progress (TRAINING_STATE), so a stopped run
resumes from it and ends equal to an uninterrupted one.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from routerlib import paths
from routerlib.atomic import write_json
from routerlib.checkpoint_names import CHECKPOINTS_DIR, FINAL_CHECKPOINT
from routerlib.config import run_default
from routerlib.convert import read_prompt_completion
from routerlib.models import EMBEDDED_MODEL
from routerlib.progress import progress_bar
from routerlib.runfolder import LOSS_CURVE_FILE
from routerlib.tinymodel import quiet_transformers
from routerlib.tuning.base import Job, TuningSpec
from routerlib.tuning.examples import (
    IGNORE_INDEX,
    Encoded,
    collate,
    data_stats,
    encode_examples,
    make_batches,
)
from routerlib.tuning.model_io import (
    TRAINING_STATE,
    Plan,
    build_model,
    copy_checkpoint,
    epoch_folders,
    load_tokenizer,
    save_checkpoint,
    threads,
)

#: Default learning rates of the embedded tiny model (random init: it learns the format from
#: scratch). Validation loss after 100 steps (200 synthetic rows, 2 epochs, batch 4):
#: FULL 1e-3 1.57, 2e-3 1.41, 3e-3 1.67; PEFT 3e-3 2.08, 4e-3 1.89, 5e-3 1.86, 8e-3 5.34
#: (unstable), so PEFT keeps a margin below the edge.
EMBEDDED_LEARNING_RATES = {"PEFT_ADAPTER": 4e-3, "FULL": 2e-3}
#: Defaults for a pretrained Hugging Face model (the usual LoRA and full fine-tuning rates).
PRETRAINED_LEARNING_RATES = {"PEFT_ADAPTER": 2e-4, "FULL": 2e-5}
#: Share of the steps spent warming up (at least one step).
WARMUP_FRACTION = 0.06
#: Where the cosine ends, as a share of the peak learning rate.
MIN_LR_FRACTION = 0.1
MAX_GRAD_NORM = 1.0


@dataclass(frozen=True)
class Device:
    """Where training runs and whether it autocasts to bfloat16."""

    type: Literal["cpu", "cuda"]
    bf16: bool


def choose_device(*, cuda_available: bool, cuda_bf16: bool, bf16: bool | None = None) -> Device:
    """CUDA when a GPU is available, with bfloat16 autocast when it supports it; else the CPU in
    float32 (bfloat16 autocast trained the tiny model slower there: benchmarks/bench_tune_local.py
    prints the ratio). ``bf16`` True or False wins over the default."""
    default = cuda_available and cuda_bf16
    return Device("cuda" if cuda_available else "cpu", default if bf16 is None else bool(bf16))


def training_device(bf16: bool | None = None) -> Device:
    """:func:`choose_device` for this machine (asks torch what it has)."""
    import torch

    cuda = bool(torch.cuda.is_available())
    return choose_device(
        cuda_available=cuda, cuda_bf16=cuda and bool(torch.cuda.is_bf16_supported()), bf16=bf16
    )


def default_learning_rate(spec: TuningSpec) -> float:
    """learning_rate, else the mode's default (tiny or pretrained model) × the multiplier."""
    if spec.learning_rate is not None:
        return float(spec.learning_rate)
    table = (
        EMBEDDED_LEARNING_RATES if spec.base_model == EMBEDDED_MODEL else PRETRAINED_LEARNING_RATES
    )
    return table[spec.tuning_mode] * float(spec.learning_rate_multiplier or 1.0)


def warmup_steps(total_steps: int) -> int:
    """Steps of the linear warmup: WARMUP_FRACTION of the run, at least one."""
    return max(1, int(WARMUP_FRACTION * total_steps))


def lr_scheduler(optimizer: Any, total_steps: int) -> Any:
    """The schedule, stepped once after each optimizer step: step s (from 0) of the first
    ``w = warmup_steps(total)`` runs at peak × (s + 1) / w (torch's LinearLR from 1/w to 1), then
    transformers' ``cosine_with_min_lr`` from the peak down to MIN_LR_FRACTION of it over the
    remaining steps (``get_scheduler``, no warmup of its own). transformers has no single
    schedule with this warmup (its ``cosine`` starts at 0, its ``cosine_warmup_with_min_lr``
    decays one step earlier), so the two are chained with torch's SequentialLR."""
    from torch.optim.lr_scheduler import LinearLR, SequentialLR
    from transformers import get_scheduler

    warmup = warmup_steps(total_steps)
    ramp = LinearLR(optimizer, start_factor=1 / warmup, end_factor=1.0, total_iters=warmup - 1)
    cosine = get_scheduler(
        "cosine_with_min_lr",
        optimizer,
        num_warmup_steps=0,
        num_training_steps=max(1, total_steps - warmup),
        scheduler_specific_kwargs={"min_lr_rate": MIN_LR_FRACTION},
    )
    return SequentialLR(optimizer, [ramp, cosine], milestones=[warmup])


def completion_loss(model: Any, inputs: Any, targets: Any) -> tuple[Any, int]:
    """Summed cross-entropy over target positions and their count.

    Padding is on the right and attention is causal, so real tokens never see padding and no
    attention mask is needed; the LM head runs on target positions only (not the prompt)."""
    import torch

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT or not
    hidden = inner.base_model(input_ids=inputs, use_cache=False).last_hidden_state
    keep = targets != IGNORE_INDEX
    logits = inner.get_output_embeddings()(hidden[keep])
    loss = torch.nn.functional.cross_entropy(logits.float(), targets[keep], reduction="sum")
    return loss, int(keep.sum())


@dataclass
class Settings:
    """How to train besides the spec (the local backend's options). max_train_tokens: truncate
    longer examples (None = the model's context; a cut completion never learns to close the
    JSON); seed: LoRA init and data order; bf16: autocast (None = on a GPU that supports it).
    Torch uses $OMP_NUM_THREADS."""

    batch_size: int = run_default("batch_size")
    max_train_tokens: int | None = run_default("max_train_tokens")
    seed: int = 0
    bf16: bool | None = None
    progress: bool = True

    def options(self) -> dict[str, Any]:
        """What, besides the spec, decides the trained weights (a run's identity and cache key);
        the device is named only when it is not the CPU, so CPU keys stay as they were."""
        device = training_device(self.bf16)
        options: dict[str, Any] = {
            "batch_size": self.batch_size,
            "max_train_tokens": self.max_train_tokens,
            "seed": self.seed,
            "bf16": device.bf16,
        }
        return options | ({"device": device.type} if device.type != "cpu" else {})


class Cancelled(Exception):
    """``stop_requested`` answered True: the loop stopped after its current step."""


def train(
    plan: Plan,
    out: Path,
    identity: str,
    settings: Settings,
    *,
    job: Job,
    on_epoch_end: Callable[[int], None] = lambda _: None,
    stop_requested: Callable[[], bool] = lambda: False,
) -> None:
    """Train ``job``'s spec into ``out`` (checkpoints under CHECKPOINTS_DIR, LOSS_CURVE_FILE),
    resuming from the newest epoch state tagged ``identity``. ``job``'s statistics, loss curve and
    seconds are kept up to date (its name goes into every CHECKPOINT_MARKER); ``on_epoch_end``
    hears each finished epoch once its checkpoint is written. Raises Cancelled when
    ``stop_requested``."""
    import torch

    spec = job.spec
    ckpt_root = out / CHECKPOINTS_DIR
    resume_dir, state = _last_epoch_state(ckpt_root, identity)
    device = training_device(settings.bf16)
    with threads(), quiet_transformers():
        tokenizer = load_tokenizer(
            str(resume_dir) if resume_dir else str(plan.custom or spec.base_model)
        )
        model = build_model(spec, plan, resume_dir, settings.seed)
    model = model.to(device.type)
    model.train()
    limit = getattr(model.config, "max_position_embeddings", None)  # a PEFT model's: its base's
    if settings.max_train_tokens is not None:
        limit = min(limit or settings.max_train_tokens, settings.max_train_tokens)

    def encode(uri: str) -> list[Encoded]:
        return encode_examples(tokenizer, read_prompt_completion(paths.resolve(uri)), limit)

    train_rows = encode(spec.training_dataset_uri)
    val_rows = encode(spec.validation_dataset_uri) if spec.validation_dataset_uri else []
    lengths = [len(e.ids) for e in train_rows]
    batch_size = settings.batch_size
    steps_per_epoch = math.ceil(len(train_rows) / batch_size)
    total_steps = steps_per_epoch * spec.epochs
    peak_lr = default_learning_rate(spec)
    params = [p for p in model.parameters() if p.requires_grad]
    try:
        optimizer = torch.optim.AdamW(params, lr=peak_lr, weight_decay=0.0, fused=True)
    except (RuntimeError, TypeError):
        optimizer = torch.optim.AdamW(params, lr=peak_lr, weight_decay=0.0, foreach=True)
    scheduler = lr_scheduler(optimizer, total_steps)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def autocast() -> Any:
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.bf16)

    def batch(rows: list[Encoded], idxs: list[int]) -> tuple[Any, Any]:
        inputs, targets = collate(rows, idxs, pad_id)
        return inputs.to(device.type), targets.to(device.type)

    stats = job.tuning_data_stats = data_stats(train_rows, val_rows, spec.epochs, steps_per_epoch)
    marker = {
        "kind": "peft" if spec.tuning_mode == "PEFT_ADAPTER" else "full",
        "base_model": plan.adapter_base,  # None for FULL
        "spec_base_model": spec.base_model,
        "custom_base_model": spec.custom_base_model,
        "tuning_mode": spec.tuning_mode,
        "adapter_size": spec.adapter_size,
        "learning_rate": peak_lr,
        "job": job.name,
    }

    def validate() -> float | None:
        if not val_rows:
            return None
        model.eval()
        total, count = 0.0, 0
        order = sorted(range(len(val_rows)), key=lambda i: -len(val_rows[i].ids))
        with torch.inference_mode(), threads(), autocast():
            for start in range(0, len(order), batch_size * 2):
                inputs, targets = batch(val_rows, order[start : start + batch_size * 2])
                loss, n = completion_loss(model, inputs, targets)
                total, count = total + float(loss), count + n
        model.train()
        return total / max(count, 1)

    start_epoch, step = 0, 0
    curve: list[dict[str, Any]] = []
    train_seconds, tokens_seen, epoch_seconds = 0.0, 0, []
    if state is not None:
        start_epoch, step = int(state["epoch"]), int(state["step"])
        _fast_forward(scheduler, step)  # before the optimizer state: the ramp multiplies the lr
        optimizer.load_state_dict(state["optimizer"])
        for group, lr in zip(optimizer.param_groups, scheduler.get_last_lr(), strict=True):
            group["lr"] = lr  # the schedule's rate for this step, whatever the state held
        curve, train_seconds = list(state["curve"]), float(state["train_seconds"])
        tokens_seen, epoch_seconds = int(state["tokens_seen"]), list(state["epoch_seconds"])
    if not curve:
        curve.append({"epoch": 0, "step": 0, "train_loss": None, "val_loss": validate()})
    job.loss_curve, job.train_seconds = curve, round(train_seconds, 3) or None
    log_every = max(1, total_steps // 25)
    # A terminal redraws one line every second; a notebook or run.log gets one whole line at
    # each epoch's end instead (every redraw there would be kept as a partial line).
    bar = progress_bar(
        settings.progress,
        total_steps,
        desc=f"tune {spec.tuning_mode} (local)",
        unit="step",
        initial=step,
        every=None,
        mininterval=1.0,
        maxinterval=10.0,
    )
    try:
        with threads():
            for epoch in range(start_epoch, spec.epochs):
                window_loss, window_tokens = 0.0, 0
                began = time.perf_counter()
                for idxs in make_batches(lengths, batch_size, settings.seed, epoch):
                    if stop_requested():
                        raise Cancelled()
                    inputs, targets = batch(train_rows, idxs)
                    with autocast():
                        loss_sum, n = completion_loss(model, inputs, targets)
                    (loss_sum / max(n, 1)).backward()
                    torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                    step += 1
                    tokens_seen += sum(lengths[i] for i in idxs)
                    window_loss += float(loss_sum.detach())
                    window_tokens += n
                    bar.update(1)
                    if step % log_every == 0:
                        mean = window_loss / max(window_tokens, 1)
                        bar.set_postfix(loss=f"{mean:.3f}", refresh=False)
                        if step % steps_per_epoch:  # epoch ends log below, with val loss
                            curve.append(_point(step, steps_per_epoch, mean, None))
                            window_loss, window_tokens = 0.0, 0
                elapsed = time.perf_counter() - began
                train_seconds += elapsed
                epoch_seconds.append(round(elapsed, 3))
                val_loss = validate()
                tail = window_loss / window_tokens if window_tokens else None
                curve.append(_point(step, steps_per_epoch, tail, val_loss))
                bar.set_postfix(
                    loss=f"{tail:.3f}" if tail is not None else "-",
                    val=f"{val_loss:.3f}" if val_loss is not None else "-",
                )
                bar.refresh()
                state = {
                    "optimizer": optimizer.state_dict(),
                    "epoch": epoch + 1,
                    "step": step,
                    "curve": curve,
                    "train_seconds": train_seconds,
                    "tokens_seen": tokens_seen,
                    "epoch_seconds": epoch_seconds,
                    "identity": identity,
                }
                dest = ckpt_root / f"epoch-{epoch + 1}"
                save_checkpoint(
                    model, tokenizer, dest, {**marker, "epoch": epoch + 1, "step": step}, state
                )
                for older in ckpt_root.glob(f"epoch-*/{TRAINING_STATE}"):
                    if older.parent != dest:
                        older.unlink()
                write_json(out / LOSS_CURVE_FILE, curve)
                job.train_seconds = round(train_seconds, 3)  # job.loss_curve is ``curve``
                on_epoch_end(epoch + 1)
    finally:
        bar.close()

    last = ckpt_root / f"epoch-{spec.epochs}"
    copy_checkpoint(last, out / FINAL_CHECKPOINT)
    stats.update(
        train_seconds=round(train_seconds, 3),
        trained_token_count=tokens_seen,
        train_tokens_per_second=round(tokens_seen / train_seconds, 1) if train_seconds else None,
        epoch_seconds=epoch_seconds,
        learning_rate=peak_lr,
        bf16=device.bf16,
    )
    if device.type != "cpu":
        stats["device"] = device.type
    write_json(out / LOSS_CURVE_FILE, curve)
    (last / TRAINING_STATE).unlink(missing_ok=True)


def _fast_forward(scheduler: Any, steps: int) -> None:
    """Bring a new schedule to where a resumed run stopped: the same ``steps`` calls an
    uninterrupted run made, so the rates that follow are the same floats."""
    with warnings.catch_warnings():  # no optimizer.step() yet: torch warns about the order
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(steps):
            scheduler.step()


def _point(
    step: int, steps_per_epoch: int, train: float | None, val: float | None
) -> dict[str, Any]:
    return {
        "epoch": round(step / steps_per_epoch, 4),
        "step": step,
        "train_loss": None if train is None else round(train, 5),
        "val_loss": None if val is None else round(val, 5),
    }


def _last_epoch_state(ckpt_root: Path, identity: str) -> tuple[Path | None, dict[str, Any] | None]:
    """The newest epoch checkpoint holding a training state of this run, and that state."""
    import torch

    for _, folder in reversed(epoch_folders(ckpt_root)):
        if (folder / TRAINING_STATE).is_file():
            state = torch.load(folder / TRAINING_STATE, map_location="cpu", weights_only=False)
            if state.get("identity") == identity:
                return folder, state
    return None, None
