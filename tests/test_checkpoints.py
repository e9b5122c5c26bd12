"""Choosing the checkpoint: every epoch checkpoint scored on validation, the pick is the best by
the recorded scores, scoring resumes without re-scoring, the run keys are checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from routerlib import checkpoints, metrics
from routerlib.checkpoints import CheckpointScore, pick
from routerlib.config import load_config
from routerlib.errors import InputError
from routerlib.tuning.base import SUCCEEDED, Job, TuningSpec
from routerlib.tuning.local import CHECKPOINT_MARKER
from tests.support.local_tuning_data import synthetic_splits


def _score(
    name: str, metric: float | None, tie: float | None, loss: float | None
) -> CheckpointScore:
    epoch = int(name.split("-")[1])
    return CheckpointScore(
        name=name, epoch=epoch, uri=f"/x/{name}", val_loss=loss, metric=metric, tie_break=tie
    )


def test_pick_metric_first_then_tool_sequence_then_loss_then_later_epoch() -> None:
    # the metric beats a lower loss
    scores = [_score("epoch-1", 0.5, 0.1, 2.0), _score("epoch-2", 0.4, 0.9, 1.0)]
    assert pick(scores, "route_plan_exact").name == "epoch-1"
    # a tie on the metric goes to the higher tool_sequence_exact
    scores = [_score("epoch-1", 0.5, 0.7, 1.0), _score("epoch-2", 0.5, 0.6, 0.5)]
    assert pick(scores, "route_plan_exact").name == "epoch-1"
    # then the lower validation loss, then the later epoch
    scores = [_score("epoch-1", 0.5, 0.6, 0.9), _score("epoch-2", 0.5, 0.6, 1.0)]
    assert pick(scores, "route_plan_exact").name == "epoch-1"
    scores = [_score("epoch-1", 0.0, 0.0, 1.0), _score("epoch-2", 0.0, 0.0, 1.0)]
    assert pick(scores, "route_plan_exact").name == "epoch-2"
    # a missing figure ranks last; a lower-is-better metric picks the smallest value
    scores = [_score("epoch-1", None, None, 0.1), _score("epoch-2", 0.0, 0.0, 3.0)]
    assert pick(scores, "route_plan_exact").name == "epoch-2"
    scores = [_score("epoch-1", 0.2, 0.0, 1.0), _score("epoch-2", 0.6, 0.0, 1.0)]
    assert pick(scores, "length_ratio_gt_1.1").name == "epoch-1"
    with pytest.raises(InputError):
        pick([], "route_plan_exact")


def test_run_keys_are_checked() -> None:
    config = load_config("params/local.yaml")
    assert (config.checkpoint, config.select_metric) == ("best", "route_plan_exact")
    with pytest.raises(InputError) as err:
        load_config(
            "params/local.yaml",
            {"checkpoint": "epoch-3", "select_metric": "length_ratio"},
        )
    lines = err.value.lines()
    assert any("checkpoint: epoch-3 is past the last epoch (2)" in ln for ln in lines)
    assert any(ln.startswith("params/local.yaml: select_metric: 'length_ratio'") for ln in lines)
    with pytest.raises(InputError) as err:
        load_config("params/local.yaml", {"checkpoint": "latest"})
    assert "checkpoint: 'latest' must be best, final or epoch-N" in err.value.lines()[0]
    assert load_config("params/local.yaml", {"checkpoint": "epoch-2"}).checkpoint == "epoch-2"


# ------------------------------------------------------------------ scoring from real files


def _job(tmp_path: Path, epochs: int, losses: list[float]) -> Job:
    out = tmp_path / "tuning"
    root = out / checkpoints.CHECKPOINTS_ROOT
    for epoch in range(1, epochs + 1):
        (root / f"epoch-{epoch}").mkdir(parents=True)
        (root / f"epoch-{epoch}" / CHECKPOINT_MARKER).write_text("{}")
    (root / "final").mkdir()
    (root / "final" / CHECKPOINT_MARKER).write_text("{}")
    spec = TuningSpec.build(
        base_model="routerlib/tiny-router-lm",
        training_dataset_uri=str(tmp_path / "train.jsonl"),
        output_uri=str(out),
        epochs=epochs,
    )
    curve = [{"epoch": 0, "step": 0, "val_loss": 9.0}] + [
        {"epoch": float(e + 1), "step": 10 * (e + 1), "val_loss": loss}
        for e, loss in enumerate(losses)
    ]
    return Job(
        name="local-test",
        backend="local",
        state=SUCCEEDED,
        spec=spec,
        checkpoint_uri=str(root / "final"),
        loss_curve=curve,
    )


class FileScorer:
    """Scores a checkpoint with metrics.score_files over predictions written for it: checkpoint
    ``epoch-n`` answers the first ``correct[n]`` validation rows with their gold completion and
    the rest with invalid text. Counts the checkpoints it scored."""

    def __init__(self, correct: dict[str, int]) -> None:
        self.correct = correct
        self.calls: list[str] = []

    def __call__(self, uri: str, validation: Path, report_path: Path) -> dict:
        name = Path(uri).name
        self.calls.append(name)
        gold = [json.loads(line) for line in validation.read_text().splitlines() if line]
        report_path.parent.mkdir(parents=True, exist_ok=True)
        preds = report_path.with_name("predictions.jsonl")
        with open(preds, "w", encoding="utf-8") as handle:
            for i, row in enumerate(gold):
                text = row["completion"] if i < self.correct[name] else "{not json"
                handle.write(json.dumps({"completion": text}) + "\n")
        return metrics.score_files(validation, preds, out_path=report_path)


@pytest.fixture()
def validation(tmp_path: Path) -> Path:
    _, val = synthetic_splits(tmp_path / "data", n_train=1, n_val=4)
    return val


def test_picked_checkpoint_is_the_best_by_the_recorded_scores(
    tmp_path: Path, validation: Path
) -> None:
    # epoch-2 has the lowest validation loss, epoch-1 the best routing plans on validation.
    job = _job(tmp_path, 3, [2.0, 1.0, 1.5])
    scorer = FileScorer({"epoch-1": 3, "epoch-2": 1, "epoch-3": 2})
    run = tmp_path / "run"
    choice = checkpoints.score_checkpoints(job, validation, run, scorer)
    assert scorer.calls == ["epoch-1", "epoch-2", "epoch-3"]  # final is a copy: not scored

    # Work the best out again from what is on disk: the record and each checkpoint's report.
    record = json.loads((run / checkpoints.CHECKPOINTS_FILE).read_text())
    figures = {}
    for entry in record["scores"]:
        report = json.loads((run / entry["report"]).read_text())
        strict = report["strict"]["overall"]
        assert entry["metric"] == strict["route_plan_exact"]
        figures[entry["name"]] = (strict["route_plan_exact"], strict["tool_sequence_exact"])
    best = max(figures, key=lambda n: figures[n])
    assert figures["epoch-1"] == (0.75, 0.75) and best == "epoch-1"
    assert record["chosen"] == record["best"] == best == choice.chosen
    assert record["chosen_uri"].endswith("checkpoints/epoch-1")
    assert "highest strict route_plan_exact" in record["reason"]
    assert [e["val_loss"] for e in record["scores"]] == [2.0, 1.0, 1.5]

    # checkpoint: final serves the last epoch, epoch-<n> that epoch; best is still recorded.
    final = checkpoints.score_checkpoints(job, validation, run, scorer, mode="final")
    assert (final.chosen, final.best) == ("epoch-3", "epoch-1")
    named = checkpoints.score_checkpoints(job, validation, run, scorer, mode="epoch-2")
    assert named.chosen == "epoch-2" and "select_metric would pick epoch-1" in named.reason
    assert scorer.calls == ["epoch-1", "epoch-2", "epoch-3"]  # nothing scored twice


def test_scoring_resumes_without_rescoring(tmp_path: Path, validation: Path) -> None:
    job = _job(tmp_path, 3, [2.0, 1.0, 1.5])
    run = tmp_path / "run"

    class Interrupt(Exception):
        pass

    first = FileScorer({"epoch-1": 1, "epoch-2": 2, "epoch-3": 4})
    stop_at = {"epoch-3"}

    def interrupted(uri: str, validation: Path, report: Path) -> dict:
        if Path(uri).name in stop_at:
            raise Interrupt
        return first(uri, validation, report)

    with pytest.raises(Interrupt):
        checkpoints.score_checkpoints(job, validation, run, interrupted)
    partial = checkpoints.read_choice(run)
    assert partial is not None and not partial.complete
    assert [s.name for s in partial.scores] == ["epoch-1", "epoch-2"]
    stamps = {s.name: (run / s.report).stat().st_mtime_ns for s in partial.scores}

    again = FileScorer({"epoch-1": 1, "epoch-2": 2, "epoch-3": 4})
    choice = checkpoints.score_checkpoints(job, validation, run, again)
    assert again.calls == ["epoch-3"]
    assert choice.complete and choice.chosen == "epoch-3"
    for name, stamp in stamps.items():
        assert (run / choice.score(name).report).stat().st_mtime_ns == stamp  # type: ignore[union-attr]

    # Other settings (more rows, longer generations) are a different scoring: done again.
    other = FileScorer({"epoch-1": 1, "epoch-2": 2, "epoch-3": 4})
    checkpoints.score_checkpoints(job, validation, run, other, settings={"max_tokens": 9})
    assert other.calls == ["epoch-1", "epoch-2", "epoch-3"]

    # A changed select_metric re-reads the saved reports instead of scoring again.
    none = FileScorer({})
    by_json = checkpoints.score_checkpoints(
        job, validation, run, none, select_metric="json_valid", settings={"max_tokens": 9}
    )
    assert none.calls == [] and [s.metric for s in by_json.scores] == [0.25, 0.5, 1.0]


@pytest.mark.slow
def test_local_epoch_checkpoints_are_served_and_scored(tmp_path: Path) -> None:
    """The local path for real: a 2-epoch LoRA run of the embedded model, each epoch checkpoint
    served by serving/local.py and scored on validation rows; resumed scoring asks nothing."""
    from routerlib.tuning.local import LocalBackend

    train, val = synthetic_splits(tmp_path / "data", n_train=8, n_val=2)
    spec = TuningSpec.build(
        base_model="routerlib/tiny-router-lm",
        training_dataset_uri=str(train),
        validation_dataset_uri=str(val),
        output_uri=str(tmp_path / "tuning"),
        adapter_size=4,
        epochs=2,
    )
    job = LocalBackend(batch_size=4, progress=False, max_train_tokens=320).submit(spec)
    assert job.state == SUCCEEDED
    scorer = checkpoints.local_scorer(max_tokens=12, limit=2, concurrency=2)
    calls: list[str] = []

    def counted(uri: str, validation: Path, report: Path) -> dict:
        calls.append(Path(uri).name)
        return scorer(uri, validation, report)

    run = tmp_path / "run"
    choice = checkpoints.score_checkpoints(job, val, run, counted, settings={"max_tokens": 12})
    assert calls == ["epoch-1", "epoch-2"]
    for score in choice.scores:
        report = json.loads((run / score.report).read_text())
        assert report["config"]["total_samples"] == 2 == score.rows
        assert report["generation"]["source"].startswith("checkpoint:")
        assert report["generation"]["source"].endswith(score.name)
        assert score.val_loss is not None
    assert choice.chosen == pick(choice.scores, "route_plan_exact").name
    checkpoints.score_checkpoints(job, val, run, counted, settings={"max_tokens": 12})
    assert calls == ["epoch-1", "epoch-2"]


def test_a_single_checkpoint_is_not_scored(tmp_path: Path, validation: Path) -> None:
    job = _job(tmp_path, 1, [1.0])
    scorer = FileScorer({"epoch-1": 4})
    choice = checkpoints.score_checkpoints(job, validation, tmp_path / "run", scorer)
    assert scorer.calls == [] and choice.chosen == "epoch-1" and choice.complete
    assert "only checkpoint" in choice.reason and choice.scores[0].metric is None
