"""RunConfig: one flat params YAML (params/*.yaml) plus overrides, validated with pydantic
(docs/params.md). Its defaults are the only defaults of a run setting (CLI flags and functions use
:func:`run_default`); every problem of a file is reported together, each naming file and key."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from routerlib import models
from routerlib.atomic import write_text
from routerlib.checkpoint_names import parse_checkpoint_key
from routerlib.errors import InputError, problem_lines, yaml_line
from routerlib.metric_names import KNOWN_METRICS, NOT_STRICT
from routerlib.paths import resolve

TuningMode = Literal["PEFT_ADAPTER", "FULL"]
Decoding = Literal["free", "constrained"]
#: gs://bucket[/prefix] with a bucket name as Cloud Storage allows it.
_GCS_PREFIX = re.compile(r"^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/.*)?$")


class RunConfig(BaseModel):
    """Every setting of one pipeline run. Field names follow the Vertex SDK where it has one; each
    field's docstring is what docs/params.md's table says about it (cli/reference.py)."""

    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, use_attribute_docstrings=True
    )

    # --- run ---
    name: str = "local"
    """Run name: the tuned model is router-NAME; a notebook opened alone makes outputs/NAME-TIME.
    `routerlib run` names its folder after the params file (outputs/FILE-TIME; --name sets
    another)."""
    backend: Literal["local", "vertex"] = "local"
    """local (CPU, offline) or vertex (Vertex AI managed tuning)."""

    # --- data (01_prepare) ---
    input_path: str = ""
    """Week-2 rows JSONL (a path or gs://); empty = the embedded synthetic rows."""
    synth_rows: int = Field(300, ge=1)
    """Synthetic rows made when input_path is empty."""
    synth_seed: int = 7
    """Seed of the synthetic rows (same seed, same bytes)."""
    allow_synthetic: bool = False
    """vertex: true lets an empty input_path tune on synthetic rows (a paid job on made-up data; a
    dry run of the pipeline); the local backend needs no opt-in."""
    val_ratio: float = Field(0.1, ge=0.0, lt=1.0)
    """Share of rows in validation (the original conversion's)."""
    test_ratio: float = Field(0.05, ge=0.0, lt=1.0)
    """Share of rows in test (the original conversion's)."""
    seed: int = 7
    """Shuffle seed of the split (the original conversion's)."""
    limit: int | None = Field(None, ge=1)
    """Keep only the first N rows (smoke subsets); null = all."""
    max_seq_len: int | None = Field(None, ge=1)
    """Warn above this many estimated tokens; null = the model's limit."""
    strict: bool = False
    """true: duplicate ids, cross-split queries, long rows are errors."""
    gcs_prefix: str = ""
    """gs://bucket/prefix for the splits (vertex: and checkpoints); empty = none."""
    data_format: Literal["prompt_completion", "messages"] = "prompt_completion"
    """Training splits' format: prompt_completion (the original rows) or messages."""

    # --- smoke tune (02_smoke_tune) ---
    smoke_limit: int = Field(40, ge=3)
    """Rows in the smoke subset."""
    smoke_epochs: int = Field(1, ge=1)
    """Epochs of the smoke tune."""

    # --- tuning (03_full_tune); names as in Vertex's CreateTuningJobConfig ---
    base_model: str = models.EMBEDDED_MODEL
    """Vertex model id (routerlib/data/models.yaml); local: any HF id or path, a .gguf file, by
    default the embedded tiny model (built offline)."""
    tuning_mode: TuningMode = "PEFT_ADAPTER"
    """PEFT_ADAPTER (LoRA) or FULL (every weight)."""
    adapter_size: int | None = Field(
        16,
        description=f"LoRA rank ({', '.join(map(str, models.ADAPTER_SIZES))} on Vertex): more "
        "capacity, more memory; null for FULL.",
    )
    epochs: int = Field(2, ge=1)
    """Epochs of the full tune."""
    learning_rate: float | None = Field(None, gt=0)
    """Open models on Vertex; null = the backend's default for the mode."""
    learning_rate_multiplier: float | None = Field(None, gt=0)
    """Scales the default rate (Gemini and the local backend only)."""
    tuned_model_display_name: str = ""
    """Empty = router-NAME."""
    output_uri: str = ""
    """Tuning output; empty = tuning/ in the run folder (vertex: gcs_prefix)."""
    custom_base_model: str = ""
    """Continue from this checkpoint (…/checkpoints/final)."""
    labels: dict[str, str] = Field(default_factory=dict)
    """Labels on the tuning job."""
    batch_size: int = Field(4, ge=1)
    """Examples per optimizer step (local backend)."""
    max_train_tokens: int | None = Field(None, ge=16)
    """Local backend: truncate longer examples; null = the context."""

    # --- checkpoint choice (03_full_tune scores, 04_deploy_eval serves) ---
    checkpoint: str = "best"
    """best (by select_metric on validation), final or epoch-N."""
    select_metric: str = "route_plan_exact"
    """Strict metric picking best, scored with constrained decoding when decoding lists it (else
    free); ties: tool_sequence_exact."""
    select_limit: int | None = Field(4, ge=1)
    """Validation rows scored per checkpoint; null = all."""

    # --- Google Cloud (vertex backend; credentials never go here) ---
    project: str = ""
    """Google Cloud project; empty = $GOOGLE_CLOUD_PROJECT."""
    location: str = "us-central1"
    """Where tuning runs: global or a tuning region."""
    deploy_location: str = models.DEFAULT_DEPLOY_LOCATION
    """Region endpoints live in (never global)."""
    api_endpoint: str = ""
    """Regional or private API endpoint URL."""

    # --- deploy (04_deploy_eval, vertex) ---
    machine_type: str | None = None
    """null = the base model's contract."""
    accelerator_type: str | None = None
    """null = the base model's contract."""
    accelerator_count: int | None = Field(None, ge=1)
    """null = the base model's contract."""
    endpoint: str = ""
    """Evaluate this endpoint instead of deploying."""
    eval_mode: Literal["endpoint", "batch"] = "endpoint"
    """endpoint (online predict) or batch (a Vertex batch prediction job)."""
    enable_thinking: bool | None = None
    """Qwen 3 thinking switch, sent as chat_template_kwargs; null = not sent."""

    # --- evaluation (04_deploy_eval) ---
    eval_limit: int | None = Field(None, ge=1)
    """Score the first N test rows; null = all."""
    max_tokens: int = Field(1280, ge=1)
    """Generation limit per test prompt (synthetic rows need ~1,140)."""
    concurrency: int = Field(8, ge=1)
    """Requests in flight."""
    thresholds: str = ""
    """Gate file; empty = the packaged original gates."""
    baseline: Literal["majority", "rules"] = "majority"
    """Previous router to diff against: majority or rules."""
    decoding: list[Decoding] = ["free", "constrained"]  # pydantic copies it for each config
    """Decodings scored on the same test rows (constrained: the completion's JSON Schema goes with
    every request); the first is the headline."""
    constrained: bool | None = None
    """Shorthand: true = decoding [constrained], false = [free]."""

    @model_validator(mode="after")
    def _check_combinations(self) -> RunConfig:
        problems = cross_field_problems(self.model_dump())
        if problems:
            raise ValueError("\n".join(problems))
        return self


def run_default(key: str) -> Any:
    """RunConfig's default for ``key``: the one home of a run setting's default."""
    return RunConfig.model_fields[key].get_default(call_default_factory=True)


#: The problem line of an empty ``input_path`` on the vertex backend without the opt-in.
SYNTHETIC_ON_VERTEX = (
    "input_path: empty, so the vertex backend would tune on synthetic rows (a paid job on "
    "made-up data): set input_path to your Week-2 rows, or add `allow_synthetic: true`"
)


def cross_field_problems(values: dict[str, Any]) -> list[str]:
    """Problems between fields; each line starts with the key to change."""
    v = {name: run_default(name) for name in RunConfig.model_fields} | values
    problems = []
    try:
        if v["val_ratio"] + v["test_ratio"] >= 1.0:
            problems.append(
                "val_ratio: val_ratio + test_ratio must be < 1 (rows are left to train)"
            )
        problems += models.tuning_problems(v)
        if v["backend"] == "vertex":  # the table is Vertex's contract; local takes any HF id
            problems += models.contract_problems(v)
        if v["deploy_location"] == "global":
            problems.append(
                "deploy_location: endpoints live in a region, not global (e.g. us-central1)"
            )
        try:
            key = parse_checkpoint_key(str(v["checkpoint"]))
            if isinstance(key, int) and key > int(v["epochs"]):
                problems.append(f"checkpoint: epoch-{key} is past the last epoch ({v['epochs']})")
        except ValueError as exc:
            problems.append(f"checkpoint: {exc}")
        strict = KNOWN_METRICS - NOT_STRICT
        if v["select_metric"] not in strict:
            problems.append(
                f"select_metric: {v['select_metric']!r} is not a strict metric "
                f"({', '.join(sorted(strict))})"
            )
        decoding = list(v["decoding"])
        if not decoding or len(set(decoding)) != len(decoding):
            problems.append("decoding: give free and/or constrained, each once")
        if v["constrained"] is not None and decoding != run_default("decoding"):
            wanted = ["constrained"] if v["constrained"] else ["free"]
            if decoding != wanted:
                problems.append(f"constrained: {v['constrained']} contradicts decoding {decoding}")
        prefix = v["gcs_prefix"]
        if prefix and not _GCS_PREFIX.match(str(prefix)):
            problems.append(f"gcs_prefix: {prefix!r} is not gs://bucket[/prefix]")
        if v["backend"] == "vertex" and not (prefix or v["output_uri"]):
            problems.append(
                "gcs_prefix: backend vertex needs it (datasets and checkpoints live in GCS)"
            )
        if v["backend"] == "vertex" and not v["input_path"] and not v["allow_synthetic"]:
            problems.append(SYNTHETIC_ON_VERTEX)
    except TypeError:  # ill-typed values are reported by field validation
        pass
    return problems


def read_params_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The flat mapping in a params YAML; an error names the file when it is not one."""
    file = resolve(path)
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: params file not found") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"{path}: must be a flat mapping of keys to values")
    return data


#: A value shipped for the user to replace (the Vertex params files' ``gs://your-bucket``):
#: ``your-…``/``your_…``, ``my-project``/``my-bucket``, ``<…>``, changeme/replace-me/fixme/todo.
PLACEHOLDER = re.compile(
    r"\byour[-_][a-z0-9][a-z0-9_-]*|\bmy[-_](bucket|project)\b|<[^<>\s][^<>]*>"
    r"|\b(change[-_]?me|replace[-_]?me|fixme|todo)\b",
    re.IGNORECASE,
)
#: What to put instead of a placeholder, per key.
_PLACEHOLDER_HINTS = {
    "gcs_prefix": "set gs://BUCKET/PREFIX in a bucket you own",
    "output_uri": "set a gs:// folder you own, or leave it empty (gcs_prefix decides)",
    "input_path": "set your Week-2 rows (a path or gs://), or empty it and add "
    "`allow_synthetic: true`",
    "project": "set your Google Cloud project id, or empty it and export GOOGLE_CLOUD_PROJECT",
}


def placeholder_problems(values: dict[str, Any]) -> dict[str, str]:
    """Key -> problem (without the key) for each value that is a placeholder left to edit."""
    problems = {}
    for key, value in values.items():
        items = (
            value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
        )
        texts = [value] if isinstance(value, str) else [str(v) for v in items]
        found = next((m for t in texts if (m := PLACEHOLDER.search(t))), None)
        if found is not None:
            hint = _PLACEHOLDER_HINTS.get(key, "replace it with your own value")
            shown = value if isinstance(value, str) else texts
            problems[key] = f"{shown!r} is a placeholder ({found.group(0)}): {hint}"
    return problems


def _where(source: str, text: str, data: dict[str, Any], *keys: str) -> str:
    """``file:line`` of the first of ``keys`` the file (``text``, parsed as ``data``) sets, else
    ``file``; the file is parsed for a line only here, when a problem is reported."""
    found = next((n for k in keys if k in data and (n := yaml_line(text, (k,)))), None)
    return f"{source}:{found}" if found is not None else source


def load_config(
    params_file: str | os.PathLike[str] | None = None, overrides: dict[str, Any] | None = None
) -> RunConfig:
    """Validate ``params_file`` merged with ``overrides``; every problem (unknown keys and
    placeholders such as ``gs://your-bucket`` too) in one InputError, as ``file: key: ...``
    (placeholders and synthetic rows on vertex as ``file:line: key: ...``)."""
    data = read_params_file(params_file) if params_file else {}
    source = str(params_file) if params_file else "config"
    overrides = overrides or {}
    merged = {**data, **overrides}
    text = resolve(params_file).read_text(encoding="utf-8") if params_file else ""
    lines = []
    for key, problem in placeholder_problems(merged).items():
        where = _where(source, text, data, key) if key not in overrides else source
        lines.append(f"{where}: {key}: {problem}")
    try:  # unknown keys are reported beside every other problem (extra="forbid")
        config = RunConfig.model_validate(merged)
    except ValidationError as exc:
        found = problem_lines(exc, source)
        if not any(not e["loc"] for e in exc.errors()):  # cross-field checks did not run yet
            found += [f"{source}: {line}" for line in cross_field_problems(merged)]
        synthetic = f"{source}: {SYNTHETIC_ON_VERTEX}"
        where = _where(source, text, data, "input_path", "synth_rows", "backend")
        lines += [f"{where}: {SYNTHETIC_ON_VERTEX}" if x == synthetic else x for x in found]
    if lines:
        raise InputError(f"{source}: {len(lines)} problem(s) in the config", lines)
    return config


def default_project(given: str | None = None) -> str:
    """The project a command uses: ``given`` (a params file's ``project`` or ``--project``), else
    ``$GOOGLE_CLOUD_PROJECT``, stripped; "" when neither names one."""
    return (given or os.environ.get("GOOGLE_CLOUD_PROJECT") or "").strip()


def cloud_problems(config: RunConfig, source: str = "config") -> list[str]:
    """What a run on ``config`` lacks from its environment before anything is written or
    uploaded: the vertex backend needs a project (``project``, else $GOOGLE_CLOUD_PROJECT)."""
    if config.backend != "vertex" or default_project(config.project):
        return []
    return [
        f"{source}: project: backend vertex needs a Google Cloud project: set `project:` in "
        "the params file or export GOOGLE_CLOUD_PROJECT (nothing was written or uploaded)"
    ]


def default_params_file() -> str:
    """The params file of a notebook opened without one (JupyterLab, nbval): ``$ROUTERLIB_PARAMS``
    when set, else params/local.yaml (the embedded default run)."""
    return os.environ.get("ROUTERLIB_PARAMS", "").strip() or "params/local.yaml"


def dump_config(config: RunConfig, path: str | os.PathLike[str]) -> None:
    """Write the resolved config as YAML (atomically)."""
    write_text(Path(path), yaml.safe_dump(config.model_dump(), sort_keys=False))
