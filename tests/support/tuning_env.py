"""Fixture for tuning wire tests: GCS emulator with uploaded splits + the Vertex stand-in.

from tests.support.tuning_env import fake_vertex, gcs_emulator, tuning_env  # noqa: F401
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.fake_vertex import FakeVertex, fake_vertex
from tests.support.gcs_emulator import GcsEmulator, gcs_emulator

__all__ = ["TuningEnv", "fake_vertex", "gcs_emulator", "tuning_env", "write_examples"]

BUCKET = "router-tuning-test"
PROJECT = "routerlib-test"
LOCATION = "us-central1"


def write_examples(path: Path, n: int, width: int = 40) -> Path:
    """``n`` prompt/completion lines; each example is ceil((len(prompt)+len(completion))/4) tokens."""
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(n):
            prompt = f"User query:\nquestion {i:03d} " + "x" * width
            completion = json.dumps({"route_plan": [f"/math(step {i})"], "difficulty": "advanced"})
            handle.write(json.dumps({"prompt": prompt, "completion": completion}) + "\n")
    return path


@dataclass
class TuningEnv:
    """Where the test data lives and how to reach the stand-ins."""

    fake: FakeVertex
    gcs: GcsEmulator
    train_uri: str
    validation_uri: str
    output_uri: str
    project: str = PROJECT
    location: str = LOCATION

    @property
    def api_endpoint(self) -> str:
        return self.fake.url

    def spec(self, **overrides: Any) -> Any:
        """A valid vertex TuningSpec on the uploaded data."""
        from routerlib.tuning.base import TuningSpec

        fields: dict[str, Any] = {
            "training_dataset_uri": self.train_uri,
            "validation_dataset_uri": self.validation_uri,
            "output_uri": self.output_uri,
        }
        fields.update(overrides)
        return TuningSpec.build(**fields)

    def backend_kwargs(self) -> dict[str, str]:
        return {"project": self.project, "location": self.location, "api_endpoint": self.fake.url}


@pytest.fixture
def tuning_env(
    gcs_emulator: GcsEmulator, fake_vertex: FakeVertex, tmp_path: Path
) -> Iterator[TuningEnv]:
    """Bucket with train.jsonl (12 rows) and validation.jsonl (3 rows) + a running FakeVertex."""
    bucket = gcs_emulator.make_bucket(BUCKET)
    gcs_emulator.place_bucket(BUCKET, LOCATION)  # a bucket in the region the jobs tune in
    fake_vertex.dataset_reader = gcs_emulator.read  # the stand-in checks validation limits
    for name, n in (("train.jsonl", 12), ("validation.jsonl", 3)):
        local = write_examples(tmp_path / name, n)
        bucket.blob(f"data/{name}").upload_from_filename(str(local))
    yield TuningEnv(
        fake=fake_vertex,
        gcs=gcs_emulator,
        train_uri=f"gs://{BUCKET}/data/train.jsonl",
        validation_uri=f"gs://{BUCKET}/data/validation.jsonl",
        output_uri=f"gs://{BUCKET}/tuning/full",
    )
