"""Deterministic, realistic synthetic Week-2 router rows: the embedded default input.

Rows are drawn from the packaged tables in routerlib/data/ (synth_distributions.yaml: the
original team's statistics of its train split; synth_phrases.yaml: sentence templates;
synth_topics.yaml: per-topic vocabularies; docs/scoring.md). A query is never repeated within one
file, every row passes ``schema.validate_row``, and the same (n, seed) always gives the same bytes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import random
import string
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from routerlib import schema
from routerlib.atomic import atomic_writer
from routerlib.config import run_default
from routerlib.errors import InputError
from routerlib.paths import packaged_file
from routerlib.tables import read_yaml

#: Rows and seed of the embedded input: RunConfig's defaults (``synth_rows``, ``synth_seed``).
DEFAULT_ROWS: int = run_default("synth_rows")
DEFAULT_SEED: int = run_default("synth_seed")

#: The generator's tables, shipped in the package under routerlib/data/.
TOPICS_FILE = "synth_topics.yaml"
PHRASES_FILE = "synth_phrases.yaml"
DISTRIBUTIONS_FILE = "synth_distributions.yaml"


def _one_of(allowed: tuple[str, ...], what: str) -> Any:
    def check(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"{value!r} is not a {what} (use one of {', '.join(allowed)})")
        return value

    return AfterValidator(check)


#: Placeholders a template may name: the keys of the row being composed (see _make_row).
PLACEHOLDERS = frozenset(
    (
        "subject derivation implementation framework search check metric metric_name "
        "metric_formula metric_key tag tag2 seeds n seed dim batch epochs workers setting slug Check"
    ).split()
)


def _check_template(text: str) -> str:
    """A str.format template whose every {placeholder} names a key of the row."""
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
    except ValueError as exc:  # an unmatched brace
        raise ValueError(f"{exc} in {text!r}") from None
    unknown = [name for name in names if name not in PLACEHOLDERS]
    if unknown:
        raise ValueError(
            f"unknown placeholder {{{unknown[0]}}} in {text!r} "
            f"(known: {', '.join(sorted(PLACEHOLDERS))})"
        )
    return text


def _every_tool(value: dict[str, Any]) -> dict[str, Any]:
    missing = [tool for tool in schema.TOOLS if tool not in value]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    return value


_Tool = Annotated[str, _one_of(schema.TOOLS, "tool")]
_Text = Annotated[str, Field(min_length=1)]
_Texts = Annotated[list[str], Field(min_length=1)]
_Template = Annotated[str, AfterValidator(_check_template)]
_Templates = Annotated[list[_Template], Field(min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class Topic(_Strict):
    """One research area: tags (the first from the real top-tag lists), subjects, what the math
    and code agents do there, search terms, a domain metric and a validation check."""

    tags: Annotated[list[str], Field(min_length=2)]
    subjects: _Texts
    derivations: _Texts
    implementations: _Texts
    search_terms: _Texts
    metric_name: _Text
    metric_formula: _Text
    check: _Text


class _TopicsFile(_Strict):
    topics: Annotated[list[Topic], Field(min_length=1)]


class _PhrasesFile(_Strict):
    primary_metric: _Text
    secondary_metric: _Text
    router_qa: _Text
    frameworks: _Texts
    openers: _Templates
    math_asks: _Templates
    code_asks: _Templates
    settings: _Templates
    validate_asks: _Templates
    advanced_asks: _Templates
    intro_openers: _Templates
    intro_asks: _Templates
    cite_asks: _Texts
    search_sites: _Texts
    search_suffixes: _Templates
    math_step: _Template
    math_step_again: _Template
    code_step: _Template
    code_step_again: _Template
    math_remarks: _Texts
    code_suffixes: _Texts
    agent_roles: Annotated[dict[_Tool, _Template], AfterValidator(_every_tool)]
    rationale_close: _Template
    artifacts: Annotated[list[_Template], Field(min_length=4)]
    outline: Annotated[list[_Template], Field(min_length=4)]
    outline_survey: _Template
    handoff_check: _Template
    products: Annotated[dict[_Tool, str], AfterValidator(_every_tool)]
    fallbacks: _Texts
    todo: Annotated[dict[_Tool, _Templates], AfterValidator(_every_tool)]
    todo_check: _Template
    todo_measure: _Template
    acceptance: _Templates
    acceptance_plots: _Template
    guidance: _Templates


class _RouteTemplate(_Strict):
    tools: Annotated[list[_Tool], Field(min_length=1)]
    length_rows: int | None = Field(None, ge=0)
    order_share: float = Field(1.0, ge=0, le=1)
    weight: float | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _one_weight(self) -> _RouteTemplate:
        if (self.length_rows is None) == (self.weight is None):
            raise ValueError("give either length_rows or weight")
        return self


class _MetricsShape(_Strict):
    keys: _Texts
    rows: int = Field(ge=0)


class _ObjectShare(_Strict):
    objects: int = Field(ge=0)
    rows: int = Field(ge=1)


class _DistributionsFile(_Strict):
    train_rows: int = Field(ge=1)
    math_first_rows: int = Field(ge=0)
    route_templates: Annotated[list[_RouteTemplate], Field(min_length=1)]
    difficulty: dict[Annotated[str, _one_of(schema.DIFFICULTIES, "difficulty")], int]
    metrics_shapes: Annotated[list[_MetricsShape], Field(min_length=1)]
    object_values: dict[str, _ObjectShare]
    search_modes: dict[Annotated[str, _one_of(schema.SEARCH_MODES, "search mode")], int]


@dataclass(frozen=True)
class Tables:
    """Everything the generator draws from, as read from the three packaged YAML files, and the
    weights derived from them as (item, weight) pairs in file order (drawn by position)."""

    topics: list[Topic]
    phrases: _PhrasesFile
    dist: _DistributionsFile
    route_templates: list[tuple[tuple[str, ...], float]]
    dict_value_share: dict[str, float]


def load_tables(folder: str | os.PathLike[str] | None = None) -> Tables:
    """Read and validate the generator's tables from ``folder`` (default: the package's
    routerlib/data, paths.packaged_file, so a clone and an installed wheel agree)."""
    where = Path(folder) if folder is not None else packaged_file(TOPICS_FILE).parent
    what = "synthetic-data table"
    topics = read_yaml(where / TOPICS_FILE, _TopicsFile, what).topics
    phrases = read_yaml(where / PHRASES_FILE, _PhrasesFile, what)
    dist = read_yaml(where / DISTRIBUTIONS_FILE, _DistributionsFile, what)
    math_share = dist.math_first_rows / dist.train_rows
    routes = []
    for route in dist.route_templates:
        if route.length_rows is None:  # then the weight is given (_RouteTemplate checks it)
            weight = float(route.weight or 0)
        else:  # the length's count, times the first tool's share, times the order's share
            share = math_share if route.tools[0] == "/math" else 1 - math_share
            weight = route.length_rows * share * route.order_share
        routes.append((tuple(route.tools), weight))
    shares = {k: v.objects / v.rows for k, v in dist.object_values.items()}
    return Tables(topics, phrases, dist, routes, shares)


@functools.cache
def tables() -> Tables:
    """The packaged tables, read once (when the first row is made, not on import)."""
    return load_tables()


def _weighted(rng: random.Random, items: Iterable[tuple[Any, float]]) -> Any:
    values, weights = zip(*items, strict=True)
    return rng.choices(values, weights=weights, k=1)[0]


def _query(t: Tables, rng: random.Random, difficulty: str, ctx: dict[str, Any]) -> str:
    p = t.phrases
    if difficulty == "introductory":
        opener, ask = rng.choice(p.intro_openers), rng.choice(p.intro_asks)
        parts = [opener, ask.rstrip(".") + rng.choice(p.settings) + "."]
    else:
        parts = [rng.choice(p.openers), rng.choice(p.math_asks)]
        parts.append(rng.choice(p.code_asks) + rng.choice(p.settings) + ".")
        parts.append(rng.choice(p.validate_asks))
        if difficulty == "advanced":
            parts.append(rng.choice(p.advanced_asks))
    text = " ".join(part.format(**ctx) for part in parts) + rng.choice(p.cite_asks)
    return text[0].upper() + text[1:]


def _step(t: Tables, rng: random.Random, tool: str, ctx: dict[str, Any], second: bool) -> str:
    """One route_plan step of ``tool`` (``second``: the tool's second step in the plan)."""
    if tool == "/general-search":
        extra = rng.choice(t.phrases.search_suffixes).format(**ctx)
        site = rng.choice(t.phrases.search_sites)
        mode = _weighted(rng, t.dist.search_modes.items())
        return f'/general-search(query="{site}{ctx["search"]}{extra}", mode={mode})'
    p = t.phrases
    if tool == "/math" and second:
        return f"/math({p.math_step_again.format(**ctx)})"
    if tool == "/math":
        return f"/math({p.math_step.format(**ctx)} {rng.choice(p.math_remarks)})"
    body = (p.code_step_again if second else p.code_step).format(**ctx)
    return f"/code({body}{rng.choice(p.code_suffixes)})"


def _rationale(t: Tables, plan: list[str], ctx: dict[str, Any]) -> str:
    sentences = []
    for index, tool in enumerate(plan):
        role = t.phrases.agent_roles[tool].format(**ctx)
        if index == 0:
            blue = "blue " if tool == "/general-search" else ""
            sentences.append(f"The {blue}{tool} agent first {role}.")
        elif index == len(plan) - 1:
            sentences.append(f"Finally, the {tool} agent {role}, closing the loop.")
        else:
            sentences.append(f"The {tool} agent then {role}.")
    sentences.append(t.phrases.rationale_close.format(**ctx))
    return " ".join(sentences)


def _artifacts(t: Tables, rng: random.Random, ctx: dict[str, Any]) -> list[str]:
    dash = "- " if rng.random() < 0.3 else ""
    items = [text.format(**ctx) for text in t.phrases.artifacts]
    if rng.random() < 0.3:
        items.pop(rng.randrange(2, 4))
    return [dash + item for item in items]


def _outline(t: Tables, rng: random.Random, plan: list[str], ctx: dict[str, Any]) -> list[str]:
    steps = [text.format(**ctx) for text in t.phrases.outline]
    if "/general-search" in plan:
        steps.insert(rng.randrange(0, 2), t.phrases.outline_survey.format(**ctx))
    if rng.random() < 0.25:
        steps.pop(rng.randrange(3, len(steps)))
    return [f"{index}. {step}" for index, step in enumerate(steps, start=1)]


def _handoff(t: Tables, rng: random.Random, plan: list[str], ctx: dict[str, Any]) -> str:
    parts = [" -> ".join([*plan, "router QA"]) + "."]
    for before, after in zip(plan, plan[1:], strict=False):
        parts.append(f"The {after} agent receives the {t.phrases.products[before]} from {before}.")
    parts += [t.phrases.handoff_check.format(**ctx), "Fallback: " + rng.choice(t.phrases.fallbacks)]
    return " ".join(parts)


def _todo(t: Tables, rng: random.Random, plan: list[str], ctx: dict[str, Any]) -> list[str]:
    items = []
    for tool in plan:
        count = 2 if rng.random() < 0.8 else 1
        items += [f"- [ ] {tool}: {text.format(**ctx)}" for text in t.phrases.todo[tool][:count]]
    items.append(t.phrases.todo_check.format(**ctx))
    if "/code" in plan and rng.random() < 0.7:
        items.append(t.phrases.todo_measure.format(**ctx))
    items.append(t.phrases.router_qa)
    return items


def _acceptance(t: Tables, rng: random.Random, ctx: dict[str, Any]) -> list[str]:
    items = [text.format(**ctx) for text in t.phrases.acceptance]
    if rng.random() < 0.3:
        items.append(t.phrases.acceptance_plots.format(**ctx))
    return items


def _metrics(t: Tables, rng: random.Random, ctx: dict[str, Any]) -> dict[str, Any]:
    share = t.dict_value_share
    out: dict[str, Any] = {}
    for key in _weighted(rng, [(s.keys, s.rows) for s in t.dist.metrics_shapes]):
        if key == "primary":
            out[key] = [t.phrases.primary_metric]
        elif key == "secondary":
            out[key] = [t.phrases.secondary_metric]
        elif key.endswith("_computation"):
            out[key] = f"Calculate {ctx['metric_name']} as {ctx['metric_formula']}."
        elif key.endswith("_description"):
            out[key] = f"{ctx['metric_name'][0].upper()}{ctx['metric_name'][1:]}, reported per run."
        elif (key.endswith("_guidance") and key not in share) or rng.random() >= share.get(key, 0):
            out[key] = rng.choice(t.phrases.guidance).format(**ctx)
        else:  # an object, in the share the original rows hold one
            out[key] = {
                ctx["metric_key"]: f"{ctx['metric_formula']}.",
                "runtime_seconds": "Wall-clock time of the full experiment on one machine.",
            }
    return out


def _make_row(t: Tables, rng: random.Random, index: int, seen: set[bytes]) -> dict[str, Any]:
    topic = rng.choice(t.topics)
    difficulty = _weighted(rng, t.dist.difficulty.items())
    plan_tools = list(_weighted(rng, t.route_templates))
    for _attempt in range(100):
        ctx: dict[str, Any] = {  # drawn in this order: the digests pin it
            "n": rng.randrange(1, 200) * 500,
            "seed": rng.randrange(0, 10_000),
            "dim": rng.choice((16, 32, 64, 128, 256, 512, 1024)) * rng.randrange(1, 9),
            "batch": rng.choice((32, 64, 128, 256, 512)),
            "epochs": rng.randrange(5, 400),
            "workers": rng.randrange(2, 65),
            "subject": rng.choice(topic.subjects),
            "derivation": rng.choice(topic.derivations),
            "implementation": rng.choice(topic.implementations),
            "framework": rng.choice(t.phrases.frameworks),
            "search": rng.choice(topic.search_terms),
            "check": topic.check,
            "metric": topic.metric_name,
            "metric_name": topic.metric_name,
            "metric_formula": topic.metric_formula,
            "metric_key": topic.metric_name.replace(" ", "_").replace("-", "_").lower(),
            "tag": topic.tags[0].replace("-", " "),
            "tag2": topic.tags[1].replace("-", " "),
            "seeds": rng.choice((3, 5, 10, 20)),
        }
        words = "".join(ch if ch.isalnum() else " " for ch in ctx["implementation"].lower())
        ctx["slug"] = "_".join(words.split()[:3]) or "experiment"
        ctx["Check"] = topic.check[0].upper() + topic.check[1:]
        ctx["setting"] = rng.choice(t.phrases.settings).format(**ctx)
        query = _query(t, rng, difficulty, ctx)
        key = hashlib.blake2b(query.encode("utf-8"), digest_size=12).digest()
        if key not in seen:
            seen.add(key)
            break
    else:  # pragma: no cover - 100 collisions in a row cannot happen with these vocabularies
        raise RuntimeError("could not compose a new query")

    plan = [_step(t, rng, tool, ctx, tool in plan_tools[:i]) for i, tool in enumerate(plan_tools)]

    tag_count = rng.choices((2, 3, 4), weights=(3, 92, 5))[0]
    tags = list(topic.tags[:tag_count])
    if tag_count == 4:
        tags.append(rng.choice(t.topics).tags[0])
        tags = list(dict.fromkeys(tags))

    return {
        "id": f"synth_{index:06d}",
        "user_query": query,
        "task_summary": query[:120],
        "route_plan": plan,
        "route_rationale": _rationale(t, plan_tools, ctx),
        "expected_artifacts": _artifacts(t, rng, ctx),
        "thinking_outline": _outline(t, rng, plan_tools, ctx),
        "handoff_plan": _handoff(t, rng, plan_tools, ctx),
        "todo_list": _todo(t, rng, plan_tools, ctx),
        "difficulty": difficulty,
        "tags": tags,
        "quality_score": round(rng.uniform(0.8, 0.98), 2),
        "acceptance_criteria": _acceptance(t, rng, ctx),
        "metrics": _metrics(t, rng, ctx),
        "compute_budget": {
            "gpu_hours": rng.choice((0, 1, 2, 4, 8)),
            "max_runtime_minutes": rng.choice((30, 60, 120, 240)),
        },
        "repro": {"seed": ctx["seed"], "framework": ctx["framework"], "python": "3.11"},
        "requires_browse": "/general-search" in plan_tools,
        "citation_policy": "Cite at least two arXiv papers with their IDs."
        if "/general-search" in plan_tools
        else "Cite sources when used.",
        "io_schema": {
            "inputs": ["user_query"],
            "outputs": ["report.md", f"{ctx['slug']}.py", "metrics.json"],
        },
    }


def generate_rows(n: int, seed: int) -> Iterator[dict[str, Any]]:
    """``n`` synthetic Week-2 rows from ``seed``; the same arguments give the same rows."""
    if n < 0:
        raise InputError(f"--rows must be at least 0, got {n}")
    rng = random.Random(f"routerlib-synth:{seed}")
    seen: set[bytes] = set()
    for index in range(n):
        yield _make_row(tables(), rng, index, seen)


def write_rows(path: str | os.PathLike[str], n: int, seed: int) -> Path:
    """Write ``n`` rows from ``seed`` as JSONL to ``path`` (atomically) and return the path."""
    target = Path(path)
    with atomic_writer(target, "wb") as handle:
        for row in generate_rows(n, seed):
            handle.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
    return target
