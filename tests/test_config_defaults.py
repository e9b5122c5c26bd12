"""RunConfig is the one home of a run setting's default: every CLI flag and function signature that
takes the same setting defaults to RunConfig's value, and the help texts print that value."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

import pytest

from routerlib import baselines, checkpoints, dataset, evaluate
from routerlib.cli import build_parser
from routerlib.config import RunConfig, run_default
from routerlib.serving.online import OnlinePredictor
from routerlib.tuning import vertex as tuning_vertex
from routerlib.tuning.base import TuningSpec
from routerlib.tuning.local import LocalBackend

#: (function, its parameter, the RunConfig key it takes).
SIGNATURES: list[tuple[Callable[..., Any], str, str]] = [
    (evaluate.generate_predictions, "max_tokens", "max_tokens"),
    (evaluate.evaluate, "max_tokens", "max_tokens"),
    (OnlinePredictor, "concurrency", "concurrency"),
    (checkpoints.score_checkpoints, "select_metric", "select_metric"),
    (dataset.prepare, "val_ratio", "val_ratio"),
    (dataset.prepare, "test_ratio", "test_ratio"),
    (dataset.prepare, "seed", "seed"),
    (dataset.prepare, "base_model", "base_model"),
    (dataset.prepare, "tuning_mode", "tuning_mode"),
    (dataset.prepare, "data_format", "data_format"),
    (baselines.write_baseline, "kind", "baseline"),
]

#: (subcommand path, option dest, the RunConfig key it takes).
FLAGS = [
    (("evaluate",), "max_tokens", "max_tokens"),
    (("evaluate",), "concurrency", "concurrency"),
    (("baseline",), "kind", "baseline"),
    (("prepare",), "val_ratio", "val_ratio"),
    (("prepare",), "test_ratio", "test_ratio"),
    (("prepare",), "seed", "seed"),
    (("prepare",), "base_model", "base_model"),
    (("prepare",), "tuning_mode", "tuning_mode"),
    (("prepare",), "data_format", "data_format"),
    (("tune",), "epochs", "epochs"),
    (("tune",), "tuning_mode", "tuning_mode"),
]


def _subparser(path: tuple[str, ...]) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in path:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


@pytest.mark.parametrize(
    ("func", "param", "key"), SIGNATURES, ids=lambda v: getattr(v, "__name__", v)
)
def test_signature_defaults_are_runconfigs(func: Callable[..., Any], param: str, key: str) -> None:
    assert inspect.signature(func).parameters[param].default == RunConfig().model_dump()[key]


@pytest.mark.parametrize(
    ("path", "dest", "key"), FLAGS, ids=lambda v: "-".join(v) if isinstance(v, tuple) else v
)
def test_cli_defaults_are_runconfigs_and_help_says_so(
    path: tuple[str, ...], dest: str, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    parser = _subparser(path)
    (action,) = [a for a in parser._actions if a.dest == dest]
    expected = RunConfig().model_dump()[key]
    assert action.default == expected
    if action.help and "default" in action.help:  # a help that names a default names this one
        assert str(expected) in action.help


def test_the_help_of_evaluate_prints_runconfigs_max_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    text = _subparser(("evaluate",)).format_help()
    assert f"generation limit per row (default {RunConfig().max_tokens})" in text
    assert f"requests in flight (default {RunConfig().concurrency})" in text


def test_tuning_spec_and_backends_default_to_runconfig() -> None:
    defaults = RunConfig()
    spec = TuningSpec.build(training_dataset_uri="t.jsonl", output_uri="o")
    assert (spec.epochs, spec.adapter_size, spec.tuning_mode) == (
        defaults.epochs,
        defaults.adapter_size,
        defaults.tuning_mode,
    )
    fields = {f.name: f.default for f in dataclasses.fields(LocalBackend)}
    assert fields["batch_size"] == defaults.batch_size
    assert fields["max_train_tokens"] == defaults.max_train_tokens
    assert inspect.signature(OnlinePredictor).parameters["concurrency"].default == (
        defaults.concurrency
    )
    assert checkpoints.DEFAULT_SELECT_METRIC == defaults.select_metric
    assert tuning_vertex.DEFAULT_LOCATION == defaults.location


def test_the_tune_location_default_is_runconfigs_without_the_region_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GOOGLE_CLOUD_REGION", raising=False)
    (action,) = [a for a in _subparser(("tune",))._actions if a.dest == "location"]
    assert action.default == RunConfig().location


def test_run_default_is_the_field_default_and_refuses_unknown_keys() -> None:
    assert run_default("decoding") == RunConfig().decoding
    assert run_default("decoding") is not run_default("decoding")  # a fresh list each time
    with pytest.raises(KeyError):
        run_default("max_tokenz")
