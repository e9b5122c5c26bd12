# ruff: noqa: F811  (pytest fixtures imported from tests/support are redefined as arguments)
"""`routerlib tune` and `routerlib jobs` end to end: the CLI, the real SDKs and the stand-ins."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from routerlib import jobs
from routerlib.cli import main
from routerlib.config import run_default
from routerlib.tuning.base import DENIED, FAILED, PENDING, RUNNING, SPEC_LABEL, SUCCEEDED
from tests.support.fake_vertex import ALLOWLIST_MODEL, FakeVertex
from tests.support.tuning_env import TuningEnv, fake_vertex, gcs_emulator, tuning_env  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent


def _args(env: TuningEnv, *extra: str) -> list[str]:
    return [
        "tune",
        "--train-uri",
        env.train_uri,
        "--validation-uri",
        env.validation_uri,
        "--output-uri",
        env.output_uri,
        "--project",
        env.project,
        "--location",
        env.location,
        "--api-endpoint",
        env.api_endpoint,
        "--poll-interval",
        "0.01",
        *extra,
    ]


def test_tune_wait_success_sends_the_flags(
    tuning_env: TuningEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        _args(
            tuning_env,
            "--wait",
            "--adapter-size",
            "32",
            "--epochs",
            "2",
            "--learning-rate",
            "0.0003",
            "--display-name",
            "router-llama-full",
            "--labels",
            "team=router",
            "run=wire",
            "--custom-base",
            "gs://router-tuning-test/tuning/smoke/postprocess/node-0/checkpoints/final",
        )
    )
    out = capsys.readouterr().out
    assert code == 0, out
    (body,) = tuning_env.fake.create_bodies()
    assert body["baseModel"] == "meta/llama3_1@llama-3.1-8b-instruct"  # the seed's default
    assert body["supervisedTuningSpec"]["tuningMode"] == "TUNING_MODE_PEFT_ADAPTER"
    assert body["supervisedTuningSpec"]["hyperParameters"] == {
        "epochCount": 2,
        "adapterSize": "ADAPTER_SIZE_THIRTY_TWO",
        "learningRate": 0.0003,
    }
    assert body["supervisedTuningSpec"]["validationDatasetUri"] == tuning_env.validation_uri
    labels = body["labels"]
    assert labels.pop(SPEC_LABEL) == jobs.load_registry()[0].spec.spec_hash()
    assert labels == {"team": "router", "run": "wire"}
    assert body["customBaseModel"].endswith("/smoke/postprocess/node-0/checkpoints/final")
    assert body["tunedModelDisplayName"] == "router-llama-full"
    assert body["outputUri"] == tuning_env.output_uri
    assert "cost estimate:" in out and "state:       JOB_STATE_SUCCEEDED" in out
    assert "checkpoint:  " + tuning_env.output_uri + "/postprocess/node-0/checkpoints/final" in out


def test_tune_full_with_learning_rate(
    tuning_env: TuningEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    # Formerly sent --learning-rate-multiplier for an open model: Vertex takes learning_rate for
    # open models (the multiplier is Gemini-only), so preflight now refuses the multiplier.
    code = main(_args(tuning_env, "--tuning-mode", "FULL", "--learning-rate", "1e-5"))
    assert code == 0
    (body,) = tuning_env.fake.create_bodies()
    assert body["supervisedTuningSpec"]["tuningMode"] == "TUNING_MODE_FULL"
    assert body["supervisedTuningSpec"]["hyperParameters"] == {
        "epochCount": run_default("epochs"),  # the CLI's default is RunConfig's
        "learningRate": 1e-5,
    }
    out = capsys.readouterr().out
    assert "routerlib jobs wait projects/" in out  # without --wait it says how to follow the job


def test_failed_job_exits_nonzero_with_state_and_message(
    tuning_env: TuningEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    tuning_env.fake.progression = [PENDING, RUNNING, FAILED]
    code = main(_args(tuning_env, "--wait"))
    err = capsys.readouterr().err
    assert code == 3
    assert FAILED in err and "dataset row 17 exceeds 4096 tokens" in err
    assert "Traceback" not in err


def test_refusal_in_a_real_process_exits_nonzero_without_traceback(tuning_env: TuningEnv) -> None:
    argv = _args(tuning_env, "--base-model", ALLOWLIST_MODEL, "--wait")
    result = subprocess.run(
        [sys.executable, "-m", "routerlib", *argv],
        env=dict(os.environ),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 3, result.stderr
    assert "requires allowlist" in result.stderr
    assert "Traceback" not in result.stderr
    (recorded,) = jobs.load_registry()
    assert recorded.state == DENIED


def test_reattach_force_and_dry_run(
    tuning_env: TuningEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = tuning_env.fake
    assert main(_args(tuning_env, "--dry-run")) == 0
    assert fake.server.requests == []
    assert '"trainingDatasetUri": "' + tuning_env.train_uri in capsys.readouterr().out
    assert main(_args(tuning_env, "--wait")) == 0
    assert main(_args(tuning_env, "--wait")) == 0
    assert "re-attaching to" in capsys.readouterr().out
    assert len(fake.create_bodies()) == 1
    assert main(_args(tuning_env, "--force")) == 0
    assert len(fake.create_bodies()) == 2


def test_invalid_flags_fail_before_sending(
    tuning_env: TuningEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_args(tuning_env, "--adapter-size", "3")) == 2
    err = capsys.readouterr().err
    assert "adapter_size" in err and "one of (1, 4, 8, 16, 32)" in err and "Traceback" not in err
    assert main(_args(tuning_env, "--labels", "novalue")) == 2
    assert "--labels 'novalue': expected KEY=VALUE" in capsys.readouterr().err
    with pytest.raises(
        SystemExit
    ) as info:  # argparse: the two learning-rate flags exclude each other
        main(_args(tuning_env, "--learning-rate", "1e-4", "--learning-rate-multiplier", "2"))
    assert info.value.code == 2
    assert tuning_env.fake.server.requests == []


def test_jobs_commands(tuning_env: TuningEnv, capsys: pytest.CaptureFixture[str]) -> None:
    fake = tuning_env.fake
    fake.next_progressions = [[PENDING, RUNNING, RUNNING, SUCCEEDED], [PENDING, RUNNING, RUNNING]]
    assert main(_args(tuning_env)) == 0
    assert main(_args(tuning_env, "--epochs", "1")) == 0
    first, second = jobs.load_registry()
    capsys.readouterr()

    assert main(["jobs", "list"]) == 0
    table = capsys.readouterr().out
    assert table.startswith("Active Tuning Jobs")
    for header in ("JOB ID", "BASE MODEL", "TUNING MODE", "ADAPTER", "OUTPUT URI", "STATUS"):
        assert header in table
    assert first.name in table and "Running" in table  # full resource names

    assert main(["jobs", "wait", jobs.short_id(first.name), "--poll-interval", "0.01"]) == 0
    assert "JOB_STATE_SUCCEEDED" in capsys.readouterr().out
    assert main(["jobs", "show", first.name]) == 0
    shown = capsys.readouterr().out
    assert "statistics:  tuning_dataset_example_count=40" in shown

    assert main(["jobs", "cancel", second.name, "--poll-interval", "0.01"]) == 0
    assert "JOB_STATE_CANCELLED" in capsys.readouterr().out
    assert main(["jobs", "wait", second.name, "--poll-interval", "0.01"]) == 3
    assert "ended JOB_STATE_CANCELLED" in capsys.readouterr().err

    assert main(["jobs", "show", "no-such-job"]) == 2
    assert "no job 'no-such-job'" in capsys.readouterr().err


def test_jobs_list_with_api_down_exits_zero(
    gcs_emulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bucket = gcs_emulator.make_bucket("router-cli-down")
    train = tmp_path / "train.jsonl"
    train.write_text('{"prompt": "p", "completion": "c"}\n', encoding="utf-8")
    bucket.blob("train.jsonl").upload_from_filename(str(train))
    with FakeVertex() as fake:
        fake.progression = [PENDING, RUNNING]
        argv = [
            "tune",
            "--train-uri",
            "gs://router-cli-down/train.jsonl",
            "--output-uri",
            "gs://router-cli-down/out",
            "--project",
            "p",
            "--api-endpoint",
            fake.url,
        ]
        assert main(argv) == 0
    capsys.readouterr()
    assert main(["jobs", "list"]) == 0
    captured = capsys.readouterr()
    assert "API unreachable, showing recorded states" in captured.out
    assert "Pending" in captured.out
    assert SUCCEEDED not in captured.out


def test_ctrl_c_during_wait_leaves_the_job_running(tuning_env: TuningEnv) -> None:
    tuning_env.fake.progression = [PENDING, RUNNING]  # runs forever
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "routerlib", *_args(tuning_env, "--wait")],
        env=dict(os.environ),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # wait for the first progress line
            if "waited" in line:
                break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    (recorded,) = jobs.load_registry()
    assert proc.returncode == 130, err
    assert f"routerlib jobs wait {recorded.name}" in err
    assert "Traceback" not in err
    assert recorded.state == RUNNING
    assert tuning_env.fake.requests("POST", r":cancel$") == []
