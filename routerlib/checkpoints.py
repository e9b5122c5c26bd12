"""Choosing the checkpoint (docs/choosing-the-model.md): score every per-epoch checkpoint of the
tuning job on the validation split, pick one by ``select_metric`` and record why in the run's
``checkpoints.json``, rewritten after every checkpoint so an interrupted scoring resumes."""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from routerlib import evaluate, runfolder
from routerlib.checkpoint_names import (
    BEST,
    CHECKPOINT_MARKER,
    CHECKPOINTS_DIR,
    EPOCH_NAME,
    FINAL,
    parse_checkpoint_key,
)
from routerlib.config import run_default
from routerlib.display import spoken
from routerlib.errors import InputError
from routerlib.metric_names import LOWER_IS_BETTER
from routerlib.serving.base import Predictor
from routerlib.tuning.base import Job
from routerlib.tuning.model_io import epoch_folders

if TYPE_CHECKING:
    import pandas as pd

#: Breaks ties of ``select_metric`` (strict, overall).
TIE_BREAK = "tool_sequence_exact"
DEFAULT_SELECT_METRIC: str = run_default("select_metric")

#: The decodings a checkpoint can be scored with (``config.Decoding``).
FREE, CONSTRAINED = "free", "constrained"

#: ``scorer(checkpoint_uri, validation_path, report_path, decoding) -> report dict`` (metrics.py
#: layout); ``decoding`` is free or constrained.
Scorer = Callable[[str, Path, Path, str], dict[str, Any]]


def scoring_decoding(decodings: Sequence[str]) -> str:
    """The decoding checkpoints are scored with, for a run that evaluates ``decodings``:
    constrained (the one whose answers parse) when it is among them, else free."""
    return CONSTRAINED if CONSTRAINED in decodings else FREE


#: The decoding of the default run (``decoding: [free, constrained]``).
DEFAULT_DECODING = scoring_decoding(run_default("decoding"))


class CheckpointScore(BaseModel):
    """One checkpoint that can be served, with its validation figures once scored (strict,
    overall bucket)."""

    name: str  # "epoch-<n>"
    epoch: int
    uri: str
    val_loss: float | None = None
    metric: float | None = None
    tie_break: float | None = None
    rows: int = 0
    report: str = ""  # relative to the run folder
    settings: dict[str, Any] = Field(default_factory=dict)  # max_tokens, limit, decoding
    scored_at: str = ""

    @property
    def decoding(self) -> str | None:
        """The decoding this checkpoint was scored with (None: not scored; no record: free)."""
        return str(self.settings.get("decoding", FREE)) if self.report else None

    def made_with(self, settings: dict[str, Any]) -> bool:
        """Whether this score was made with ``settings`` (a record without a decoding was free)."""
        return {"decoding": FREE, **self.settings} == settings


class CheckpointChoice(BaseModel):
    """``checkpoints.json``: every scored checkpoint and which one notebook 04 serves, and why."""

    select_metric: str
    tie_break: str = TIE_BREAK
    split: str = "validation"
    mode: str = BEST  # the run's ``checkpoint`` key
    scores: list[CheckpointScore] = Field(default_factory=list)
    best: str | None = None  # the checkpoint ``select_metric`` picks
    chosen: str | None = None  # the checkpoint served (``best`` unless the key names another)
    chosen_uri: str | None = None
    reason: str = ""
    complete: bool = False

    def score(self, name: str) -> CheckpointScore | None:
        """The recorded score of checkpoint ``name``."""
        return next((s for s in self.scores if s.name == name), None)

    @property
    def decoding(self) -> str | None:
        """The decoding the checkpoints were scored with (None when none was scored)."""
        found = {s.decoding for s in self.scores if s.decoding is not None}
        return found.pop() if len(found) == 1 else None


def candidates(job: Job) -> list[CheckpointScore]:
    """The job's per-epoch checkpoints (not scored yet), first epoch first: ``job.checkpoints``,
    else the local layout under the output URI, else (only ``final`` kept) the final one."""
    ends = job.epoch_ends()
    losses = {e: float(p["val_loss"]) for e, p in ends.items() if p.get("val_loss") is not None}
    found: dict[int, str] = {}
    for record in job.checkpoints:
        if record.checkpoint_id == FINAL:  # a copy of the last epoch's (same epoch): no candidate
            continue
        match = EPOCH_NAME.match(record.checkpoint_id)
        epoch = int(match.group(1)) if record.epoch is None and match else record.epoch
        if epoch is not None and epoch >= 1 and record.uri:
            found[epoch] = record.uri
    output = str(job.spec.output_uri).rstrip("/")
    if not found and not output.startswith("gs://"):
        local = epoch_folders(Path(output) / CHECKPOINTS_DIR)
        found = {e: str(f) for e, f in local if (f / CHECKPOINT_MARKER).is_file()}
    if not found:
        final = job.checkpoint_uri or job.spec.checkpoint_uri()
        found[int(job.spec.epochs)] = str(final)
    return [
        CheckpointScore(name=f"epoch-{e}", epoch=e, uri=found[e], val_loss=losses.get(e))
        for e in sorted(found)
    ]


def strict_value(report: dict[str, Any], metric: str) -> float | None:
    """The strict overall figure of ``metric`` in a scorer report (None when absent)."""
    value = ((report.get("strict") or {}).get("overall") or {}).get(metric)
    return float(value) if isinstance(value, int | float) and not math.isnan(value) else None


def rank_key(score: CheckpointScore, metric: str) -> tuple[float, float, float, int]:
    """Sort key, larger is better: metric (sign-flipped when lower is better), tie-break metric,
    minus validation loss, epoch. A missing figure ranks last."""
    value = score.metric
    primary = -math.inf if value is None else (-value if metric in LOWER_IS_BETTER else value)
    tie = -math.inf if score.tie_break is None else score.tie_break
    loss = -math.inf if score.val_loss is None else -score.val_loss
    return (primary, tie, loss, score.epoch)


def pick(scores: Sequence[CheckpointScore], metric: str) -> CheckpointScore:
    """The best checkpoint by ``metric`` (strict), then ``tool_sequence_exact``, then validation
    loss, then the later epoch. InputError when there is nothing to pick from."""
    if not scores:
        raise InputError("no checkpoints to choose from")
    return max(scores, key=lambda s: rank_key(s, metric))


def _reason(best: CheckpointScore, scores: Sequence[CheckpointScore], metric: str) -> str:
    """Why ``best`` won, in one sentence (a figure not known says so)."""
    if len(scores) == 1:
        return f"{best.name} is the only checkpoint"
    runner = max((s for s in scores if s is not best), key=lambda s: rank_key(s, metric))
    key, runner_key = rank_key(best, metric), rank_key(runner, metric)
    if key[0] != runner_key[0]:
        why = f"lowest {metric}" if metric in LOWER_IS_BETTER else f"highest strict {metric}"
        versus = f"{spoken(best.metric)} vs {spoken(runner.metric)} for {runner.name}"
        return f"{best.name}: {why} on validation ({versus})"
    tied = f"{best.name}: ties on strict {metric}"
    if key[1] != runner_key[1]:
        versus = f"{spoken(best.tie_break)} vs {spoken(runner.tie_break)}"
        return f"{tied} ({spoken(best.metric)}); higher strict {TIE_BREAK} ({versus})"
    if key[2] != runner_key[2]:
        versus = f"{spoken(best.val_loss, 4)} vs {spoken(runner.val_loss, 4)}"
        return f"{tied} and {TIE_BREAK}; lower validation loss ({versus})"
    return f"{best.name}: ties on every figure; the later epoch"


def write_choice(run_dir: Path, choice: CheckpointChoice) -> Path:
    """Write the run's checkpoints.json (the one writer of it)."""
    return runfolder.write_record(Path(run_dir) / runfolder.CHECKPOINTS_FILE, choice)


def read_choice(run_dir: Path) -> CheckpointChoice | None:
    """The run's ``checkpoints.json``, or None when there is none yet."""
    file = Path(run_dir) / runfolder.CHECKPOINTS_FILE
    return runfolder.read_json(file, CheckpointChoice) if file.is_file() else None


def score_checkpoints(
    job: Job,
    validation: Path,
    run_dir: Path,
    scorer: Scorer,
    *,
    select_metric: str = DEFAULT_SELECT_METRIC,
    mode: str = BEST,
    settings: dict[str, Any] | None = None,
    out: Callable[[str], None] | None = None,
) -> CheckpointChoice:
    """Score every candidate of ``job`` not scored yet with the same ``settings`` (max tokens,
    row limit, ``decoding``: :data:`DEFAULT_DECODING` when absent; what the scorer decodes with),
    then pick; a job with a single checkpoint is not scored. The record is rewritten after each
    checkpoint, so Ctrl-C loses at most the checkpoint being scored; a complete record made the
    same way from the same checkpoints is returned as it is, unwritten."""
    run_dir = Path(run_dir)
    settings = {"decoding": DEFAULT_DECODING, **(settings or {})}
    decoding = settings["decoding"]
    if decoding not in (FREE, CONSTRAINED):
        raise InputError(f"decoding: {decoding!r} must be {FREE} or {CONSTRAINED}")
    previous = read_choice(run_dir)
    choice = CheckpointChoice(select_metric=select_metric, mode=mode)
    kept = {s.name: s for s in previous.scores} if previous else {}
    target = parse_checkpoint_key(mode)
    todo = candidates(job)
    if (
        previous is not None
        and previous.complete
        and (previous.mode, previous.select_metric) == (mode, select_metric)
        and [(s.name, s.uri) for s in previous.scores] == [(c.name, c.uri) for c in todo]
        and all(s.made_with(settings) for s in previous.scores)
    ):
        return previous  # chosen with these settings from these checkpoints: kept as written
    if len(todo) == 1 and target in (BEST, FINAL, todo[0].epoch):
        # One checkpoint: nothing to choose, so nothing is served or deployed to score it.
        only = todo[0].model_copy(update={"settings": settings, "scored_at": runfolder.now()})
        choice.scores = [only]
        why = f"{only.name} is the only checkpoint: nothing to choose, not scored"
        return _chose(run_dir, choice, only.name, only, why)
    for cand in todo:
        old = kept.get(cand.name)
        report: dict[str, Any] | None = None
        if old is not None and old.uri == cand.uri and old.made_with(settings):
            score = old.model_copy(update={"val_loss": cand.val_loss})
            with contextlib.suppress(OSError, ValueError):  # select_metric may have changed
                report = json.loads((run_dir / score.report).read_text(encoding="utf-8"))
        else:
            if out:
                out(f"scoring {cand.name} on {validation.name} ({decoding} decoding)")
            folder = f"{runfolder.CHECKPOINT_REPORTS_DIR}/{cand.name}"  # <name>/report.json
            report_rel = runfolder.decoding_report_file(folder, decoding)
            report = scorer(cand.uri, Path(validation), run_dir / report_rel, decoding)
            rows = int((report.get("config") or {}).get("total_samples") or 0)
            score = cand.model_copy(
                update={"rows": rows, "report": report_rel, "scored_at": runfolder.now()}
            )
        score.settings = settings
        if report is not None:
            score.metric = strict_value(report, select_metric)
            score.tie_break = strict_value(report, TIE_BREAK)
        choice.scores.append(score)
        write_choice(run_dir, choice)
    best = pick(choice.scores, select_metric)
    if target == BEST:
        why = f"{_reason(best, choice.scores, select_metric)}; scored with {decoding} decoding"
        return _chose(run_dir, choice, best.name, best, why)
    epoch = choice.scores[-1].epoch if target == FINAL else int(target)
    match = next((s for s in choice.scores if s.epoch == epoch), None)
    if match is None:
        names = ", ".join(s.name for s in choice.scores)
        raise InputError(f"checkpoint: {mode} is not among the job's checkpoints ({names})")
    why = f"{match.name}: named by checkpoint: {mode} (select_metric would pick {best.name})"
    return _chose(run_dir, choice, best.name, match, why)


def _chose(
    run_dir: Path, choice: CheckpointChoice, best: str, chosen: CheckpointScore, why: str
) -> CheckpointChoice:
    """``choice`` complete: ``best`` picked, ``chosen`` served, for the reason ``why``; written."""
    choice.best, choice.chosen, choice.chosen_uri = best, chosen.name, chosen.uri
    choice.reason, choice.complete = why, True
    write_choice(run_dir, choice)
    return choice


def scores_frame(choice: CheckpointChoice) -> pd.DataFrame:
    """A pandas table: one row per checkpoint, its figures and whether it is the pick."""
    import pandas as pd

    rows = [
        {
            "checkpoint": s.name,
            "epoch": s.epoch,
            "val_loss": s.val_loss,
            f"strict {choice.select_metric}": s.metric,
            f"strict {choice.tie_break}": s.tie_break,
            "rows": s.rows,
            "decoding": s.decoding,
            "best": s.name == choice.best,
            "served": s.name == choice.chosen,
            "why": choice.reason if s.name == choice.chosen else "",
        }
        for s in choice.scores
    ]
    return pd.DataFrame(rows).set_index("checkpoint") if rows else pd.DataFrame()


def predictor_scorer(
    serve: Callable[[str], Predictor],
    *,
    max_tokens: int,
    limit: int | None = None,
    thresholds: Any = None,
) -> Scorer:
    """Score each checkpoint through the predictor ``serve(uri)`` makes for it, closed as soon
    as the checkpoint is scored (also on errors), so at most one endpoint is ever up."""

    def score(uri: str, validation: Path, report_path: Path, decoding: str) -> dict[str, Any]:
        with contextlib.closing(serve(uri)) as predictor:
            return evaluate.evaluate(
                predictor,
                validation,
                out=report_path,
                thresholds=thresholds,
                max_tokens=max_tokens,
                limit=limit,
                constrained=decoding == CONSTRAINED,
                progress=False,
            )

    return score
