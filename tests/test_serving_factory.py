"""Every serving kind goes through the one factory.

A spy wraps the constructor of every class in ``factory.REGISTRY`` and records whether it ran
inside ``factory.make``. Then the real doors are driven with stand-ins: ``routerlib evaluate``
(``--endpoint`` as a predict URL, an OpenAI-compatible URL and a Vertex endpoint; ``--checkpoint``
served and in-process), ``routerlib serve``, notebook 04's ``stages.evaluate.serving`` (local,
Vertex deployed, batch), checkpoint scoring and the untuned base. Each kind must have been built,
and only by the factory.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from routerlib.cli import main
from routerlib.cli import serve as serve_cli
from routerlib.config import load_config
from routerlib.serving import factory, vertex
from routerlib.serving.online import EndpointPredictor
from routerlib.stages import evaluate as stage04
from routerlib.stages import tune as stage03
from routerlib.stages.run import Run
from routerlib.tuning.base import SUCCEEDED, Job, TuningSpec
from tests.support.fault_server import FaultServer, gold_answers
from tests.support.tiny_serving_model import tiny_checkpoint_fixture
from tests.support.vertex_params import EDITS

tiny_checkpoint = pytest.fixture(scope="session")(tiny_checkpoint_fixture)
CKPT = "gs://tuning-bucket/runs/r1/postprocess/node-0/checkpoints/final"


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str | None]]:
    """(kind, the kind factory.make was building at the time) for every registered class built."""
    seen: list[tuple[str, str | None]] = []
    for kind in factory.REGISTRY:
        cls = factory.predictor_class(kind)
        original = cls.__init__

        def spy(self: Any, *args: Any, _cls: type = cls, _init: Any = original, **kw: Any) -> None:
            if type(self) is _cls:  # not a subclass passing through super().__init__
                seen.append((_cls.kind, factory.building.get()))
            _init(self, *args, **kw)

        monkeypatch.setattr(cls, "__init__", spy)
    return seen


def _gold(real_data: Path, tmp_path: Path, n: int = 2) -> Path:
    lines = (real_data / "deep_router_benchmark.jsonl").read_text(encoding="utf-8").splitlines()
    path = tmp_path / "gold.jsonl"
    path.write_text("\n".join(lines[:n]) + "\n", encoding="utf-8")
    return path


@contextlib.contextmanager
def _fake_deploy(checkpoint_uri: str, settings: Any, **_: Any) -> Iterator[vertex.Deployment]:
    """vertex.deployed without a deploy: the constructor path is what is under test here."""
    yield vertex.Deployment(
        endpoint_name="projects/proj-1/locations/us-central1/endpoints/9",
        model_name="projects/proj-1/locations/us-central1/models/9",
        deployed_model_ids=["1"],
        checkpoint_uri=checkpoint_uri,
        endpoint_display_name="x",
        machine_type="g2-standard-48",
        accelerator_type="NVIDIA_L4",
        accelerator_count=4,
        project="proj-1",
        location="us-central1",
    )


def _job(checkpoint: str) -> Job:
    spec = TuningSpec.build(training_dataset_uri="t.jsonl", output_uri="gs://tuning-bucket/runs/r1")
    return Job(name="j", backend="vertex", state=SUCCEEDED, spec=spec, checkpoint_uri=checkpoint)


@pytest.mark.wire
def test_every_serving_kind_is_built_by_the_factory_only(
    built: list[tuple[str, str | None]],
    real_data: Path,
    tmp_path: Path,
    tiny_checkpoint: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gold = _gold(real_data, tmp_path)
    flags = ["evaluate", "--gold", str(gold), "--no-progress", "--max-tokens", "4"]

    def out(n: int) -> str:
        return f"--out={tmp_path / f'r{n}.json'}"

    # routerlib evaluate: three address kinds and a checkpoint served two ways
    with FaultServer(gold_answers(gold)) as srv:
        vertex_endpoint = "projects/p/locations/us-central1/endpoints/77"
        for n, source in enumerate(
            (
                ["--endpoint", srv.predict_url],
                ["--endpoint", srv.openai_url],
                ["--endpoint", vertex_endpoint, "--api-endpoint", srv.url],
            )
        ):
            assert main([*flags, *source, out(n)]) == 0
    for n, extra in enumerate(([], ["--in-process"]), start=3):
        argv = [*flags, "--checkpoint", str(tiny_checkpoint), *extra, out(n)]
        assert main(argv) == 0

    # routerlib serve (returns at once instead of waiting for Ctrl-C)
    monkeypatch.setattr(serve_cli, "_wait_for_ctrl_c", lambda: None)
    assert main(["serve", "--checkpoint", str(tiny_checkpoint)]) == 0

    # notebook 04: local backend; vertex backend (deployed); eval_mode batch
    small = {"checkpoint": "final", "max_tokens": 4}
    local = Run(tmp_path / "local", load_config("params/local.yaml", small), "p")
    with stage04.serving(local, _job(str(tiny_checkpoint))) as predictor:
        assert predictor.describe()["kind"] == "local-server"
    monkeypatch.setattr(vertex, "deployed", _fake_deploy)
    cloud = {
        **EDITS,
        "project": "proj-1",
        "checkpoint": "final",
        "gcs_prefix": "gs://eval-bucket/r",
    }
    remote = Run(tmp_path / "v", load_config("params/qwen3_32b.yaml", cloud), "p")
    with stage04.serving(remote, _job(CKPT)) as predictor:
        assert predictor.describe()["kind"] == "vertex"
        assert predictor.name.startswith(f"vertex:{CKPT}#")  # the checkpoint names the model
    with _fake_deploy(CKPT, None) as deployment:
        vertex.REGISTRY.save(asdict(deployment))  # the model a deploy of CKPT uploaded
    batch_cfg = load_config("params/qwen3_32b.yaml", {**cloud, "eval_mode": "batch"})
    batched = Run(tmp_path / "b", batch_cfg, "p")
    with stage04.serving(batched, _job(CKPT)) as predictor:
        assert predictor.describe()["kind"] == "batch"

    # notebook 03's checkpoint scoring: each checkpoint through the factory
    scorer = stage03._checkpoint_scorer(local)
    report = scorer(str(tiny_checkpoint), gold, tmp_path / "score" / "report.json", "free")
    assert report["generation"]["kind"] == "local-server"

    kinds = [kind for kind, _ in built]
    assert set(kinds) == set(factory.REGISTRY), set(factory.REGISTRY) - set(kinds)
    outside = [kind for kind, building in built if building != kind]
    assert not outside, f"built outside factory.make: {outside}"
    reports = [json.loads((tmp_path / f"r{n}.json").read_text()) for n in range(5)]
    assert [r["generation"]["kind"] for r in reports] == [
        "predict",
        "openai",
        "endpoint",
        "local-server",
        "local",
    ]


def test_the_spy_sees_a_predictor_built_elsewhere(built: list[tuple[str, str | None]]) -> None:
    """The check above can fail: a class built directly is recorded as built outside."""
    EndpointPredictor("projects/p/locations/l/endpoints/1", project="p", location="l")
    assert built == [("endpoint", None)]
    factory.make("endpoint", "projects/p/locations/l/endpoints/1", project="p", location="l")
    assert built[-1] == ("endpoint", "endpoint")


def test_kinds_load_lazily_and_unknown_kinds_are_named() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from routerlib.serving import factory; "
        "factory.predictor_class('local-server'); factory.predictor_class('predict'); "
        "heavy = [m for m in ('torch', 'transformers', 'google.cloud.aiplatform', 'vertexai') "
        "if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    from routerlib.errors import InputError

    with pytest.raises(InputError, match="serving kind 'nope': not one of batch, endpoint"):
        factory.make("nope", "x")
