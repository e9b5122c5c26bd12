"""Schema-constrained decoding for Hugging Face ``generate``, with llguidance.

:func:`compiled` turns (tokenizer, JSON Schema) into a :class:`CompiledSchema` once and caches it
(the tokenizer conversion is the costly part; the grammar text is shared by every matcher).
:meth:`CompiledSchema.processor` gives a fresh ``LogitsProcessor`` for one ``generate`` call: one
matcher per batch row, a token bitmask filled per step, disallowed logits set to -inf. A row whose
object is complete may only end (EOS); padding rows of a finished sequence are left alone.

Why llguidance (measured in ``benchmarks/bench_constrained.py`` on the embedded model): its
``pattern`` support works on the decoded JSON string (route steps hold escaped quotes, which
xgrammar 0.2.9's pattern rejected on every real row), it compiles the schema in tens of
milliseconds against xgrammar's hundreds, and its mask costs about a tenth of xgrammar's per
token. outlines-core builds a full regex index up front, which the bounded repetitions of the
generation schema make very large (see the benchmark for its compile time).
"""

from __future__ import annotations

import json
import threading
import weakref
from dataclasses import dataclass
from typing import Any

from routerlib.errors import RouterlibError

#: JSON separators of the original conversion (``json.dumps`` defaults): the model was tuned on
#: exactly these, so the grammar allows exactly these (no free whitespace).
SEPARATORS: dict[str, Any] = {
    "item_separator": ", ",
    "key_separator": ": ",
    "whitespace_flexible": False,
}

_lock = threading.Lock()
_tokenizers: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], Any]] = (
    weakref.WeakKeyDictionary()
)
_schemas: dict[tuple[int, str], CompiledSchema] = {}


class ConstraintError(RouterlibError):
    """The schema cannot be compiled for this tokenizer, or a matcher reached an error state."""


def _fast_tokenizer(tokenizer: Any) -> Any:
    from transformers import PreTrainedTokenizerFast

    if not isinstance(tokenizer, PreTrainedTokenizerFast):
        raise ConstraintError(
            f"constrained decoding needs a fast (Rust) tokenizer, got {type(tokenizer).__name__}"
        )
    return tokenizer


def _ll_tokenizer(tokenizer: Any, vocab_size: int, eos_ids: tuple[int, ...]) -> Any:
    """llguidance's view of ``tokenizer`` (cached per tokenizer object, vocab size and EOS)."""
    import llguidance.hf

    key = (vocab_size, eos_ids)
    with _lock:
        per_tok = _tokenizers.setdefault(_fast_tokenizer(tokenizer), {})
        if key not in per_tok:
            eos: int | list[int] = list(eos_ids) if len(eos_ids) > 1 else eos_ids[0]
            per_tok[key] = llguidance.hf.from_tokenizer(
                tokenizer, n_vocab=vocab_size, eos_token=eos
            )
        return per_tok[key]


@dataclass
class CompiledSchema:
    """A JSON Schema compiled for one tokenizer: make one processor per ``generate`` call."""

    ll_tokenizer: Any
    grammar: str
    vocab_size: int
    eos_ids: tuple[int, ...]
    compile_seconds: float

    def matcher(self) -> Any:
        """A fresh matcher at the start of the object."""
        import llguidance

        matcher = llguidance.LLMatcher(self.ll_tokenizer, self.grammar, log_level=0)
        if matcher.is_error():
            raise ConstraintError(f"grammar error: {matcher.get_error()}")
        return matcher

    def processor(self) -> SchemaLogitsProcessor:
        """A logits processor for one (batched) ``generate`` call, every row constrained."""
        return SchemaLogitsProcessor(self)

    def accepts(self, token_ids: list[int]) -> bool:
        """Whether the grammar accepts this exact token sequence as a complete object."""
        matcher = self.matcher()
        return matcher.consume_tokens(list(token_ids)) and matcher.is_accepting()


def compiled(
    tokenizer: Any,
    schema: dict[str, Any],
    *,
    vocab_size: int | None = None,
    eos_ids: list[int] | tuple[int, ...] | None = None,
) -> CompiledSchema:
    """The compiled form of ``schema`` for ``tokenizer``, built on first use and cached.

    ``vocab_size`` is the model's logits width (it may exceed the tokenizer's); ``eos_ids`` the
    tokens that end a completed object (default: the tokenizer's EOS)."""
    import time

    import llguidance

    vocab = int(vocab_size or len(tokenizer))
    eos = tuple(sorted(int(i) for i in (eos_ids or [tokenizer.eos_token_id]) if i is not None))
    if not eos:
        raise ConstraintError("constrained decoding needs an EOS token id")
    text = json.dumps(schema, sort_keys=True)
    key = (id(tokenizer), f"{vocab}:{eos}:{text}")
    with _lock:
        hit = _schemas.get(key)
    if hit is not None:
        return hit
    begin = time.perf_counter()
    ll_tok = _ll_tokenizer(tokenizer, vocab, eos)
    grammar = llguidance.LLMatcher.grammar_from_json_schema(schema, defaults=dict(SEPARATORS))  # type: ignore[arg-type]
    is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar, ll_tok)
    if is_error:
        raise ConstraintError(f"schema cannot be compiled: {'; '.join(messages)}")
    result = CompiledSchema(ll_tok, grammar, vocab, eos, 0.0)
    result.matcher()  # the first matcher builds llguidance's per-tokenizer tables: count it here
    result.compile_seconds = time.perf_counter() - begin
    with _lock:
        _schemas[key] = result
        weakref.finalize(tokenizer, _schemas.pop, key, None)
    return result


def _bit(position: int) -> int:
    """The int32 value with only bit ``position`` set (bit 31 is the sign bit)."""
    return -(1 << 31) if position == 31 else 1 << position


def _bit_table(device: Any) -> Any:
    import torch

    return torch.arange(32, dtype=torch.int32, device=device)


class SchemaLogitsProcessor:
    """A ``transformers`` logits processor keeping rows of a batch inside their schema.

    ``schemas`` is one compiled schema for every row, or one per row (None = that row decodes
    freely). Use one instance per ``generate`` call (it tracks each row from the first step)."""

    def __init__(self, schemas: CompiledSchema | list[CompiledSchema | None]) -> None:
        self.schemas = schemas
        self.matchers: list[Any] = []
        self.started = False
        self.finished: list[bool] = []
        self.steps = 0

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import llguidance.torch as llt
        import torch

        batch = int(input_ids.shape[0])
        if not self.started:
            per_row = self.schemas if isinstance(self.schemas, list) else [self.schemas] * batch
            if len(per_row) != batch:
                raise ConstraintError(f"{len(per_row)} schemas for a batch of {batch} rows")
            self.matchers = [s.matcher() if s is not None else None for s in per_row]
            self.finished = [False] * batch
            self.eos_ids = sorted({i for s in per_row if s is not None for i in s.eos_ids})
            self.vocab_size = max(s.vocab_size for s in per_row if s is not None)
            self.started = True
        else:
            last = input_ids[:, -1].tolist()
            for row, matcher in enumerate(self.matchers):
                if self.finished[row] or matcher is None:
                    continue
                if not matcher.consume_token(int(last[row])):
                    raise ConstraintError(f"row {row}: {matcher.get_error()}")
                if matcher.is_stopped():
                    self.finished[row] = True
        self.steps += 1
        words = (self.vocab_size + 31) // 32
        mask = torch.full((batch, words), -1, dtype=torch.int32)
        for row, matcher in enumerate(self.matchers):
            if matcher is None:
                continue  # a free row: every token stays allowed
            if self.finished[row]:  # the object is complete: only an end token may follow
                mask[row] = 0
                for eos in self.eos_ids:
                    mask[row, eos // 32] |= _bit(eos % 32)
            else:
                llt.fill_next_token_bitmask(matcher, mask, row)
        allowed = ((mask.unsqueeze(-1) >> _bit_table(mask.device)) & 1).reshape(batch, -1)
        width = scores.shape[-1]
        allowed = allowed[:, :width].to(scores.device).bool()
        if allowed.shape[1] < width:  # logits wider than the vocabulary: padding ids stay off
            pad = torch.zeros((batch, width - allowed.shape[1]), dtype=torch.bool)
            allowed = torch.cat([allowed, pad.to(scores.device)], dim=1)
        return scores.masked_fill(~allowed, float("-inf"))
