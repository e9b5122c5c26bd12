"""The router contract, defined once: completion keys, Week-2 row schema, tool-call grammar, prompt.

Used by prepare (dataset.py), the synthetic generator (synth.py), scoring (metrics.py) and the
baselines, so every stage agrees on what a valid row and a valid completion are.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

#: The 10 keys of a completion, in the order the original conversion wrote them.
COMPLETION_KEYS: tuple[str, ...] = (
    "route_plan",
    "route_rationale",
    "expected_artifacts",
    "thinking_outline",
    "handoff_plan",
    "todo_list",
    "difficulty",
    "tags",
    "acceptance_criteria",
    "metrics",
)

#: Fields of a Week-2 source row that are not part of the completion.
SOURCE_ONLY_KEYS: tuple[str, ...] = (
    "task_summary",
    "quality_score",
    "compute_budget",
    "repro",
    "requires_browse",
    "citation_policy",
    "io_schema",
)

DIFFICULTIES: tuple[str, ...] = ("introductory", "intermediate", "advanced")
TOOLS: tuple[str, ...] = ("/math", "/code", "/general-search")
SEARCH_MODES: tuple[str, ...] = ("web", "rag", "both")

#: Expected JSON type of each Week-2 field ("list[str]" means a list whose items are strings).
ROW_FIELD_TYPES: dict[str, str] = {
    "id": "str",
    "user_query": "str",
    "task_summary": "str",
    "route_plan": "list[str]",
    "route_rationale": "str",
    "expected_artifacts": "list[str]",
    "thinking_outline": "list[str]",
    "handoff_plan": "str",
    "todo_list": "list[str]",
    "difficulty": "str",
    "tags": "list[str]",
    "quality_score": "number",
    "acceptance_criteria": "list[str]",
    "metrics": "dict",
    "compute_budget": "dict",
    "repro": "dict",
    "requires_browse": "bool",
    "citation_policy": "str",
    "io_schema": "dict",
}

#: Fields a row must have for prepare: the id, the query and every completion key.
REQUIRED_ROW_KEYS: tuple[str, ...] = ("id", "user_query", *COMPLETION_KEYS)

PROMPT_TEMPLATE = (
    "You are the Router Agent coordinating Math, Code, and General-Search specialists.\n"
    "Given the user query, respond with a JSON object describing the full routing plan.\n"
    "\n"
    "Requirements:\n"
    "- STRICT JSON with double quotes and no extra commentary.\n"
    "- Keys: route_plan, route_rationale, expected_artifacts, thinking_outline,\n"
    "  handoff_plan, todo_list, difficulty, tags, acceptance_criteria, metrics.\n"
    "- route_plan must be an ordered list of tool invocations.\n"
    "- Use the original phrasing when possible.\n"
    "\n"
    "User query:\n"
)

_STEP_RE = re.compile(r"^/(math|code|general-search)\(")
_MODE_RE = re.compile(r"mode\s*=\s*[\"']?([A-Za-z_-]*)")


@dataclass(frozen=True)
class Violation:
    """One broken rule: the field (dotted/indexed path) and what is wrong with it."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def build_prompt(user_query: str) -> str:
    """The original prompt: template, the stripped user query, then a newline."""
    return PROMPT_TEMPLATE + user_query.strip() + "\n"


def completion_object(row: dict[str, Any]) -> dict[str, Any]:
    """The 10 completion keys of ``row``, in contract order."""
    return {key: row[key] for key in COMPLETION_KEYS}


def completion_text(row: dict[str, Any]) -> str:
    """The completion string exactly as the original conversion wrote it."""
    return json.dumps(completion_object(row), ensure_ascii=False)


def tool_name(step: Any) -> str:
    """The evaluator's tool of a step: the text before the first ``(``, stripped."""
    return str(step).split("(", 1)[0].strip()


def _type_ok(value: Any, expected: str) -> bool:
    if expected == "str":
        return isinstance(value, str)
    if expected == "bool":
        return isinstance(value, bool)
    if expected == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if expected == "dict":
        return isinstance(value, dict)
    if expected == "list[str]":
        return isinstance(value, list) and all(isinstance(item, str) for item in value)
    raise ValueError(expected)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list):
        return "list"
    return "dict" if isinstance(value, dict) else type(value).__name__


def validate_route_step(step: Any) -> str | None:
    """Why a route step breaks the grammar, or None when it is valid."""
    if not isinstance(step, str):
        return f"must be a string, got {_json_type(step)}"
    if not _STEP_RE.match(step):
        shown = step if len(step) <= 40 else step[:37] + "..."
        return f"unknown tool in {shown!r} (expected /math(, /code( or /general-search()"
    if step.startswith("/general-search("):
        for mode in _MODE_RE.findall(step):
            if mode not in SEARCH_MODES:
                return f"bad search mode {mode!r} (expected web, rag or both)"
    return None


def validate_route_plan(plan: Any, field: str = "route_plan") -> list[Violation]:
    """Violations of the route-plan rules: a non-empty list of valid steps."""
    if not isinstance(plan, list):
        return [Violation(field, f"must be a list of strings, got {_json_type(plan)}")]
    if not plan:
        return [Violation(field, "must not be empty")]
    out = []
    for index, step in enumerate(plan):
        problem = validate_route_step(step)
        if problem:
            out.append(Violation(f"{field}[{index}]", problem))
    return out


def _validate_fields(obj: dict[str, Any], keys: tuple[str, ...]) -> list[Violation]:
    out: list[Violation] = []
    for key in keys:
        if key not in obj:
            out.append(Violation(key, "missing"))
            continue
        expected = ROW_FIELD_TYPES[key]
        value = obj[key]
        if key == "route_plan":
            out.extend(validate_route_plan(value))
        elif not _type_ok(value, expected):
            out.append(Violation(key, f"must be {expected}, got {_json_type(value)}"))
        elif key == "difficulty" and value not in DIFFICULTIES:
            out.append(
                Violation(key, f"unknown difficulty {value!r} (expected {', '.join(DIFFICULTIES)})")
            )
    return out


def validate_completion(obj: Any) -> list[Violation]:
    """Violations of the completion contract (the 10 keys, their types, the route grammar)."""
    if not isinstance(obj, dict):
        return [Violation("completion", f"must be a JSON object, got {_json_type(obj)}")]
    return _validate_fields(obj, COMPLETION_KEYS)


def validate_row(obj: Any) -> list[Violation]:
    """Violations of the Week-2 row schema; source-only fields are checked only when present."""
    if not isinstance(obj, dict):
        return [Violation("row", f"must be a JSON object, got {_json_type(obj)}")]
    out = _validate_fields(obj, REQUIRED_ROW_KEYS)
    present = tuple(key for key in SOURCE_ONLY_KEYS if key in obj)
    return out + _validate_fields(obj, present)
