"""Training tokens/s of the local tuning backend against a plain Hugging Face ``Trainer`` loop.

Same embedded tiny model, same rows (embedded synthetic data, prompt tokens masked, EOS after the
completion), same batch size, learning-rate schedule, precision (float32, the local default on a CPU), thread
count and one epoch. Tokens/s = real (non-padding) tokens of the epoch divided
by the training loop's time: ``train_seconds`` of the local job against the Trainer's
``train_runtime``. Model loading, tokenizing and checkpoint writing are outside both numbers.

The Trainer is used as its documentation shows it: ``DataCollatorForSeq2Seq`` pads each batch
(dynamic padding) and passes the attention mask; no length grouping. The local loop also pads
per batch, but buckets similar lengths, needs no mask (right padding + causal attention) and runs
the LM head on completion positions only.

The local loop also runs once more with bfloat16 autocast (``bf16=True``), right after, to show
why a CPU trains in float32 by default: ``fp32/bf16`` is float32 tokens/s over bfloat16 tokens/s.

Prints a table for FULL and PEFT_ADAPTER, the goal (≥ 1.0×) and a final line
``RESULT bench_tune_local ratio=<x> fp32_over_bf16=<y>`` with the lower of the two modes' ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from routerlib import convert, schema, synth  # noqa: E402
from routerlib.models import EMBEDDED_MODEL  # noqa: E402
from routerlib.tuning import cache, examples, local, model_io, trainer  # noqa: E402
from routerlib.tuning.base import TuningSpec  # noqa: E402

GOAL = 1.0
BATCH_SIZE = 4
ADAPTER_SIZE = 16


def write_rows(path: Path, rows: int, seed: int) -> Path:
    with open(path, "w", encoding="utf-8") as handle:
        for row in synth.generate_rows(rows, seed):
            pair = {
                "prompt": schema.build_prompt(row["user_query"]),
                "completion": schema.completion_text(row),
            }
            handle.write(json.dumps(pair, ensure_ascii=False) + "\n")
    return path


def run_local(mode: str, train: Path, out: Path, bf16: bool = False) -> tuple[float, int, float]:
    """(tokens/s, tokens, train seconds) of one local epoch (bfloat16 autocast or float32)."""
    spec = TuningSpec.build(
        base_model=EMBEDDED_MODEL,
        training_dataset_uri=str(train),
        output_uri=str(out),
        tuning_mode=mode,
        adapter_size=ADAPTER_SIZE if mode == "PEFT_ADAPTER" else None,
        epochs=1,
    )
    backend = local.LocalBackend(batch_size=BATCH_SIZE, bf16=bf16, progress=False)
    job = backend.submit(spec)
    if not job.succeeded:
        raise SystemExit(f"local run failed: {job.error}")
    stats = job.tuning_data_stats
    seconds = float(stats["train_seconds"])
    tokens = int(stats["trained_token_count"])
    return tokens / seconds, tokens, seconds


def run_trainer(mode: str, train: Path, out: Path) -> tuple[float, int, float]:
    """(tokens/s, tokens, train_runtime) of one epoch with transformers.Trainer."""
    import torch
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments

    model, tokenizer = model_io.load_for_inference(EMBEDDED_MODEL)
    spec = TuningSpec.build(
        base_model=EMBEDDED_MODEL,
        training_dataset_uri=str(train),
        output_uri=str(out),
        tuning_mode=mode,
        adapter_size=ADAPTER_SIZE if mode == "PEFT_ADAPTER" else None,
        epochs=1,
    )
    if mode == "PEFT_ADAPTER":
        from peft import LoraConfig, get_peft_model

        plan = model_io.plan_for(spec)
        config = LoraConfig(
            r=ADAPTER_SIZE,
            lora_alpha=2 * ADAPTER_SIZE,
            lora_dropout=0.0,
            target_modules=model_io.lora_targets(spec, plan),
            task_type="CAUSAL_LM",
        )
        torch.manual_seed(0)
        model = get_peft_model(model, config)
    rows = examples.encode_examples(tokenizer, convert.read_prompt_completion(train))
    dataset = [
        {
            "input_ids": ex.ids,
            "attention_mask": [1] * len(ex.ids),
            "labels": [-100] * ex.n_prompt + ex.ids[ex.n_prompt :],
        }
        for ex in rows
    ]
    tokens = sum(len(ex.ids) for ex in rows)
    args = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=BATCH_SIZE,
        num_train_epochs=1,
        learning_rate=trainer.default_learning_rate(spec),
        lr_scheduler_type="cosine",
        warmup_steps=max(1, int(trainer.WARMUP_FRACTION * -(-len(dataset) // BATCH_SIZE))),
        weight_decay=0.0,
        max_grad_norm=trainer.MAX_GRAD_NORM,
        bf16=False,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        eval_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
    )
    collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    hf_trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator)
    with model_io.threads():
        result = hf_trainer.train()
    seconds = float(result.metrics["train_runtime"])
    return tokens / seconds, tokens, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=48, help="synthetic training rows")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--modes", default="FULL,PEFT_ADAPTER")
    args = parser.parse_args()

    from transformers.utils import logging as hf_logging

    from routerlib.tinymodel import ensure_embedded_model

    os.environ[cache.ENV] = "off"  # a cached tuning would report its old train_seconds
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    ensure_embedded_model()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_tune_local-") as tmp:
        root = Path(tmp)
        train = write_rows(root / "train.jsonl", args.rows, args.seed)
        for mode in args.modes.split(","):
            ours = run_local(mode, train, root / f"local-{mode}")
            theirs = run_trainer(mode, train, root / f"trainer-{mode}")
            if ours[1] != theirs[1]:
                raise SystemExit(f"token counts differ: {ours[1]} vs {theirs[1]}")
            bf16 = run_local(mode, train, root / f"local-bf16-{mode}", bf16=True)
            results.append((mode, ours, theirs, bf16))

    print(f"{args.rows} rows, batch {BATCH_SIZE}, one epoch, embedded tiny model")
    print(
        f"{'mode':<14}{'tokens':>8}{'local tok/s':>13}{'Trainer tok/s':>15}{'ratio':>8}"
        f"{'local bf16 tok/s':>18}{'fp32/bf16':>11}"
    )
    ratios, precision = [], []
    for mode, ours, theirs, bf16 in results:
        ratios.append(ours[0] / theirs[0])
        precision.append(ours[0] / bf16[0])
        print(
            f"{mode:<14}{ours[1]:>8}{ours[0]:>13.0f}{theirs[0]:>15.0f}{ratios[-1]:>8.3f}"
            f"{bf16[0]:>18.0f}{precision[-1]:>11.3f}"
        )
    ratio = min(ratios)
    print(f"goal >= {GOAL}: {'met' if ratio >= GOAL else 'NOT met'} (lower of the modes)")
    print(f"RESULT bench_tune_local ratio={ratio:.3f} fp32_over_bf16={min(precision):.3f}")
    return 0


if __name__ == "__main__":
    start = time.perf_counter()
    code = main()
    print(f"({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    sys.exit(code)
