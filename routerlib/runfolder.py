"""What a run folder holds (docs/outputs.md): every file name, and a pydantic record for each file
more than one module touches. Readers load through :func:`read_json` / :func:`read_jsonl`, so an
old or foreign file fails with one line per problem naming the file (and line) and the field."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from routerlib import paths
from routerlib.atomic import atomic_writer, file_lock, write_json
from routerlib.errors import InputError, problem_lines

# ----------------------------------------------------------------------------- names

PARAMS_FILE = "params.yaml"
PIPELINE_FILE = "pipeline.json"
LOG_FILE = "run.log"
NOTEBOOKS_DIR = "notebooks"
DATA_DIR = "data"
SYNTHETIC_ROWS_FILE = "synthetic_rows.jsonl"
PREPARE_FILE = "prepare.json"
SPLITS: tuple[str, ...] = ("train", "validation", "test")
FULL_TUNING_DIR = "tuning/full"
#: A tuning job's record (one writer: the local backend in its output folder, else stages.tune).
JOB_FILE = "job.json"
LOSS_CURVE_FILE = "loss_curve.json"
EVAL_DIR = "eval"
REPORT_FILE = "eval/report.json"
SAMPLES_FILE = "samples.jsonl"
BASELINES_DIR = "eval/baselines"
METRICS_FILE = "metrics.json"
CHECKPOINTS_FILE = "checkpoints.json"
CHECKPOINT_REPORTS_DIR = "eval/checkpoints"
THROUGHPUT_FILE = "eval/throughput.json"
LEADERBOARD_FILE = "leaderboard.csv"
SIGNIFICANCE_FILE = "significance.csv"
COMPARISON_FILE = "comparison.json"
PLOTS_DIR = "plots"
#: A sweep folder's record (:class:`SweepRecord`).
SWEEP_FILE = "sweep.json"
#: The registry of submitted Vertex AI pipelines, beside jobs.json under the outputs root.
PIPELINES_FILE = "pipelines.json"

#: States of a run, a sweep and their stages or points.
PENDING: Final = "pending"
RUNNING: Final = "running"
WAITING: Final = "waiting"
FINISHED: Final = "finished"
FAILED: Final = "failed"
INTERRUPTED: Final = "interrupted"


def now() -> str:
    """The local time as run and sweep records write it (``created``, ``finished``)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


@dataclass(frozen=True)
class Registry:
    """A JSON object under the outputs root holding one list of records under ``key``, newest
    last (jobs.json, pipelines.json, endpoints.json, batch_jobs.json); a record is known by its
    ``id_field``. Changed under a lock (``<name>.lock`` beside it) and written atomically."""

    file: str
    key: str
    id_field: str

    def path(self) -> Path:
        """``<outputs root>/<file>`` (ROUTERLIB_OUTPUTS, default outputs/); ``file`` if absolute."""
        return paths.outputs_root() / self.file

    def read(self) -> list[dict[str, Any]]:
        """Every record, newest last ([] when there is no file yet); InputError naming the file
        and the field when it is not such a registry."""
        file = self.path()
        if not file.is_file():
            return []
        data = _json(file, object, "JSON value")
        records = data.get(self.key) if isinstance(data, dict) else None
        if not isinstance(records, list):
            raise InputError(f"{file}: {self.key}: must be a list")
        for number, record in enumerate(records):
            if not isinstance(record, dict):
                raise InputError(f"{file}: {self.key}[{number}]: must be an object")
        return records

    @contextlib.contextmanager
    def edit(self) -> Iterator[list[dict[str, Any]]]:
        """The records under the lock, to change in place; written back when the block ends
        (not when it raises)."""
        with file_lock(self.path().with_suffix(".lock")):
            records = self.read()
            yield records
            write_json(self.path(), {self.key: records})

    def save(self, record: dict[str, Any], keep: bool = True) -> dict[str, Any]:
        """Put ``record`` last in place of the records with its id (without ``keep``: drop them)."""
        with self.edit() as records:
            mine = record[self.id_field]
            records[:] = [r for r in records if r.get(self.id_field) != mine]
            if keep:
                records.append(record)
        return record

    def find(self, ref: str, *fields: str) -> dict[str, Any] | None:
        """The newest record holding ``ref`` in one of ``fields`` (default: its id) or as the last
        ``/`` segment of one; None when there is none."""
        for record in reversed(self.read()):
            values = [str(record.get(f) or "") for f in fields or (self.id_field,)]
            if any(ref in (v, v.rsplit("/", 1)[-1]) for v in values if v):
                return record
        return None


def data_dir(smoke: bool = False) -> str:
    """The folder of the prepared splits (the smoke subset's when ``smoke``)."""
    return f"{DATA_DIR}/smoke" if smoke else DATA_DIR


def split_file(split: str, smoke: bool = False) -> str:
    """``data/<split>.jsonl`` (or under data/smoke)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} (expected one of {', '.join(SPLITS)})")
    return f"{data_dir(smoke)}/{split}.jsonl"


def tuning_dir(smoke: bool = False) -> str:
    """The folder of a tuning run: tuning/smoke or tuning/full."""
    return "tuning/smoke" if smoke else FULL_TUNING_DIR


def job_file(smoke: bool = False) -> str:
    """The run's record of its tuning job."""
    return f"{tuning_dir(smoke)}/{JOB_FILE}"


def decoding_report_file(folder: str, decoding: str) -> str:
    """``<folder>/report.json`` for free decoding, ``<folder>/<decoding>/report.json`` for another
    (each decoding keeps its own samples, predictions and resume cache)."""
    return f"{folder}/report.json" if decoding == "free" else f"{folder}/{decoding}/report.json"


def baseline_report_file(kind: str) -> str:
    """``eval/baselines/<kind>/report.json``: the report of one previous router (``majority`` or
    ``rules``)."""
    return f"{BASELINES_DIR}/{kind}/report.json"


def samples_path(report: str | os.PathLike[str]) -> Path:
    """The per-sample records written beside a report: ``samples.jsonl``."""
    return Path(report).with_name(SAMPLES_FILE)


def report_artifact(report: str | os.PathLike[str], kind: str) -> Path:
    """A file evaluate writes beside a report ``X.json``: ``X.<kind>.jsonl`` (kind is
    ``predictions``, ``cache``, ``gold``, ``pred`` or ``compare``)."""
    report = Path(report)
    return report.with_name(f"{report.name.removesuffix('.json')}.{kind}.jsonl")


def predictions_path(report: str | os.PathLike[str]) -> Path:
    """The predictions scored by a report ``X.json``: ``X.predictions.jsonl`` beside it."""
    return report_artifact(report, "predictions")


# ----------------------------------------------------------------------------- records


class Record(BaseModel):
    """A record routerlib writes: unknown fields are refused, so a foreign file is named."""

    model_config = ConfigDict(extra="forbid")


class OpenRecord(BaseModel):
    """A record whose known fields are checked and whose other fields are kept."""

    model_config = ConfigDict(extra="allow")


RunStatus = Literal["running", "failed", "interrupted", "finished"]


class StageRecord(Record):
    """One stage of a batch run."""

    stage: str
    notebook: str
    status: Literal["pending", "running", "ok", "failed", "interrupted"] = PENDING
    seconds: float | None = None
    error: str | None = None
    started: str | None = None


class PipelineRecord(Record):
    """``pipeline.json``: the batch runner's state of a run folder (pipeline.py writes it)."""

    params_file: str | None = None
    params_name: str | None = None
    run_dir: str | None = None
    stages: list[StageRecord]
    status: RunStatus
    created: str | None = None
    finished: str | None = None


class LossPoint(OpenRecord):
    """One point of ``loss_curve.json`` (a list of them)."""

    epoch: float | None = None
    step: int
    train_loss: float | None = None
    val_loss: float | None = None


class RunInfo(Record):
    """Which run this is and how it was configured."""

    name: str
    params_file: str | None = None
    backend: str | None = None
    base_model: str | None = None
    tuning_mode: str | None = None
    adapter_size: int | None = None
    epochs: int | None = None
    created: str | None = None


class TuningInfo(Record):
    """The tuning job's outcome."""

    job_name: str | None = None
    state: str | None = None
    train_seconds: float | None = None
    cost_estimate_usd: float | None = None
    tuning_data_stats: dict[str, Any] = Field(default_factory=dict)
    loss_curve: list[dict[str, Any]] = Field(default_factory=list)
    #: which checkpoint was served and why (checkpoints.json's summary)
    checkpoint: dict[str, Any] | None = None


class BaselineInfo(Record):
    """One previous router scored in the run: its report and whether it passed the gate."""

    report: str
    gate_pass: bool | None = None


class DecodingInfo(BaselineInfo):
    """One decoding (free / constrained) scored on the run's test rows, with its figures."""

    headline: dict[str, float | None] = Field(default_factory=dict)
    strict: dict[str, float | None] = Field(default_factory=dict)
    schema_valid: float | None = None
    seconds_per_token: float | None = None


class EvaluationInfo(DecodingInfo):
    """The headline decoding (free or constrained): its report and figures."""

    report: str = REPORT_FILE
    decoding: str = "free"


class MetricsRecord(Record):
    """``metrics.json``: the summary of a finished run (a partial run may hold ``run`` only)."""

    run: RunInfo
    tuning: TuningInfo | None = None
    evaluation: EvaluationInfo | None = None
    decodings: dict[str, DecodingInfo] = Field(default_factory=dict)
    baselines: dict[str, BaselineInfo] = Field(default_factory=dict)
    #: pricing.RunCost: tuning USD, serving USD per 1,000 routes, latency, the table's date
    cost: dict[str, Any] | None = None


class ReportConfig(OpenRecord):
    """The original evaluator's ``config`` block."""

    gold_path: str
    pred_path: str
    total_samples: int


class GateCheck(Record):
    """One check of the gate. A check of a bucket the test rows have none of is skipped:
    ``passed`` null, ``skipped`` true, ``samples`` 0 (metrics.apply_gate)."""

    value: float | None
    threshold: float
    kind: Literal["min", "max"]
    passed: bool | None
    skipped: bool = False
    samples: int | None = None


class GateResults(OpenRecord):
    """``threshold_results``: ``{bucket: {metric: GateCheck}}`` plus the verdict. This is the
    only gate shape; readers take the failed checks from ``failed``."""

    __pydantic_extra__: dict[str, dict[str, GateCheck]] = Field(init=False)  # type: ignore[assignment]

    overall_pass: bool
    failed: list[str]
    figures: Literal["metrics", "strict"] = "metrics"

    def checks(self) -> dict[str, dict[str, GateCheck]]:
        """The checks per bucket, in gate order."""
        return dict(self.__pydantic_extra__ or {})

    def skipped_buckets(self) -> dict[str, int]:
        """Each bucket whose checks were skipped (the test rows have none of it) -> its rows."""
        return {
            bucket: next(iter(checks.values())).samples or 0
            for bucket, checks in self.checks().items()
            if checks and all(c.skipped for c in checks.values())
        }


class Delta(Record):
    """A figure of the new predictions beside the previous ones."""

    new: float | None
    previous: float | None
    delta: float | None


class Changes(Record):
    """Test rows a binary metric fixed and broke against the previous predictions."""

    fixed: list[int]
    broken: list[int]


class ComparisonBlock(Record):
    """``comparison``: the report against a previous prediction file on the same gold."""

    metrics: dict[str, dict[str, Delta]]
    strict: dict[str, dict[str, Delta]]
    extra: dict[str, dict[str, Delta]]
    changes: dict[str, Changes]
    significance: dict[str, dict[str, dict[str, Any]]]
    previous_pred_path: str | None = None


class ErrorSample(Record):
    """One entry of ``error_samples`` (the original's listing) or ``error_samples_all``."""

    index: int
    prompt_preview: str
    details: dict[str, Any]


class ReportRecord(OpenRecord):
    """``report.json``: the original three sections, then routerlib's additions."""

    config: ReportConfig
    metrics: dict[str, dict[str, float | int]]
    error_samples: list[ErrorSample] = Field(default_factory=list)
    error_samples_all: list[ErrorSample] | None = None
    strict: dict[str, dict[str, float | int]] | None = None
    extra: dict[str, dict[str, float | int]] | None = None
    intervals: dict[str, dict[str, list[float]]] | None = None
    intervals_config: dict[str, Any] | None = None
    latency: dict[str, float | int] | None = None
    tokens: dict[str, float | int | None] | None = None
    threshold_results: GateResults | None = None
    comparison: ComparisonBlock | None = None
    samples_path: str | None = None
    generation: dict[str, Any] | None = None


class SampleRecord(Record):
    """One line of ``samples.jsonl``: one scored test row."""

    index: int
    buckets: list[str]
    valid: bool
    reason: str
    metrics: dict[str, bool | int | float]
    strict: dict[str, bool | int | float]
    extra: dict[str, bool | int | float]
    schema_violations: list[str]
    debug: dict[str, Any]
    gold_first_tool: str | None
    pred_first_tool: str | None
    plan: dict[str, Any] | None = None  # tool sequences and search modes (routerlib.diagnostics)
    raw: str | None = None
    thinking: str | None = None  # a <think> block dropped before extraction (Qwen 3)


class PredictionRecord(Record):
    """One line of a predictions file routerlib writes (``tokens_estimated``: chars/4 counts).
    Files from elsewhere are read by the scorer in every shape the original evaluator accepts."""

    index: int | None = None
    completion: str | None  # None: a batch row that got no answer (``batch_error`` says why)
    raw: str | None = None
    extraction: str | None = None
    latency_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tokens_estimated: bool | None = None
    thinking: str | None = None
    batch_error: str | None = None


class ThroughputRecord(Record):
    """``eval/throughput.json``: routes per hour while notebook 04 predicted the test split."""

    rows: int
    seconds: float
    routes_per_hour: float
    concurrency: int | None = None
    max_tokens: int | None = None


class ComparisonRecord(Record):
    """``comparison.json`` of a comparison run: the leaderboard (by row) and the paired tests."""

    leaderboard: dict[str, dict[str, Any]]
    significance: list[dict[str, Any]]


# ----------------------------------------------------------------- reading and writing

M = TypeVar("M", bound=BaseModel)


class RunFolderError(InputError):
    """A run-folder file that is missing, unreadable or not what its record says."""


def validate(data: Any, record: type[M], where: str) -> M:
    """``data`` as ``record``; RunFolderError with one line per field otherwise."""
    try:
        return record.model_validate(data)
    except ValidationError as exc:
        problems = problem_lines(exc, where)
        raise RunFolderError.of(problems, f"{where}: {len(problems)} problem(s)") from None


def _text(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RunFolderError(f"{file}: missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RunFolderError(f"{file}: unreadable ({exc})") from None


def _json(file: Path, shape: type, what: str) -> Any:
    """The JSON of ``file``; RunFolderError when it is not valid JSON or not a ``shape``."""
    try:
        data = json.loads(_text(file))
    except json.JSONDecodeError as exc:
        raise RunFolderError(f"{file}: line {exc.lineno}: not valid JSON") from None
    if not isinstance(data, shape):
        raise RunFolderError(f"{file}: (file): not a {what}")
    return data


def read_json(path: str | os.PathLike[str], record: type[M]) -> M:
    """Load one JSON file of the run folder as ``record``."""
    file = Path(path)
    data = _json(file, dict, f"{record.__name__.removesuffix('Record')} object")
    return validate(data, record, str(file))


def read_jsonl(path: str | os.PathLike[str], record: type[M]) -> list[M]:
    """Load every non-blank line of a JSONL file of the run folder as ``record``."""
    file = Path(path)
    out: list[M] = []
    problems: list[str] = []
    for number, line in enumerate(_text(file).splitlines(), 1):
        if not line.strip():
            continue
        where = f"{file}:{number}"
        try:
            out.append(validate(json.loads(line), record, where))
        except json.JSONDecodeError:
            problems.append(f"{where}: not valid JSON")
        except RunFolderError as exc:
            problems.extend(exc.problems or exc.lines())
        if len(problems) >= 10:
            break
    if problems:
        raise RunFolderError.of(problems, f"{file}: {len(problems)} bad line(s)")
    return out


def write_record(path: str | os.PathLike[str], record: BaseModel) -> Path:
    """Write a record as JSON, atomically."""
    write_json(path, record.model_dump(mode="json"))
    return Path(path)


def write_records(path: str | os.PathLike[str], records: Sequence[BaseModel]) -> Path:
    """Write records as JSONL, one a line with the fields that were given, atomically."""
    with atomic_writer(path) as handle:
        for record in records:
            line = record.model_dump(mode="json", exclude_unset=True)
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")
    return Path(path)


def write_report(path: str | os.PathLike[str], report: dict[str, Any]) -> Path:
    """Check ``report`` against ReportRecord, then write it as it is (key order and numbers
    kept: the original sections come first)."""
    validate(report, ReportRecord, str(path))
    write_json(path, report)
    return Path(path)


def read_report(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A report.json, checked against ReportRecord, as the dict the scorer wrote."""
    data: dict[str, Any] = _json(Path(path), dict, "Report object")
    validate(data, ReportRecord, str(path))
    return data


def write_samples(path: str | os.PathLike[str], lines: list[dict[str, Any]]) -> Path:
    """Write ``samples.jsonl``, every line checked against SampleRecord."""
    return write_records(
        path, [validate(line, SampleRecord, f"{path}:{n}") for n, line in enumerate(lines, 1)]
    )


def read_samples(path: str | os.PathLike[str]) -> list[SampleRecord]:
    """The per-sample records of a samples.jsonl."""
    return read_jsonl(path, SampleRecord)


def read_loss_curve(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """A tuning folder's loss_curve.json: its points, each checked against LossPoint."""
    file = Path(path)
    data = _json(file, list, "list of loss points")
    for n, point in enumerate(data):
        validate(point, LossPoint, f"{file}: [{n}]")
    return data


def _read_marked(folder: str | os.PathLike[str], name: str, record: type[M], what: str) -> M:
    """``folder/name`` as ``record``; RunFolderError saying ``folder`` is no ``what`` without it."""
    file = Path(folder) / name
    if not file.is_file():
        raise RunFolderError(f"{file}: not a {what} (no {name})")
    return read_json(file, record)


def read_pipeline(run_dir: str | os.PathLike[str]) -> PipelineRecord:
    """A run's pipeline.json."""
    return _read_marked(run_dir, PIPELINE_FILE, PipelineRecord, "pipeline run folder")


def read_metrics(run_dir: str | os.PathLike[str]) -> MetricsRecord:
    """A run's metrics.json."""
    return read_json(Path(run_dir) / METRICS_FILE, MetricsRecord)


# ----------------------------------------------------------------------------- sweeps


class SweepPoint(BaseModel):
    """One point of a sweep's grid and what became of it."""

    index: int
    values: dict[str, Any]
    name: str
    params: str  # relative to the sweep folder
    run_dir: str | None = None
    status: str = PENDING
    message: str = ""
    quota_waits: int = 0


class SweepRecord(BaseModel):
    """A sweep folder's ``sweep.json`` (routerlib.sweep writes it after every change)."""

    sweep: str
    params_file: str
    grid: dict[str, list[Any]]
    stages: list[str]
    backend: str
    max_concurrent: int = 1
    points: list[SweepPoint] = Field(default_factory=list)
    status: str = RUNNING
    created: str = ""
    finished: str | None = None

    def varied_keys(self) -> list[str]:
        """Keys that take more than one value across the grid."""
        return [k for k, values in self.grid.items() if len(values) > 1]


def read_sweep(folder: str | os.PathLike[str]) -> SweepRecord:
    """The sweep.json of ``folder``; InputError when it is missing or not a sweep record."""
    return _read_marked(folder, SWEEP_FILE, SweepRecord, "sweep folder")


# ----------------------------------------------------------------------------- finding folders


def find_folders(*markers: str, root: str | os.PathLike[str] | None = None) -> list[Path]:
    """The folders directly under the outputs root (or ``root``) holding any of ``markers`` (e.g.
    ``PIPELINE_FILE`` for batch runs, ``SWEEP_FILE`` for sweeps), sorted by name, hidden ones
    skipped. The one finder of run and sweep folders."""
    base = Path(root) if root is not None else paths.outputs_root()
    if not base.is_dir():
        return []
    return sorted(
        folder
        for folder in base.iterdir()
        if folder.is_dir()
        and not folder.name.startswith(".")
        and any((folder / marker).exists() for marker in markers)
    )


def has_evaluation(folder: str | os.PathLike[str]) -> bool:
    """Whether a run folder is a comparison candidate: its evaluation wrote metrics.json."""
    return (Path(folder) / METRICS_FILE).is_file()
