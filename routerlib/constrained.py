"""Schema-constrained decoding for Hugging Face ``generate``, with llguidance.

:func:`compiled` turns (tokenizer, JSON Schema) into a :class:`CompiledSchema` once and caches it
(the tokenizer conversion is the costly part; the grammar text is shared by every matcher).
:meth:`CompiledSchema.processor` gives a fresh ``LogitsProcessor`` for one ``generate`` call: one
matcher per batch row, a token bitmask filled per step, disallowed logits set to -inf. A row whose
object is complete may only end (EOS); padding rows of a finished sequence are left alone. Given
each row's token limit, a row whose remaining budget only just covers closing the object (closing
mode simulated on a copy of its matcher) switches to closing mode: only the tokens that end the
object soonest stay allowed (see :func:`closing_choice`), so it is complete before the limit.

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
from dataclasses import dataclass, field
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
    _table: TokenTable | None = field(default=None, repr=False, compare=False)
    _start_cost: int | None = field(default=None, repr=False, compare=False)

    def token_table(self) -> TokenTable:
        """Each token's decoded length and closing category (built once, kept beside the
        compiled schema)."""
        with _lock:
            if self._table is None:
                self._table = TokenTable.build(self.ll_tokenizer, self.vocab_size)
            return self._table

    def start_cost(self) -> int:
        """Tokens closing mode needs for a whole object from its start (computed once)."""
        with _lock:
            cost = self._start_cost
        if cost is None:
            cost = simulate_closing(self, self.matcher(), 1 << 16) or 0
            with _lock:
                self._start_cost = cost
        return cost

    def step_ending(self, matcher: Any) -> list[int] | None:
        """Tokens that end the string ``matcher`` is inside, when a route step's pattern keeps
        ``"`` from being allowed yet (an open ``/math(`` call, a ``/general-search(`` without
        its ``mode=``): the first of :data:`STEP_ENDINGS` the grammar takes, after which ``"``
        is allowed. None when none applies."""
        import torch

        table = self.token_table()
        words = torch.empty((1, (self.vocab_size + 31) // 32), dtype=torch.int32)
        for ending in STEP_ENDINGS:
            ids = list(self.ll_tokenizer.tokenize_str(ending))
            copy = matcher.deep_copy()
            if copy.try_consume_tokens(ids) != len(ids):
                continue
            import llguidance.torch as llt

            llt.fill_next_token_bitmask(copy, words, 0)
            allowed = _unpack(words[0], self.vocab_size)[: table.category.shape[0]]
            if bool((allowed & (table.category == 0)).any()):
                return ids
        return None

    def matcher(self) -> Any:
        """A fresh matcher at the start of the object."""
        import llguidance

        matcher = llguidance.LLMatcher(self.ll_tokenizer, self.grammar, log_level=0)
        if matcher.is_error():
            raise ConstraintError(f"grammar error: {matcher.get_error()}")
        return matcher

    def processor(self, max_new_tokens: int | list[int] | None = None) -> SchemaLogitsProcessor:
        """A logits processor for one (batched) ``generate`` call, every row constrained;
        ``max_new_tokens`` (the limit given to ``generate``) makes rows close before it."""
        return SchemaLogitsProcessor(self, max_new_tokens=max_new_tokens)

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


#: Closing categories, in priority order: a token starting with ``"`` (ends a string), ``)``
#: (ends a route-step call), ``]``, ``}``, ``,`` (the next required key or item), else any.
CLOSERS = ('"', ")", "]", "}", ",")
OTHER = len(CLOSERS)
#: Endings tried (in order) for a route step whose pattern does not allow ``"`` yet: ``)``
#: alone cannot end a ``/general-search(`` call, which needs its ``mode=`` first.
STEP_ENDINGS = (")", "x)", ", mode=web)", "x, mode=web)")


@dataclass
class TokenTable:
    """Per token id: decoded byte length (0 for special or padding ids) and closing category."""

    nbytes: Any  # torch int32 [vocab]
    category: Any  # torch int8 [vocab]

    @classmethod
    def build(cls, ll_tokenizer: Any, vocab_size: int) -> TokenTable:
        import torch

        nbytes = torch.zeros(vocab_size, dtype=torch.int32)
        category = torch.full((vocab_size,), OTHER, dtype=torch.int8)
        first = {ord(c): k for k, c in enumerate(CLOSERS)}
        for token in range(min(vocab_size, int(ll_tokenizer.vocab_size))):
            if ll_tokenizer.is_special_token(token):
                continue
            text = ll_tokenizer.decode_bytes([token])
            nbytes[token] = len(text)
            if text:
                category[token] = first.get(text[0], OTHER)
        return cls(nbytes, category)

    def closer(self, allowed: Any) -> Any | None:
        """The tokens of the first closing category present among ``allowed`` (bool [vocab]):
        the bare closer (``"`` alone, ``)`` alone...) when allowed, else every allowed token of
        that category (left to the model's score). None when no closer is allowed."""
        width = min(int(allowed.shape[0]), int(self.category.shape[0]))
        allowed = allowed[:width]
        category, nbytes = self.category[:width], self.nbytes[:width]
        for k in range(OTHER):
            chosen = allowed & (category == k)
            if bool(chosen.any()):
                bare = chosen & (nbytes == 1)
                return bare if bool(bare.any()) else chosen
        return None

    def shortest(self, allowed: Any) -> Any:
        """The allowed tokens of fewest bytes (special tokens only when nothing else is)."""
        import torch

        width = min(int(allowed.shape[0]), int(self.nbytes.shape[0]))
        allowed = allowed[:width]
        nbytes = self.nbytes[:width]
        sized = allowed & (nbytes > 0)
        if not bool(sized.any()):
            return allowed
        least = int(torch.where(sized, nbytes, torch.iinfo(torch.int32).max).min())
        return sized & (nbytes == least)


def _bit(position: int) -> int:
    """The int32 value with only bit ``position`` set (bit 31 is the sign bit)."""
    return -(1 << 31) if position == 31 else 1 << position


def _bit_table(device: Any) -> Any:
    import torch

    return torch.arange(32, dtype=torch.int32, device=device)


def _unpack(words: Any, width: int) -> Any:
    """Bool [..., width] from an int32 bitmask [..., words]."""
    bits = (words.unsqueeze(-1) >> _bit_table(words.device)) & 1
    return bits.reshape(*words.shape[:-1], -1)[..., :width].bool()


def simulate_closing(
    schema: CompiledSchema, matcher: Any, limit: int, queue: list[int] | None = None
) -> int | None:
    """Tokens closing mode needs to complete ``matcher``'s object (run on a copy of it, ties
    broken by the lowest token id), None when more than ``limit``."""
    import llguidance.torch as llt
    import torch

    copy = matcher.deep_copy()
    words = torch.empty((1, (schema.vocab_size + 31) // 32), dtype=torch.int32)
    planned = list(queue or [])
    for count in range(limit + 1):
        if copy.is_accepting() or copy.is_stopped():
            return count
        llt.fill_next_token_bitmask(copy, words, 0)
        chosen = closing_choice(schema, copy, _unpack(words[0], schema.vocab_size), planned)
        ids = torch.nonzero(chosen).flatten()
        if ids.numel() == 0 or not copy.consume_token(int(ids[0])):
            return None
    return None


def closing_choice(schema: CompiledSchema, matcher: Any, allowed: Any, queue: list[int]) -> Any:
    """Closing mode's choice (bool [vocab]) for one row, whose grammar allows ``allowed``: the
    next token of a planned ending (``queue``, consumed here) if still allowed; inside a route
    step that cannot end with ``"`` yet, :meth:`CompiledSchema.step_ending`; else the first
    closer category (:meth:`TokenTable.closer`); else the grammar's forced tokens (the rest of
    a key); else the shortest allowed tokens."""
    table = schema.token_table()

    def only(token: int) -> Any:
        chosen = allowed.new_zeros(allowed.shape)
        chosen[token] = True
        return chosen

    if queue and bool(allowed[queue[0]]):
        return only(queue.pop(0))
    queue.clear()
    width = table.category.shape[0]
    if not bool((allowed[:width] & (table.category == 0)).any()):
        plan = schema.step_ending(matcher)
        if plan:
            queue.extend(plan[1:])
            return only(plan[0])
    chosen = table.closer(allowed)
    if chosen is not None:
        return chosen
    forced = [int(t) for t in matcher.compute_ff_tokens()]
    if forced and bool(allowed[forced[0]]):
        queue.extend(forced[1:])
        return only(forced[0])
    return table.shortest(allowed)


#: Closing: first estimate once half the budget is used (earlier when the budget is short
#: beside closing from the start), then every CHECK_EVERY steps; close when used + needed +
#: SAFETY_MARGIN reaches the budget.
CHECK_EVERY = 8
SAFETY_MARGIN = 8 + CHECK_EVERY


class SchemaLogitsProcessor:
    """A ``transformers`` logits processor keeping rows of a batch inside their schema.

    ``schemas`` is one compiled schema for every row, or one per row (None = that row decodes
    freely). ``max_new_tokens`` (one limit or one per row, as given to ``generate``) lets each
    row finish its object before its limit: once the simulated closing cost (closing mode run
    on a copy of the row's matcher) no longer fits the remaining budget, the row switches to
    closing mode, where only the first allowed category of :data:`CLOSERS` (else the shortest
    allowed tokens) stays open to the model. Use one instance per ``generate`` call (it tracks
    each row from the first step)."""

    def __init__(
        self,
        schemas: CompiledSchema | list[CompiledSchema | None],
        max_new_tokens: int | list[int] | None = None,
    ) -> None:
        self.schemas = schemas
        self.max_new_tokens = max_new_tokens
        self.matchers: list[Any] = []
        self.started = False
        self.finished: list[bool] = []
        self.closing: list[bool] = []
        #: the step at which each row entered closing mode (None: never), for diagnostics
        self.closed_at: list[int | None] = []
        self.steps = 0

    def _start(self, batch: int) -> None:
        per_row = self.schemas if isinstance(self.schemas, list) else [self.schemas] * batch
        if len(per_row) != batch:
            raise ConstraintError(f"{len(per_row)} schemas for a batch of {batch} rows")
        budgets = self.max_new_tokens
        if budgets is None or isinstance(budgets, int):
            budgets = [budgets] * batch  # type: ignore[list-item]
        if len(budgets) != batch:
            raise ConstraintError(f"{len(budgets)} token limits for a batch of {batch} rows")
        self.row_schemas = per_row
        self.budgets: list[int | None] = list(budgets)
        self.matchers = [s.matcher() if s is not None else None for s in per_row]
        self.finished = [False] * batch
        self.closing = [False] * batch
        self.closed_at = [None] * batch
        self.queues: list[list[int]] = [[] for _ in range(batch)]
        self.eos_ids = sorted({i for s in per_row if s is not None for i in s.eos_ids})
        self.vocab_size = max(s.vocab_size for s in per_row if s is not None)
        self.started = True

    def _fill(self, matcher: Any, mask: Any, row: int) -> None:
        import llguidance.torch as llt

        llt.fill_next_token_bitmask(matcher, mask, row)

    def closing_cost(self, row: int, limit: int) -> int | None:
        """Tokens closing mode needs to complete row ``row``'s object from here (simulated on
        a copy of its matcher, ties broken by the lowest token id), None if over ``limit``."""
        schema = self.row_schemas[row]
        assert schema is not None
        return simulate_closing(schema, self.matchers[row], limit, self.queues[row])

    def _update_closing(self, row: int) -> None:
        budget = self.budgets[row]
        if budget is None or self.closing[row] or self.finished[row]:
            return
        used = self.steps - 1  # tokens this row has generated so far
        schema = self.row_schemas[row]
        assert schema is not None
        first = max(0, min(budget // 2, budget - 2 * schema.start_cost() - SAFETY_MARGIN))
        if used < first or (used - first) % CHECK_EVERY:
            return
        left = budget - used - SAFETY_MARGIN
        needed = self.closing_cost(row, max(left, 0))
        if needed is None or used + needed + SAFETY_MARGIN >= budget:
            self.closing[row] = True
            self.closed_at[row] = used

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        batch = int(input_ids.shape[0])
        if not self.started:
            self._start(batch)
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
                self._fill(matcher, mask, row)
                self._update_closing(row)
        allowed = _unpack(mask, self.vocab_size)
        for row, closing in enumerate(self.closing):
            if closing and not self.finished[row]:
                schema = self.row_schemas[row]
                assert schema is not None
                choice = closing_choice(schema, self.matchers[row], allowed[row], self.queues[row])
                allowed[row] = False
                allowed[row, : choice.shape[0]] = choice
        width = scores.shape[-1]
        allowed = allowed[:, :width].to(scores.device)
        if allowed.shape[1] < width:  # logits wider than the vocabulary: padding ids stay off
            pad = torch.zeros((batch, width - allowed.shape[1]), dtype=torch.bool)
            allowed = torch.cat([allowed, pad.to(scores.device)], dim=1)
        return scores.masked_fill(~allowed, float("-inf"))
