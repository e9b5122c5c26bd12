"""Score a router against gold (docs/scoring.md): :func:`evaluate` asks any serving predictor for
every gold prompt through the resumable cache, writes the prediction file and scores it;
:func:`score_predictions` scores a prediction file that exists. Neither knows of clouds."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

from routerlib import metrics, runfolder
from routerlib.atomic import atomic_writer
from routerlib.config import run_default
from routerlib.errors import InputError, RouterlibError
from routerlib.extract import extract_json_object, split_thinking
from routerlib.progress import progress_bar
from routerlib.runfolder import PredictionRecord, write_records
from routerlib.serving.base import Completion, Failed, Predictor
from routerlib.serving.cache import CachingPredictor, load_cache, target_name


def read_gold_prompts(gold_path: str | os.PathLike[str], limit: int | None = None) -> list[str]:
    """The ``prompt`` of every gold line, in order (the first ``limit`` when given); every line
    is checked, also past ``limit``, and every bad one is named (``metrics.read_jsonl``)."""
    rows = metrics.read_jsonl(gold_path, "gold", metrics.prompt_problem)
    if not rows:
        raise InputError(f"{gold_path}: no gold rows")
    return [row["prompt"] for _, row in rows[:limit]]


def prediction_path_for(cache_path: str | os.PathLike[str]) -> Path:
    """``x.cache.jsonl`` → ``x.predictions.jsonl`` (else ``<cache stem>.predictions.jsonl``)."""
    cache = Path(cache_path)
    name = cache.name
    stem = name[: -len(".cache.jsonl")] if name.endswith(".cache.jsonl") else cache.stem
    return cache.with_name(f"{stem}.predictions.jsonl")


def prediction_record(index: int, rec: dict[str, Any]) -> dict[str, Any]:
    """One prediction-file line from an answer (a cache record, or a Completion as a dict): the
    extracted JSON text plus the raw text."""
    raw = rec["text"]
    obj, note = extract_json_object(raw)
    thinking, _ = split_thinking(raw)
    completion = json.dumps(obj, ensure_ascii=False) if obj is not None else raw
    out: dict[str, Any] = {"index": index, "completion": completion, "raw": raw, "extraction": note}
    out |= {k: rec.get(k) for k in ("latency_s", "prompt_tokens", "completion_tokens")}
    if rec.get("tokens_estimated"):
        out["tokens_estimated"] = True
    if thinking is not None:
        out["thinking"] = thinking  # dropped before extraction (Qwen 3 <think> block)
    return out


def generate_predictions(
    gold_path: str | os.PathLike[str],
    *,
    predictor: Predictor,
    cache_path: str | os.PathLike[str],
    max_tokens: int = run_default("max_tokens"),
    limit: int | None = None,
    constrained: bool = False,
    progress: bool = True,
    pred_path: str | os.PathLike[str] | None = None,
) -> Path:
    """Ask ``predictor`` for every gold prompt not yet in ``cache_path`` (each answer cached as
    it arrives); write the prediction file (default beside the cache, ``*.predictions.jsonl``,
    one line per gold row) and return it. A row still failing after the predictor's retries
    stops the run with a RemoteError; what arrived stays cached."""
    prompts = read_gold_prompts(gold_path, limit)
    cached = CachingPredictor(predictor, cache_path)
    answers: dict[int, Completion | Failed] = {}
    bar = progress_bar(progress, len(prompts), desc="predict", unit="row", dynamic_ncols=True)
    with contextlib.closing(bar):
        for chunk in cached.predict(
            dict(enumerate(prompts)),
            max_tokens=max_tokens,
            constrained=constrained,
            progress=progress,
        ):
            answers.update(chunk)
            bar.update(len(chunk))
    missing = [i for i in range(len(prompts)) if i not in answers]
    if missing:
        raise RouterlibError(f"{predictor.name} left {len(missing)} rows unanswered: {missing[:5]}")
    lines = [
        PredictionRecord(**prediction_record(i, vars(a)))
        if isinstance(a, Completion)  # else Failed: scored as an invalid prediction
        else PredictionRecord(
            index=i,
            completion=None,
            raw=None,
            extraction=f"batch error: {a.message}",
            batch_error=a.message,
        )
        for i, a in sorted(answers.items())
    ]
    out = Path(pred_path) if pred_path else prediction_path_for(cache_path)
    return write_records(out, lines)


def artifact_paths(out: str | os.PathLike[str]) -> dict[str, Path]:
    """Files written beside a report ``X.json``, by ``runfolder.report_artifact`` kind: cache,
    predictions, and the gold/pred/compare subsets of ``--limit``; ``report`` is X.json."""
    kinds = ("cache", "predictions", "gold", "pred", "compare")
    return {"report": Path(out)} | {kind: runfolder.report_artifact(out, kind) for kind in kinds}


def _subset(src: Path, dst: Path, limit: int | None, what: str) -> Path:
    """``src`` (InputError when missing), or with ``limit`` its first ``limit`` non-blank lines
    copied to ``dst`` (atomically)."""
    if not src.is_file():
        raise InputError(f"{src}: {what} file not found")
    if limit is None:
        return src
    with open(src, encoding="utf-8") as reader, atomic_writer(dst) as writer:
        lines = (line.rstrip("\n") + "\n" for line in reader if line.strip())
        writer.writelines(itertools.islice(lines, limit))
    return dst


def _inputs(
    gold: str | os.PathLike[str],
    out: str | os.PathLike[str],
    compare_to: str | os.PathLike[str] | None,
    limit: int | None,
) -> tuple[Path, Path | None, dict[str, Path]]:
    """The gold and previous-prediction files to score (their first ``limit`` rows, copied beside
    the report), and the report's artifact paths; checks they exist."""
    if limit is not None and limit < 1:
        raise InputError(f"--limit must be >= 1, got {limit}")
    paths = artifact_paths(out)
    gold_path = _subset(Path(gold), paths["gold"], limit, "gold")
    previous = None
    if compare_to is not None:
        what = "--compare-to prediction"
        previous = _subset(Path(compare_to), paths["compare"], limit, what)
    return gold_path, previous, paths


def score_predictions(
    gold: str | os.PathLike[str],
    pred: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str],
    thresholds: str | os.PathLike[str] | dict[str, Any] | None = None,
    compare_to: str | os.PathLike[str] | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """Score the prediction file ``pred`` against ``gold``; write the report to ``out`` (samples
    beside it) and return it. ``limit``: the first N rows of both (subset files beside)."""
    gold_path, previous, paths = _inputs(gold, out, compare_to, limit)
    pred_path = _subset(Path(pred), paths["pred"], limit, "prediction")
    return metrics.score_files(
        gold_path, pred_path, out_path=paths["report"], thresholds=thresholds, compare_to=previous
    )


def evaluate(
    predictor: Predictor,
    gold: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str],
    thresholds: str | os.PathLike[str] | dict[str, Any] | None = None,
    compare_to: str | os.PathLike[str] | None = None,
    max_tokens: int = run_default("max_tokens"),
    limit: int | None = None,
    constrained: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Predict every gold row with ``predictor`` (``constrained``: under the completion's
    generation JSON Schema), score the answers, write the report to ``out`` (with samples, cache
    and predictions beside it) and return it. ``limit`` scores the first N gold rows;
    ``compare_to`` adds the paired comparison with a previous router's prediction file."""
    gold_path, previous, paths = _inputs(gold, out, compare_to, limit)
    # Check everything scoring will read before spending time on generation.
    n_gold = len(metrics.load_gold(gold_path))
    if previous is not None:
        metrics.matching_predictions(gold_path, n_gold, previous, "--compare-to")
    if thresholds is not None and not isinstance(thresholds, dict):
        metrics.load_thresholds(thresholds)
    pred_path = generate_predictions(
        gold_path,
        predictor=predictor,
        cache_path=paths["cache"],
        pred_path=paths["predictions"],
        max_tokens=max_tokens,
        constrained=constrained,
        progress=progress,
    )
    report = metrics.score_files(
        gold_path, pred_path, out_path=paths["report"], thresholds=thresholds, compare_to=previous
    )
    # where the answers came from, how they were extracted (how often the JSON came wrapped),
    # how many attempts they took, and the backend
    notes = Counter(line.get("extraction", "") for _, line in metrics.read_jsonl(pred_path, "pred"))
    attempts = [int(rec.get("attempts", 1)) for rec in load_cache(paths["cache"]).values()]
    report["generation"] = {
        "source": target_name(predictor, constrained),
        "predictions_path": str(pred_path),
        "cache_path": str(paths["cache"]),
        "extraction": dict(sorted(notes.items())),
        "retried_rows": sum(1 for a in attempts if a > 1),
        "attempts_total": sum(attempts),
        "max_tokens": max_tokens,
        "decoding": "constrained" if constrained else "free",
        **predictor.describe(),
    }
    runfolder.write_report(paths["report"], report)
    return report
