# ruff: noqa: F811  (pytest fixtures imported from tests/support are redefined as arguments)
"""Vertex facts on the wire, against the stand-ins through the real SDKs: the dry-run estimate of a
known file is its characters x the model's billed tokens per character x epochs x the published
rate; every id form preflights alike; a region no source lists, an oversized validation split and
a misplaced bucket are caught before anything is sent; a ``global`` job's region is read from its
resources; a batch job's cost is estimated before it and recorded after it."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from routerlib import jobs, models, pricing, runfolder
from routerlib.errors import InputError, RemoteError
from routerlib.stages import run as stage_run
from routerlib.stages import tune as stage_tune
from routerlib.tuning.base import SUCCEEDED, SubmissionRefused
from routerlib.tuning.vertex import VertexBackend
from tests.support.tuning_env import (  # noqa: F401  (pytest fixtures)
    BUCKET,
    TuningEnv,
    fake_vertex,
    gcs_emulator,
    tuning_env,
    write_examples,
)
from tests.support.vertex_params import EDITS

LLAMA = "meta/llama3_1@llama-3.1-8b-instruct"
#: The seed's three models in the long form Vertex also accepts (Google's notebooks build them:
#: vertex-ai-samples model_garden_integration_with_agent.ipynb for Gemma and Qwen,
#: model_garden_pytorch_llama3_1_deployment.ipynb for Llama).
LONG_IDS = {
    "publishers/meta/models/llama3_1@llama-3.1-8b-instruct": LLAMA,
    "publishers/google/models/gemma3@gemma-3-27b-it": "google/gemma3@gemma-3-27b-it",
    "publishers/qwen/models/qwen3@qwen3-32b": "qwen/qwen3@qwen3-32b",
}


class Lines(list[str]):
    def __call__(self, line: str) -> None:
        self.append(line)


def _characters(path: Path) -> int:
    """Prompt + completion characters of a local JSONL file, counted here independently."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return sum(len(r["prompt"]) + len(r["completion"]) for r in rows)


def _upload(env: TuningEnv, local: Path, name: str) -> str:
    env.gcs.client().bucket(BUCKET).blob(f"data/{name}").upload_from_filename(str(local))
    return f"gs://{BUCKET}/data/{name}"


def _tune(env: TuningEnv, spec: Any, out: Lines | None = None, **kwargs: Any) -> tuple[Any, Lines]:
    out = Lines() if out is None else out
    job = jobs.tune(
        spec,
        wait=kwargs.pop("wait", False),
        poll_interval=0.01,
        out=out,
        **{**env.backend_kwargs(), **kwargs},
    )
    return job, out


# ----------------------------------------------------------------------------- 1. prices


@pytest.mark.parametrize(
    ("base_model", "mode", "adapter", "ratio", "rate"),
    [
        (LLAMA, "PEFT_ADAPTER", 16, 0.317, 0.67),
        (LLAMA, "FULL", None, 0.247, 0.67),
        ("publishers/google/models/gemma3@gemma-3-27b-it", "PEFT_ADAPTER", 16, 0.231, 6.83),
        ("qwen/qwen3@qwen3-32b", "FULL", None, 0.246, 6.57),
    ],
)
def test_dry_run_estimate_of_a_known_file_is_tokens_times_the_published_rate(
    tuning_env: TuningEnv,
    tmp_path: Path,
    base_model: str,
    mode: str,
    adapter: int | None,
    ratio: float,
    rate: float,
) -> None:
    local = write_examples(tmp_path / "known.jsonl", 30, width=120)
    uri = _upload(tuning_env, local, "known.jsonl")
    spec = tuning_env.spec(
        base_model=base_model,
        training_dataset_uri=uri,
        validation_dataset_uri=None,
        tuning_mode=mode,
        adapter_size=adapter,
        epochs=3,
    )
    job, out = _tune(tuning_env, spec, dry_run=True)

    characters = _characters(local)
    tokens = math.ceil(characters * ratio)  # google/skills calculate_cost.py: chars x ratio
    assert job.cost_estimate_usd == pytest.approx(tokens * 3 * rate / 1e6, rel=1e-12)
    (line,) = [o for o in out if o.startswith("cost estimate:")]
    assert f"~{tokens:,} tokens x 3 epoch(s)" in line and f"{characters:,} characters" in line
    assert f"{ratio:g} billed tokens per character ({mode})" in line
    assert f"x ${rate:g}/M" in line and "calculate_cost.py" in line
    assert "UNVERIFIED" not in line
    assert tuning_env.fake.server.requests == []  # a dry run sends nothing


def test_the_price_table_holds_the_published_figures_each_with_its_source() -> None:
    table = pricing.load_pricing()
    published_tuning = {
        "meta/llama3_1@llama-3.1-8b-instruct": 0.67,
        "meta/llama3_1@llama-3.1-8b": 0.67,
        "google/gemma3@gemma-3-27b-it": 6.83,
        "qwen/qwen3@qwen3-32b": 6.57,
    }
    published_hourly = {
        "g2-standard-12": 1.1507,
        "g2-standard-24": 2.3014,
        "g2-standard-48": 4.6028,
        "g2-standard-96": 9.2055,
        "a2-highgpu-1g": 4.2245,
        "a2-ultragpu-1g": 5.7818,
        "a2-ultragpu-2g": 11.5637,
        "a3-highgpu-1g": 12.6259,
        "a3-highgpu-2g": 25.2518,
        "a3-highgpu-4g": 50.5037,
        "a3-highgpu-8g": 101.0074,
    }
    assert {m: table.price(m) for m in published_tuning} == published_tuning
    assert {m: table.machine_price(m) for m in published_hourly} == published_hourly
    assert table.tokens_per_character(LLAMA, "PEFT_ADAPTER") == 0.317
    assert table.tokens_per_character(LLAMA, "FULL") == 0.247
    for name, row in [*table.models.items(), *table.machines.items()]:
        assert row.source, name
        google = row.source.startswith("google/skills ")
        assert table.is_verified(row) == google, name  # verified only when read from Google
        if google:
            assert row.date is not None, name
    assert str(table.machines["g2-standard-48"].date) == "2026-07-08"  # LAST_UPDATED
    # every contract model's deploy machine is priced: the serving cost is never "unknown"
    for row in models.CONTRACTS.values():
        for shape in (row.deploy, *row.deploy_alternatives):
            assert table.machine_price(shape.machine_type) is not None, shape


def test_serving_cost_and_its_trust_reach_the_comparison(tmp_path: Path) -> None:
    """Gemma's default machine (g2-standard-48) is priced now; a run on a row that is not
    verified says so in the comparison's cost line."""
    from routerlib import compare

    gemma = pricing.run_cost(
        base_model="google/gemma3@gemma-3-27b-it",
        billable_tokens=1_000_000,
        epochs=2,
        machine="g2-standard-48",
        routes_per_hour=3600.0,
    )
    assert gemma.serving_usd_per_1000_routes == pytest.approx(4.6028 / 3600 * 1000)
    assert gemma.tuning_usd == pytest.approx(2 * 6.83)
    assert gemma.verified and gemma.unverified == [] and gemma.machine_region == "us-central1"
    local = pricing.run_cost(
        base_model=models.EMBEDDED_MODEL,
        billable_tokens=10,
        epochs=1,
        machine="local-cpu",
        routes_per_hour=100.0,
    )
    assert not local.verified and local.unverified == [models.EMBEDDED_MODEL, "local-cpu"]
    import pandas as pd

    board = pd.DataFrame(
        [
            {
                "model": "local",
                "kind": "model",
                "run": "local-run",
                "route_plan_exact strict": 0.5,
                compare.SERVING_USD: 0.0,
                "gate_pass": True,
                compare.UNVERIFIED: ", ".join(local.unverified),
            }
        ]
    )
    assert "The price is not verified (routerlib/tiny-router-lm, local-cpu" in compare.cost_line(
        board
    )


def test_the_leaderboard_names_unverified_price_rows_from_metrics_json(tmp_path: Path) -> None:
    from routerlib import compare
    from routerlib.atomic import write_json

    runs = []
    for name, base, machine in (
        ("vertex", LLAMA, "g2-standard-12"),
        ("local", models.EMBEDDED_MODEL, "local-cpu"),
    ):
        run = stage_run.open_run("params/local.yaml", str(tmp_path / name), {})
        cost = pricing.run_cost(
            base_model=base, billable_tokens=100, epochs=1, machine=machine, routes_per_hour=60.0
        )
        write_json(run.sub("metrics.json"), {"run": {"name": name}, "cost": cost.__dict__})
        runs.append(run.path)
    board = compare.leaderboard(compare.load_runs(runs))
    got = dict(zip(board["model"], board[compare.UNVERIFIED], strict=True))
    assert got == {"vertex": "", "local": "routerlib/tiny-router-lm, local-cpu"}


# ----------------------------------------------------------------------------- 2. every id form


@pytest.mark.parametrize(("long_id", "short"), sorted(LONG_IDS.items()))
def test_the_long_id_preflight_refuses_what_the_short_id_refuses(
    tuning_env: TuningEnv, long_id: str, short: str
) -> None:
    assert models.contract(long_id) is models.contract(short) is not None
    backend = VertexBackend(**{**tuning_env.backend_kwargs(), "location": "asia-southeast2"})
    for overrides in ({"learning_rate_multiplier": 0.5}, {}):
        refusals = [
            [
                p.replace(name, "ID")
                for p in backend.preflight(tuning_env.spec(base_model=name, **overrides))
            ]
            for name in (long_id, short)
        ]
        assert refusals[0] == refusals[1] and refusals[0], refusals
        long_lines = backend.preflight(tuning_env.spec(base_model=long_id))
        assert not any("preflight could not check" in p for p in long_lines)  # a known id
    with pytest.raises(InputError, match="not tuned in 'asia-southeast2'"):
        _tune(tuning_env, tuning_env.spec(base_model=long_id), location="asia-southeast2")
    assert tuning_env.fake.server.requests == []
    # the same id where the model is tuned: sent as written, and the stand-in takes it
    job, out = _tune(tuning_env, tuning_env.spec(base_model=long_id))
    (body,) = tuning_env.fake.create_bodies()
    assert body["baseModel"] == long_id and job.state != "DENIED"
    assert not any("preflight could not check" in line for line in out)


def test_an_unknown_id_goes_to_the_server_with_one_line(tuning_env: TuningEnv) -> None:
    out = Lines()
    with pytest.raises(RemoteError, match="not supported for tuning"):
        _tune(tuning_env, tuning_env.spec(base_model="acme/router@v7"), out)
    said = [line for line in out if "preflight could not check" in line]
    assert len(said) == 1 and said[0].startswith("note: acme/router@v7 is not in")
    assert len(tuning_env.fake.create_bodies()) == 1  # the server decided


# ----------------------------------------------------------------------------- 3. regions


def test_asia_southeast2_is_refused_before_anything_is_sent(tuning_env: TuningEnv) -> None:
    assert "asia-southeast2" not in models.TABLE.open_model_regions
    assert models.TABLE.open_model_regions == (
        "global",
        "us-central1",
        "europe-west4",
        "us-west1",
        "us-east5",
        "asia-southeast1",
    )
    with pytest.raises(InputError) as info:
        _tune(tuning_env, tuning_env.spec(), location="asia-southeast2")
    assert "preflight: location: Llama 3.1 8B Instruct is not tuned in 'asia-southeast2'" in str(
        info.value
    )
    assert "google/skills" in str(info.value)  # the line names where the regions come from
    assert tuning_env.fake.server.requests == [] and jobs.load_registry() == []


def test_a_bucket_elsewhere_is_warned_about_before_submission(tuning_env: TuningEnv) -> None:
    tuning_env.gcs.place_bucket(BUCKET, "EUROPE-WEST4")
    job, out = _tune(tuning_env, tuning_env.spec())
    warnings = [line for line in out if line.startswith("warning:")]
    assert warnings == [
        f"warning: training_dataset_uri: bucket gs://{BUCKET} is in EUROPE-WEST4 (region), not "
        "in us-central1 where the job tunes: use a bucket in us-central1 (or a multi-region "
        "holding it), or tune where the bucket is"
    ]
    assert out.index(warnings[0]) < next(i for i, o in enumerate(out) if o.startswith("submitted"))
    assert len(tuning_env.fake.create_bodies()) == 1  # a warning, not a refusal
    # a global job wants a multi-region bucket: US is fine, a single region is not
    tuning_env.gcs.place_bucket(BUCKET, "US", "multi-region")
    backend = VertexBackend(**{**tuning_env.backend_kwargs(), "location": "global"})
    assert backend.storage_problems(tuning_env.spec()) == []
    tuning_env.gcs.place_bucket(BUCKET, "US-CENTRAL1")
    (advice,) = backend.storage_problems(tuning_env.spec())
    assert "runs in us-central1 or europe-west4" in advice and "multi-region" in advice


def test_a_global_job_is_deployed_where_it_ran(tuning_env: TuningEnv, tmp_path: Path) -> None:
    tuning_env.fake.global_region = "europe-west4"
    tuning_env.gcs.place_bucket(BUCKET, "EU", "multi-region")
    job, out = _tune(tuning_env, tuning_env.spec(), location="global", wait=True)
    assert job.state == SUCCEEDED and job.location == "global"
    assert job.region == "europe-west4"
    assert job.tuned_model is not None and "/locations/europe-west4/models/" in job.tuned_model
    assert "/locations/global/tuningJobs/" in job.name  # the job itself stays under global
    assert "(ran in europe-west4)" in jobs.describe(jobs.find(job.name))
    assert jobs.deploy_region(job, "us-central1") == "europe-west4"
    regional = job.model_copy(update={"location": "us-west1", "region": "us-west1"})
    assert jobs.deploy_region(regional, "us-central1") == "us-central1"
    # notebook 04 reads the recorded job and deploys in its region
    run = stage_run.open_run(
        "params/llama31_8b.yaml", str(tmp_path / "run"), {**EDITS, "gcs_prefix": f"gs://{BUCKET}/p"}
    )
    runfolder.write_record(run.sub(runfolder.job_file(False)), job)
    assert run.config.deploy_location == "us-central1"
    stage_tune.tuned_job(run)
    assert run.config.deploy_location == "europe-west4"


# ----------------------------------------------------------------------------- 4. validation


def test_an_oversized_validation_split_is_refused_before_anything_is_sent(
    tuning_env: TuningEnv, tmp_path: Path
) -> None:
    train = _upload(tuning_env, write_examples(tmp_path / "t.jsonl", 8), "small-train.jsonl")
    val = _upload(tuning_env, write_examples(tmp_path / "v.jsonl", 4), "big-val.jsonl")
    spec = tuning_env.spec(training_dataset_uri=train, validation_dataset_uri=val)
    with pytest.raises(InputError) as info:
        _tune(tuning_env, spec)
    text = str(info.value)
    train_bytes = (tmp_path / "t.jsonl").stat().st_size
    val_bytes = (tmp_path / "v.jsonl").stat().st_size
    assert f"validation file is {val_bytes:,} bytes" in text
    assert f"training file's {train_bytes:,}; Vertex takes at most 25%" in text
    assert "lower val_ratio" in text and text.startswith("preflight: val_ratio:")
    assert tuning_env.fake.server.requests == [] and jobs.load_registry() == []
    # sent anyway, the stand-in refuses it as Vertex does
    backend = VertexBackend(**tuning_env.backend_kwargs())
    with pytest.raises(SubmissionRefused, match="no more than 25%"):
        backend.submit(spec)


def test_more_than_5000_validation_rows_are_refused(tuning_env: TuningEnv, tmp_path: Path) -> None:
    train = _upload(tuning_env, write_examples(tmp_path / "t.jsonl", 40, width=9000), "wide.jsonl")
    rows = tmp_path / "v.jsonl"
    rows.write_text('{"prompt": "p", "completion": "c"}\n' * 5001, encoding="utf-8")
    val = _upload(tuning_env, rows, "many-val.jsonl")
    spec = tuning_env.spec(training_dataset_uri=train, validation_dataset_uri=val)
    with pytest.raises(InputError, match="has 5,001 rows; Vertex takes at most 5,000"):
        _tune(tuning_env, spec)
    assert tuning_env.fake.server.requests == []
    assert models.validation_problems(100_000, 100, 5000) == []  # the limits themselves pass


# ----------------------------------------------------------------------------- 5. hardware


def test_hardware_rows_come_from_googles_notebooks() -> None:
    gemma, qwen = (
        models.contract("google/gemma3@gemma-3-27b-it"),
        models.contract("qwen/qwen3@qwen3-32b"),
    )
    llama = models.contract(LLAMA)
    assert gemma is not None and qwen is not None and llama is not None
    for row in (gemma, qwen):
        assert row.deploy == models.DeployHardware("g2-standard-48", "NVIDIA_L4", 4)
        (h100,) = row.deploy_alternatives
        assert h100 == models.DeployHardware("a3-highgpu-2g", "NVIDIA_H100_80GB", 2)
        assert "model_garden_integration_with_agent.ipynb" in h100.source
    assert llama.deploy == models.DeployHardware("g2-standard-12", "NVIDIA_L4", 1)
    assert "model_garden_pytorch_llama3_1_deployment.ipynb" in llama.deploy.source
    for row in models.CONTRACTS.values():
        sources = [
            row.deploy_source,
            row.deploy.source,
            *(h.source for h in row.deploy_alternatives),
        ]
        assert all("GoogleCloudPlatform/vertex-ai-samples" in s for s in sources[1:]), row
        assert not any("medgemma" in s.lower() for s in sources), row
