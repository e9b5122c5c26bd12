"""Turn prediction lines and raw model text into completion objects, two jobs kept apart:
:func:`read_prediction` reads a prediction file's line exactly as the team's earlier
evaluator did (strict: whatever is not a JSON object is an invalid prediction; scoring uses only
this), and :func:`extract_json_object` finds the best JSON object in a model's raw text (an echoed
prompt, a ``Prompt:…Output:`` envelope, code fences, chatter around it) and says how it found it.
"""

from __future__ import annotations

import json
import re
from typing import Any

from routerlib.schema import COMPLETION_KEYS, json_type

_DECODER = json.JSONDecoder()
_FENCE_RE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\r?\n?(.*?)```", re.DOTALL)
_OUTPUT_MARKER = "Output:"
_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"
THINK_NOTE = " (after a <think> block)"
_ARTICLES = {"bool": "a boolean", "number": "a number", "str": "a string", "list": "a list"}


def read_prediction(obj: Any) -> tuple[dict[str, Any] | None, str]:
    """The completion object held by one decoded prediction line and "", or None and a short
    reason why it is invalid.

    Accepted shapes (as the original evaluator): ``{"completion": "<json string>"}``,
    ``{"completion": {...}}``, the completion object itself (a dict without a ``completion``
    key) and a JSON string holding the object. A ``completion`` that is neither a string nor a
    dict, a string that is not JSON, and JSON that is not an object are all invalid.
    """
    if isinstance(obj, dict):
        if "completion" not in obj:
            return obj, ""
        obj = obj["completion"]
        if isinstance(obj, dict):
            return obj, ""
        if not isinstance(obj, str):
            return None, f"completion is {_kind(obj)}, not a JSON string or object"
    if not isinstance(obj, str):
        return None, f"prediction is {_kind(obj)}, not a JSON object"
    try:
        value = json.loads(obj)
    except ValueError as exc:
        return None, f"not valid JSON ({exc})"
    except RecursionError:
        return None, "JSON nested too deeply"
    if not isinstance(value, dict):
        return None, f"JSON is {_kind(value)}, not an object"
    return value, ""


def _kind(value: Any) -> str:
    name = json_type(value)
    return _ARTICLES.get(name, name)


def _objects_in(text: str) -> list[tuple[int, int, dict[str, Any]]]:
    """Every top-level JSON object decodable from ``text``, as (start, end, object)."""
    found: list[tuple[int, int, dict[str, Any]]] = []
    pos = text.find("{")
    while pos != -1:
        try:
            value, end = _DECODER.raw_decode(text, pos)
        except (ValueError, RecursionError):
            pos = text.find("{", pos + 1)
            continue
        found.append((pos, end, value))  # raw_decode at "{" always yields a dict
        pos = text.find("{", end)
    return found


def _score(obj: dict[str, Any]) -> int:
    """How much ``obj`` looks like a completion: route_plan dominates, then contract keys."""
    return (100 if "route_plan" in obj else 0) + sum(key in obj for key in COMPLETION_KEYS)


def _best(candidates: list[tuple[int, int, dict[str, Any]]]) -> dict[str, Any] | None:
    # Highest score wins; among equals the longest, then the earliest.
    best = max(candidates, key=lambda c: (_score(c[2]), c[1] - c[0], -c[0]), default=None)
    return best[2] if best else None


def split_thinking(text: str) -> tuple[str | None, str]:
    """A leading ``<think>…</think>`` block (Qwen 3's reasoning) and the text after it.

    Returns ``(None, text)`` when the text does not start with one. An unclosed block (generation
    stopped while thinking) is all thinking: ``(block, "")``.
    """
    if not isinstance(text, str):
        return None, text
    stripped = text.lstrip().lstrip("\ufeff").lstrip()
    if not stripped.startswith(_THINK_OPEN):
        return None, text
    thinking, _, rest = stripped[len(_THINK_OPEN) :].partition(_THINK_CLOSE)
    return thinking.strip(), rest


def extract_json_object(text: str) -> tuple[dict[str, Any] | None, str]:
    """The best JSON object in raw model ``text`` and a short note of how it was found.

    Order of attempts: the whole text is an object ("whole"); the part after the last
    ``Output:`` marker ("after Output:"); the contents of code fences ("fenced"); a scan of
    every decodable ``{…}`` in the text ("scan"). Within an attempt, an object holding
    ``route_plan`` (and the most contract keys) is preferred over any other. A leading
    ``<think>…</think>`` block is dropped first (the note then says so; braces inside it are never
    taken for the answer). When nothing decodes to an object the result is ``(None, reason)``;
    truncated JSON is not repaired.
    """
    if not isinstance(text, str):
        return None, f"not text ({_kind(text)})"
    thinking, rest = split_thinking(text)
    if thinking is not None:
        found, note = extract_json_object(rest)
        return found, note + THINK_NOTE
    stripped = text.strip().lstrip("\ufeff")
    if not stripped:
        return None, "empty text"
    try:
        whole = json.loads(stripped)
    except (ValueError, RecursionError):
        whole = None
    if isinstance(whole, dict):
        return whole, "whole"
    if isinstance(whole, str):
        inner, _ = read_prediction(whole)
        if inner is not None:
            return inner, "whole (JSON string)"

    marker = stripped.rfind(_OUTPUT_MARKER)
    tail = stripped[marker + len(_OUTPUT_MARKER) :] if marker != -1 else ""
    # in order of trust, each searched only when the ones before held no route_plan: the first
    # with a route_plan wins, else the first object at all
    searches = {
        "after Output:": lambda: _objects_in(tail),
        "fenced": lambda: [
            obj for match in _FENCE_RE.finditer(stripped) for obj in _objects_in(match.group(1))
        ],
        "scan": lambda: _objects_in(stripped),
    }
    found = {}
    for note, search in searches.items():
        found[note] = best = _best(search())
        if best is not None and "route_plan" in best:
            return best, note
    for note, best in found.items():
        if best is not None:
            return best, f"{note}, no route_plan"
    if "{" in stripped:
        return None, "no complete JSON object (truncated or malformed)"
    return None, "no JSON object in text"
