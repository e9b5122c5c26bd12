"""A tiny random Llama checkpoint for the serving tests, plus a plain loader.

The checkpoint is a randomly initialised ``LlamaForCausalLM`` (hidden 32, 2 layers) with a small
byte-level BPE tokenizer, saved with ``save_pretrained`` so it loads like a tuned checkpoint.
``load_plain`` is the test-only loader used while (or instead of) the tuning module's
``load_for_inference``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CORPUS = [
    "Route this request: plan the steps and pick the tools.",
    '{"route_plan": ["/general-search(query=...)", "/math(expr=...)", "/code(task=...)"]}',
    "The quick brown fox jumps over the lazy dog. 0123456789 {}[]:,\"'",
    "difficulty intermediate advanced introductory tags rationale todo metrics",
]

PAD, BOS, EOS = "<pad>", "<s>", "</s>"


def build_tokenizer() -> Any:
    """A byte-level BPE tokenizer (vocabulary of a few hundred) wrapped for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=[PAD, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, padding_side="left"
    )


def make_checkpoint(directory: str | Path, *, seed: int = 0, init_range: float = 0.3) -> Path:
    """Save a tiny random Llama + tokenizer into ``directory``.

    ``init_range`` is large so the greedy choice is rarely a near-tie (batched and one-by-one
    runs then agree exactly).
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(directory)
    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        initializer_range=init_range,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def load_plain(checkpoint_dir: str | Path) -> tuple[Any, Any]:
    """Test-only loader: AutoModelForCausalLM + AutoTokenizer from a plain checkpoint folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(checkpoint_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint_dir))
    model.eval()
    return model, tokenizer


def tiny_checkpoint_fixture(tmp_path_factory: Any) -> Path:
    """Body of a session fixture: one tiny checkpoint shared by the serving test modules."""
    return make_checkpoint(tmp_path_factory.mktemp("tiny-serving-ckpt"))
