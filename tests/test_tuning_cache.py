"""The local tuning cache: the same spec on the same data re-attaches to the finished checkpoint
(byte-identical files, no training); other data, another spec or the cache turned off trains.
Each tuning here is one epoch of 4 tiny examples, a few seconds on the embedded model."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest

from routerlib.checkpoint_names import FINAL_CHECKPOINT
from routerlib.models import EMBEDDED_MODEL
from routerlib.tuning import cache, local
from routerlib.tuning.base import SUCCEEDED, TuningSpec
from routerlib.tuning.local import LocalBackend
from tests.support.local_tuning_data import synthetic_splits

pytestmark = pytest.mark.slow


@pytest.fixture
def splits(tmp_path: Path) -> tuple[Path, Path]:
    return synthetic_splits(tmp_path / "splits", n_train=4, n_val=2)


@pytest.fixture
def cache_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "tuning-cache"
    monkeypatch.setenv(cache.ENV, str(folder))
    return folder


def _spec(train: Path, val: Path, out: Path, **fields) -> TuningSpec:
    base = {
        "base_model": EMBEDDED_MODEL,
        "training_dataset_uri": str(train),
        "validation_dataset_uri": str(val),
        "output_uri": str(out),
        "adapter_size": 1,
        "epochs": 1,
    }
    return TuningSpec.build(**{**base, **fields})


def _backend(epochs_run: list[int]) -> LocalBackend:
    return LocalBackend(
        batch_size=4, max_train_tokens=96, progress=False, on_epoch_end=epochs_run.append
    )


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_same_spec_and_data_is_a_hit_with_identical_checkpoints(splits, cache_on, tmp_path):
    train, val = splits
    trained: list[int] = []
    first = _backend(trained).submit(_spec(train, val, tmp_path / "a", labels={"run": "a"}))
    assert first.state == SUCCEEDED and trained == [1]
    entries = [p for p in cache_on.iterdir() if not p.name.startswith(".")]
    assert len(entries) == 1 and (entries[0] / cache.KEY_FILE).is_file()

    # the same data at another path, another output folder, other labels and display name
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(train, copy / "t.jsonl")
    shutil.copy(val, copy / "v.jsonl")
    again: list[int] = []
    spec = _spec(
        copy / "t.jsonl",
        copy / "v.jsonl",
        tmp_path / "b",
        labels={"run": "b"},
        tuned_model_display_name="other",
    )
    second = _backend(again).submit(spec)
    assert again == []  # nothing trained
    assert second.state == SUCCEEDED and second.spec == spec
    assert second.checkpoint_uri == str(tmp_path / "b" / FINAL_CHECKPOINT)
    ckpts_a = tmp_path / "a" / local.CHECKPOINTS_DIR
    ckpts_b = tmp_path / "b" / local.CHECKPOINTS_DIR
    assert _files(ckpts_b) == _files(ckpts_a)  # epoch-1 and final, byte for byte
    assert second.loss_curve == first.loss_curve
    assert second.tuning_data_stats == first.tuning_data_stats
    recorded = json.loads((tmp_path / "b" / local.JOB_FILE).read_text())
    assert recorded["state"] == SUCCEEDED and recorded["spec"]["output_uri"] == str(tmp_path / "b")
    run = recorded[local.LOCAL_KEY]
    assert run["from_cache"]["job"] == first.name
    # the attached job is found like any other, and a resubmit re-attaches to the folder itself
    assert LocalBackend(root=tmp_path).get(second.name).state == SUCCEEDED
    assert _backend(again).submit(spec).name == second.name and again == []


def test_the_same_tuning_submitted_twice_at_once_trains_once(splits, cache_on, tmp_path, capsys):
    """Two runs going side by side that make the same tuning: one trains, the other waits for it
    (saying so) and re-attaches to the entry instead of training the same weights again."""
    train, val = splits
    trained: list[int] = []
    jobs: dict[str, local.Job] = {}

    def submit(name: str) -> None:
        backend = LocalBackend(batch_size=4, max_train_tokens=96, on_epoch_end=trained.append)
        jobs[name] = backend.submit(_spec(train, val, tmp_path / name))

    threads = [threading.Thread(target=submit, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert sorted(jobs) == ["a", "b"] and trained == [1]  # one epoch trained, once
    records = {n: json.loads((tmp_path / n / local.JOB_FILE).read_text()) for n in jobs}
    attached = [n for n, r in records.items() if r[local.LOCAL_KEY].get("from_cache")]
    assert len(attached) == 1
    maker = "b" if attached == ["a"] else "a"
    assert records[attached[0]][local.LOCAL_KEY]["from_cache"]["job"] == jobs[maker].name
    assert all(job.state == SUCCEEDED for job in jobs.values())
    assert local.WAITING in capsys.readouterr().out


def test_other_data_is_a_miss(splits, cache_on, tmp_path):
    train, val = splits
    _backend([]).submit(_spec(train, val, tmp_path / "a"))

    changed = tmp_path / "changed.jsonl"
    lines = train.read_text(encoding="utf-8").splitlines(keepends=True)
    changed.write_text("".join(lines[:-1]), encoding="utf-8")  # one training row fewer
    trained: list[int] = []
    job = _backend(trained).submit(_spec(changed, val, tmp_path / "b"))
    assert job.state == SUCCEEDED and trained == [1]
    record = json.loads((tmp_path / "b" / local.JOB_FILE).read_text())
    assert "from_cache" not in record[local.LOCAL_KEY]
    assert len([p for p in cache_on.iterdir() if not p.name.startswith(".")]) == 2


def test_the_key_ignores_places_and_labels_only(splits, tmp_path):
    train, val = splits
    options = LocalBackend(batch_size=4).options()

    def key(**fields) -> str:
        return cache.cache_key(
            cache.key_inputs(_spec(train, val, tmp_path / "x", **fields), options)
        )

    assert key() == key(output_uri=str(tmp_path / "y"), labels={"a": "b"})
    assert key() != key(epochs=2)
    assert key() != key(learning_rate=1e-3)
    assert key() != cache.cache_key(
        cache.key_inputs(_spec(train, val, tmp_path / "x"), {**options, "seed": 1})
    )


def test_cache_off_and_a_torn_entry_train(splits, tmp_path, monkeypatch):
    train, val = splits
    monkeypatch.setenv(cache.ENV, "off")
    assert cache.cache_dir() is None
    trained: list[int] = []
    _backend(trained).submit(_spec(train, val, tmp_path / "a"))
    assert trained == [1]

    folder = tmp_path / "tuning-cache"
    monkeypatch.setenv(cache.ENV, str(folder))
    spec = _spec(train, val, tmp_path / "b")
    key = cache.cache_key(cache.key_inputs(spec, _backend([]).options()))
    (folder / key).mkdir(parents=True)
    (folder / key / cache.ENTRY_ITEMS[0]).write_text("{}")  # no checkpoint: not an entry
    assert cache.lookup(key) is None
    trained.clear()
    _backend(trained).submit(spec)
    assert trained == [1] and cache.lookup(key) is not None


def test_the_key_follows_the_training_code_files(splits, tmp_path, monkeypatch):
    """The key hashes the files of the trainer, its model and data code and the embedded model's
    recipe, found without importing them; a change in any of them changes the key."""
    import subprocess
    import sys

    from routerlib.tuning import examples, model_io, trainer

    files = cache.code_files()
    for module in (trainer, model_io, examples):
        assert Path(module.__file__) in files
    assert any(p.name == "tinymodel.py" for p in files)

    train, val = splits
    spec = _spec(train, val, tmp_path / "x")
    options = LocalBackend(batch_size=4).options()
    before = cache.cache_key(cache.key_inputs(spec, options))
    copies = []
    for file in files:
        copy = tmp_path / "code" / file.name
        copy.parent.mkdir(exist_ok=True)
        copy.write_bytes(file.read_bytes())
        copies.append(copy)
    monkeypatch.setattr(cache, "code_files", lambda: copies)
    assert cache.cache_key(cache.key_inputs(spec, options)) == before  # same bytes, same key
    trainer_copy = copies[[p.name for p in copies].index("trainer.py")]
    trainer_copy.write_text(trainer_copy.read_text() + "\n# a change\n")
    assert cache.cache_key(cache.key_inputs(spec, options)) != before

    # computing a key imports no training code (the cache sits below the backend)
    probe = (
        "import sys, json; from routerlib.tuning import cache, base;"
        f"spec = base.TuningSpec.model_validate_json({spec.model_dump_json()!r});"
        "cache.key_inputs(spec, {});"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('routerlib.tuning'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out) == [
        "routerlib.tuning",
        "routerlib.tuning.base",
        "routerlib.tuning.cache",
    ]
