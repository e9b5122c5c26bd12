"""Schema-constrained decoding for Hugging Face ``generate``, with llguidance: :func:`compiled`
(tokenizer, JSON Schema) -> :class:`CompiledSchema`, cached; a :class:`SchemaLogitsProcessor`
keeps each row of one ``generate`` call inside its schema and closes its object before the row's
token limit. How closing works, why llguidance and what it costs: docs/structured-output.md.
"""

from __future__ import annotations

import json
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

from routerlib.errors import RouterlibError

#: JSON separators of the original conversion (``json.dumps`` defaults), the only ones allowed.
SEPARATORS: dict[str, Any] = dict(
    item_separator=", ", key_separator=": ", whitespace_flexible=False
)

_lock = threading.Lock()
#: Per tokenizer (kept while it lives): its llguidance view by ``(vocab, eos)`` and its compiled
#: schemas by ``(vocab, eos, schema JSON)``.
_cache: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], Any]] = weakref.WeakKeyDictionary()


class ConstraintError(RouterlibError):
    """The schema cannot be compiled for this tokenizer, or a matcher reached an error state."""


def _ll_tokenizer(tokenizer: Any, vocab_size: int, eos_ids: tuple[int, ...]) -> Any:
    """llguidance's view of ``tokenizer`` (cached per tokenizer object, vocab size and EOS)."""
    import llguidance.hf
    from transformers import PreTrainedTokenizerFast

    if not isinstance(tokenizer, PreTrainedTokenizerFast):
        raise ConstraintError(
            f"constrained decoding needs a fast (Rust) tokenizer, got {type(tokenizer).__name__}"
        )
    key = (vocab_size, eos_ids)
    with _lock:
        per_tok = _cache.setdefault(tokenizer, {})
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
    #: each token's decoded length and closing category
    token_table: TokenTable = field(repr=False, compare=False)
    #: tokens closing mode needs for a whole object from its start
    start_cost: int = 0
    compile_seconds: float = 0.0

    def step_ending(self, matcher: Any) -> list[int] | None:
        """The first of :data:`STEP_ENDINGS` the grammar takes after which ``"`` is allowed, for a
        route step that cannot end yet (an open ``/math(``); None when none applies."""
        table = self.token_table
        words = None
        for ending in STEP_ENDINGS:
            ids = list(self.ll_tokenizer.tokenize_str(ending))
            copy = matcher.deep_copy()
            if copy.try_consume_tokens(ids) != len(ids):
                continue
            if table.bare_allowed(copy, 0):
                return ids
            if words is None:
                words = new_bitmask(1, self.vocab_size)
            fill_bitmask(copy, words, 0)
            if table.has_category(allowed_tokens(words[0], self.vocab_size), 0):
                return ids
        return None

    def matcher(self) -> Any:
        """A fresh matcher at the start of the object."""
        import llguidance

        matcher = llguidance.LLMatcher(self.ll_tokenizer, self.grammar, log_level=0)
        if matcher.is_error():
            raise ConstraintError(f"grammar error: {matcher.get_error()}")
        return matcher

    def processor(
        self, max_new_tokens: int | list[int] | None = None, greedy: bool = False
    ) -> SchemaLogitsProcessor:
        """A :class:`SchemaLogitsProcessor` for one ``generate`` call, every row constrained."""
        return SchemaLogitsProcessor(self, max_new_tokens=max_new_tokens, greedy=greedy)

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
    """The compiled form of ``schema`` for ``tokenizer``, built on first use and cached;
    ``vocab_size``: the model's logits width; ``eos_ids``: default the tokenizer's EOS."""
    import llguidance

    vocab = int(vocab_size or len(tokenizer))
    eos = tuple(sorted(int(i) for i in (eos_ids or [tokenizer.eos_token_id]) if i is not None))
    if not eos:
        raise ConstraintError("constrained decoding needs an EOS token id")
    key = (vocab, eos, json.dumps(schema, sort_keys=True))
    hit: CompiledSchema | None = _cache.get(tokenizer, {}).get(key)  # reads need no lock
    if hit is not None:
        return hit
    begin = time.perf_counter()
    ll_tok = _ll_tokenizer(tokenizer, vocab, eos)
    grammar = llguidance.LLMatcher.grammar_from_json_schema(schema, defaults=dict(SEPARATORS))  # type: ignore[arg-type]
    is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar, ll_tok)
    if is_error:
        raise ConstraintError(f"schema cannot be compiled: {'; '.join(messages)}")
    result = CompiledSchema(ll_tok, grammar, vocab, eos, TokenTable.build(ll_tok, vocab))
    # One-off work a first processor would otherwise pay, counted here: the first matcher and
    # mask (llguidance's lazily built tables), the closing token table and the start cost.
    fill_bitmask(result.matcher(), new_bitmask(1, vocab), 0)
    result.start_cost = simulate_closing(result, result.matcher(), 1 << 16) or 0
    result.compile_seconds = time.perf_counter() - begin
    with _lock:
        _cache.setdefault(tokenizer, {})[key] = result
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
    """Per token id: decoded byte length (0: special or padding) and closing category, and the
    boolean views of them closing mode asks for."""

    nbytes: Any  # torch int32 [vocab]
    category: Any  # torch int8 [vocab]
    #: per closing category, the ids of the tokens that are just that character (ascending)
    bare: list[list[int]] = field(default_factory=lambda: [[] for _ in CLOSERS])
    of_category: list[Any] = field(init=False, repr=False)  # bool [vocab] per closing category
    single: Any = field(init=False, repr=False)  # bool [vocab]: decodes to one byte
    sized: Any = field(init=False, repr=False)  # bool [vocab]: decodes to at least one byte

    def __post_init__(self) -> None:
        self.of_category = [self.category == k for k in range(OTHER)]
        self.single = self.nbytes == 1
        self.sized = self.nbytes > 0

    @classmethod
    def build(cls, ll_tokenizer: Any, vocab_size: int) -> TokenTable:
        import torch

        nbytes = torch.zeros(vocab_size, dtype=torch.int32)
        category = torch.full((vocab_size,), OTHER, dtype=torch.int8)
        first = {ord(c): k for k, c in enumerate(CLOSERS)}
        bare: list[list[int]] = [[] for _ in CLOSERS]
        for token in range(min(vocab_size, int(ll_tokenizer.vocab_size))):
            if ll_tokenizer.is_special_token(token):
                continue
            text = ll_tokenizer.decode_bytes([token])
            nbytes[token] = len(text)
            if text:
                category[token] = first.get(text[0], OTHER)
                if len(text) == 1 and text[0] in first:
                    bare[first[text[0]]].append(token)
        return cls(nbytes, category, bare)

    def bare_allowed(self, matcher: Any, k: int) -> list[int]:
        """The tokens that are just closer ``k``'s character and ``matcher`` takes now (checked
        token by token, no mask: a few microseconds)."""
        return [t for t in self.bare[k] if matcher.validate_tokens([t]) == 1]

    def has_category(self, allowed: Any, k: int) -> bool:
        """Whether any token of closing category ``k`` is among ``allowed`` (bool [vocab])."""
        width = min(int(allowed.shape[0]), int(self.category.shape[0]))
        return bool((allowed[:width] & self.of_category[k][:width]).any())

    def closer(self, allowed: Any) -> Any | None:
        """The tokens of the first closing category among ``allowed`` (bool [vocab]): the bare
        closer when allowed, else that category's allowed tokens; None when there is none."""
        import torch

        width = min(int(allowed.shape[0]), int(self.category.shape[0]))
        allowed = allowed[:width]
        # the lowest category among the allowed tokens is the first one present
        k = int(torch.where(allowed, self.category[:width], OTHER).min()) if width else OTHER
        if k >= OTHER:
            return None
        chosen = allowed & self.of_category[k][:width]
        bare = chosen & self.single[:width]
        return bare if bool(bare.any()) else chosen

    def shortest(self, allowed: Any) -> Any:
        """The allowed tokens of fewest bytes (special tokens only when nothing else is)."""
        import torch

        width = min(int(allowed.shape[0]), int(self.nbytes.shape[0]))
        allowed = allowed[:width]
        nbytes = self.nbytes[:width]
        sized = allowed & self.sized[:width]
        if not bool(sized.any()):
            return allowed
        least = int(torch.where(sized, nbytes, torch.iinfo(torch.int32).max).min())
        return sized & (nbytes == least)


# Token bitmasks are numpy int32 arrays [rows, words] in llguidance's layout (token ``t``: bit
# ``t % 32`` of word ``t // 32``); why not ``llguidance.torch``: docs/structured-output.md.


def new_bitmask(rows: int, vocab_size: int) -> Any:
    """A bitmask [rows, words] with every token allowed."""
    import numpy as np

    return np.full((rows, (vocab_size + 31) // 32), -1, dtype=np.int32)


def _checked(bitmask: Any) -> Any:
    """``bitmask`` itself, once it is known to be memory llguidance may write into."""
    if bitmask.dtype != "int32" or not bitmask.flags.c_contiguous:
        raise ConstraintError("a token bitmask must be a C-contiguous int32 array")
    return bitmask


def fill_bitmask(matcher: Any, bitmask: Any, row: int) -> None:
    """Write ``matcher``'s allowed next tokens into row ``row`` of ``bitmask`` (llguidance
    writes the whole row, with the GIL released)."""
    target = _checked(bitmask[row])
    matcher.unsafe_compute_mask_ptr(target.ctypes.data, target.nbytes)


_executor: Any = None


def fill_bitmasks(matchers: list[tuple[Any, int]], bitmask: Any) -> None:
    """Rows ``row`` of ``bitmask`` get the allowed next tokens of their ``matcher``, for every
    ``(matcher, row)`` pair, in one call to llguidance's executor (the GIL released)."""
    global _executor
    if not matchers:
        return
    _checked(bitmask)
    with _lock:
        if _executor is None:
            import llguidance

            _executor = llguidance.LLExecutor()
        executor = _executor
    rows = int(bitmask.shape[0])
    executor.unsafe_compute_mask_ptr(matchers, bitmask.ctypes.data, bitmask.nbytes // rows, rows)


def allowed_tokens(bitmask: Any, width: int) -> Any:
    """Torch bool [..., width]: True where ``bitmask`` allows the token (its first ``width`` bits)."""
    import numpy as np
    import torch

    if width > 32 * bitmask.shape[-1]:
        raise ConstraintError(f"a bitmask of {bitmask.shape[-1]} words has no bit {width - 1}")
    little = bitmask.astype("<i4", copy=False)  # a no-op on little-endian machines
    bits = np.unpackbits(little.view(np.uint8), axis=-1, count=width, bitorder="little")
    return torch.from_numpy(bits.view(bool))


def blocked_tokens(bitmask: Any, width: int) -> Any:
    """Torch bool [..., width]: True where ``bitmask`` forbids the token."""
    import numpy as np

    return allowed_tokens(np.invert(bitmask), width)


def simulate_closing(
    schema: CompiledSchema, matcher: Any, limit: int, queue: list[int] | None = None
) -> int | None:
    """Tokens closing mode needs to complete ``matcher``'s object (run on a copy, ties broken by
    the lowest token id), None when more than ``limit``."""
    import torch

    copy = matcher.deep_copy()
    words = None
    planned = list(queue or [])
    for count in range(limit + 1):
        if copy.is_accepting() or copy.is_stopped():
            return count
        quick = quick_closing_choice(schema, copy, planned)
        if quick:
            token = quick[0]
        else:
            if words is None:
                words = new_bitmask(1, schema.vocab_size)
            fill_bitmask(copy, words, 0)
            allowed = allowed_tokens(words[0], schema.vocab_size)
            ids = torch.nonzero(closing_choice(schema, copy, allowed, planned)).flatten()
            if ids.numel() == 0:
                return None
            token = int(ids[0])
        if not copy.consume_token(token):
            return None
    return None


def quick_closing_choice(schema: CompiledSchema, matcher: Any, queue: list[int]) -> list[int]:
    """:func:`closing_choice` where token checks decide it, without a mask (the next planned
    token, else the bare ``"`` tokens the grammar takes); empty when the full choice is needed."""
    if queue:
        if matcher.validate_tokens(queue[:1]) == 1:
            return [queue.pop(0)]
        queue.clear()
    if has_forced_text(matcher):
        return []
    return schema.token_table.bare_allowed(matcher, 0)


def has_forced_text(matcher: Any) -> bool:
    """Whether the grammar forces the next bytes (there the mask keeps only the forced text's
    own tokenization, so a token check may allow more than the mask)."""
    return bool(matcher.compute_ff_bytes())


def closing_choice(schema: CompiledSchema, matcher: Any, allowed: Any, queue: list[int]) -> Any:
    """Closing mode's choice (bool [vocab]) for one row whose grammar allows ``allowed``: a
    planned ending's next token (``queue``), a route step's ending, the first closer category,
    the grammar's forced tokens, else the shortest allowed tokens."""
    table = schema.token_table

    def only(token: int) -> Any:
        chosen = allowed.new_zeros(allowed.shape)
        chosen[token] = True
        return chosen

    if queue and bool(allowed[queue[0]]):
        return only(queue.pop(0))
    queue.clear()
    if not table.has_category(allowed, 0):
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


#: Closing checks (docs/structured-output.md, "Closing before the cap"): a row closes when used +
#: needed + SAFETY_MARGIN reaches its budget; checks come at least CHECK_EVERY steps apart, as if
#: the closing cost grew by COST_GROWTH tokens per generated token.
CHECK_EVERY = 8
SAFETY_MARGIN = 8 + CHECK_EVERY
COST_GROWTH = 2


def first_check(schema: CompiledSchema, budget: int) -> int:
    """The step of a row's first closing check, for a row limited to ``budget`` tokens."""
    return max(0, min(budget // 2, budget - 2 * schema.start_cost - SAFETY_MARGIN))


def next_check(used: int, needed: int, budget: int) -> int:
    """The step of the next closing check after one at ``used`` found ``needed`` tokens
    (docs/structured-output.md, "Closing before the cap")."""
    slack = budget - SAFETY_MARGIN - used - needed
    latest = max(1, (budget - used - needed) // (1 + COST_GROWTH))
    return used + min(max(CHECK_EVERY, slack // (1 + COST_GROWTH)), latest)


class SchemaLogitsProcessor:
    """A ``transformers`` logits processor keeping rows of a batch inside their schema (one, or
    one per row; None: free), closing each before its ``max_new_tokens``; one per ``generate``
    call. ``greedy``: it must be the last processor (docs/structured-output.md)."""

    def __init__(
        self,
        schemas: CompiledSchema | list[CompiledSchema | None],
        max_new_tokens: int | list[int] | None = None,
        greedy: bool = False,
    ) -> None:
        self.schemas = schemas
        self.max_new_tokens = max_new_tokens
        self.greedy = greedy
        self.started = False
        #: closing-cost simulations run so far (all rows), for diagnostics
        self.checks = 0
        #: rows whose mask was made, summed over steps (greedy: the rows whose best token the
        #: grammar refused, and closing rows that needed it), for diagnostics
        self.masked_rows = 0
        self.steps = 0
        #: greedy: the token consumed for each row at the end of the last call
        self._picks: dict[int, int] = {}
        #: rows whose object completed at the last step: this step they may only end
        self._ending: list[int] = []

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
        self.matchers: list[Any] = [s.matcher() if s is not None else None for s in per_row]
        self.finished = [False] * batch
        self.closing = [False] * batch
        self.queues: list[list[int]] = [[] for _ in range(batch)]
        self.eos_ids = sorted({i for s in per_row if s is not None for i in s.eos_ids})
        self.vocab_size = max(s.vocab_size for s in per_row if s is not None)
        self.bitmask = new_bitmask(batch, self.vocab_size)
        self.check_at: list[int | None] = [
            first_check(s, b) if s is not None and b is not None else None
            for s, b in zip(per_row, self.budgets, strict=True)
        ]
        #: constrained rows whose object is not complete yet
        self.live = [row for row, m in enumerate(self.matchers) if m is not None]
        self.started = True

    def _finish(self, row: int) -> None:
        """The object is complete: from now on only an end token may follow."""
        self.finished[row] = True
        self._ending.append(row)
        words = self.bitmask[row].view("uint32")  # bit 31 as any other, not as the sign
        words[:] = 0
        for eos in self.eos_ids:
            words[eos // 32] |= 1 << (eos % 32)

    def _update_closing(self, row: int) -> None:
        budget, check_at = self.budgets[row], self.check_at[row]
        if budget is None or check_at is None or self.closing[row] or self.finished[row]:
            return
        used = self.steps - 1  # tokens this row has generated so far
        if used < check_at:
            return
        schema = self.row_schemas[row]
        assert schema is not None
        self.checks += 1
        left = max(budget - used - SAFETY_MARGIN, 0)
        needed = simulate_closing(schema, self.matchers[row], left, self.queues[row])
        if needed is None or used + needed + SAFETY_MARGIN >= budget:
            self.closing[row] = True
        else:
            self.check_at[row] = next_check(used, needed, budget)

    def _advance(self, last: list[int]) -> None:
        """Each live row takes the token ``generate`` picked at the last step."""
        for row in self.live:
            matcher = self.matchers[row]
            picked = self._picks.get(row)
            if picked != last[row]:
                if picked is not None:
                    matcher.rollback(1)
                self._consume(row, int(last[row]))
            if matcher.is_stopped():
                self._finish(row)
        self._picks.clear()
        self.live = [row for row in self.live if not self.finished[row]]

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if not self.started:
            self._start(int(input_ids.shape[0]))
        elif self.live:
            self._advance(input_ids[:, -1].tolist())
        self.steps += 1
        for row in self.live:
            self._update_closing(row)
        ending, self._ending = self._ending, []
        if self.greedy:
            return self._greedy_step(scores, ending)
        return self._masked_step(scores)

    def _blocked(self, rows: list[int], width: int) -> Any:
        """Bool [len(rows), width]: the tokens each row may not take now (its mask, narrowed to
        closing mode's choice for a closing row; ids beyond the vocabulary always)."""
        import torch

        blocked = blocked_tokens(self.bitmask[rows], self.vocab_size)
        for i, row in enumerate(rows):
            if self.closing[row] and not self.finished[row]:
                schema = self.row_schemas[row]
                assert schema is not None
                allowed = ~blocked[i]
                choice = closing_choice(schema, self.matchers[row], allowed, self.queues[row])
                blocked[i] = True
                blocked[i, : choice.shape[0]] = ~choice
        if width > self.vocab_size:  # logits wider than the vocabulary: padding ids stay off
            pad = torch.ones((len(rows), width - self.vocab_size), dtype=torch.bool)
            blocked = torch.cat([blocked, pad], dim=1)
        return blocked[:, :width]

    def _masked_step(self, scores: Any) -> Any:
        """Every constrained row masked (finished rows: EOS only)."""
        import torch

        fill_bitmasks([(self.matchers[row], row) for row in self.live], self.bitmask)
        self.masked_rows += len(self.live)
        blocked = torch.zeros(scores.shape, dtype=torch.bool)
        rows = [row for row, m in enumerate(self.matchers) if m is not None]
        blocked[rows] = self._blocked(rows, int(scores.shape[-1]))
        return scores.masked_fill(blocked.to(scores.device), float("-inf"))

    def _consume(self, row: int, token: int) -> None:
        """Row ``row``'s matcher takes ``token`` (the pick of this step), or ConstraintError."""
        if not self.matchers[row].consume_token(token):
            raise ConstraintError(f"row {row}: {self.matchers[row].get_error()}")
        self._picks[row] = token

    def _takes(self, row: int, token: int) -> bool:
        """Whether row ``row``'s grammar takes ``token`` now; if so it is consumed."""
        schema, matcher = self.row_schemas[row], self.matchers[row]
        assert schema is not None
        if token >= schema.vocab_size:
            return False
        if token in schema.eos_ids:
            return bool(matcher.is_accepting()) and bool(matcher.consume_token(token))
        if has_forced_text(matcher):  # the mask may refuse what a token check takes
            return False
        return int(matcher.try_consume_tokens([token])) == 1

    def _greedy_step(self, scores: Any, ending: list[int]) -> Any:
        """Pick each live row's token (see the class docstring); mask only where needed."""
        import torch

        top = scores.argmax(dim=-1).tolist() if self.live else []
        forced: dict[int, list[int]] = {}
        misses: list[int] = []
        for row in self.live:
            if self.closing[row]:
                schema = self.row_schemas[row]
                assert schema is not None
                quick = quick_closing_choice(schema, self.matchers[row], self.queues[row])
                if quick:
                    forced[row] = quick
                else:
                    misses.append(row)
            elif self._takes(row, int(top[row])):
                self._picks[row] = int(top[row])
            else:
                misses.append(row)
        if not (ending or forced or misses):
            return scores
        out = scores.clone()
        for row in ending:
            keep = out[row, self.eos_ids].clone()
            out[row] = float("-inf")
            out[row, self.eos_ids] = keep
        for row, tokens in forced.items():
            token = max(tokens, key=lambda t: float(scores[row, t]))  # the first best, as argmax
            self._consume(row, token)
            out[row] = float("-inf")
            out[row, token] = scores[row, token] if torch.isfinite(scores[row, token]) else 0.0
        if misses:
            for row in misses:  # few rows: one call each beats the executor's thread hand-off
                fill_bitmask(self.matchers[row], self.bitmask, row)
            self.masked_rows += len(misses)
            index = torch.tensor(misses, device=scores.device)
            masked = out[index].masked_fill(
                self._blocked(misses, int(scores.shape[-1])).to(scores.device), float("-inf")
            )
            out[index] = masked
            for row, token in zip(misses, masked.argmax(dim=-1).tolist(), strict=True):
                self._consume(row, int(token))
        return out
