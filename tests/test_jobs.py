# ruff: noqa: F811  (pytest fixtures imported from tests/support are redefined as arguments)
"""The registry and jobs.tune against gcp-storage-emulator + the Vertex stand-in (real SDKs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from routerlib import jobs, pricing
from routerlib.config import run_default
from routerlib.errors import InputError, RemoteError
from routerlib.tuning.base import DENIED, EXPIRED, FAILED, PENDING, RUNNING, SUCCEEDED, Job
from tests.support.fake_vertex import ALLOWLIST_MODEL, FakeVertex
from tests.support.tuning_env import (  # noqa: F401
    TuningEnv,
    fake_vertex,
    gcs_emulator,
    tuning_env,
    write_examples,
)

ROOT = Path(__file__).resolve().parent.parent


class Lines(list):
    """An ``out`` callback collecting printed lines."""

    def __call__(self, line: str) -> None:
        self.append(line)

    @property
    def text(self) -> str:
        return "\n".join(self)


def _tune(env: TuningEnv, spec=None, **kwargs):  # type: ignore[no-untyped-def]
    out = kwargs.pop("out", Lines())
    job = jobs.tune(
        spec or env.spec(),
        poll_interval=0.01,
        out=out,
        **env.backend_kwargs(),
        **kwargs,
    )
    return job, out


def test_wait_to_success_records_stats_checkpoint_and_estimate(tuning_env: TuningEnv) -> None:
    job, out = _tune(tuning_env)
    assert job.state == SUCCEEDED
    checkpoint = tuning_env.output_uri + "/postprocess/node-0/checkpoints/final"
    assert job.checkpoint_uri == checkpoint
    # the estimate: 12 examples of the fixture, default table price for Llama 3.1 8B, tokens from
    # the model's billed tokens per character under the spec's mode
    estimate = pricing.estimate(
        job.spec.base_model, tuning_env.train_uri, 1, tuning_mode=job.spec.tuning_mode
    )
    examples, tokens = estimate.examples, estimate.tokens
    assert examples == 12
    price = pricing.load_pricing().price(job.spec.base_model)
    epochs = run_default("epochs")  # the spec's default epoch count is RunConfig's
    assert job.cost_estimate_usd == pytest.approx(tokens * epochs * price / 1e6)
    assert out[0].startswith(f"cost estimate: 12 examples, ~{tokens:,} tokens x {epochs} epoch(s)")
    assert any("RUNNING" in line and "waited" in line for line in out)
    # the registry holds the finished job with its statistics
    (recorded,) = jobs.load_registry()
    assert recorded.name == job.name and recorded.state == SUCCEEDED
    assert recorded.tuning_data_stats["tuning_dataset_example_count"] == 40
    assert recorded.tuning_data_stats["total_billable_token_count"] == 61234
    assert recorded.tuning_data_stats["tuning_step_count"] == 30
    assert recorded.checkpoint_uri == checkpoint
    assert (recorded.project, recorded.location) == (tuning_env.project, tuning_env.location)
    assert recorded.api_endpoint == tuning_env.fake.url
    assert len(tuning_env.fake.create_bodies()) == 1


@pytest.mark.parametrize(
    ("end", "message"),
    [(FAILED, "dataset row 17 exceeds 4096 tokens"), (EXPIRED, "waited too long for capacity")],
)
def test_unsuccessful_end_raises_with_state_and_message(
    tuning_env: TuningEnv, end: str, message: str
) -> None:
    tuning_env.fake.progression = [PENDING, RUNNING, end]
    with pytest.raises(RemoteError) as info:
        _tune(tuning_env)
    assert end in str(info.value) and message in str(info.value)
    (recorded,) = jobs.load_registry()
    assert recorded.state == end and message in (recorded.error or "")


def test_refusal_is_recorded_as_denied_with_the_server_message(tuning_env: TuningEnv) -> None:
    spec = tuning_env.spec(base_model=ALLOWLIST_MODEL)
    with pytest.raises(RemoteError, match="requires allowlist") as info:
        _tune(tuning_env, spec)
    assert DENIED in str(info.value)
    (recorded,) = jobs.load_registry()
    assert recorded.state == DENIED
    assert "requires allowlist" in (recorded.error or "")
    assert recorded.spec.base_model == ALLOWLIST_MODEL
    table = jobs.jobs_table(jobs.list_jobs(out=Lines()))
    assert "*(pending allowlist)*" in table and "Denied – Base model" in table
    # a refused spec is not re-attached: submitting again asks the server again
    with pytest.raises(RemoteError):
        _tune(tuning_env, spec)
    assert len(tuning_env.fake.create_bodies()) == 2


def test_same_spec_reattaches_and_force_submits_again(tuning_env: TuningEnv) -> None:
    fake = tuning_env.fake
    fake.progression = [PENDING, RUNNING, RUNNING, RUNNING, RUNNING, SUCCEEDED]
    first, _ = _tune(tuning_env, wait=False)
    assert first.state == PENDING
    again, out = _tune(tuning_env, wait=False)
    assert again.name == first.name
    assert "re-attaching to " + first.name in out.text
    assert len(fake.create_bodies()) == 1
    # waiting on the re-attached job follows the same job to its end
    done, _ = _tune(tuning_env)
    assert done.name == first.name and done.state == SUCCEEDED
    assert len(fake.create_bodies()) == 1
    # succeeded still re-attaches (no duplicate run) ...
    assert _tune(tuning_env)[0].name == first.name
    assert len(fake.create_bodies()) == 1
    # ... unless forced; a different spec is a different job
    forced, _ = _tune(tuning_env, force=True)
    assert forced.name != first.name
    other, _ = _tune(tuning_env, tuning_env.spec(epochs=1))
    assert other.name not in {first.name, forced.name}
    assert len(fake.create_bodies()) == 3
    assert len(jobs.load_registry()) == 3


def test_dry_run_sends_nothing_and_prints_the_request(tuning_env: TuningEnv) -> None:
    job, out = _tune(tuning_env, dry_run=True)
    assert job.state == jobs.DRY_RUN
    assert tuning_env.fake.server.requests == []
    assert jobs.load_registry() == []
    printed = json.loads(out.text[out.text.index("{") :])
    assert printed["method"] == "POST"
    assert printed["body"]["supervisedTuningSpec"]["trainingDatasetUri"] == tuning_env.train_uri
    assert out[0].startswith("cost estimate:")


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"adapter_size": 3}, "one of (1, 4, 8, 16, 32)"),
        ({"tuning_mode": "FULL"}, "adapter_size applies to PEFT_ADAPTER only"),
        ({"learning_rate": 1e-4, "learning_rate_multiplier": 2.0}, "exclusive"),
        ({"training_dataset_uri": "gs://router-tuning-test/data/missing.jsonl"}, "does not exist"),
        ({"output_uri": "/tmp/local-folder"}, "must be a gs:// URI"),
        ({"base_model": "routerlib/tiny-router-lm"}, "embedded local model"),
    ],
)
def test_invalid_specs_fail_before_anything_is_sent(
    tuning_env: TuningEnv, fields: dict, expected: str
) -> None:
    spec = {
        "training_dataset_uri": tuning_env.train_uri,
        "output_uri": tuning_env.output_uri,
        **fields,
    }
    with pytest.raises(InputError) as info:
        jobs.tune(spec, backend="vertex", out=Lines(), **tuning_env.backend_kwargs())
    assert expected in "\n".join(info.value.lines())
    assert tuning_env.fake.server.requests == []
    assert jobs.load_registry() == []


def test_bad_training_line_names_file_and_line(tuning_env: TuningEnv, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "completion": "c"}\n{"prompt": 3}\n', encoding="utf-8")
    tuning_env.gcs.client().bucket("router-tuning-test").blob(
        "data/bad.jsonl"
    ).upload_from_filename(str(bad))
    uri = "gs://router-tuning-test/data/bad.jsonl"
    # no validation file: the fixture's would be 10x this training file, which preflight refuses
    spec = tuning_env.spec(training_dataset_uri=uri, validation_dataset_uri=None)
    with pytest.raises(InputError, match=f"{uri}:2: prompt: must be a string"):
        _tune(tuning_env, spec)
    assert tuning_env.fake.server.requests == []


def test_ctrl_c_while_waiting_leaves_the_job_and_says_how_to_reattach(
    tuning_env: TuningEnv,
) -> None:
    tuning_env.fake.progression = [PENDING, RUNNING, RUNNING, SUCCEEDED]

    def interrupt(line: str) -> None:
        if "waited" in line:
            raise KeyboardInterrupt

    with pytest.raises(jobs.WaitInterrupted) as info:
        _tune(tuning_env, out=interrupt)
    (recorded,) = jobs.load_registry()
    assert recorded.state == RUNNING
    assert f"routerlib jobs wait {recorded.name}" in str(info.value)
    assert info.value.exit_code != 0
    # re-attaching by id later follows it to the end
    done = jobs.wait(jobs.short_id(recorded.name), poll_interval=0.01, out=Lines())
    assert done.state == SUCCEEDED and done.checkpoint_uri


def test_list_with_api_down_shows_recorded_states(tmp_path: Path, gcs_emulator) -> None:
    bucket = gcs_emulator.make_bucket("router-down")
    local = write_examples(tmp_path / "train.jsonl", 4)
    bucket.blob("train.jsonl").upload_from_filename(str(local))
    with FakeVertex() as fake:
        fake.progression = [PENDING, RUNNING, RUNNING]
        job = jobs.tune(
            {
                "training_dataset_uri": "gs://router-down/train.jsonl",
                "output_uri": "gs://router-down/out",
            },
            wait=False,
            project="p",
            location="us-central1",
            api_endpoint=fake.url,
            out=Lines(),
        )
        assert jobs.list_jobs(out=Lines())[0].state == RUNNING  # refreshed while up
    out = Lines()
    listed = jobs.list_jobs(out=out)  # the server is gone now
    assert [j.name for j in listed] == [job.name]
    assert listed[0].state == RUNNING
    assert "API unreachable, showing recorded states" in out.text
    assert "Running" in jobs.jobs_table(listed)


def test_cancel_records_cancelled(tuning_env: TuningEnv) -> None:
    tuning_env.fake.progression = [PENDING, RUNNING, RUNNING, RUNNING]
    job, _ = _tune(tuning_env, wait=False)
    cancelled = jobs.cancel(job.name, out=Lines(), poll_interval=0.01)
    assert cancelled.state == "JOB_STATE_CANCELLED"
    assert jobs.find(job.name).state == "JOB_STATE_CANCELLED"
    with pytest.raises(RemoteError, match="CANCELLED"):
        jobs.wait(job.name, poll_interval=0.01, out=Lines())


def test_registry_survives_a_crash_mid_write() -> None:
    spec = {"training_dataset_uri": "gs://b/t.jsonl", "output_uri": "gs://b/o"}
    jobs.record(
        Job(name="projects/p/locations/l/tuningJobs/1", backend="vertex", state=RUNNING, spec=spec)
    )
    before = jobs.REGISTRY.path().read_bytes()
    script = textwrap.dedent(
        """
        import os
        from routerlib import atomic, jobs
        from routerlib.tuning.base import Job

        def die(fd):  # the process dies after writing the temp file, before the rename
            os._exit(9)

        atomic.os.fsync = die
        spec = {"training_dataset_uri": "gs://b/t.jsonl", "output_uri": "gs://b/o"}
        jobs.record(Job(name="projects/p/locations/l/tuningJobs/2", backend="vertex",
                        state="JOB_STATE_PENDING", spec=spec))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], env=dict(os.environ), cwd=ROOT, check=False
    )
    assert result.returncode == 9
    assert jobs.REGISTRY.path().read_bytes() == before
    assert [j.name for j in jobs.load_registry()] == ["projects/p/locations/l/tuningJobs/1"]
    # the next write works and keeps the earlier record
    jobs.record(
        Job(name="projects/p/locations/l/tuningJobs/3", backend="vertex", state=PENDING, spec=spec)
    )
    assert len(jobs.load_registry()) == 2


def test_corrupt_registry_is_a_clear_input_error() -> None:
    path = jobs.REGISTRY.path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(InputError, match="not a routerlib job registry"):
        jobs.load_registry()


def test_forced_submit_checks_the_registry_before_creating_a_job(tuning_env: TuningEnv) -> None:
    """Even with force (no re-attach lookup), a registry the job could not be recorded in is
    refused before the create request, so no billed job goes unrecorded."""
    path = jobs.REGISTRY.path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(InputError, match="not a routerlib job registry"):
        _tune(tuning_env, force=True)
    assert tuning_env.fake.create_bodies() == []


def test_pricing_table_validates_and_estimates(tmp_path: Path) -> None:
    table = pricing.load_pricing(ROOT / "routerlib" / "data" / "pricing.yaml")
    assert table.price("routerlib/tiny-router-lm") == 0.0
    assert table.price("meta/llama3_1@llama-3.1-8b-instruct") is not None
    bad = tmp_path / "pricing.yaml"
    bad.write_text("date: 2026-11-25\nsource: x\nmodels:\n  m:\n    usd: 3\n", encoding="utf-8")
    with pytest.raises(InputError) as info:
        pricing.load_pricing(bad)
    text = "\n".join(info.value.lines())
    assert f"{bad}: models.m.usd: unknown key" in text
    assert f"{bad}: models.m.usd_per_million_training_tokens: Field required" in text
    train = write_examples(tmp_path / "train.jsonl", 10)
    estimate = pricing.estimate(
        "m",
        train,
        2,
        table=pricing.PricingTable(
            date="2026-01-01",
            source="test",
            models={"m": {"usd_per_million_training_tokens": 1000}},
        ),
    )
    assert estimate.examples == 10
    assert estimate.usd == pytest.approx(estimate.tokens * 2 * 1000 / 1e6)
    unknown = pricing.estimate("other", train, 1, table=table)
    assert unknown.usd is None and "no price for other" in unknown.line()


def test_local_backend_checks_and_dry_run(tmp_path: Path) -> None:
    train = write_examples(tmp_path / "train.jsonl", 5)
    out = Lines()
    job = jobs.tune(
        {
            "training_dataset_uri": str(train),
            "output_uri": str(tmp_path / "out"),
            "base_model": "routerlib/tiny-router-lm",
        },
        dry_run=True,
        out=out,
    )
    assert job.backend == "local" and job.state == jobs.DRY_RUN
    assert "cost estimate: 5 examples" in out[0] and "$0/M = ~$0.00" in out[0]
    assert not (tmp_path / "out").exists()
    with pytest.raises(InputError) as info:
        jobs.tune(
            {"training_dataset_uri": str(train), "output_uri": "gs://bkt/out"},
            backend="local",
            out=Lines(),
        )
    assert "output_uri: 'gs://bkt/out': the local backend reads and writes local paths" in (
        "\n".join(info.value.lines())
    )
    with pytest.raises(InputError) as info:
        jobs.tune(
            {"training_dataset_uri": str(tmp_path / "nope.jsonl"), "output_uri": str(tmp_path)},
            out=Lines(),
        )
    assert "nope.jsonl does not exist" in "\n".join(info.value.lines())
    assert jobs.load_registry() == []


def test_wait_rides_out_service_blips_but_not_a_long_outage(tuning_env: TuningEnv) -> None:
    fake = tuning_env.fake
    fake.progression = [PENDING, RUNNING, SUCCEEDED]
    fake.get_failures = [503, 503]
    job, out = _tune(tuning_env)
    assert job.state == SUCCEEDED
    assert sum("(retrying)" in line for line in out) == 2
    fake.progression = [PENDING, RUNNING, RUNNING]
    fake.get_failures = [503] * 5
    with pytest.raises(RemoteError) as info:
        _tune(tuning_env, tuning_env.spec(epochs=1))
    assert "HTTP 503" in str(info.value) and "routerlib jobs wait projects/" in str(info.value)


def test_concurrent_records_lose_nothing() -> None:
    import threading

    spec = {"training_dataset_uri": "gs://b/t.jsonl", "output_uri": "gs://b/o"}

    def writer(worker: int) -> None:
        for i in range(10):
            jobs.record(
                Job(
                    name=f"projects/p/locations/l/tuningJobs/{worker}{i:02d}",
                    backend="vertex",
                    state=PENDING,
                    spec=spec,
                )
            )

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(1, 7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({j.name for j in jobs.load_registry()}) == 60


def test_examples_over_the_model_limit_are_flagged(tmp_path: Path) -> None:
    train = write_examples(tmp_path / "train.jsonl", 3, width=4 * 4096)  # each > 4,096 tokens
    out = Lines()
    jobs.tune(
        {
            "training_dataset_uri": str(train),
            "output_uri": str(tmp_path / "out"),
            "base_model": "routerlib/tiny-router-lm",
        },
        dry_run=True,
        out=out,
    )
    assert "warning: 3 training example(s) exceed ~4096 tokens" in out.text


def test_jobs_talks_to_the_backend_interface_only(tmp_path: Path) -> None:
    """A local dry run and listing never import the Vertex backend or google-genai, and jobs.py
    holds no backend names to branch on."""
    source = (ROOT / "routerlib" / "jobs.py").read_text(encoding="utf-8")
    assert "tuning.vertex" not in source and "tuning.local" not in source
    assert '== "vertex"' not in source and '== "local"' not in source
    train = write_examples(tmp_path / "train.jsonl", 3)
    script = textwrap.dedent(
        f"""
        import sys
        from routerlib import jobs
        jobs.tune({{"training_dataset_uri": {str(train)!r}, "output_uri": {str(tmp_path / "o")!r},
                    "base_model": "routerlib/tiny-router-lm"}}, dry_run=True, out=lambda s: None)
        jobs.list_jobs(out=lambda s: None)
        loaded = [m for m in sys.modules if m == "routerlib.tuning.vertex" or m.startswith("google.genai")]
        assert not loaded, loaded
        """
    )
    env = {**os.environ, "ROUTERLIB_OUTPUTS": str(tmp_path / "outputs")}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_show_lists_local_checkpoints_and_a_stage_can_name_one(tmp_path: Path) -> None:
    out_dir = tmp_path / "tuned"
    root = out_dir / "postprocess" / "node-0" / "checkpoints"
    for name in ("epoch-2", "epoch-1", "final", "epoch-10"):
        (root / name).mkdir(parents=True)
    train = write_examples(tmp_path / "train.jsonl", 3)
    spec = {"training_dataset_uri": str(train), "output_uri": str(out_dir), "epochs": 10}
    jobs.record(
        Job(
            name="local-abc",
            backend="local",
            state=SUCCEEDED,
            spec=spec,  # type: ignore[arg-type]
            checkpoint_uri=str(root / "final"),
            loss_curve=[
                {"epoch": 1.0, "step": 3},
                {"epoch": 1.5, "step": 4},
                {"epoch": 2, "step": 6},
            ],
        )
    )
    job = jobs.show("local-abc", out=Lines())
    assert [(c.checkpoint_id, c.epoch, c.step) for c in job.checkpoints] == [
        ("epoch-1", 1, 3),
        ("epoch-2", 2, 6),
        ("epoch-10", 10, None),
        ("final", 10, None),
    ]
    assert "epoch-10    10" in jobs.describe(job)
    assert jobs.select_checkpoint(job, "epoch-2") == str(root / "epoch-2")
    assert jobs.select_checkpoint(job, "final") == str(root / "final")
    with pytest.raises(InputError, match="'epoch-3' is not a checkpoint of local-abc"):
        jobs.select_checkpoint(job, "epoch-3")
