"""The local tuning progress off a terminal (a notebook kernel, run.log): one whole line per epoch,
no carriage-return redraws (each would be one more cell output or a partial log line)."""

from __future__ import annotations

from pathlib import Path

import pytest

from routerlib.models import EMBEDDED_MODEL
from routerlib.tuning.base import SUCCEEDED, TuningSpec
from routerlib.tuning.local import LocalBackend
from tests.support.local_tuning_data import synthetic_splits

pytestmark = pytest.mark.slow


def test_one_whole_line_per_epoch_when_stderr_is_no_terminal(
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
    assert "\r" not in err and err.endswith("\n"), err
    lines = [ln for ln in err.splitlines() if ln.startswith("tune PEFT_ADAPTER (local): ")]
    assert [ln.split(": ", 1)[1].split(" (")[0] for ln in lines] == ["8/16 step", "16/16 step"]
    assert all(" loss=" in ln and " val=" in ln for ln in lines), lines
