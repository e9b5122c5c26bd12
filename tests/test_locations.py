"""Tuning and deploy locations are separate: tuning may run in ``global``, endpoints need a region."""

from __future__ import annotations

from pathlib import Path

import pytest

from routerlib.cli import main
from routerlib.config import load_config
from tests.support.vertex_params import EDITS

ROOT = Path(__file__).resolve().parent.parent


def test_deploy_refuses_global_before_anything_is_sent(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["deploy", "--checkpoint", "gs://b/t/postprocess/node-0/checkpoints/final"]
    assert main([*argv, "--project", "p", "--location", "global"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "endpoints live in a region, not global" in err[0]


def test_params_keep_tuning_and_deploy_locations_apart() -> None:
    gemma = load_config(ROOT / "params" / "gemma3_27b.yaml", EDITS)
    assert (gemma.location, gemma.deploy_location) == ("global", "us-central1")
    assert load_config().deploy_location == "us-central1"
    moved = load_config(
        ROOT / "params" / "qwen3_32b.yaml", {**EDITS, "deploy_location": "europe-west4"}
    )
    assert (moved.location, moved.deploy_location) == ("global", "europe-west4")
