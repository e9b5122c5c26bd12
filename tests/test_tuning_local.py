"""The local tuning backend on the embedded tiny model and embedded synthetic data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from routerlib.checkpoint_names import FINAL_CHECKPOINT
from routerlib.errors import InputError
from routerlib.models import EMBEDDED_MODEL
from routerlib.runfolder import LOSS_CURVE_FILE
from routerlib.tuning import examples, get_backend, local, trainer
from routerlib.tuning.base import CANCELLED, FAILED, RUNNING, SUCCEEDED, TuningSpec
from routerlib.tuning.local import LocalBackend
from routerlib.tuning.model_io import TRAINING_STATE, load_for_inference
from tests.support.local_tuning_data import synthetic_splits

#: Examples are cut to this many tokens in the mechanics tests (keeps each step cheap).
SHORT = 320


@pytest.fixture(scope="module")
def splits(tmp_path_factory) -> tuple[str, str]:
    folder = tmp_path_factory.mktemp("splits")
    train, val = synthetic_splits(folder, n_train=8, n_val=4)
    return str(train), str(val)


def _spec(splits, out: Path, **fields) -> TuningSpec:
    train, val = splits
    base = {
        "base_model": EMBEDDED_MODEL,
        "training_dataset_uri": train,
        "validation_dataset_uri": val,
        "output_uri": str(out),
        "tuning_mode": "PEFT_ADAPTER",
        "adapter_size": 4,
        "epochs": 2,
    }
    if fields.get("tuning_mode") == "FULL":
        base["adapter_size"] = None
    base.update(fields)
    return TuningSpec.build(**base)


def _backend(**options) -> LocalBackend:
    options.setdefault("max_train_tokens", SHORT)
    return LocalBackend(batch_size=4, progress=False, **options)


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    name = (
        "adapter_model.safetensors"
        if (folder / "adapter_config.json").exists()
        else ("model.safetensors")
    )
    return load_file(str(folder / name))


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)


def _val_losses(job) -> list[float]:
    return [p["val_loss"] for p in job.loss_curve if p["val_loss"] is not None]


def test_peft_run_writes_vertex_layout_stats_and_curve(splits, tmp_path):
    out = tmp_path / "peft"
    spec = _spec(splits, out, labels={"team": "router"})
    backend = _backend()
    job = backend.submit(spec)

    assert job.state == SUCCEEDED, job.error
    assert job.backend == "local"
    assert job.checkpoint_uri == spec.checkpoint_uri() == str(out / FINAL_CHECKPOINT)
    ckpts = out / local.CHECKPOINTS_DIR
    assert sorted(p.name for p in ckpts.iterdir()) == ["epoch-1", "epoch-2", "final"]
    for name in ("epoch-1", "epoch-2", "final"):
        folder = ckpts / name
        assert (folder / "adapter_config.json").is_file()
        assert (folder / "adapter_model.safetensors").is_file()
        assert (folder / "tokenizer.json").is_file()
        marker = json.loads((folder / local.CHECKPOINT_MARKER).read_text())
        assert marker["kind"] == "peft" and marker["base_model"] == EMBEDDED_MODEL
        assert not (folder / TRAINING_STATE).exists()  # dropped once the job succeeded
    assert json.loads((ckpts / "epoch-1" / local.CHECKPOINT_MARKER).read_text())["epoch"] == 1
    assert _same(_weights(ckpts / "epoch-2"), _weights(ckpts / "final"))
    assert not _same(_weights(ckpts / "epoch-1"), _weights(ckpts / "final"))
    # the backend lists the same layout as Vertex's checkpoints (id, epoch, step, URI)
    points = backend.checkpoints(job)
    assert [(c.checkpoint_id, c.epoch, c.uri) for c in points] == [
        ("epoch-1", 1, str(ckpts / "epoch-1")),
        ("epoch-2", 2, str(ckpts / "epoch-2")),
        ("final", 2, str(ckpts / "final")),
    ]
    assert [c.step for c in points] == [2, 4, 4]  # 8 examples, batch 4: 2 steps an epoch
    adapter = json.loads((ckpts / "final" / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and adapter["lora_alpha"] == 8
    assert {"q_proj", "v_proj", "down_proj", "embed_tokens", "lm_head"} <= set(
        adapter["target_modules"]
    )

    # 8 examples, batch 4, 2 epochs; every example cut to SHORT tokens
    stats = job.tuning_data_stats
    assert stats["tuning_dataset_example_count"] == 8
    assert stats["validation_example_count"] == 4
    assert stats["tuning_step_count"] == 4
    assert stats["total_billable_token_count"] == 8 * SHORT * 2
    assert stats["total_truncated_example_count"] == 8
    inputs = stats["user_input_token_distribution"]
    assert inputs["min"] <= inputs["median"] <= inputs["max"] and inputs["sum"] > 8 * 150
    assert stats["learning_rate"] == trainer.EMBEDDED_LEARNING_RATES["PEFT_ADAPTER"]
    assert stats["train_tokens_per_second"] > 0 and len(stats["epoch_seconds"]) == 2
    assert job.train_seconds and job.train_seconds > 0

    curve = job.loss_curve
    assert curve[0] == {"epoch": 0, "step": 0, "train_loss": None, "val_loss": curve[0]["val_loss"]}
    assert [p["step"] for p in curve if p["val_loss"] is not None] == [0, 2, 4]
    assert all(p["train_loss"] > 0 for p in curve[1:])
    assert json.loads((out / LOSS_CURVE_FILE).read_text()) == curve

    recorded = json.loads((out / local.JOB_FILE).read_text())
    assert recorded["state"] == SUCCEEDED and recorded["spec"]["labels"] == {"team": "router"}
    assert backend.get(job.name).model_dump() == job.model_dump()
    assert LocalBackend(root=tmp_path).get(job.name).state == SUCCEEDED  # found by scanning
    assert LocalBackend().get(str(out)).name == job.name  # or by folder
    assert [j.name for j in LocalBackend(root=tmp_path).list()] == [job.name]
    assert backend.cancel(job.name).state == SUCCEEDED  # nothing to cancel

    # the same spec again re-attaches to the finished job instead of training again
    again = _backend(on_epoch_end=lambda epoch: pytest.fail("trained again")).submit(spec)
    assert again.name == job.name and again.state == SUCCEEDED


def test_full_run_and_checkpoints_load_for_inference(splits, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import LlamaForCausalLM

    full = _backend().submit(_spec(splits, tmp_path / "full", tuning_mode="FULL", epochs=1))
    assert full.state == SUCCEEDED, full.error
    final = Path(full.checkpoint_uri)
    assert (final / "model.safetensors").is_file() and (final / "config.json").is_file()
    assert json.loads((final / local.CHECKPOINT_MARKER).read_text())["kind"] == "full"
    assert full.tuning_data_stats["learning_rate"] == trainer.EMBEDDED_LEARNING_RATES["FULL"]

    model, tokenizer = load_for_inference(final)
    assert isinstance(model, LlamaForCausalLM) and not model.training
    prompt = tokenizer("User query:\nroute this\n")["input_ids"]  # as training encodes it
    out = model.generate(torch.tensor([prompt]), max_new_tokens=5, do_sample=False)
    assert out.shape[1] >= len(prompt) + 1

    # a PEFT checkpoint comes back merged: a plain model with the adapter's outputs
    peft = _backend().submit(_spec(splits, tmp_path / "peft", epochs=1))
    merged, _ = load_for_inference(peft.checkpoint_uri)
    assert isinstance(merged, LlamaForCausalLM)
    assert not any("lora" in name for name, _ in merged.named_parameters())
    base, _ = load_for_inference(EMBEDDED_MODEL)
    unmerged = PeftModel.from_pretrained(base, peft.checkpoint_uri).eval()
    ids = torch.tensor([prompt])
    with torch.inference_mode():
        assert torch.allclose(merged(ids).logits, unmerged(ids).logits, atol=1e-4)

    with pytest.raises(InputError, match="not a model checkpoint"):
        load_for_inference(tmp_path)


@pytest.mark.slow
def test_interrupted_run_resumes_from_last_epoch_and_matches_uninterrupted(splits, tmp_path):
    spec_a = _spec(splits, tmp_path / "straight", epochs=3)
    straight = _backend().submit(spec_a)
    assert straight.state == SUCCEEDED

    def crash(epoch: int) -> None:
        if epoch == 1:
            raise RuntimeError("power cut (simulated)")

    out = tmp_path / "bumpy"
    spec_b = _spec(splits, out, epochs=3)
    failed = _backend(on_epoch_end=crash).submit(spec_b)
    assert failed.state == FAILED and "power cut" in failed.error
    assert (out / local.CHECKPOINTS_DIR / "epoch-1" / TRAINING_STATE).is_file()
    assert not (out / FINAL_CHECKPOINT).exists()

    # as if the process had been killed: the record says RUNNING, its process is gone
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    record = json.loads((out / local.JOB_FILE).read_text())
    record["state"] = RUNNING
    run = record[local.LOCAL_KEY]
    record[local.LOCAL_KEY] = {**run, "pid": dead.pid}
    (out / local.JOB_FILE).write_text(json.dumps(record))
    seen = LocalBackend(root=tmp_path).get(failed.name)
    assert seen.state == FAILED and "resume" in seen.error

    epochs_run: list[int] = []
    resumed = _backend(on_epoch_end=epochs_run.append).submit(spec_b)
    assert resumed.state == SUCCEEDED and resumed.name == failed.name
    assert epochs_run == [2, 3]  # epoch 1 was not redone
    final = out / FINAL_CHECKPOINT
    assert _same(_weights(final), _weights(Path(straight.checkpoint_uri)))
    # the curve carries on where it stopped and equals the uninterrupted one
    strip = [
        {k: p[k] for k in ("epoch", "step", "train_loss", "val_loss")} for p in straight.loss_curve
    ]
    assert resumed.loss_curve == strip


def test_cancel_stops_after_the_current_step_and_resubmit_finishes(splits, tmp_path):
    backend = _backend()
    out = tmp_path / "cancel"
    spec = _spec(splits, out, epochs=2)
    backend.on_epoch_end = lambda epoch: backend.cancel(f"local-{backend._identity(spec)[:12]}")
    job = backend.submit(spec)
    assert job.state == CANCELLED
    assert (out / local.CHECKPOINTS_DIR / "epoch-1").is_dir()
    backend.on_epoch_end = None
    done = backend.submit(spec)
    assert done.state == SUCCEEDED and not (out / local.CANCEL_FILE).exists()


@pytest.mark.slow
def test_custom_base_model_continues_from_peft_and_full_checkpoints(splits, tmp_path):
    peft = _backend().submit(_spec(splits, tmp_path / "peft", epochs=1))
    full = _backend().submit(_spec(splits, tmp_path / "full", tuning_mode="FULL", epochs=1))
    peft_val, full_val = _val_losses(peft)[-1], _val_losses(full)[-1]

    # PEFT on PEFT: the same adapter keeps training; it starts where the first run ended
    more = _backend().submit(
        _spec(splits, tmp_path / "peft2", epochs=1, custom_base_model=peft.checkpoint_uri)
    )
    assert more.state == SUCCEEDED, more.error
    assert _val_losses(more)[0] == pytest.approx(peft_val, abs=2e-3)
    marker = json.loads((Path(more.checkpoint_uri) / local.CHECKPOINT_MARKER).read_text())
    assert marker["base_model"] == EMBEDDED_MODEL

    # FULL on PEFT: the adapter is merged, then every weight trains
    merged = _backend().submit(
        _spec(
            splits,
            tmp_path / "full2",
            tuning_mode="FULL",
            epochs=1,
            custom_base_model=peft.checkpoint_uri,
        )
    )
    assert merged.state == SUCCEEDED, merged.error
    assert _val_losses(merged)[0] == pytest.approx(peft_val, abs=2e-3)

    # PEFT on FULL: a new adapter over the tuned weights; the marker names that checkpoint
    over = _backend().submit(
        _spec(splits, tmp_path / "peft3", epochs=1, custom_base_model=full.checkpoint_uri)
    )
    assert over.state == SUCCEEDED, over.error
    assert _val_losses(over)[0] == pytest.approx(full_val, abs=2e-3)
    marker = json.loads((Path(over.checkpoint_uri) / local.CHECKPOINT_MARKER).read_text())
    assert marker["base_model"] == str(Path(full.checkpoint_uri).resolve())
    model, _ = load_for_inference(over.checkpoint_uri)
    assert not model.training

    with pytest.raises(InputError, match="adapter_size 4"):
        _backend().submit(
            _spec(
                splits,
                tmp_path / "peft4",
                epochs=1,
                adapter_size=8,
                custom_base_model=peft.checkpoint_uri,
            )
        )
    with pytest.raises(InputError, match="not a checkpoint folder"):
        _backend().submit(_spec(splits, tmp_path / "x", custom_base_model=str(tmp_path / "none")))


def test_bad_inputs_fail_with_one_line_naming_the_place(splits, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "completion": "c"}\n\n{"prompt": "p", "completion": 3}\nnope\n')
    with pytest.raises(InputError) as info:
        _backend().submit(_spec(splits, tmp_path / "o1", training_dataset_uri=str(bad)))
    assert f"{bad}:3: completion: must be a string (got int)" in info.value.problems
    assert any(line.startswith(f"{bad}:4: not valid JSON") for line in info.value.problems)
    assert json.loads((tmp_path / "o1" / local.JOB_FILE).read_text())["state"] == FAILED

    with pytest.raises(InputError, match="does not exist"):
        _backend().submit(_spec(splits, tmp_path / "o2", training_dataset_uri=str(tmp_path / "n")))
    with pytest.raises(InputError, match="Cloud Storage"):
        _backend().submit(_spec(splits, "gs://bucket/out"))

    out = tmp_path / "o3"
    assert _backend().submit(_spec(splits, out, epochs=1)).state == SUCCEEDED
    with pytest.raises(InputError, match="different spec") as info:
        _backend().submit(_spec(splits, out, epochs=2))
    assert "different spec (epochs 1 -> 2);" in str(info.value)  # the refusal names the change
    with pytest.raises(InputError, match=r"different spec \(bf16 False -> True\);"):
        _backend(bf16=True).submit(_spec(splits, out, epochs=1))  # an option, not the spec
    with pytest.raises(InputError, match="no local tuning job"):
        LocalBackend(root=tmp_path).get("local-000000000000")


def test_learning_rate_defaults_and_multiplier(splits, tmp_path):
    peft = _spec(splits, tmp_path, learning_rate_multiplier=0.5)
    assert (
        trainer.default_learning_rate(peft) == trainer.EMBEDDED_LEARNING_RATES["PEFT_ADAPTER"] / 2
    )
    assert trainer.default_learning_rate(_spec(splits, tmp_path, learning_rate=1e-3)) == 1e-3
    hub = _spec(splits, tmp_path, base_model="Qwen/Qwen3-0.6B", tuning_mode="FULL")
    assert trainer.default_learning_rate(hub) == trainer.PRETRAINED_LEARNING_RATES["FULL"]


def test_batches_are_deterministic_length_buckets():
    lengths = [10, 500, 12, 480, 11, 490, 13, 470] * 4
    first = examples.make_batches(lengths, 4, seed=3, epoch=0)
    assert first == examples.make_batches(lengths, 4, seed=3, epoch=0)
    assert first != examples.make_batches(lengths, 4, seed=3, epoch=1)
    assert sorted(i for b in first for i in b) == list(range(len(lengths)))
    assert all(max(lengths[i] for i in b) - min(lengths[i] for i in b) < 50 for b in first)


def test_prompt_tokens_are_masked_and_eos_closes_the_completion():
    _, tokenizer = load_for_inference(EMBEDDED_MODEL)
    [ex] = examples.encode_examples(tokenizer, [("Route this:\n", '{"route_plan": []}')])
    inputs, targets = examples.collate([ex], [0], tokenizer.pad_token_id)
    completion = tokenizer('{"route_plan": []}', add_special_tokens=False)["input_ids"]
    assert ex.ids[0] == tokenizer.bos_token_id and ex.ids[-1] == tokenizer.eos_token_id
    labelled = [int(t) for t in targets[0] if t != examples.IGNORE_INDEX]
    assert labelled == completion + [tokenizer.eos_token_id]
    assert int((targets[0] == examples.IGNORE_INDEX).sum()) == ex.n_prompt


@pytest.mark.slow
def test_validation_loss_falls_on_embedded_synthetic_data(tmp_path):
    """Real embedded rows at full length (no truncation): the model really learns."""
    train, val = synthetic_splits(tmp_path / "data", n_train=16, n_val=4, seed=5)
    spec = TuningSpec.build(
        base_model=EMBEDDED_MODEL,
        training_dataset_uri=str(train),
        validation_dataset_uri=str(val),
        output_uri=str(tmp_path / "out"),
        tuning_mode="FULL",
        adapter_size=None,
        epochs=2,
    )
    job = LocalBackend(batch_size=4, progress=False).submit(spec)
    assert job.state == SUCCEEDED, job.error
    assert job.tuning_data_stats["total_truncated_example_count"] == 0
    losses = _val_losses(job)
    assert len(losses) == 3
    assert losses[0] > losses[1] > losses[2]
    assert losses[2] < losses[0] - 1.0  # nats per completion token


def test_a_misspelled_backend_option_is_refused_for_every_backend() -> None:
    with pytest.raises(TypeError, match="loction"):
        get_backend("local", loction="us-central1")
