"""Training examples of the local trainer: JSONL pairs -> token ids -> length-bucketed batches.

The loss covers completion tokens only (the prompt is masked with IGNORE_INDEX) and an EOS token
closes each completion, so the model learns where to stop. Prompts are tokenized as serving
tokenizes them (with the tokenizer's special tokens), so the boundary the model learns is the one
it meets.
"""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass
from typing import Any

from routerlib.errors import InputError

#: The target id cross-entropy skips (prompt tokens and padding).
IGNORE_INDEX = -100


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


def collate(examples: list[Encoded], idxs: list[int], pad_id: int) -> tuple[Any, Any]:
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


def data_stats(
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
