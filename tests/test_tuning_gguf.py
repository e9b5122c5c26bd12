"""A GGUF base model: SmolLM2-135M-Instruct (a real instruct model, offline) tuned locally for a
few steps, then served from the tuned checkpoint by the in-process predictor; and a base_model
naming a GGUF file that is not there is refused with the key and the path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from routerlib.config import load_config
from routerlib.errors import InputError
from routerlib.serving.local import LocalPredictor
from routerlib.tuning import cache, local, model_io
from routerlib.tuning.base import SUCCEEDED, TuningSpec
from routerlib.tuning.local import LocalBackend
from tests.support.smollm2 import smollm2_gguf

ROWS = [
    ("Route: add 2 and 3\n", '{"route_plan": ["/math(add 2 3)"]}'),
    ("Route: define entropy\n", '{"route_plan": ["/explain(entropy)"]}'),
    ("Route: plot sin x\n", '{"route_plan": ["/plot(sin x)"]}'),
    ("Route: sum 1 to 10\n", '{"route_plan": ["/math(sum 1..10)"]}'),
]


def _write(path: Path, rows: list[tuple[str, str]]) -> str:
    path.write_text(
        "".join(json.dumps({"prompt": p, "completion": c}) + "\n" for p, c in rows), "utf-8"
    )
    return str(path)


@pytest.mark.slow
def test_gguf_base_model_tunes_peft_and_serves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tuning and serving load the base twice; the GGUF file is parsed at most once (none when
    an earlier test or run left its de-quantized copy in the cache)."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    parsed: list[str] = []
    original = AutoModelForCausalLM.from_pretrained

    def spy(*args: Any, **kwargs: Any) -> Any:
        if kwargs.get("gguf_file"):
            parsed.append(kwargs["gguf_file"])
        return original(*args, **kwargs)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", spy)
    gguf = smollm2_gguf()
    spec = TuningSpec.build(
        base_model=str(gguf),
        training_dataset_uri=_write(tmp_path / "train.jsonl", ROWS),
        validation_dataset_uri=_write(tmp_path / "val.jsonl", ROWS[:1]),
        output_uri=str(tmp_path / "out"),
        tuning_mode="PEFT_ADAPTER",
        adapter_size=4,
        epochs=1,
        learning_rate=1e-3,
    )
    job = LocalBackend(batch_size=2, max_train_tokens=32, progress=False).submit(spec)
    assert job.state == SUCCEEDED, job.error
    assert job.tuning_data_stats["tuning_step_count"] == 2
    final = Path(job.checkpoint_uri)
    marker = json.loads((final / local.CHECKPOINT_MARKER).read_text())
    assert marker["kind"] == "peft" and marker["base_model"] == str(gguf.resolve())
    adapter = load_file(str(final / "adapter_model.safetensors"))
    trained = [name for name, w in adapter.items() if "lora_B" in name and bool(w.abs().sum() > 0)]
    assert trained  # LoRA B starts at zero: the steps moved it

    predictor = LocalPredictor(final, max_batch=2)  # the GGUF base, adapter merged
    [result] = predictor.generate([ROWS[0][0]], max_tokens=6)
    assert isinstance(result.text, str) and result.completion_tokens >= 1
    assert result.prompt_tokens == len(predictor.tokenizer(ROWS[0][0])["input_ids"])
    assert len(parsed) <= 1
    copy = model_io.dequantized(gguf)
    assert json.loads((copy / "source.json").read_text())["gguf"] == str(gguf.resolve())
    assert (copy / "model.safetensors").is_file() and len(parsed) <= 1


def test_a_missing_gguf_file_is_refused_naming_key_and_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "model.Q4_1.gguf"
    with pytest.raises(InputError) as info:
        TuningSpec.build(
            base_model=str(missing), training_dataset_uri="t.jsonl", output_uri="o", epochs=1
        )
    assert f"spec: base_model: {missing}: no such GGUF file" in info.value.problems
    with pytest.raises(InputError) as info:
        load_config(overrides={"base_model": str(missing)})
    assert f"config: base_model: {missing}: no such GGUF file" in info.value.problems

    present = tmp_path / "model.gguf"
    present.write_bytes(b"GGUF")
    spec = TuningSpec.build(
        base_model=str(present), training_dataset_uri="t.jsonl", output_uri="o", epochs=1
    )
    assert spec.base_model == str(present)
    assert load_config(overrides={"base_model": str(present)}).base_model == str(present)


def _gguf_spec(tmp_path: Path) -> tuple[Path, TuningSpec]:
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF not really")
    spec = TuningSpec.build(
        base_model=str(gguf),
        training_dataset_uri=_write(tmp_path / "train.jsonl", ROWS),
        output_uri=str(tmp_path / "out"),
        epochs=1,
    )
    return gguf, spec


def test_a_gguf_base_is_hashed_once_per_submission(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cache key and the de-quantized copy's folder both need the file's sha256: one read."""
    import hashlib

    monkeypatch.setenv("ROUTERLIB_CACHE", str(tmp_path / "cache"))
    gguf, spec = _gguf_spec(tmp_path)
    folder = model_io.dequantized_dir(gguf)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}", "utf-8")  # as if de-quantized before
    cache._stat_digest.cache_clear()
    reads: list[str] = []
    original = hashlib.file_digest

    def counting(handle: Any, digest: Any) -> Any:
        reads.append(handle.name)
        return original(handle, digest)

    monkeypatch.setattr(hashlib, "file_digest", counting)
    inputs = cache.key_inputs(spec, {})
    assert model_io.dequantized(gguf) == folder
    assert reads.count(str(gguf.resolve())) == 1
    assert inputs["base"]["base_model_contents"] == hashlib.sha256(gguf.read_bytes()).hexdigest()


def test_the_dequantized_copy_is_kept_per_transformers_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy de-quantized by another transformers version is not reused."""
    monkeypatch.setenv("ROUTERLIB_CACHE", str(tmp_path / "cache"))
    gguf, _ = _gguf_spec(tmp_path)
    digest = cache.model_file_digest(gguf)[:32]
    current = model_io.dequantized_dir(gguf)
    assert current.name == f"{digest}-transformers-{cache.library_version('transformers')}"
    monkeypatch.setattr(model_io, "library_version", lambda name: "0.0.1")
    assert model_io.dequantized_dir(gguf).name == f"{digest}-transformers-0.0.1"
