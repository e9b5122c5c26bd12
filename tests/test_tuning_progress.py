"""The local tuning progress bar off a terminal (a notebook kernel, a log file): drawn at the start,
once per epoch and at the end, not every second (each redraw would be one more cell output)."""

from __future__ import annotations

from pathlib import Path

import pytest

from routerlib.models import EMBEDDED_MODEL
from routerlib.tuning.base import SUCCEEDED, TuningSpec
from routerlib.tuning.local import LocalBackend
from tests.support.local_tuning_data import synthetic_splits

pytestmark = pytest.mark.slow


def test_bar_is_drawn_per_epoch_when_stderr_is_no_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train, val = synthetic_splits(tmp_path / "splits", n_train=8, n_val=2)
    spec = TuningSpec.build(
        base_model=EMBEDDED_MODEL,
        training_dataset_uri=str(train),
        validation_dataset_uri=str(val),
        output_uri=str(tmp_path / "out"),
        adapter_size=1,
        epochs=2,
    )
    backend = LocalBackend(batch_size=1, max_train_tokens=64, progress=True)  # 16 steps
    capsys.readouterr()
    job = backend.submit(spec)
    assert job.state == SUCCEEDED, job.error
    err = capsys.readouterr().err
    draws = err.count("\r")
    assert "16/16" in err  # the final state is shown
    assert 1 <= draws <= spec.epochs + 2, err
