"""The router contract, defined once: completion keys, Week-2 row schema, tool-call grammar, prompt,
JSON Schema; prepare, the synthetic generator, scoring and the baselines all use it."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

#: The 10 keys of a completion, in the order the original conversion wrote them.
COMPLETION_KEYS: tuple[str, ...] = tuple(
    "route_plan route_rationale expected_artifacts thinking_outline handoff_plan todo_list "
    "difficulty tags acceptance_criteria metrics".split()
)

#: Fields of a Week-2 source row that are not part of the completion.
SOURCE_ONLY_KEYS: tuple[str, ...] = tuple(
    "task_summary quality_score compute_budget repro requires_browse citation_policy "
    "io_schema".split()
)

DIFFICULTIES: tuple[str, ...] = ("introductory", "intermediate", "advanced")
TOOLS: tuple[str, ...] = ("/math", "/code", "/general-search")
SEARCH_MODES: tuple[str, ...] = ("web", "rag", "both")

#: Expected JSON type of each Week-2 field ("list[str]" means a list whose items are strings).
ROW_FIELD_TYPES: dict[str, str] = {
    **dict.fromkeys(("id", "user_query", "task_summary", "route_rationale"), "str"),
    **dict.fromkeys(("handoff_plan", "difficulty", "citation_policy"), "str"),
    **dict.fromkeys(("route_plan", "expected_artifacts", "thinking_outline"), "list[str]"),
    **dict.fromkeys(("todo_list", "tags", "acceptance_criteria"), "list[str]"),
    **dict.fromkeys(("metrics", "compute_budget", "repro", "io_schema"), "dict"),
    "quality_score": "number",
    "requires_browse": "bool",
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
#: A search step's ``mode=`` value (spaces and one optional quote skipped).
MODE_RE = re.compile(r"mode\s*=\s*[\"']?([A-Za-z_-]*)")


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


def completion_text(row: dict[str, Any]) -> str:
    """The completion exactly as the original conversion wrote it (the 10 keys, in order)."""
    return json.dumps({key: row[key] for key in COMPLETION_KEYS}, ensure_ascii=False)


# --------------------------------------------------------------- tool sequences of a plan
# (as the original evaluator read them: metrics, diagnostics and the baselines share them)


def plan_steps(plan: Any) -> list[Any]:
    """The steps of a route plan as the original iterated it (null/number/bool: no steps)."""
    return list(plan) if isinstance(plan, list | str | dict | tuple) else []


def step_tool(step: Any) -> str:
    """The text before the first ``(`` of a step, stripped."""
    return str(step).split("(", 1)[0].strip()


def plan_tools(plan: Any) -> list[str]:
    """tools(plan): each step's tool name, in order."""
    return [step_tool(step) for step in plan_steps(plan)]


#: The JSON type names the row schema and its messages use, with the Python types they are.
JSON_TYPES: dict[str, tuple[type, ...]] = {
    "null": (type(None),),
    "bool": (bool,),
    "number": (int, float),
    "str": (str,),
    "list": (list,),
    "dict": (dict,),
}


def json_type(value: Any) -> str:
    """The JSON type name of a decoded value (null, bool, number, str, list, dict)."""
    return next(
        (name for name, kind in JSON_TYPES.items() if isinstance(value, kind)), type(value).__name__
    )


def _type_ok(value: Any, expected: str) -> bool:
    if expected == "list[str]":
        return isinstance(value, list) and all(isinstance(item, str) for item in value)
    return json_type(value) == expected


def validate_route_step(step: Any) -> str | None:
    """Why a route step breaks the grammar, or None when it is valid."""
    if not isinstance(step, str):
        return f"must be a string, got {json_type(step)}"
    if not _STEP_RE.match(step):
        shown = step if len(step) <= 40 else step[:37] + "..."
        return f"unknown tool in {shown!r} (expected /math(, /code( or /general-search()"
    if step.startswith("/general-search("):
        for mode in MODE_RE.findall(step):
            if mode not in SEARCH_MODES:
                return f"bad search mode {mode!r} (expected web, rag or both)"
    return None


def _validate_fields(obj: dict[str, Any], keys: tuple[str, ...]) -> list[Violation]:
    out: list[Violation] = []
    for key in keys:
        if key not in obj:
            out.append(Violation(key, "missing"))
            continue
        expected = ROW_FIELD_TYPES[key]
        value = obj[key]
        if key == "route_plan" and isinstance(value, list):  # a non-empty list of valid steps
            out += [] if value else [Violation(key, "must not be empty")]
            steps = [(f"{key}[{n}]", validate_route_step(step)) for n, step in enumerate(value)]
            out += [Violation(where, problem) for where, problem in steps if problem]
        elif key == "route_plan":
            out.append(Violation(key, f"must be a list of strings, got {json_type(value)}"))
        elif not _type_ok(value, expected):
            out.append(Violation(key, f"must be {expected}, got {json_type(value)}"))
        elif key == "difficulty" and value not in DIFFICULTIES:
            out.append(
                Violation(key, f"unknown difficulty {value!r} (expected {', '.join(DIFFICULTIES)})")
            )
    return out


def validate_completion(obj: Any) -> list[Violation]:
    """Violations of the completion contract (the 10 keys, their types, the route grammar)."""
    if not isinstance(obj, dict):
        return [Violation("completion", f"must be a JSON object, got {json_type(obj)}")]
    return _validate_fields(obj, COMPLETION_KEYS)


def validate_row(obj: Any) -> list[Violation]:
    """Violations of the Week-2 row schema; source-only fields are checked only when present."""
    if not isinstance(obj, dict):
        return [Violation("row", f"must be a JSON object, got {json_type(obj)}")]
    present = tuple(key for key in SOURCE_ONLY_KEYS if key in obj)
    return _validate_fields(obj, REQUIRED_ROW_KEYS + present)


# --------------------------------------------------------------------------- JSON Schema

#: A search step breaks the grammar when some ``mode=`` in it (as ``MODE_RE`` reads it: spaces
#: and one optional quote skipped, then the longest run of letters, ``_`` and ``-``) is not one of
#: SEARCH_MODES. The lookaheads say exactly that in ECMA-262 regex, the dialect of JSON Schema.
_MODE_VALUE_OK = "(?:" + "|".join(SEARCH_MODES) + ")(?![A-Za-z_-])"
_BAD_MODE = rf"mode\s*=\s*(?!\s)(?:[\"'](?!{_MODE_VALUE_OK})|(?![\"'])(?!{_MODE_VALUE_OK}))"
#: Validation pattern of one route step: what :func:`validate_route_step` accepts.
STEP_PATTERN = r"^(?:/math\(|/code\(|/general-search\((?![\s\S]*" + _BAD_MODE + "))"

#: Generation bounds, measured on the real rows and the embedded generator's and rounded up
#: (the figures: docs/structured-output.md; tests/test_schema.py checks every real row fits).
GENERATION_BOUNDS: dict[str, int] = {
    "step_chars": 420,
    "route_plan_items": 4,
    "route_rationale": 840,
    "expected_artifacts_items": 5,
    "thinking_outline_items": 7,
    "todo_list_items": 12,
    "tags_items": 4,
    "acceptance_criteria_items": 5,
    "item_chars": 360,
    "tag_chars": 40,
    "handoff_plan": 720,
    "metrics_items": 2,
    "metrics_chars": 320,
}


def generation_step_pattern() -> str:
    """The route-step pattern used to generate: a sublanguage of :data:`STEP_PATTERN` without
    lookaheads (grammar engines take plain regex). ``mode=`` can only appear in its own slot
    (free text excludes ``=``), so no bad mode can be written. Its length is bounded by the
    step's ``maxLength``, not by counted repetitions: llguidance's lexer pays per counted state
    (measured: 39 ms against 6 ms per token on the embedded model)."""
    modes = "|".join(SEARCH_MODES)
    search = (
        r"/general-search\((?:query=)?[^=\n]+(?:, context=[^=\n]+)?"
        rf", mode=(?:{modes})(?:(?:[,.)] ?|, (?:context|constraints)=)[^=\n]*)?\)"
    )
    return rf"^(?:/math\([^\n]+\)|/code\([^\n]+\)|{search})$"


def completion_json_schema(
    generation: bool = False, bounds: dict[str, int] | None = None
) -> dict[str, Any]:
    """The completion's JSON Schema (draft 2020-12). For validation it accepts what
    :func:`validate_completion` accepts; for ``generation`` every length and count is bounded
    (:data:`GENERATION_BOUNDS`), no extra keys, so a constrained decoder must close the object."""
    b = {**GENERATION_BOUNDS, **(bounds or {})} if generation else {}

    def text(key: str, **fields: Any) -> dict[str, Any]:
        return {"type": "string", **fields, **({"maxLength": b[key]} if b else {})}

    def items(key: str, chars: str = "item_chars") -> dict[str, Any]:
        counted = {"minItems": 1, "maxItems": b[f"{key}_items"]} if b else {}
        return {"type": "array", "items": text(chars), **counted}

    pattern = generation_step_pattern() if generation else STEP_PATTERN
    route_plan = {"type": "array", "minItems": 1, "items": text("step_chars", pattern=pattern)}
    metrics: dict[str, Any] = {"type": "object"}
    if generation:
        route_plan["maxItems"] = b["route_plan_items"]
        # Keys in the order real rows write them: primary, its guidance/computation string,
        # secondary, its string, then the rarer keys; no others (a grammar fixes key order).
        value = text("metrics_chars")
        metrics["properties"] = {
            f"{rank}{part}": value if part else items("metrics", "metrics_chars")
            for rank in ("primary", "secondary")
            for part in ("", "_guidance", "_computation")
        } | {
            "computation_guidance": {  # free-form keys, bounded by pattern
                "type": "object",
                "patternProperties": {rf"^[A-Za-z0-9_ -]{{1,{b['tag_chars']}}}$": value},
                "additionalProperties": False,
                "maxProperties": b["metrics_items"] + 2,
            },
            "guidance": value,
        }
        metrics.update(required=["primary", "secondary"], additionalProperties=False)

    # the other keys from their row type: strings and lists of strings
    special = {"route_plan": route_plan, "tags": items("tags", "tag_chars"), "metrics": metrics}
    special["difficulty"] = {"type": "string", "enum": list(DIFFICULTIES)}
    properties = {
        key: special.get(key) or (items(key) if ROW_FIELD_TYPES[key] == "list[str]" else text(key))
        for key in COMPLETION_KEYS
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Router completion" + (" (generation)" if generation else ""),
        "type": "object",
        "properties": properties,
        "required": list(COMPLETION_KEYS),
        "additionalProperties": not generation,
    }


def schema_text(generation: bool = False) -> str:
    """The schema as the JSON text ``routerlib schema`` writes (keys in contract order)."""
    return json.dumps(completion_json_schema(generation), indent=2, ensure_ascii=False) + "\n"
