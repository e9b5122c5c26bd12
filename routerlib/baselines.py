"""The router logic a team had before tuning (``majority``: the majority template; ``rules``: a
keyword router) as prediction files that score like a model, one line per gold row (docs/scoring.md,
"The previous routers"; their words and texts: data/baselines.yaml)."""

from __future__ import annotations

import functools
import itertools
import json
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from routerlib.config import run_default
from routerlib.errors import InputError
from routerlib.metrics import prompt_problem, read_jsonl
from routerlib.paths import packaged_file
from routerlib.runfolder import PredictionRecord, write_records
from routerlib.schema import COMPLETION_KEYS
from routerlib.tables import read_yaml

KINDS: tuple[str, ...] = ("majority", "rules")
MAJORITY_TOOLS: tuple[str, ...] = ("/general-search", "/math", "/code")
TEXTS_FILE = "baselines.yaml"

_QUERY_MARKER = "User query:\n"
_WORD_RE = re.compile(r"[A-Za-z][A-Za-z0-9'-]+")


class Texts(BaseModel):
    """routerlib/data/baselines.yaml: the words the keyword router reads and the texts both
    routers write."""

    model_config = ConfigDict(extra="forbid")

    stopwords: str
    words: dict[Literal["math", "code", "search", "verify", "intro"], tuple[str, ...]]
    rationale: dict[Literal["majority", "rules"], str]
    steps: dict[Literal["/general-search", "/math", "/code", "verify"], str]
    todo: dict[Literal["/general-search", "/math", "/code", "verify", "router_qa"], str]
    expected_artifacts: list[str]
    handoff_plan: str
    acceptance_criteria: list[str]
    metrics: dict[str, list[str]]


@functools.cache
def texts() -> Texts:
    """The packaged words and texts, read once."""
    return read_yaml(packaged_file(TEXTS_FILE), Texts, "baseline texts")


def query_of(prompt: str) -> str:
    """The user query inside a gold prompt (after the last ``User query:`` line), stripped."""
    at = prompt.rfind(_QUERY_MARKER)
    return (prompt[at + len(_QUERY_MARKER) :] if at != -1 else prompt).strip()


def _topic(query: str, words: int = 24) -> str:
    """The first sentence's first ``words`` words, as text safe inside a tool call."""
    first = re.split(r"(?<=[.?!])\s", query.strip(), maxsplit=1)[0]
    first = re.sub(r"[\"()=`]", " ", first)  # no quotes, parentheses or ``=``
    parts = re.sub(r"\s+([.,;:?!])", r"\1", first).split()  # no space before punctuation
    return " ".join(parts[:words]).rstrip(".,;:?!") or "the request"


def _keywords(query: str, limit: int = 8) -> list[str]:
    stopwords = set(texts().stopwords.split())
    words = (word.lower().strip("'-") for word in _WORD_RE.findall(query))
    unique = dict.fromkeys(w for w in words if len(w) > 2 and w not in stopwords)  # in order
    return list(itertools.islice(unique, limit))


def _has(text: str, words: str | tuple[str, ...]) -> bool:
    """Whether ``text`` holds one of ``words`` (a tuple, or the name of a baselines.yaml list)."""
    lists: dict[Any, tuple[str, ...]] = texts().words
    return any(word in text for word in (lists[words] if isinstance(words, str) else words))


def _completion(
    query: str, tools: list[str], difficulty: str, kind: Literal["majority", "rules"]
) -> dict[str, Any]:
    t = texts()
    verify_at = len(tools) - 1 if len(tools) >= 4 and tools[-1] == "/math" else -1
    kinds = ["verify" if i == verify_at else tool for i, tool in enumerate(tools)]
    topic, terms = _topic(query, 14), " ".join(_keywords(query)) or "survey"
    step_texts: dict[Any, str] = t.steps
    todo_texts: dict[Any, str] = t.todo
    steps = [step_texts[k].format(topic=_topic(query), terms=terms) for k in kinds]
    todo = [todo_texts[k].format(topic=topic) for k in kinds]
    outline = [
        f"{i + 1}. {tool.lstrip('/')} step: {'verify' if i == verify_at else 'work on'} {topic}."
        for i, tool in enumerate(tools)
    ]
    tags = [re.sub(r"[^a-z0-9-]", "", word) or "router" for word in _keywords(query, 4)]
    obj = {
        "route_plan": steps,
        "route_rationale": t.rationale[kind],
        "expected_artifacts": [text.format(topic=topic) for text in t.expected_artifacts],
        "thinking_outline": outline,
        "handoff_plan": t.handoff_plan.format(chain=" -> ".join(tools)),
        "todo_list": [*todo, t.todo["router_qa"]],
        "difficulty": difficulty,
        "tags": tags or ["router"],
        "acceptance_criteria": list(t.acceptance_criteria),
        "metrics": {key: list(value) for key, value in t.metrics.items()},
    }
    return {key: obj[key] for key in COMPLETION_KEYS}


def rules_tools(query: str) -> list[str]:
    """The keyword router's tool sequence for ``query``."""
    low = query.lower()
    opening = low.split()[0].strip(".,:;") if low.split() else ""
    wants_math, wants_code, wants_search = (_has(low, k) for k in ("math", "code", "search"))
    if not (wants_math or wants_code or wants_search):
        return list(MAJORITY_TOOLS)
    if opening in ("derive", "prove", "formally", "formalize") and not wants_search:  # math first
        return ["/math", "/code", "/general-search"] if wants_code else ["/math", "/general-search"]
    tools = ["/general-search"]
    if wants_math:
        tools.append("/math")
    if wants_code:
        tools.append("/code")
    if wants_math and wants_code and _has(low, "verify") and _has(low, ("derive", "proof")):
        tools.append("/math")
    return tools


def completion(query: str, kind: str) -> dict[str, Any]:
    """The completion the ``kind`` router writes for ``query``."""
    if kind == "majority":
        return _completion(query, list(MAJORITY_TOOLS), "advanced", "majority")
    low = query.lower()
    if _has(low, "intro") and len(query.split()) < 60:
        difficulty = "introductory"
    elif len(query.split()) >= 40 or _has(low, ("rigorous", "formal", "proof")):
        difficulty = "advanced"
    else:
        difficulty = "intermediate"
    return _completion(query, rules_tools(query), difficulty, "rules")


def write_baseline(
    gold_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    kind: str = run_default("baseline"),
) -> Path:
    """Write baseline predictions for every gold row (same count and order); returns out_path."""
    if kind not in KINDS:
        raise InputError(f"unknown baseline kind {kind!r} (expected {' or '.join(KINDS)})")
    rows = read_jsonl(gold_path, "gold", prompt_problem)
    completions = [completion(query_of(row["prompt"]), kind) for _, row in rows]
    lines = [PredictionRecord(completion=json.dumps(c, ensure_ascii=False)) for c in completions]
    return write_records(out_path, lines)
