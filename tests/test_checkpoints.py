"""Choosing the checkpoint: every epoch checkpoint scored on validation, the pick is the best by
the recorded scores, scoring resumes without re-scoring, the run keys are checked; checkpoints
are scored with constrained decoding when the run evaluates it, and a change of decoding
re-scores them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from routerlib import checkpoints, metrics, runfolder
from routerlib.checkpoint_names import CHECKPOINT_MARKER, CHECKPOINTS_DIR
from routerlib.checkpoints import CheckpointScore, pick
from routerlib.config import load_config
from routerlib.errors import InputError
from routerlib.serving import factory
from routerlib.tuning.base import SUCCEEDED, Job, TuningSpec
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


def test_reason_says_unknown_for_a_figure_not_recorded() -> None:
    """A figure a checkpoint lacks reads "unknown" in the reason, never 0.000 (nor "–")."""
    scores = [_score("epoch-1", None, None, 0.1), _score("epoch-2", 0.25, 0.0, 3.0)]
    assert "(0.250 vs unknown for epoch-1)" in checkpoints._reason(
        scores[1], scores, "route_plan_exact"
    )
    scores = [_score("epoch-1", None, 0.5, 2.0), _score("epoch-2", None, 0.25, None)]
    reason = checkpoints._reason(scores[0], scores, "route_plan_exact")
    assert "ties on strict route_plan_exact (unknown)" in reason and "(0.500 vs 0.250)" in reason
    scores = [_score("epoch-1", 0.5, 0.5, 2.0), _score("epoch-2", 0.5, 0.5, None)]
    assert "(2.0000 vs unknown)" in checkpoints._reason(scores[0], scores, "route_plan_exact")


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
    root = out / CHECKPOINTS_DIR
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
    the rest with invalid text (``constrained[n]`` rows under constrained decoding, when given).
    Counts the checkpoints it scored and the decodings it was asked for."""

    def __init__(self, correct: dict[str, int], constrained: dict[str, int] | None = None) -> None:
        self.correct = correct
        self.constrained = constrained
        self.calls: list[str] = []
        self.decodings: list[str] = []

    def __call__(self, uri: str, validation: Path, report_path: Path, decoding: str) -> dict:
        name = Path(uri).name
        self.calls.append(name)
        self.decodings.append(decoding)
        correct = (
            self.constrained if decoding == "constrained" and self.constrained else self.correct
        )
        gold = [json.loads(line) for line in validation.read_text().splitlines() if line]
        report_path.parent.mkdir(parents=True, exist_ok=True)
        preds = report_path.with_name("predictions.jsonl")
        with open(preds, "w", encoding="utf-8") as handle:
            for i, row in enumerate(gold):
                text = row["completion"] if i < correct[name] else "{not json"
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
    record = json.loads((run / runfolder.CHECKPOINTS_FILE).read_text())
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

    def interrupted(uri: str, validation: Path, report: Path, decoding: str) -> dict:
        if Path(uri).name in stop_at:
            raise Interrupt
        return first(uri, validation, report, decoding)

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

    # Asked again the same way (notebook 04 after notebook 03), the record stays byte for byte.
    record = run / "checkpoints.json"
    before = (record.read_bytes(), record.stat().st_mtime_ns)
    same = checkpoints.score_checkpoints(
        job, validation, run, none, select_metric="json_valid", settings={"max_tokens": 9}
    )
    assert none.calls == [] and same.chosen == by_json.chosen
    assert (record.read_bytes(), record.stat().st_mtime_ns) == before


@pytest.mark.slow
def test_local_epoch_checkpoints_are_served_and_scored(tmp_path: Path) -> None:
    """The local path for real: a 2-epoch LoRA run of the embedded model, each epoch checkpoint
    served by serving/local.py and scored on validation rows, free and then constrained. Free
    answers of the tiny model do not parse; constrained ones all do (the schema reached the
    predictor), and the change of decoding scores every checkpoint again. Resumed scoring asks
    nothing."""
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
    scorer = checkpoints.predictor_scorer(
        lambda uri: factory.make("local-server", uri, concurrency=2), max_tokens=MAX_TOKENS, limit=2
    )
    calls: list[tuple[str, str]] = []

    def counted(uri: str, validation: Path, report: Path, decoding: str) -> dict:
        calls.append((Path(uri).name, decoding))
        return scorer(uri, validation, report, decoding)

    run = tmp_path / "run"
    valid: dict[str, list[float]] = {}
    for decoding in ("free", "constrained"):
        settings = {"max_tokens": MAX_TOKENS, "decoding": decoding}
        choice = checkpoints.score_checkpoints(job, val, run, counted, settings=settings)
        assert calls[-2:] == [("epoch-1", decoding), ("epoch-2", decoding)]
        assert choice.decoding == decoding and f"scored with {decoding} decoding" in choice.reason
        for score in choice.scores:
            report = json.loads((run / score.report).read_text())
            assert report["config"]["total_samples"] == 2 == score.rows
            assert report["generation"]["decoding"] == decoding == score.settings["decoding"]
            source = report["generation"]["source"].removesuffix("#constrained")
            assert source.startswith("checkpoint:") and source.endswith(score.name)
            assert score.val_loss is not None
            valid.setdefault(decoding, []).append(report["strict"]["overall"]["json_valid"])
        assert choice.chosen == pick(choice.scores, "route_plan_exact").name
    assert [s.report for s in choice.scores] == [
        f"eval/checkpoints/{name}/constrained/report.json" for name in ("epoch-1", "epoch-2")
    ]
    assert valid["constrained"] == [1.0, 1.0]  # every answer parses under the schema
    assert max(valid["free"]) < 1.0  # free decoding of the tiny model does not
    checkpoints.score_checkpoints(job, val, run, counted, settings=settings)
    assert len(calls) == 4  # resumed: nothing scored again


#: Enough generated tokens for the constrained decoder to close a whole object (it closes
#: early when the budget is short).
MAX_TOKENS = 200


def test_a_single_checkpoint_is_not_scored(tmp_path: Path, validation: Path) -> None:
    job = _job(tmp_path, 1, [1.0])
    scorer = FileScorer({"epoch-1": 4})
    choice = checkpoints.score_checkpoints(job, validation, tmp_path / "run", scorer)
    assert scorer.calls == [] and choice.chosen == "epoch-1" and choice.complete
    assert "only checkpoint" in choice.reason and choice.scores[0].metric is None


def test_checkpoints_are_scored_constrained_when_the_run_evaluates_it(tmp_path: Path) -> None:
    from routerlib.stages import run as run_stage
    from routerlib.stages import tune as tune_stage

    assert checkpoints.scoring_decoding(["free", "constrained"]) == "constrained"
    assert checkpoints.scoring_decoding(["constrained", "free"]) == "constrained"
    assert checkpoints.scoring_decoding(["free"]) == "free"
    assert checkpoints.DEFAULT_DECODING == "constrained"  # the default run scores both
    for overrides, decoding in [
        ({}, "constrained"),
        ({"decoding": ["free"]}, "free"),
        ({"constrained": False}, "free"),
        ({"constrained": True}, "constrained"),
        ({"decoding": ["constrained", "free"]}, "constrained"),
    ]:
        config = load_config("params/local.yaml", overrides)
        run = run_stage.Run(tmp_path, config, "params/local.yaml")
        assert tune_stage.checkpoint_settings(run) == {
            "max_tokens": config.max_tokens,
            "limit": config.select_limit,
            "decoding": decoding,
        }


def test_a_change_of_decoding_rescores_every_checkpoint(tmp_path: Path, validation: Path) -> None:
    # Free answers never parse, so free scores tie at 0 and the lowest validation loss (epoch-2)
    # wins; constrained scores rank epoch-3 first.
    job = _job(tmp_path, 3, [2.0, 1.0, 1.5])
    run = tmp_path / "run"
    answers = (
        {"epoch-1": 0, "epoch-2": 0, "epoch-3": 0},
        {"epoch-1": 1, "epoch-2": 1, "epoch-3": 3},
    )
    free = FileScorer(*answers)
    choice = checkpoints.score_checkpoints(
        job, validation, run, free, settings={"max_tokens": 9, "decoding": "free"}
    )
    assert free.decodings == ["free"] * 3 and choice.decoding == "free"
    assert choice.chosen == "epoch-2" and choice.reason.endswith("scored with free decoding")
    assert [s.report for s in choice.scores] == [
        f"eval/checkpoints/epoch-{e}/report.json" for e in (1, 2, 3)
    ]
    free_stamps = {s.name: (run / s.report).stat().st_mtime_ns for s in choice.scores}

    # A record written before the decoding was recorded was scored free: still reused as such.
    record = json.loads((run / runfolder.CHECKPOINTS_FILE).read_text())
    for entry in record["scores"]:
        del entry["settings"]["decoding"]
    (run / runfolder.CHECKPOINTS_FILE).write_text(json.dumps(record))
    reused = FileScorer(*answers)
    again = checkpoints.score_checkpoints(
        job, validation, run, reused, settings={"max_tokens": 9, "decoding": "free"}
    )
    assert reused.calls == [] and again.chosen == "epoch-2" and again.decoding == "free"

    # Now constrained (interrupted after epoch-1): every checkpoint is scored again, into its
    # own report, and the interrupted scoring resumes where it stopped.
    constrained = {"max_tokens": 9, "decoding": "constrained"}

    class Interrupt(Exception):
        pass

    first = FileScorer(*answers)

    def interrupted(uri: str, validation: Path, report: Path, decoding: str) -> dict:
        if Path(uri).name == "epoch-2":
            raise Interrupt
        return first(uri, validation, report, decoding)

    with pytest.raises(Interrupt):
        checkpoints.score_checkpoints(job, validation, run, interrupted, settings=constrained)
    assert first.calls == ["epoch-1"] and first.decodings == ["constrained"]
    rest = FileScorer(*answers)
    choice = checkpoints.score_checkpoints(job, validation, run, rest, settings=constrained)
    assert rest.calls == ["epoch-2", "epoch-3"] and rest.decodings == ["constrained"] * 2
    assert choice.chosen == "epoch-3" and choice.decoding == "constrained"
    assert "scored with constrained decoding" in choice.reason
    assert [s.metric for s in choice.scores] == [0.25, 0.25, 0.75]
    assert [s.report for s in choice.scores] == [
        f"eval/checkpoints/epoch-{e}/constrained/report.json" for e in (1, 2, 3)
    ]
    for name, stamp in free_stamps.items():  # the free reports stay as they were
        assert (run / f"eval/checkpoints/{name}/report.json").stat().st_mtime_ns == stamp
    frame = checkpoints.scores_frame(choice)
    assert list(frame["decoding"]) == ["constrained"] * 3


def test_notebook_04_rescores_a_choice_made_with_another_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """checkpoints.json scored free (by an older routerlib) is stale for a run that evaluates
    constrained decoding: serving the best checkpoint scores them again first."""
    from routerlib.stages import prepare as prepare_stage
    from routerlib.stages import run as run_stage
    from routerlib.stages import tune as tune_stage

    run = run_stage.open_run("params/local.yaml", str(tmp_path / "run"), {"synth_rows": 60})
    prepare_stage.prepared_manifest(run)
    job = _job(tmp_path, 3, [2.0, 1.0, 1.5])
    answers = (
        {"epoch-1": 0, "epoch-2": 0, "epoch-3": 0},
        {"epoch-1": 1, "epoch-2": 1, "epoch-3": 3},
    )
    scorer = FileScorer(*answers)
    monkeypatch.setattr(tune_stage, "_checkpoint_scorer", lambda run: scorer)
    old = {"max_tokens": run.config.max_tokens, "limit": run.config.select_limit}
    validation = run.sub("data/validation.jsonl")
    checkpoints.score_checkpoints(
        job, validation, run.path, scorer, settings={**old, "decoding": "free"}
    )
    record = json.loads((run.path / runfolder.CHECKPOINTS_FILE).read_text())
    for entry in record["scores"]:
        entry["settings"] = old  # as routerlib wrote it before the decoding was recorded
    (run.path / runfolder.CHECKPOINTS_FILE).write_text(json.dumps(record))
    # A free-only run would serve that record's pick as it is.
    free_run = run_stage.Run(
        run.path,
        load_config("params/local.yaml", {"synth_rows": 60, "decoding": ["free"]}),
        "params/local.yaml",
    )
    assert tune_stage.chosen_checkpoint(free_run, job).endswith("checkpoints/epoch-2")
    assert scorer.decodings == ["free"] * 3
    # This run evaluates constrained decoding: scored again, constrained, before serving.
    assert tune_stage.chosen_checkpoint(run, job).endswith("checkpoints/epoch-3")
    assert scorer.decodings == ["free"] * 3 + ["constrained"] * 3
    assert tune_stage.chosen_checkpoint(run, job).endswith("checkpoints/epoch-3")
    assert len(scorer.calls) == 6  # fresh now: not scored again


def test_checkpoint_table_reads_as_text() -> None:
    """Notebook 03's table: rounded figures, yes/no, and the missing-value marker for a
    checkpoint that was not scored (never a raw None)."""
    from routerlib import display
    from routerlib.stages import tune as tune_stage

    choice = checkpoints.CheckpointChoice(
        select_metric="route_plan_exact",
        scores=[
            checkpoints.CheckpointScore(name="epoch-1", epoch=1, uri="a", val_loss=7.24084),
            checkpoints.CheckpointScore(
                name="epoch-2",
                epoch=2,
                uri="b",
                val_loss=2.5,
                metric=0.25,
                tie_break=0.5,
                rows=4,
                report="eval/checkpoints/epoch-2/constrained/report.json",
                settings={"decoding": "constrained"},
            ),
        ],
        best="epoch-2",
        chosen="epoch-2",
    )
    table = tune_stage.checkpoint_table(choice)
    first, second = table.iloc[0], table.iloc[1]
    assert "None" not in table.to_string()
    assert first["val_loss"] == "7.241" and first["decoding"] == display.MISSING
    assert (second["decoding"], second["best"], second["served"]) == ("constrained", "yes", "yes")
    assert second["strict route_plan_exact"] == "0.250"
