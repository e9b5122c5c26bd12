"""The router logic a team had before tuning, written as prediction files that score like a model.

* ``majority``: every query gets the majority template ``/general-search -> /math -> /code``
  (263 of the 291 real benchmark rows follow it), with the steps and the other nine keys filled
  from the query in the shape of the real rows.
* ``rules``: a keyword router. Tools are chosen by wording (derivation/proof words -> /math;
  implement/code/benchmark words -> /code; papers/literature/citation words -> /general-search),
  /math goes first when the query opens with "Derive"/"Prove" and asks for no literature, and a
  fourth step (/math verification after /code) is added when both a derivation and a
  verification are asked for.

Both read the query from the gold prompt (the text after ``User query:\\n``) and write one line
``{"completion": "<json string>"}`` per gold row, in gold order.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from routerlib.config import run_default
from routerlib.errors import InputError
from routerlib.metrics import read_jsonl
from routerlib.runfolder import PredictionRecord, write_predictions
from routerlib.schema import COMPLETION_KEYS

KINDS: tuple[str, ...] = ("majority", "rules")
MAJORITY_TOOLS: tuple[str, ...] = ("/general-search", "/math", "/code")

_QUERY_MARKER = "User query:\n"
_WORD_RE = re.compile(r"[A-Za-z][A-Za-z0-9'-]+")
_STOPWORDS = frozenset(
    """a an and are as at be but by can could do does for from has have how i if in into is it
    its me my need of on or our please provide should so such than that the their them then there
    these this those to up use using was we what when where which while who why will with would
    you your also both each any all between over under via about after before more most very just
    like want show give make get then it's i'm can't let help explain write""".split()
)
_MATH_WORDS = tuple(
    "derive derivation proof prove theorem lemma formal formally closed-form analytic bound "
    "convergence complexity equation gradient eigen probability optimization theoretical "
    "mathematical".split()
)
_CODE_WORDS = tuple(
    "implement code python script simulate simulation benchmark train pytorch jax tensorflow "
    "program experiment empirical numerical plot".split()
)
_SEARCH_WORDS = tuple(
    "paper literature survey citation cite arxiv state-of-the-art references sources review "
    "recent seminal published".split()
)
_VERIFY_WORDS = ("verify", "verification", "cross-check", "confirm that", "consistent with")
_INTRO_WORDS = ("simple", "beginner", "introduction", "intuition", "basic", "understand")

GENERIC_METRICS = {
    "primary": [
        "Define at least one domain-specific performance metric with formulas and acceptance "
        "thresholds."
    ],
    "secondary": [
        "Report runtime/memory usage and summarize failure cases discovered during evaluation."
    ],
}
ROUTER_QA_TODO = (
    "- [ ] router QA: consolidate tool outputs, verify citations, and approve the response."
)


def query_of(prompt: str) -> str:
    """The user query inside a gold prompt (after the last ``User query:`` line), stripped."""
    at = prompt.rfind(_QUERY_MARKER)
    return (prompt[at + len(_QUERY_MARKER) :] if at != -1 else prompt).strip()


def _clean(text: str) -> str:
    """Text safe inside a tool call: no quotes, parentheses or ``=``; single spaces."""
    text = re.sub(r"[\"()=`]", " ", text)
    return re.sub(r"\s+([.,;:?!])", r"\1", re.sub(r"\s+", " ", text)).strip()


def _topic(query: str, words: int = 24) -> str:
    first = re.split(r"(?<=[.?!])\s", query.strip(), maxsplit=1)[0]
    parts = _clean(first).split()
    return " ".join(parts[:words]).rstrip(".,;:?!") or "the request"


def _keywords(query: str, limit: int = 8) -> list[str]:
    seen: list[str] = []
    for word in _WORD_RE.findall(query):
        low = word.lower().strip("'-")
        if len(low) > 2 and low not in _STOPWORDS and low not in seen:
            seen.append(low)
        if len(seen) == limit:
            break
    return seen


def _has(text: str, words: tuple[str, ...]) -> bool:
    return any(word in text for word in words)


def _step(tool: str, query: str, verify: bool = False) -> str:
    topic = _topic(query)
    if tool == "/general-search":
        terms = " ".join(_keywords(query)) or "survey"
        return f'/general-search(query="site:arxiv.org {terms}", mode=both)'
    if tool == "/math":
        if verify:
            return (
                "/math(Verify that the implementation and its results agree with the derivation "
                f"for: {topic}. Check assumptions, edge cases and convergence claims.)"
            )
        return (
            f"/math(Derive and formalize the core quantities for: {topic}. State assumptions, "
            "give the key equations and check them on a small case.)"
        )
    return (
        f"/code(Implement and validate: {topic}. Report the requested metrics and plots., "
        "using Python)"
    )


def _todo(tool: str, query: str, verify: bool = False) -> str:
    topic = _topic(query, 14)
    if tool == "/general-search":
        return f"- [ ] /general-search: Find and summarize at least two authoritative sources on {topic}."
    if tool == "/math":
        if verify:
            return "- [ ] /math: Verify that the /code results are consistent with the derivation."
        return f"- [ ] /math: Derive the governing equations and assumptions for {topic}."
    return f"- [ ] /code: Implement {topic} in Python and collect the requested metrics."


def _completion(query: str, tools: list[str], difficulty: str, rationale: str) -> dict[str, Any]:
    verify_at = len(tools) - 1 if len(tools) >= 4 and tools[-1] == "/math" else -1
    steps = [_step(tool, query, verify=i == verify_at) for i, tool in enumerate(tools)]
    todo = [_todo(tool, query, verify=i == verify_at) for i, tool in enumerate(tools)]
    todo.append(ROUTER_QA_TODO)
    chain = " -> ".join(tools)
    topic = _topic(query, 14)
    keywords = _keywords(query, 4)
    obj = {
        "route_plan": steps,
        "route_rationale": rationale,
        "expected_artifacts": [
            f"A short report on {topic} with the derivation and cited sources.",
            "A Python script implementing the method with its validation checks.",
            "A JSON file with the measured metrics.",
        ],
        "thinking_outline": [
            f"{i + 1}. {tool.lstrip('/')} step: {'verify' if i == verify_at else 'work on'} {topic}."
            for i, tool in enumerate(tools)
        ],
        "handoff_plan": (
            f"{chain} -> router QA (verification: results of each step are checked against the "
            "previous one; fallback: return to the earlier tool when a check fails)."
        ),
        "todo_list": todo,
        "difficulty": difficulty,
        "tags": [re.sub(r"[^a-z0-9-]", "", word) or "router" for word in keywords] or ["router"],
        "acceptance_criteria": [
            "- The derivation is complete and its assumptions are stated.",
            "- The implementation runs and reproduces the reported metrics.",
            "- At least two relevant sources are cited.",
        ],
        "metrics": json.loads(json.dumps(GENERIC_METRICS)),
    }
    return {key: obj[key] for key in COMPLETION_KEYS}


def majority_completion(query: str) -> dict[str, Any]:
    """The majority-template completion for ``query``."""
    return _completion(
        query,
        list(MAJORITY_TOOLS),
        "advanced",
        "Majority template: /general-search gathers sources, /math derives the core results, "
        "/code implements and validates them.",
    )


def rules_tools(query: str) -> list[str]:
    """The keyword router's tool sequence for ``query``."""
    low = query.lower()
    opening = low.split()[0].strip(".,:;") if low.split() else ""
    wants_math = _has(low, _MATH_WORDS)
    wants_code = _has(low, _CODE_WORDS)
    wants_search = _has(low, _SEARCH_WORDS)
    if not (wants_math or wants_code or wants_search):
        return list(MAJORITY_TOOLS)
    math_first = opening in ("derive", "prove", "formally", "formalize") and not wants_search
    tools: list[str] = []
    if math_first:
        tools = (
            ["/math", "/code", "/general-search"] if wants_code else ["/math", "/general-search"]
        )
    else:
        tools = ["/general-search"]
        if wants_math:
            tools.append("/math")
        if wants_code:
            tools.append("/code")
        if (
            wants_math
            and wants_code
            and _has(low, _VERIFY_WORDS)
            and _has(low, ("derive", "proof"))
        ):
            tools.append("/math")
    return tools


def rules_completion(query: str) -> dict[str, Any]:
    """The keyword router's completion for ``query``."""
    low = query.lower()
    if _has(low, _INTRO_WORDS) and len(query.split()) < 60:
        difficulty = "introductory"
    elif len(query.split()) >= 40 or _has(low, ("rigorous", "formal", "proof")):
        difficulty = "advanced"
    else:
        difficulty = "intermediate"
    tools = rules_tools(query)
    return _completion(
        query,
        tools,
        difficulty,
        "Keyword rules: literature wording routes to /general-search, derivation wording to "
        "/math, implementation wording to /code; a derivation plus a verification adds a final "
        "/math check.",
    )


def write_baseline(
    gold_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    kind: str = run_default("baseline"),
) -> Path:
    """Write baseline predictions for every gold row (same count and order); returns out_path."""
    if kind not in KINDS:
        raise InputError(f"unknown baseline kind {kind!r} (expected {' or '.join(KINDS)})")

    build = majority_completion if kind == "majority" else rules_completion
    lines = []
    for number, row in read_jsonl(gold_path, "gold"):
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
            raise InputError(f"{gold_path}:{number}: prompt: missing or not a string")
        completion = build(query_of(row["prompt"]))
        lines.append(PredictionRecord(completion=json.dumps(completion, ensure_ascii=False)))
    return write_predictions(out_path, lines)
