"""Schema-constrained decoding on the embedded model: time per generated token, constrained vs
free, same model, same prompts, batch 1 and batch 8, plus the one-off costs a process pays.

Candidates (all installed): llguidance (what routerlib ships, ``routerlib.constrained``),
xgrammar (vLLM's default; its own Hugging Face logits processor) and outlines-core (a regex index
built up front; compiled in a subprocess with a time limit, since the bounded repetitions of the
generation schema make its index large). The schema is
``schema.completion_json_schema(generation=True)``; decoding is greedy on one thread.

1. One-off costs: each library's compile time (llguidance's includes the work a first processor
   would otherwise do: first mask, closing token table, closing cost from the start), and the
   first constrained ``generate`` of the process (after the model itself is warm).
2. Per-step cost: every decoder is warmed up once, then each measurement is repeated
   ``--repeats`` times (decoders interleaved) and the median is reported. Each row generates
   ``--tokens`` tokens (free rows are forced to that length; a constrained row that closes its
   object earlier counts what it made).
   ``llguidance`` is the processor as ``LocalPredictor`` uses it for greedy decoding
   (``greedy=True``: a row's mask is made only when its best-scored token breaks the schema or
   the grammar forces text); ``ll masked`` the same processor masking every row at every step,
   as sampling needs.
3. The pipeline's path: ``processor(max_new_tokens=budget, greedy=True)`` as ``LocalPredictor``
   passes it (closing-mode checks included) with ``generate``'s limit at the same budget (default: the
   ``max_tokens`` default of RunConfig). Free decoding of the same rows is forced to the same
   number of steps the constrained batch took, and the two are compared per batch step: rows
   that closed their object early still cost the batch a step, on both sides alike. One
   warm-up call each, then the median of ``--pipeline-repeats``.

Prints tables and ``RESULT bench_constrained ratio_b1=.. ratio_b8=.. pipeline_b1=..
pipeline_b8=.. compile_s=.. first_call_ms_per_token=..`` (ratios: llguidance median time per
token, or per batch step on the pipeline path, over free). Goal: every ratio <= 1.15.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from routerlib import schema, synth  # noqa: E402
from routerlib.config import RunConfig  # noqa: E402
from routerlib.models import EMBEDDED_MODEL  # noqa: E402
from routerlib.serving import constrained  # noqa: E402
from routerlib.tuning.model_io import load_for_inference  # noqa: E402

TOKENS = 128
REPEATS = 5
PIPELINE_REPEATS = 3
BUDGET = int(RunConfig.model_fields["max_tokens"].default)
GOAL = 1.15
OUTLINES_LIMIT_S = 60

OUTLINES_SNIPPET = """
import json, sys, time
from outlines_core import Index, Vocabulary
from outlines_core.json_schema import build_regex_from_schema
from routerlib import schema
from routerlib.models import EMBEDDED_MODEL
from routerlib.tuning.model_io import load_for_inference
tok = load_for_inference(EMBEDDED_MODEL)[1]
start = time.perf_counter()
regex = build_regex_from_schema(json.dumps(schema.completion_json_schema(generation=True)))
vocab = {}
for token, idx in tok.get_vocab().items():
    if idx != tok.eos_token_id:
        vocab.setdefault(tok.convert_tokens_to_string([token]), []).append(idx)
Index(regex, Vocabulary(tok.eos_token_id, vocab))
print(time.perf_counter() - start)
"""


def outlines_compile_seconds() -> str:
    """outlines-core's index build time, or '> N s' when it does not finish in time."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", OUTLINES_SNIPPET],
            capture_output=True,
            text=True,
            timeout=OUTLINES_LIMIT_S,
            cwd=ROOT,
        )
    except subprocess.TimeoutExpired:
        return f"> {OUTLINES_LIMIT_S} s (stopped)"
    if done.returncode != 0:
        return "failed: " + (done.stderr.strip().splitlines() or ["?"])[-1][:80]
    return f"{float(done.stdout.strip()):.3f} s"


def generate(model, tok, prompts: list[str], processor, tokens: int) -> tuple[float, int, int]:  # type: ignore[no-untyped-def]
    """Seconds, generated tokens and decoding steps of one greedy batch with a limit of
    ``tokens`` (free rows forced to it)."""
    import torch
    from transformers import LogitsProcessorList

    tok.padding_side = "left"
    enc = tok(prompts, return_tensors="pt", padding=True)
    extra = {"min_new_tokens": tokens} if processor is None else {}
    processors = LogitsProcessorList([processor] if processor is not None else [])
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(
            **enc,
            max_new_tokens=tokens,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
            logits_processor=processors,
            **extra,
        )
    seconds = time.perf_counter() - start
    new = out[:, enc["input_ids"].shape[1] :]
    return seconds, int((new != tok.pad_token_id).sum()), int(new.shape[1])


def row(batch: int, name: str, tokens: int, per_token: list[float], free: float) -> str:
    mid = statistics.median(per_token)
    spread = f"{min(per_token) * 1000:.2f}-{max(per_token) * 1000:.2f}"
    return f"{batch:>5} {name:<12} {tokens:>7} {mid * 1000:>9.2f} {spread:>13} {mid / free:>8.2f}"


HEADER = f"{'batch':>5} {'decoder':<12} {'tokens':>7} {'ms/token':>9} {'range':>13} {'vs free':>8}"


def main() -> None:
    import torch
    import xgrammar as xgr
    import xgrammar.contrib.hf as xgr_hf

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=TOKENS, help="tokens per row (per-step)")
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--budget", type=int, default=BUDGET, help="pipeline-path token limit")
    parser.add_argument("--pipeline-repeats", type=int, default=PIPELINE_REPEATS)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the model")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    model, tok = load_for_inference(EMBEDDED_MODEL)
    model.eval()
    vocab = int(model.get_output_embeddings().weight.shape[0])
    document = schema.completion_json_schema(generation=True)
    prompts = [schema.build_prompt(r["user_query"]) for r in synth.generate_rows(8, 3)]
    generate(model, tok, prompts[:1], None, args.tokens)  # the model's own first call

    ll = constrained.compiled(tok, document, vocab_size=vocab, eos_ids=[tok.eos_token_id])
    cold_s, cold_n, _ = generate(model, tok, prompts[:1], ll.processor(), args.tokens)
    start = time.perf_counter()
    info = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=vocab)
    xg = xgr.GrammarCompiler(info, max_threads=1).compile_json_schema(
        json.dumps(document), any_whitespace=False, separators=(", ", ": ")
    )
    xg_compile = time.perf_counter() - start
    outlines = outlines_compile_seconds()

    print(
        f"compile (tokenizer + schema, once): llguidance {ll.compile_seconds:.3f} s, "
        f"xgrammar {xg_compile:.3f} s, outlines-core {outlines}"
    )
    print(
        f"first llguidance generate of the process (batch 1, {cold_n} tokens): "
        f"{cold_s / cold_n * 1000:.2f} ms/token"
    )
    print(
        f"\nper-step cost: {args.tokens} tokens per row, median of {args.repeats} "
        f"after one warm-up call each; {args.threads} torch thread(s)"
    )
    print(HEADER)
    decoders: list[tuple[str, Callable[[], Any] | None]] = [
        ("free", None),
        ("llguidance", lambda: ll.processor(greedy=True)),  # as LocalPredictor (greedy)
        ("ll masked", ll.processor),  # every row masked every step, as sampling needs
        ("xgrammar", lambda: xgr_hf.LogitsProcessor(xg)),
    ]
    ratios: dict[str, float] = {}
    for batch in (1, 8):
        rows = prompts[:batch]
        for _, make in decoders:
            generate(model, tok, rows, make() if make else None, args.tokens)
        times: dict[str, list[float]] = {name: [] for name, _ in decoders}
        counts: dict[str, int] = {}
        for _ in range(args.repeats):
            for name, make in decoders:
                s, n, _ = generate(model, tok, rows, make() if make else None, args.tokens)
                times[name].append(s / n)
                counts[name] = n
        free = statistics.median(times["free"])
        for name, _ in decoders:
            print(row(batch, name, counts[name], times[name], free))
        ratios[f"ratio_b{batch}"] = statistics.median(times["llguidance"]) / free
        greedy = ll.processor(greedy=True)
        generate(model, tok, rows, greedy, args.tokens)
        print(
            f"{'':>5} llguidance made a mask on {greedy.masked_rows} of "
            f"{counts['llguidance']} row-steps (the rest: one token checked)"
        )

    print(
        f"\npipeline path: processor(max_new_tokens={args.budget}, greedy=True) and generate's "
        "limit at "
        f"{args.budget}, as LocalPredictor calls it; free forced to the same number of steps; "
        f"median of {args.pipeline_repeats}. A row that has ended still costs its batch a "
        "step, so both sides are compared per batch step (same rows, same steps)."
    )
    print(
        f"{'batch':>5} {'decoder':<12} {'tokens':>7} {'steps':>6} {'ms/step':>8} "
        f"{'range':>13} {'vs free':>8}"
    )
    for batch in (1, 8):
        rows = prompts[:batch]
        ll_s: list[float] = []
        free_s: list[float] = []
        _, _, steps = generate(
            model, tok, rows, ll.processor(args.budget, greedy=True), args.budget
        )
        generate(model, tok, rows, None, steps)  # one warm-up call each, as above
        n = free_n = 0
        for _ in range(args.pipeline_repeats):
            s, n, steps = generate(
                model, tok, rows, ll.processor(args.budget, greedy=True), args.budget
            )
            ll_s.append(s)
            fs, free_n, _ = generate(model, tok, rows, None, steps)
            free_s.append(fs)
        free, mid = statistics.median(free_s), statistics.median(ll_s)
        for name, count, all_s in (("free", free_n, free_s), ("llguidance", n, ll_s)):
            seconds = statistics.median(all_s)
            spread = f"{min(all_s) / steps * 1000:.2f}-{max(all_s) / steps * 1000:.2f}"
            print(
                f"{batch:>5} {name:<12} {count:>7} {steps:>6} {seconds / steps * 1000:>8.2f} "
                f"{spread:>13} {seconds / free:>8.2f}"
            )
        ratios[f"pipeline_b{batch}"] = mid / free

    verdict = "meets" if max(ratios.values()) <= GOAL else "misses"
    print(f"\ngoal <= {GOAL}x on every ratio: llguidance {verdict} it")
    figures = " ".join(f"{k}={v:.3f}" for k, v in ratios.items())
    print(
        f"RESULT bench_constrained {figures} compile_s={ll.compile_seconds:.3f} "
        f"first_call_ms_per_token={cold_s / cold_n * 1000:.2f}"
    )


if __name__ == "__main__":
    main()
