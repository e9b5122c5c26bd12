"""The local tuning backend: runs a TuningSpec on this machine with transformers + peft.

PEFT_ADAPTER trains a LoRA adapter (r = adapter_size, alpha = 2r, on every linear projection of
attention and MLP); FULL trains every weight. The loss covers completion tokens only (the prompt is
masked) and an EOS token closes each completion, so the model learns where to stop.

Output folder (``spec.output_uri``, a local path), in Vertex AI's layout::

    local_job.json                             the backend's Job (state, stats, loss curve);
                                               the run folder's job.json is stages.tune's
    loss_curve.json                            [{"epoch", "step", "train_loss", "val_loss"}]
    local_run.json                             what identifies the run (for resume), pid
    postprocess/node-0/checkpoints/epoch-<n>/  one loadable checkpoint per finished epoch
    postprocess/node-0/checkpoints/final/      the last epoch's checkpoint

A checkpoint loads on its own: a PEFT one holds the adapter, the tokenizer and a
``routerlib_checkpoint.json`` naming the base model; a FULL one the whole model and tokenizer.
A run that stopped (killed, failed, interrupted) resumes from its last finished epoch when the
same spec is submitted again with the same output_uri; finished epochs are not redone, and the
result equals that of an uninterrupted run. A finished tuning is also kept in the tuning cache
(routerlib/tuning/cache.py): the same spec on the same data in another output folder copies it
instead of training again.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import random
import shutil
import socket
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from routerlib import paths, runfolder
from routerlib.atomic import write_json
from routerlib.checkpoint_names import CHECKPOINT_MARKER, FINAL_CHECKPOINT
from routerlib.config import run_default
from routerlib.errors import InputError
from routerlib.models import EMBEDDED_MODEL
from routerlib.progress import milestone, progress_bar
from routerlib.tuning import cache
from routerlib.tuning.base import (
    CANCELLED,
    FAILED,
    RUNNING,
    SUCCEEDED,
    Checkpoint,
    Job,
    TuningSpec,
)

CHECKPOINTS_DIR = "postprocess/node-0/checkpoints"
JOB_FILE = runfolder.LOCAL_JOB_FILE
RUN_FILE = "local_run.json"
LOSS_CURVE_FILE = runfolder.LOSS_CURVE_FILE
CANCEL_FILE = "CANCEL"
#: Written into every checkpoint folder: what kind it is and which base model it sits on.

#: Optimizer state and progress of a finished epoch, kept in the last epoch checkpoint only.
TRAINING_STATE = "training_state.pt"

#: Default learning rates of the embedded tiny model (random init: it learns the format from
#: scratch). Validation loss after 100 steps (200 synthetic rows, 2 epochs, batch 4):
#: FULL 1e-3 1.57, 2e-3 1.41, 3e-3 1.67; PEFT 3e-3 2.08, 4e-3 1.89, 5e-3 1.86, 8e-3 5.34
#: (unstable), so PEFT keeps a margin below the edge.
EMBEDDED_LEARNING_RATES = {"PEFT_ADAPTER": 4e-3, "FULL": 2e-3}
#: Defaults for a pretrained Hugging Face model (the usual LoRA and full fine-tuning rates).
PRETRAINED_LEARNING_RATES = {"PEFT_ADAPTER": 2e-4, "FULL": 2e-5}
WARMUP_FRACTION = 0.06
MIN_LR_FRACTION = 0.1
MAX_GRAD_NORM = 1.0
IGNORE_INDEX = -100

# Output folders trained by this process right now (a local_job.json saying RUNNING with our pid is
# only alive when its folder is in here).
_ACTIVE: set[str] = set()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


# ---------------------------------------------------------------- data


def read_prompt_completion(path: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """(prompt, completion) pairs of a JSONL file; a bad line raises InputError naming it."""
    file = Path(path)
    if not file.is_file():
        raise InputError(f"{file}: dataset not found")
    pairs: list[tuple[str, str]] = []
    problems: list[str] = []
    with open(file, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"{file}:{number}: not JSON ({exc.msg})")
                continue
            if not isinstance(obj, dict):
                problems.append(f"{file}:{number}: expected an object with prompt and completion")
                continue
            from routerlib.dataset import example_pair

            pair = example_pair(obj)  # prompt/completion, or prepare --format messages
            if pair is not None:
                pairs.append(pair)
                continue
            if "messages" in obj:
                problems.append(
                    f"{file}:{number}: messages: expected chat turns ending with the assistant's"
                )
                continue
            for key in ("prompt", "completion"):
                if not isinstance(obj.get(key), str):
                    got = "missing" if key not in obj else type(obj[key]).__name__
                    problems.append(f"{file}:{number}: {key}: must be a string (got {got})")
    if problems:
        raise InputError(f"{file}: {len(problems)} bad line(s)", problems[:20])
    if not pairs:
        raise InputError(f"{file}: no examples")
    return pairs


def encode_prompt(tokenizer: Any, prompt: str) -> list[int]:
    """Token ids of a prompt as training saw it (with the tokenizer's BOS when it adds one).
    Serving must encode prompts the same way."""
    return list(tokenizer(prompt, add_special_tokens=True)["input_ids"])


@dataclass
class Encoded:
    """One tokenized example: ``ids`` = prompt + completion + EOS; ``n_prompt`` masked tokens."""

    ids: list[int]
    n_prompt: int
    truncated: bool = False


def encode_examples(
    tokenizer: Any, pairs: list[tuple[str, str]], max_tokens: int | None = None
) -> list[Encoded]:
    """Tokenize pairs (prompt and completion separately, so the boundary matches serving)."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise InputError("the tokenizer has no EOS token: the model could not learn to stop")
    prompts = tokenizer([p for p, _ in pairs], add_special_tokens=True)["input_ids"]
    completions = tokenizer([c for _, c in pairs], add_special_tokens=False)["input_ids"]
    out = []
    for prompt_ids, completion_ids in zip(prompts, completions, strict=True):
        ids = list(prompt_ids) + list(completion_ids) + [eos]
        truncated = max_tokens is not None and len(ids) > max_tokens
        if truncated:
            ids = ids[:max_tokens]
        out.append(Encoded(ids, min(len(prompt_ids), len(ids)), truncated))
    return out


def _distribution(values: list[int]) -> dict[str, Any]:
    """Vertex's DatasetDistribution fields for a list of token counts."""
    ordered = sorted(values)

    def pct(q: float) -> float:
        return float(ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))])

    return {
        "sum": int(sum(ordered)),
        "billable_sum": int(sum(ordered)),
        "min": float(ordered[0]),
        "max": float(ordered[-1]),
        "mean": float(statistics.fmean(ordered)),
        "median": float(statistics.median(ordered)),
        "p5": pct(0.05),
        "p95": pct(0.95),
    }


def make_batches(lengths: list[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Deterministic length-bucketed batches for one epoch: shuffle, sort within pools of 16
    batches so a batch holds similar lengths (little padding), then shuffle the batches."""
    rng = random.Random(seed * 100_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    pool = batch_size * 16
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lambda i: (-lengths[i], i))
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def _collate(examples: list[Encoded], idxs: list[int], pad_id: int) -> tuple[Any, Any]:
    """Right-padded input ids and next-token targets (prompt, padding = IGNORE_INDEX)."""
    import torch

    width = max(len(examples[i].ids) for i in idxs)
    inputs = torch.full((len(idxs), width), pad_id, dtype=torch.long)
    targets = torch.full((len(idxs), width), IGNORE_INDEX, dtype=torch.long)
    for row, i in enumerate(idxs):
        ex = examples[i]
        n = len(ex.ids)
        inputs[row, :n] = torch.tensor(ex.ids, dtype=torch.long)
        # position t predicts token t+1; only completion tokens (and EOS) are targets
        targets[row, max(ex.n_prompt - 1, 0) : n - 1] = inputs[row, max(ex.n_prompt, 1) : n]
    return inputs, targets


def _causal_lm_parts(model: Any) -> tuple[Any, Any]:
    """(backbone, lm_head) of a causal LM, through a PEFT wrapper when there is one."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return inner.base_model, inner.get_output_embeddings()


def completion_loss(model: Any, inputs: Any, targets: Any) -> tuple[Any, int]:
    """Summed cross-entropy over target positions and their count.

    Padding is on the right and attention is causal, so real tokens never see padding and no
    attention mask is needed; the LM head runs on target positions only (not the prompt)."""
    import torch

    backbone, head = _causal_lm_parts(model)
    hidden = backbone(input_ids=inputs, use_cache=False).last_hidden_state
    keep = targets != IGNORE_INDEX
    logits = head(hidden[keep])
    loss = torch.nn.functional.cross_entropy(logits.float(), targets[keep], reduction="sum")
    return loss, int(keep.sum())


# ---------------------------------------------------------------- checkpoints and models


def _checkpoint_kind(folder: Path) -> str | None:
    """ "peft", "full" or None (not a local folder / not a model)."""
    if not folder.is_dir():
        return None
    marker = folder / CHECKPOINT_MARKER
    if marker.is_file():
        return str(json.loads(marker.read_text(encoding="utf-8"))["kind"])
    if (folder / "adapter_config.json").is_file():
        return "peft"
    if (folder / "config.json").is_file():
        return "full"
    return None


def _adapter_base_of(folder: Path) -> str:
    """The base model a PEFT checkpoint sits on (routerlib marker, else peft's own config)."""
    marker = folder / CHECKPOINT_MARKER
    if marker.is_file():
        return str(json.loads(marker.read_text(encoding="utf-8"))["base_model"])
    config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    return str(config["base_model_name_or_path"])


def _local_or_id(name: str) -> str:
    """An existing local folder as an absolute path; anything else (a hub id) unchanged."""
    path = Path(name).expanduser()
    return str(path.resolve()) if path.is_dir() else name


def _load_lm(name_or_path: str) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    from routerlib.tinymodel import resolve_base_model

    return AutoModelForCausalLM.from_pretrained(
        resolve_base_model(name_or_path), dtype=torch.float32
    )


def _load_tokenizer(name_or_path: str) -> Any:
    from transformers import AutoTokenizer

    from routerlib.tinymodel import resolve_base_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_base_model(name_or_path))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_for_inference(checkpoint_dir: str | os.PathLike[str]) -> tuple[Any, Any]:
    """(model, tokenizer) of a checkpoint, ready to generate: LoRA merged, eval mode.

    Takes a PEFT or FULL checkpoint folder written by this backend, any Hugging Face model folder,
    a hub id, or EMBEDDED_MODEL (the untuned base)."""
    folder = Path(checkpoint_dir).expanduser()
    kind = _checkpoint_kind(folder)
    if kind is None and (folder.exists() or folder.is_absolute()):
        raise InputError(f"{checkpoint_dir}: not a model checkpoint folder")
    name = str(folder.resolve()) if kind else str(checkpoint_dir)
    with _quiet_transformers():
        if kind == "peft":
            from peft import PeftModel

            base = _load_lm(_adapter_base_of(folder))
            model = PeftModel.from_pretrained(base, name).merge_and_unload()
        else:
            model = _load_lm(name)
        tokenizer = _load_tokenizer(name)
    model.eval()
    return model, tokenizer


# ---------------------------------------------------------------- the backend


@dataclass
class _Plan:
    """How the trainable model is made for a spec."""

    mode: str
    adapter_base: str | None  # PEFT: the model the adapter sits on (recorded in the marker)
    custom: Path | None
    custom_kind: str | None


def _plan(spec: TuningSpec) -> _Plan:
    custom = kind = None
    if spec.custom_base_model:
        if spec.custom_base_model.startswith("gs://"):
            raise InputError(
                f"custom_base_model: {spec.custom_base_model} is in Cloud Storage; the local "
                "backend needs a local checkpoint folder (copy it down first)"
            )
        custom = Path(spec.custom_base_model).expanduser().resolve()
        kind = _checkpoint_kind(custom)
        if kind is None:
            raise InputError(f"custom_base_model: {custom} is not a checkpoint folder")
    adapter_base = None
    if spec.tuning_mode == "PEFT_ADAPTER":
        if custom is None:
            adapter_base = _local_or_id(spec.base_model)
        elif kind == "peft":
            adapter_base = _adapter_base_of(custom)
        else:
            adapter_base = str(custom)
    return _Plan(spec.tuning_mode, adapter_base, custom, kind)


#: LoRA goes on every linear projection of attention and MLP ("all-linear" in peft: any
#: architecture, the output head excluded).
LORA_TARGETS = "all-linear"
#: The embedded model's weights are random, so its embeddings and output head carry no meaning an
#: adapter on the projections alone could build on (validation loss stalls near 7.5 nats against
#: 5.1 with these): on it, LoRA also adapts the token embeddings and the LM head.
EMBEDDED_LORA_TARGETS = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
    "embed_tokens",
    "lm_head",
)


def lora_targets(spec: TuningSpec, plan: _Plan) -> str | list[str]:
    """Modules LoRA adapts for this spec: see LORA_TARGETS and EMBEDDED_LORA_TARGETS."""
    if spec.base_model == EMBEDDED_MODEL and plan.custom is None:
        return list(EMBEDDED_LORA_TARGETS)
    return LORA_TARGETS


def _build_model(spec: TuningSpec, plan: _Plan, resume: Path | None, seed: int) -> Any:
    """The trainable model: from the resume checkpoint, the custom base, or the base model."""
    import torch

    if plan.mode == "FULL":
        if resume is not None:
            model = _load_lm(str(resume))
        elif plan.custom is not None and plan.custom_kind == "peft":
            from peft import PeftModel

            base = _load_lm(_adapter_base_of(plan.custom))
            model = PeftModel.from_pretrained(base, str(plan.custom)).merge_and_unload()
        else:
            model = _load_lm(str(plan.custom) if plan.custom else spec.base_model)
        return model.requires_grad_(True)  # a merged adapter leaves the base frozen

    from peft import LoraConfig, PeftModel, get_peft_model

    assert plan.adapter_base is not None
    base = _load_lm(plan.adapter_base)
    source = resume
    if source is None and plan.custom is not None and plan.custom_kind == "peft":
        config = json.loads((plan.custom / "adapter_config.json").read_text(encoding="utf-8"))
        if config.get("r") != spec.adapter_size:
            raise InputError(
                f"custom_base_model: {plan.custom} is an adapter of size {config.get('r')}; "
                f"continue it with adapter_size {config.get('r')} (or tune FULL from it)"
            )
        source = plan.custom
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


def _save_checkpoint(
    model: Any,
    tokenizer: Any,
    dest: Path,
    marker: dict[str, Any],
    extra: Callable[[Path], None] | None = None,
) -> None:
    """Write a loadable checkpoint to ``dest`` atomically (temp folder, then rename)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        with _quiet_transformers():
            if hasattr(model, "peft_config"):  # the adapter only, not the frozen embeddings
                model.save_pretrained(tmp, safe_serialization=True, save_embedding_layers=False)
            else:
                model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
        write_json(tmp / CHECKPOINT_MARKER, marker)
        if extra is not None:
            extra(tmp)
        os.chmod(tmp, 0o755)
        if dest.exists():
            shutil.rmtree(dest)
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
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


@contextlib.contextmanager
def _threads(count: int | None) -> Iterator[None]:
    """``count`` torch threads; None = ``$OMP_NUM_THREADS`` when set, else every core."""
    import torch

    before = torch.get_num_threads()
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    default = int(env) if env.isdigit() else os.cpu_count()
    torch.set_num_threads(max(1, count or default or 1))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _pid_alive(pid: int | None, host: str | None) -> bool:
    if not pid or host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _bf16_default() -> bool:
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class _Cancelled(Exception):
    pass


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


@dataclass
class LocalBackend:
    """Tune on this machine. ``submit`` trains synchronously and returns the finished Job.

    batch_size: examples per optimizer step; max_train_tokens: truncate longer examples (None =
    the model's context; truncating completions stops the model learning to close the JSON);
    seed: LoRA init and data order; bf16: bfloat16 autocast (None = when the CPU supports it);
    num_threads: torch threads (None = all cores); root: where ``get``/``list`` look for jobs
    (None = the outputs root); on_epoch_end: test hook called with the epoch after its checkpoint.
    """

    batch_size: int = run_default("batch_size")
    max_train_tokens: int | None = run_default("max_train_tokens")
    seed: int = 0
    bf16: bool | None = None
    num_threads: int | None = None
    progress: bool = True
    root: Path | None = None
    on_epoch_end: Callable[[int], None] | None = None
    name: str = "local"
    remote: bool = False
    _known: dict[str, Path] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------ protocol

    @property
    def where(self) -> dict[str, str | None]:
        """Local jobs are found by name under the outputs root: nothing to keep."""
        return {}

    def preflight(self, spec: TuningSpec) -> list[str]:
        """Local runs read and write local paths only."""
        problems = []
        for key in (
            "training_dataset_uri",
            "validation_dataset_uri",
            "output_uri",
            "custom_base_model",
        ):
            value = getattr(spec, key)
            if value and value.startswith("gs:"):
                problems.append(
                    f"{key}: {value!r}: the local backend reads and writes local paths (download "
                    "it, or use --backend vertex)"
                )
        return problems

    def preview(self, spec: TuningSpec) -> dict[str, Any]:
        """What ``submit`` would train (for --dry-run)."""
        return {"backend": "local", "spec": spec.model_dump(mode="json")}

    def find_submitted(self, spec: TuningSpec) -> Job | None:
        """Local jobs are re-attached through the registry and their output folder."""
        return None

    def checkpoints(self, job: Job) -> list[Checkpoint]:
        """``epoch-<n>/`` folders (oldest first), then ``final/``, under the job's output."""
        root = self._output_dir(job.spec) / CHECKPOINTS_DIR
        found = []
        epochs = sorted(
            (int(p.name.split("-", 1)[1]), p)
            for p in root.glob("epoch-*")
            if p.is_dir() and p.name.split("-", 1)[1].isdigit()
        )
        steps = {  # the loss curve's epoch-end points (epoch is step / steps per epoch)
            int(e["epoch"]): e.get("step")
            for e in job.loss_curve
            if isinstance(e.get("epoch"), (int, float)) and float(e["epoch"]).is_integer()
        }
        for epoch, folder in epochs:
            found.append(
                Checkpoint(
                    checkpoint_id=f"epoch-{epoch}",
                    epoch=epoch,
                    step=_int_or_none(steps.get(epoch)),
                    uri=str(folder),
                )
            )
        final = root / "final"
        if final.is_dir():
            last = found[-1] if found else None
            found.append(
                Checkpoint(
                    checkpoint_id="final",
                    epoch=last.epoch if last else None,
                    step=last.step if last else None,
                    uri=str(final),
                )
            )
        return found

    def submit(self, spec: TuningSpec) -> Job:
        """Train ``spec`` (resuming a stopped run of the same spec) and return the ended Job."""
        out = self._output_dir(spec)
        identity = self._identity(spec)
        name = f"local-{identity[:12]}"
        previous = _read_job(out)
        run = _read_json(out / RUN_FILE)
        if previous is not None and run.get("identity") not in (None, identity):
            raise InputError(
                f"output_uri: {out} already holds job {previous.name} of a different spec; "
                "choose a new output_uri"
            )
        if previous is not None and previous.state == SUCCEEDED and _final_ok(out):
            self._known[previous.name] = out
            return previous
        key = str(out)
        if key in _ACTIVE or (
            previous is not None
            and previous.state == RUNNING
            and run.get("pid") != os.getpid()
            and _pid_alive(run.get("pid"), run.get("host"))
        ):
            raise InputError(f"output_uri: {out} is being tuned right now (job {name})")
        (out / CANCEL_FILE).unlink(missing_ok=True)
        plan = _plan(spec)  # fails early on a bad custom base
        for key_name, uri in (
            ("training_dataset_uri", spec.training_dataset_uri),
            ("validation_dataset_uri", spec.validation_dataset_uri),
        ):
            if uri and not paths.resolve(uri).is_file():
                raise InputError(f"{key_name}: {uri} does not exist")
        cache_key, cache_inputs = None, None
        if cache.cache_dir() is not None:
            cache_inputs = cache.key_inputs(spec, self._options())
            cache_key = cache.cache_key(cache_inputs)
            entry = cache.lookup(cache_key)
            if entry is not None:
                return self._attach(spec, out, name, identity, entry, previous)
        job = self._open_job(spec, out, name, identity, previous, state=RUNNING)
        _ACTIVE.add(key)
        try:
            self._train(spec, plan, job, out, identity)
            job.state, job.error = SUCCEEDED, None
            job.checkpoint_uri = str(out / FINAL_CHECKPOINT)
        except _Cancelled:
            job.state, job.error = CANCELLED, "cancelled; submit the same spec again to resume"
        except KeyboardInterrupt:
            job.state = CANCELLED
            job.error = "interrupted; submit the same spec again to resume from the last epoch"
            job.update_time = _now()
            _write_job(out, job)
            raise
        except InputError as exc:
            job.state, job.error = FAILED, "; ".join(exc.lines()[-4:])
            raise
        except Exception as exc:  # noqa: BLE001 - recorded as the job's error
            job.state, job.error = FAILED, f"{type(exc).__name__}: {exc}"
        finally:
            _ACTIVE.discard(key)
            job.update_time = _now()
            if job.state != RUNNING:
                _write_job(out, job)
        if job.succeeded and cache_key is not None and cache_inputs is not None:
            cache.store(cache_key, cache_inputs, out, job.model_dump(mode="json"))
        return job

    def get(self, name: str) -> Job:
        """The job called ``name`` (or the job in output folder ``name``)."""
        out = self._find(name)
        job = _read_job(out) if out else None
        if job is None:
            raise InputError(f"no local tuning job {name} (looked under {self._root()})")
        return _with_liveness(job, out)  # type: ignore[arg-type]

    def list(self) -> list[Job]:
        """Every local job recorded under the root and submitted by this backend."""
        folders = {p.parent for p in self._root().rglob(RUN_FILE)} | set(self._known.values())
        jobs = []
        for out in sorted(folders):
            job = _read_job(out)
            if job is not None and job.backend == "local":
                jobs.append(_with_liveness(job, out))
        return jobs

    def cancel(self, name: str) -> Job:
        """Ask a running job to stop after its current step; a dead run is marked cancelled."""
        out = self._find(name)
        job = self.get(name)
        if job.ended or out is None:
            return job
        (out / CANCEL_FILE).write_text(_now() + "\n", encoding="utf-8")
        run = _read_json(out / RUN_FILE)
        if str(out) not in _ACTIVE and not _pid_alive(run.get("pid"), run.get("host")):
            job.state, job.error, job.update_time = CANCELLED, "cancelled", _now()
            _write_job(out, job)
        return job

    # ------------------------------------------------------------ helpers

    def _attach(
        self,
        spec: TuningSpec,
        out: Path,
        name: str,
        identity: str,
        entry: Path,
        previous: Job | None,
    ) -> Job:
        """Finish ``spec`` from a cached tuning with the same key: its checkpoints and curve are
        copied into ``out``; local_run.json records where they came from."""
        cached = Job.model_validate(cache.restore(entry, out))
        job = self._open_job(
            spec,
            out,
            name,
            identity,
            previous,
            state=SUCCEEDED,
            from_cache={"entry": str(entry), "job": cached.name},
            checkpoint_uri=str(out / FINAL_CHECKPOINT),
            tuning_data_stats=cached.tuning_data_stats,
            loss_curve=cached.loss_curve,
            train_seconds=cached.train_seconds,
        )
        if self.progress:
            print(f"tune (local): same spec and data as {cached.name}; re-attached from {entry}")
        return job

    def _open_job(
        self,
        spec: TuningSpec,
        out: Path,
        name: str,
        identity: str,
        previous: Job | None,
        *,
        state: str,
        from_cache: dict[str, str] | None = None,
        **fields: Any,
    ) -> Job:
        """Record a (re)started or re-attached job in ``out``: local_run.json says which spec,
        process and options own the folder (and the cache entry it came from), then the Job
        (keeping the first submission's create_time) is written and remembered."""
        job = Job(
            name=name,
            backend="local",
            state=state,
            spec=spec,
            create_time=previous.create_time if previous else _now(),
            update_time=_now(),
            **fields,
        )
        run: dict[str, Any] = {
            "identity": identity,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "options": self._options(),
        }
        if from_cache is not None:
            run["from_cache"] = from_cache
        write_json(out / RUN_FILE, run)
        _write_job(out, job)
        self._known[name] = out
        return job

    def _root(self) -> Path:
        return Path(self.root) if self.root else paths.outputs_root()

    def _find(self, name: str) -> Path | None:
        if name in self._known:
            return self._known[name]
        as_path = Path(name).expanduser()
        if (as_path / JOB_FILE).is_file():
            return as_path.resolve()
        root = self._root()
        if root.is_dir():
            for run_file in root.rglob(RUN_FILE):
                job = _read_job(run_file.parent)
                if job is not None and job.name == name:
                    self._known[name] = run_file.parent
                    return run_file.parent
        return None

    def _options(self) -> dict[str, Any]:
        return {
            "batch_size": self.batch_size,
            "max_train_tokens": self.max_train_tokens,
            "seed": self.seed,
            "bf16": self._use_bf16(),
        }

    def _use_bf16(self) -> bool:
        return _bf16_default() if self.bf16 is None else bool(self.bf16)

    def _identity(self, spec: TuningSpec) -> str:
        """Hash of everything that changes the trained weights (not labels or display name)."""
        fields = spec.model_dump(exclude={"labels", "tuned_model_display_name"})
        blob = json.dumps({"spec": fields, "options": self._options()}, sort_keys=True)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    @staticmethod
    def _output_dir(spec: TuningSpec) -> Path:
        for key, uri in (
            ("output_uri", spec.output_uri),
            ("training_dataset_uri", spec.training_dataset_uri),
            ("validation_dataset_uri", spec.validation_dataset_uri or ""),
        ):
            if uri.startswith("gs://"):
                raise InputError(
                    f"{key}: {uri} is in Cloud Storage; the local backend reads and writes local "
                    "paths (use --backend vertex, or local files)"
                )
        out = paths.resolve(spec.output_uri)
        out.mkdir(parents=True, exist_ok=True)
        return out

    def default_learning_rate(self, spec: TuningSpec) -> float:
        """learning_rate, else the mode's default (tiny or pretrained model) × the multiplier."""
        if spec.learning_rate is not None:
            return float(spec.learning_rate)
        table = (
            EMBEDDED_LEARNING_RATES
            if spec.base_model == EMBEDDED_MODEL
            else PRETRAINED_LEARNING_RATES
        )
        return table[spec.tuning_mode] * float(spec.learning_rate_multiplier or 1.0)

    # ------------------------------------------------------------ training

    def _train(self, spec: TuningSpec, plan: _Plan, job: Job, out: Path, identity: str) -> None:
        import torch

        ckpt_root = out / CHECKPOINTS_DIR
        resume_dir, state = _last_epoch_state(ckpt_root, identity)
        with _threads(self.num_threads), _quiet_transformers():
            tokenizer = _load_tokenizer(
                str(resume_dir) if resume_dir else str(plan.custom or spec.base_model)
            )
            model = _build_model(spec, plan, resume_dir, self.seed)
        model.train()
        config = (model.get_base_model() if hasattr(model, "get_base_model") else model).config
        limit = getattr(config, "max_position_embeddings", None)
        if self.max_train_tokens is not None:
            limit = min(limit or self.max_train_tokens, self.max_train_tokens)

        train = encode_examples(
            tokenizer, read_prompt_completion(paths.resolve(spec.training_dataset_uri)), limit
        )
        val = (
            encode_examples(
                tokenizer, read_prompt_completion(paths.resolve(spec.validation_dataset_uri)), limit
            )
            if spec.validation_dataset_uri
            else []
        )
        lengths = [len(e.ids) for e in train]
        steps_per_epoch = math.ceil(len(train) / self.batch_size)
        total_steps = steps_per_epoch * spec.epochs
        peak_lr = self.default_learning_rate(spec)
        warmup = max(1, int(WARMUP_FRACTION * total_steps))

        def lr_at(step: int) -> float:
            if step < warmup:
                return peak_lr * (step + 1) / warmup
            progress = (step - warmup) / max(1, total_steps - warmup)
            cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
            return peak_lr * (MIN_LR_FRACTION + (1 - MIN_LR_FRACTION) * cosine)

        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = _adamw(params, peak_lr)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        use_bf16 = self._use_bf16()

        def autocast() -> Any:
            return torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16)

        stats = _data_stats(train, val, spec.epochs, steps_per_epoch)
        job.tuning_data_stats = stats
        marker = {
            "kind": "peft" if plan.mode == "PEFT_ADAPTER" else "full",
            "base_model": plan.adapter_base if plan.mode == "PEFT_ADAPTER" else None,
            "spec_base_model": spec.base_model,
            "custom_base_model": spec.custom_base_model,
            "tuning_mode": spec.tuning_mode,
            "adapter_size": spec.adapter_size,
            "learning_rate": peak_lr,
            "job": job.name,
        }

        def validate() -> float | None:
            if not val:
                return None
            model.eval()
            total, count = 0.0, 0
            order = sorted(range(len(val)), key=lambda i: -len(val[i].ids))
            with torch.inference_mode(), _threads(self.num_threads), autocast():
                for start in range(0, len(order), self.batch_size * 2):
                    inputs, targets = _collate(
                        val, order[start : start + self.batch_size * 2], pad_id
                    )
                    loss, n = completion_loss(model, inputs, targets)
                    total, count = total + float(loss), count + n
            model.train()
            return total / max(count, 1)

        start_epoch, step = 0, 0
        curve: list[dict[str, Any]] = []
        train_seconds, tokens_seen, epoch_seconds = 0.0, 0, []
        if state is not None:
            optimizer.load_state_dict(state["optimizer"])
            start_epoch, step = int(state["epoch"]), int(state["step"])
            curve, train_seconds = list(state["curve"]), float(state["train_seconds"])
            tokens_seen, epoch_seconds = int(state["tokens_seen"]), list(state["epoch_seconds"])
        if not curve:
            curve.append({"epoch": 0, "step": 0, "train_loss": None, "val_loss": validate()})
        log_every = max(1, total_steps // 25)
        # A terminal redraws one line every second; a notebook or run.log gets one whole line at
        # each epoch's end instead (every redraw there would be kept as a partial line).
        bar = progress_bar(
            self.progress,
            total_steps,
            desc=f"tune {spec.tuning_mode} (local)",
            unit="step",
            initial=step,
            every=None,
            mininterval=1.0,
            maxinterval=10.0,
        )
        try:
            with _threads(self.num_threads):
                for epoch in range(start_epoch, spec.epochs):
                    window_loss, window_tokens = 0.0, 0
                    began = time.perf_counter()
                    for batch in make_batches(lengths, self.batch_size, self.seed, epoch):
                        if (out / CANCEL_FILE).exists():
                            raise _Cancelled()
                        for group in optimizer.param_groups:
                            group["lr"] = lr_at(step)
                        inputs, targets = _collate(train, batch, pad_id)
                        with autocast():
                            loss_sum, n = completion_loss(model, inputs, targets)
                        (loss_sum / max(n, 1)).backward()
                        torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
                        optimizer.step()
                        optimizer.zero_grad(set_to_none=True)
                        step += 1
                        tokens_seen += sum(lengths[i] for i in batch)
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
                    milestone(bar)
                    progress = {
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
                    _save_checkpoint(
                        model,
                        tokenizer,
                        dest,
                        {**marker, "epoch": epoch + 1, "step": step},
                        functools.partial(_save_state, progress),
                    )
                    for older in ckpt_root.glob(f"epoch-*/{TRAINING_STATE}"):
                        if older.parent != dest:
                            older.unlink()
                    write_json(out / LOSS_CURVE_FILE, curve)
                    job.loss_curve, job.train_seconds = curve, round(train_seconds, 3)
                    job.update_time = _now()
                    _write_job(out, job)
                    if self.on_epoch_end is not None:
                        self.on_epoch_end(epoch + 1)
        finally:
            bar.close()

        last = ckpt_root / f"epoch-{spec.epochs}"
        final = out / FINAL_CHECKPOINT
        if last.resolve() != final.resolve():
            _copy_checkpoint(last, final)
        stats["train_seconds"] = round(train_seconds, 3)
        stats["trained_token_count"] = tokens_seen
        stats["train_tokens_per_second"] = (
            round(tokens_seen / train_seconds, 1) if train_seconds else None
        )
        stats["epoch_seconds"] = epoch_seconds
        stats["learning_rate"] = peak_lr
        stats["bf16"] = use_bf16
        job.tuning_data_stats = stats
        job.loss_curve, job.train_seconds = curve, round(train_seconds, 3)
        write_json(out / LOSS_CURVE_FILE, curve)
        (last / TRAINING_STATE).unlink(missing_ok=True)


def _save_state(state: dict[str, Any], folder: Path) -> None:
    import torch

    torch.save(state, folder / TRAINING_STATE)


def _adamw(params: list[Any], lr: float) -> Any:
    import torch

    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=0.0, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(params, lr=lr, weight_decay=0.0, foreach=True)


def _point(
    step: int, steps_per_epoch: int, train: float | None, val: float | None
) -> dict[str, Any]:
    return {
        "epoch": round(step / steps_per_epoch, 4),
        "step": step,
        "train_loss": None if train is None else round(train, 5),
        "val_loss": None if val is None else round(val, 5),
    }


def _data_stats(
    train: list[Encoded], val: list[Encoded], epochs: int, steps_per_epoch: int
) -> dict[str, Any]:
    """Tuning data statistics named as Vertex's SupervisedTuningDataStats."""
    inputs = [e.n_prompt for e in train]
    outputs = [len(e.ids) - e.n_prompt for e in train]
    total = sum(len(e.ids) for e in train)
    truncated = [i for i, e in enumerate(train) if e.truncated]
    return {
        "tuning_dataset_example_count": len(train),
        "total_billable_token_count": total * epochs,
        "tuning_step_count": steps_per_epoch * epochs,
        "user_input_token_distribution": _distribution(inputs),
        "user_output_token_distribution": _distribution(outputs),
        "total_truncated_example_count": len(truncated),
        "truncated_example_indices": truncated[:100],
        "validation_example_count": len(val),
        "epochs": epochs,
    }


def _copy_checkpoint(src: Path, dest: Path) -> None:
    """Copy a checkpoint (without its training state) atomically."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        shutil.rmtree(tmp)
        shutil.copytree(src, tmp, ignore=shutil.ignore_patterns(TRAINING_STATE))
        if dest.exists():
            shutil.rmtree(dest)
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _last_epoch_state(ckpt_root: Path, identity: str) -> tuple[Path | None, dict[str, Any] | None]:
    """The newest epoch checkpoint holding a training state of this run, and that state."""
    import torch

    candidates = []
    for state_file in ckpt_root.glob(f"epoch-*/{TRAINING_STATE}"):
        try:
            candidates.append((int(state_file.parent.name.split("-", 1)[1]), state_file))
        except ValueError:
            continue
    for _, state_file in sorted(candidates, reverse=True):
        state = torch.load(state_file, map_location="cpu", weights_only=False)
        if state.get("identity") == identity:
            return state_file.parent, state
    return None, None


def _final_ok(out: Path) -> bool:
    return (out / FINAL_CHECKPOINT / CHECKPOINT_MARKER).is_file()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _read_job(out: Path) -> Job | None:
    data = _read_json(out / JOB_FILE)
    if not data:
        return None
    try:
        return Job.model_validate(data)
    except ValueError:
        return None


def _write_job(out: Path, job: Job) -> None:
    write_json(out / JOB_FILE, job.model_dump(mode="json"))


def _with_liveness(job: Job, out: Path) -> Job:
    """A job recorded as RUNNING whose process is gone is reported FAILED (resumable)."""
    if job.state != RUNNING or str(out) in _ACTIVE:
        return job
    run = _read_json(out / RUN_FILE)
    if run.get("pid") != os.getpid() and _pid_alive(run.get("pid"), run.get("host")):
        return job
    return job.model_copy(
        update={
            "state": FAILED,
            "error": "the tuning process ended before finishing; submit the same spec again "
            "to resume from the last finished epoch",
        }
    )
