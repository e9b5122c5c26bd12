# ruff: noqa: F811  (pytest fixtures imported from tests/support are redefined as arguments)
"""Each refusal Vertex would give, driven through `routerlib tune` (real SDKs, stand-ins on
127.0.0.1): preflight catches the ones the contract table knows before anything is sent (exit 2,
one line, nothing recorded), and the stand-in refuses the same request the way Vertex does. The
rest (credentials, quota, models the table does not know, lost answers) are handled as Vertex
answers them. A lost answer to a create ends with exactly one job."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from routerlib import jobs
from routerlib.cli import main
from routerlib.errors import InputError
from routerlib.tuning.base import (
    CANCELLING,
    DENIED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    UNKNOWN,
    SubmissionRefused,
    TuningSpec,
)
from routerlib.tuning.vertex import VertexBackend
from tests.support.tuning_env import (  # noqa: F401
    BUCKET,
    TuningEnv,
    fake_vertex,
    gcs_emulator,
    tuning_env,
)


def _args(env: TuningEnv, *extra: str, location: str | None = None) -> list[str]:
    return [
        "tune",
        "--train-uri",
        env.train_uri,
        "--output-uri",
        env.output_uri,
        "--project",
        env.project,
        "--location",
        location or env.location,
        "--api-endpoint",
        env.api_endpoint,
        "--poll-interval",
        "0.01",
        *extra,
    ]


def _spec_of(env: TuningEnv, extra: tuple[str, ...]) -> TuningSpec:
    """The spec the CLI builds for ``extra`` (to send it past preflight)."""
    fields: dict[str, object] = {}
    flags = dict(zip(extra[::2], extra[1::2], strict=True))
    if "--labels" in flags:
        key, _, value = flags["--labels"].partition("=")
        fields["labels"] = {key: value}
    names = {
        "--base-model": "base_model",
        "--learning-rate-multiplier": "learning_rate_multiplier",
        "--tuning-mode": "tuning_mode",
    }
    for flag, value in flags.items():
        if flag in names:
            fields[names[flag]] = float(value) if "rate" in flag else value
    return env.spec(validation_dataset_uri=None, **fields)


PREFLIGHT = [
    pytest.param(
        ("--base-model", "google/gemma3@gemma-3-27b-it", "--learning-rate-multiplier", "0.5"),
        None,
        "learning_rate_multiplier: Gemma 3 27B IT is an open model",
        "set learning_rate instead",
        id="multiplier-on-open-model",
    ),
    pytest.param(
        ("--base-model", "meta/llama3_1@llama-3.1-8b-instruct"),
        "asia-east1",
        "location: Llama 3.1 8B Instruct is not tuned in 'asia-east1'",
        "not supported in location asia-east1",
        id="region-not-offered",
    ),
    pytest.param(
        ("--labels", "Team=Router"),
        None,
        "labels: Team='Router': Vertex label keys and values",
        "Invalid label Team='Router'",
        id="label-not-lowercase",
    ),
    pytest.param(
        ("--base-model", "google/gemma-3-27b-it"),
        None,
        "current Vertex id is google/gemma3@gemma-3-27b-it",
        "Base model google/gemma-3-27b-it is not supported for tuning",
        id="renamed-model-id",
    ),
]


@pytest.mark.parametrize(("extra", "location", "ours", "theirs"), PREFLIGHT)
def test_preflight_refuses_first_and_the_stand_in_refuses_the_same(
    tuning_env: TuningEnv,
    capsys: pytest.CaptureFixture[str],
    extra: tuple[str, ...],
    location: str | None,
    ours: str,
    theirs: str,
) -> None:
    assert main(_args(tuning_env, *extra, location=location)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and ours in err[0] and "nothing was sent" in err[0]
    assert tuning_env.fake.server.requests == []  # nothing sent
    assert jobs.load_registry() == []  # nothing recorded
    # sent anyway (past preflight), Vertex's answer is a 400 INVALID_ARGUMENT saying the same
    backend = VertexBackend(
        tuning_env.project, location or tuning_env.location, tuning_env.api_endpoint
    )
    with pytest.raises(SubmissionRefused) as info:
        backend.submit(_spec_of(tuning_env, extra))
    assert (info.value.code, info.value.status) == (400, "INVALID_ARGUMENT")
    assert theirs in info.value.detail
    assert tuning_env.fake.tuning_jobs == {}


def test_strict_refuses_examples_over_the_sequence_limit(
    tuning_env: TuningEnv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    long_rows = tmp_path / "long.jsonl"
    row = {"prompt": "x" * (4096 * 4 + 40), "completion": "{}"}  # ~4,107 tokens > 4,096 (PEFT)
    long_rows.write_text(json.dumps(row) + "\n" + json.dumps(row) + "\n", encoding="utf-8")
    tuning_env.gcs.client().bucket(BUCKET).blob("data/long.jsonl").upload_from_filename(
        str(long_rows)
    )
    args = _args(tuning_env)
    args[args.index("--train-uri") + 1] = f"gs://{BUCKET}/data/long.jsonl"
    assert main([*args, "--strict"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "2 training example(s) exceed ~4096 tokens" in err[0]
    assert tuning_env.fake.server.requests == [] and jobs.load_registry() == []
    assert main(args) == 0  # without --strict: a warning, then the job
    assert "warning: 2 training example(s) exceed" in capsys.readouterr().out


def test_unknown_model_is_the_servers_call_and_recorded_denied(
    tuning_env: TuningEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_args(tuning_env, "--base-model", "meta/llama9@llama-9-1t")) == 3
    err = capsys.readouterr().err
    assert "INVALID_ARGUMENT" in err and "not supported for tuning" in err
    (record,) = jobs.load_registry()
    assert record.state == DENIED


def test_permission_denied_names_the_permission_and_records_nothing(
    tuning_env: TuningEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    tuning_env.fake.denied_permissions = {"aiplatform.tuningJobs.create"}
    assert main(_args(tuning_env)) == 3
    err = capsys.readouterr().err
    assert "aiplatform.tuningJobs.create" in err and "PERMISSION_DENIED" in err
    assert "DENIED" not in err.replace("PERMISSION_DENIED", "")
    assert jobs.load_registry() == []


def test_quota_stops_unless_asked_to_wait(
    tuning_env: TuningEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = tuning_env.fake
    fake.create_faults = ["429"]
    assert main(_args(tuning_env)) == 3
    assert "--wait-for-quota" in capsys.readouterr().err
    assert jobs.load_registry() == [] and fake.tuning_jobs == {}
    fake.create_faults = ["429", "429"]
    assert main(_args(tuning_env, "--wait-for-quota", "--quota-interval", "0.01")) == 0
    out = capsys.readouterr().out
    assert out.count("(--wait-for-quota)") == 2
    assert len(fake.create_bodies()) == 4 and len(fake.tuning_jobs) == 1
    assert [j.state for j in jobs.load_registry()] == [QUEUED]


@pytest.mark.parametrize("fault", ["drop", "500-created"])
def test_a_lost_answer_ends_with_exactly_one_job(
    tuning_env: TuningEnv, capsys: pytest.CaptureFixture[str], fault: str
) -> None:
    fake = tuning_env.fake
    fake.create_faults = [fault]  # the job is created, its answer never arrives
    assert main(_args(tuning_env)) == 3
    err = capsys.readouterr().err
    assert UNKNOWN in err and "do not pass --force" in err
    (unknown,) = jobs.load_registry()
    assert unknown.state == UNKNOWN
    (created,) = fake.tuning_jobs  # the server has the job
    # the rerun looks for it by the spec's label and re-attaches instead of creating another
    assert main(_args(tuning_env, "--wait")) == 0
    out = capsys.readouterr().out
    assert f"found {created}" in out and "re-attaching to" in out
    assert len(fake.create_bodies()) == 1 and len(fake.tuning_jobs) == 1
    (job,) = jobs.load_registry()
    assert job.name == created and job.state == SUCCEEDED


def test_jobs_list_resolves_an_unknown_submission(
    tuning_env: TuningEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    tuning_env.fake.create_faults = ["drop"]
    assert main(_args(tuning_env)) == 3
    assert main(["jobs", "list", "--no-refresh"]) == 0
    assert "*(unknown: create unanswered)*" in capsys.readouterr().out
    assert main(["jobs", "list"]) == 0
    out = capsys.readouterr().out
    (created,) = tuning_env.fake.tuning_jobs
    assert created in out and "unknown" not in out.split("Active Tuning Jobs")[1]
    assert [j.name for j in jobs.load_registry()] == [created]


def test_unanswered_create_that_made_no_job_is_replaced_by_the_new_one(
    tuning_env: TuningEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    tuning_env.fake.create_faults = ["503"]  # refused before creating anything
    assert main(_args(tuning_env)) == 3
    assert main(_args(tuning_env)) == 0  # looked for it by label, found none, created one
    assert len(tuning_env.fake.tuning_jobs) == 1
    (job,) = jobs.load_registry()
    assert job.state != UNKNOWN


def test_wait_and_show_display_sub_states_and_checkpoints(
    tuning_env: TuningEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    tuning_env.fake.progression = [
        f"{QUEUED}/TUNING_JOB_STATE_WAITING_FOR_QUOTA",
        f"{RUNNING}/TUNING_JOB_STATE_WAITING_FOR_CAPACITY",
        f"{RUNNING}/TUNING_JOB_STATE_TUNING",
        SUCCEEDED,
    ]
    assert main(_args(tuning_env, "--wait", "--epochs", "2")) == 0
    out = capsys.readouterr().out
    assert "RUNNING (waiting for capacity)" in out and "RUNNING (tuning)" in out
    (job,) = jobs.load_registry()
    assert main(["jobs", "show", job.name]) == 0
    shown = capsys.readouterr().out
    assert "checkpoints: ID" in shown
    for line in ("epoch-1     1      10", "epoch-2     2      20", "final       2      20"):
        assert line in shown
    assert tuning_env.output_uri + "/postprocess/node-0/checkpoints/final" in shown
    assert [c.checkpoint_id for c in jobs.find(job.name).checkpoints] == [
        "epoch-1",
        "epoch-2",
        "final",
    ]
    recorded = jobs.find(job.name)
    final = tuning_env.output_uri + "/postprocess/node-0/checkpoints/final"
    assert jobs.select_checkpoint(recorded, "final") == final
    # no checkpoint folders in the bucket: an epoch checkpoint has no URI to hand out
    with pytest.raises(InputError, match="epoch-1, epoch-2, final"):
        jobs.select_checkpoint(recorded, "epoch-1")


def test_show_reports_the_sub_state_of_a_running_job(
    tuning_env: TuningEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    tuning_env.fake.progression = [QUEUED, f"{RUNNING}/TUNING_JOB_STATE_PROCESSING_DATASET"]
    assert main(_args(tuning_env)) == 0
    (job,) = jobs.load_registry()
    capsys.readouterr()
    assert main(["jobs", "show", job.name]) == 0
    assert "JOB_STATE_RUNNING · TUNING_JOB_STATE_PROCESSING_DATASET" in capsys.readouterr().out


@pytest.mark.parametrize("outcome", ["JOB_STATE_CANCELLED", SUCCEEDED])
def test_cancel_waits_for_the_end_or_says_it_is_still_cancelling(
    tuning_env: TuningEnv, capsys: pytest.CaptureFixture[str], outcome: str
) -> None:
    fake = tuning_env.fake
    fake.progression = [QUEUED, RUNNING]
    fake.cancel_outcome = outcome
    fake.cancel_steps = 3
    assert main(_args(tuning_env)) == 0
    (job,) = jobs.load_registry()
    capsys.readouterr()
    assert main(["jobs", "cancel", job.name, "--wait-seconds", "0"]) == 0
    out = capsys.readouterr().out
    assert "still CANCELLING" in out and "may still end SUCCEEDED or FAILED" in out
    assert jobs.find(job.name).state == CANCELLING
    args = ["jobs", "cancel", job.name, "--wait-seconds", "30", "--poll-interval", "0.01"]
    # a second cancel of a CANCELLING job asks again (Vertex accepts it) and waits for the end
    assert main(args) == 0
    assert f"it ended {outcome}" in capsys.readouterr().out
    assert jobs.find(job.name).state == outcome


def test_jobs_list_markdown_is_the_seed_table(
    tuning_env: TuningEnv, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = tuning_env.fake
    fake.progression = [QUEUED, RUNNING]
    assert main(_args(tuning_env)) == 0
    assert main(_args(tuning_env, "--base-model", "qwen/qwen3@qwen3-30b-a3b-instruct-2507")) == 3
    capsys.readouterr()
    assert main(["jobs", "list", "--format", "markdown"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    running, denied = jobs.load_registry()
    assert lines[:4] == [
        "Active Tuning Jobs",
        "------------------",
        "| Vertex Job ID | Base model | Tuning mode | Adapter size | Output URI | Status |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    assert lines[4] == (
        f"| `{running.name}` | `meta/llama3_1@llama-3.1-8b-instruct` | PEFT | 16 | "
        f"`{tuning_env.output_uri}` | Running |"
    )
    assert lines[5].startswith(
        "| *(pending allowlist)* | `qwen/qwen3@qwen3-30b-a3b-instruct-2507` | PEFT | 16 | "
    )
    assert lines[5].endswith(f"| Denied – {denied.error} |")
    assert running.name.startswith(f"projects/{tuning_env.project}/locations/")


def test_ctrl_c_during_the_create_records_unknown_and_the_rerun_finds_the_job(
    tuning_env: TuningEnv,
) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    fake = tuning_env.fake
    fake.create_faults = ["hang"]  # the job exists; its answer is late
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen(
        [sys.executable, "-m", "routerlib", *_args(tuning_env)],
        env=dict(os.environ),
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not fake.tuning_jobs and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fake.tuning_jobs, "the create never arrived"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert UNKNOWN in err and "Traceback" not in err
    (unknown,) = jobs.load_registry()
    assert unknown.state == UNKNOWN
    assert main(_args(tuning_env)) == 0  # re-attaches by label: no second job
    (created,) = fake.tuning_jobs
    assert len(fake.create_bodies()) == 1
    assert [j.name for j in jobs.load_registry()] == [created]
