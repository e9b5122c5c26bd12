"""Schema-constrained decoding on the embedded model: compile time and time per generated token,
constrained vs free, same model, same prompts, batch 1 and batch 8.

Candidates (all installed): llguidance (what routerlib ships, ``routerlib.constrained``),
xgrammar (vLLM's default; its own Hugging Face logits processor) and outlines-core (a regex index
built up front; compiled in a subprocess with a time limit, since the bounded repetitions of the
generation schema make its index large). Each row generates ``TOKENS`` tokens (free rows are
forced to that length; a constrained row that closes its object earlier counts what it made).
The completion's generation schema is ``schema.completion_json_schema(generation=True)``.

Prints a table and ``RESULT bench_constrained ratio_b1=<x> ratio_b8=<y>`` (llguidance time per
token over free time per token). Goal: <= 1.15.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from routerlib import constrained, schema, synth, tinymodel  # noqa: E402

TOKENS = 48
GOAL = 1.15
OUTLINES_LIMIT_S = 60

OUTLINES_SNIPPET = """
import json, sys, time
from outlines_core import Index, Vocabulary
from outlines_core.json_schema import build_regex_from_schema
from routerlib import schema, tinymodel
tok = tinymodel.load_embedded()[1]
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


def generate(model, tok, prompts: list[str], processor) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    """Seconds and generated tokens of one greedy batch (free rows forced to TOKENS)."""
    import torch
    from transformers import LogitsProcessorList

    tok.padding_side = "left"
    enc = tok(prompts, return_tensors="pt", padding=True)
    extra = {"min_new_tokens": TOKENS} if processor is None else {}
    processors = LogitsProcessorList([processor] if processor is not None else [])
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(
            **enc,
            max_new_tokens=TOKENS,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
            logits_processor=processors,
            **extra,
        )
    seconds = time.perf_counter() - start
    new = out[:, enc["input_ids"].shape[1] :]
    tokens = int((new != tok.pad_token_id).sum())
    return seconds, tokens


def main() -> None:
    import torch
    import xgrammar as xgr
    import xgrammar.contrib.hf as xgr_hf

    torch.set_num_threads(1)
    model, tok = tinymodel.load_embedded()
    model.eval()
    vocab = int(model.get_output_embeddings().weight.shape[0])
    document = schema.completion_json_schema(generation=True)
    prompts = [schema.build_prompt(row["user_query"]) for row in synth.generate_rows(8, 3)]

    start = time.perf_counter()
    ll = constrained.compiled(tok, document, vocab_size=vocab, eos_ids=[tok.eos_token_id])
    ll_compile = time.perf_counter() - start
    start = time.perf_counter()
    info = xgr.TokenizerInfo.from_huggingface(tok, vocab_size=vocab)
    xg = xgr.GrammarCompiler(info, max_threads=1).compile_json_schema(
        json.dumps(document), any_whitespace=False, separators=(", ", ": ")
    )
    xg_compile = time.perf_counter() - start
    outlines = outlines_compile_seconds()

    print(
        f"compile (tokenizer + schema, once): llguidance {ll_compile:.3f} s, "
        f"xgrammar {xg_compile:.3f} s, outlines-core {outlines}"
    )
    print(f"{'batch':>5} {'decoder':<12} {'tokens':>7} {'ms/token':>9} {'vs free':>8}")
    ratios = {}
    for batch in (1, 8):
        rows = prompts[:batch]
        generate(model, tok, rows, None)  # warm-up
        free_s, free_n = generate(model, tok, rows, None)
        free = free_s / free_n
        print(f"{batch:>5} {'free':<12} {free_n:>7} {free * 1000:>9.2f} {1.0:>8.2f}")
        for name, make in (
            ("llguidance", ll.processor),
            ("xgrammar", lambda: xgr_hf.LogitsProcessor(xg)),
        ):
            seconds, n = generate(model, tok, rows, make())
            ratio = (seconds / n) / free
            print(f"{batch:>5} {name:<12} {n:>7} {seconds / n * 1000:>9.2f} {ratio:>8.2f}")
            if name == "llguidance":
                ratios[batch] = ratio
    verdict = "meets" if max(ratios.values()) <= GOAL else "misses"
    print(f"goal <= {GOAL}x: llguidance {verdict} it")
    print(f"RESULT bench_constrained ratio_b1={ratios[1]:.3f} ratio_b8={ratios[8]:.3f}")


if __name__ == "__main__":
    main()
