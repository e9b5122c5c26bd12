# ruff: noqa: F811  (pytest fixtures imported from tests/support are redefined as arguments)
"""A batch prediction job's cost on the wire: estimated before the job from the machine's rate
(and, once a job on that machine has run, from its measured rows per node hour), recorded after it
from the job's own ``resourcesConsumed.replicaHours`` x the rate."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from routerlib import pricing
from routerlib.evaluate import generate_predictions
from routerlib.serving import batch, factory, vertex
from routerlib.serving.settings import VertexSettings
from tests.support.fake_vertex_serving import CANNED_COMPLETION, ServingStandIn, ServingState
from tests.support.gcs_emulator import GcsEmulator, gcs_emulator  # noqa: F401
from tests.support.recording_server import RecordingServer

CKPT = "gs://tuning-bucket/runs/r1/postprocess/node-0/checkpoints/final"
PREFIX = "gs://eval-bucket/router"
RATE = 2.3014  # g2-standard-24, google/skills agent-platform-deploy calculate_cost.py


@pytest.fixture
def stand_in(gcs_emulator: GcsEmulator) -> Iterator[tuple[RecordingServer, ServingState]]:
    gcs_emulator.make_bucket("tuning-bucket")
    gcs_emulator.make_bucket("eval-bucket")
    with ServingStandIn() as stand_in:
        server, state = stand_in.fresh()
        state.predict_fn = lambda instances: [CANNED_COMPLETION for _ in instances]
        yield server, state


def _gold(tmp_path: Path, name: str, n: int) -> Path:
    path = tmp_path / name
    rows = [{"prompt": f"{name} question {i}", "completion": "{}"} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_batch_cost_is_estimated_before_and_recorded_after(
    stand_in: tuple[RecordingServer, ServingState],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, state = stand_in
    cloud = {"project": "proj-1", "location": "us-central1", "api_endpoint": server.url}
    machine = VertexSettings(**cloud, machine_type="g2-standard-24", accelerator_count=2)
    deployment = vertex.deploy(CKPT, machine, base_model="")
    state.batch_replica_hours = 0.5

    def run(gold: Path) -> str:
        options = {"gcs_prefix": PREFIX, "settings": VertexSettings(**cloud), "poll_s": 0.01}
        with factory.opened("batch", deployment.model_name, **options) as predictor:
            generate_predictions(
                gold,
                predictor=predictor,
                cache_path=tmp_path / f"{gold.stem}.cache.jsonl",
                pred_path=tmp_path / f"{gold.stem}.pred.jsonl",
                progress=False,
            )
        return capsys.readouterr().err

    err = run(_gold(tmp_path, "first", 12))
    lines = err.splitlines()
    before = next(i for i, line in enumerate(lines) if line.startswith("batch cost estimate:"))
    after = next(i for i, line in enumerate(lines) if line.startswith("batch cost:"))
    assert before < after
    assert f"12 rows at ${RATE:g} per node hour of g2-standard-24" in lines[before]
    assert "no earlier job on this machine" in lines[before]
    assert f"0.5 node hour(s) x ${RATE:g} per node hour" in lines[after]
    assert f"~${0.5 * RATE:,.2f}" in lines[after] and "2026-07-08" in lines[after]
    (record,) = batch.REGISTRY.read()
    assert record["cost_estimate"]["node_hours"] is None
    assert record["cost"]["node_hours"] == 0.5
    assert record["cost"]["usd"] == pytest.approx(0.5 * RATE)
    assert record["cost"]["machine"] == "g2-standard-24" and record["cost"]["verified"] is True

    # the next job on that machine is estimated from the first one's rows per node hour
    state.batch_replica_hours = 0.25
    err = run(_gold(tmp_path, "second", 6))
    (estimate,) = [line for line in err.splitlines() if line.startswith("batch cost estimate:")]
    hours = 6 / (12 / 0.5)
    assert f"6 rows ~ {hours:.4g} node hour(s) (24 rows per node hour measured" in estimate
    assert f"= ~${hours * RATE:,.2f}" in estimate
    second = batch.REGISTRY.read()[-1]
    assert second["cost_estimate"]["usd"] == pytest.approx(hours * RATE)
    assert second["cost"]["usd"] == pytest.approx(0.25 * RATE)
    assert pricing.batch_cost("z9-mega", 1, 1.0).usd is None  # no price: no figure, not zero
