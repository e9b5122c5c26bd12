"""The embedded tiny model: built offline, deterministic, atomic, loadable with from_pretrained."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from routerlib import schema, tinymodel
from routerlib.models import EMBEDDED_MODEL
from routerlib.tuning.model_io import load_for_inference


def _tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def test_same_seed_builds_identical_model_and_tokenizer(tmp_path, monkeypatch):
    monkeypatch.setenv("ROUTERLIB_CACHE", str(tmp_path / "a"))
    first = tinymodel.ensure_embedded_model()
    monkeypatch.setenv("ROUTERLIB_CACHE", str(tmp_path / "b"))
    second = tinymodel.ensure_embedded_model()

    assert first.name == second.name == f"tiny-router-lm-{tinymodel.config_hash()}"
    assert first.parent == tmp_path / "a"
    for name in ("tokenizer.json", "config.json", "generation_config.json", "model.safetensors"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    a, b = _tensors(first), _tensors(second)
    assert a.keys() == b.keys()
    assert all(bool((a[k] == b[k]).all()) for k in a)

    # another seed: the same tokenizer, other weights
    other = tinymodel.build_model(tmp_path / "seed1", seed=1)
    assert (other / "tokenizer.json").read_bytes() == (first / "tokenizer.json").read_bytes()
    c = _tensors(other)
    assert not bool(
        (
            c["model.layers.0.self_attn.q_proj.weight"]
            == a["model.layers.0.self_attn.q_proj.weight"]
        ).all()
    )


def test_round_trip_through_from_pretrained():
    import torch
    from transformers import LlamaForCausalLM

    model, tokenizer = load_for_inference(EMBEDDED_MODEL)
    assert isinstance(model, LlamaForCausalLM)
    params = sum(p.numel() for p in model.parameters())
    assert 4_000_000 < params < 7_000_000
    assert model.config.num_hidden_layers == 4
    assert model.config.vocab_size == len(tokenizer) <= tinymodel.TOKENIZER["vocab_size"]
    assert (tokenizer.pad_token, tokenizer.bos_token, tokenizer.eos_token) == (
        tinymodel.PAD_TOKEN,
        tinymodel.BOS_TOKEN,
        tinymodel.EOS_TOKEN,
    )
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id

    row = json.loads(
        '{"user_query": "Prove that sqrt(2) is irrational — then code it in Python", "route_plan":'
        ' ["/math(prove it)", "/code(check it, using Python)"]}'
    )
    text = schema.build_prompt(row["user_query"]) + json.dumps(row, ensure_ascii=False)
    ids = tokenizer(text)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id  # a prompt is encoded with BOS first
    assert tokenizer.decode(ids, skip_special_tokens=True) == text  # byte-level: lossless

    with torch.inference_mode():
        logits = model(torch.tensor([ids])).logits
    assert logits.shape == (1, len(ids), model.config.vocab_size)


def test_tokenizer_keeps_completions_short():
    """The guide's budget: a completion is about 1,200 tokens or fewer with the trained vocab."""
    from routerlib import synth

    _, tokenizer = load_for_inference(EMBEDDED_MODEL)
    rows = list(synth.generate_rows(40, 999))  # rows the tokenizer was not trained on
    counts = [
        len(tokenizer(schema.completion_text(r), add_special_tokens=False)["input_ids"])
        for r in rows
    ]
    chars = sum(len(schema.completion_text(r)) for r in rows)
    assert sum(counts) / len(counts) <= 1200
    assert chars / sum(counts) > 4.0  # fewer tokens than the generic 4-characters estimate


def test_resolve_base_model():
    built = tinymodel.resolve_base_model(EMBEDDED_MODEL)
    assert Path(built) == tinymodel.ensure_embedded_model()
    assert (Path(built) / tinymodel.BUILD_MARKER).is_file()
    assert tinymodel.resolve_base_model("Qwen/Qwen3-0.6B") == "Qwen/Qwen3-0.6B"
    assert tinymodel.resolve_base_model("/models/mine") == "/models/mine"


def test_crashed_build_leaves_nothing_and_half_folder_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("ROUTERLIB_CACHE", str(tmp_path))
    real_rename = os.rename

    def crash(src, dst):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, "rename", crash)
    with pytest.raises(OSError, match="simulated"):
        tinymodel.ensure_embedded_model()
    # neither the model folder nor a temp folder (only the build's lock file stays, by design)
    assert [p.name for p in tmp_path.iterdir() if p.suffix != ".lock"] == []

    monkeypatch.setattr(os, "rename", real_rename)
    dest = tinymodel.embedded_model_dir()
    dest.mkdir(parents=True)
    (dest / "config.json").write_text("{}", encoding="utf-8")  # a half copy without the marker
    assert tinymodel.ensure_embedded_model() == dest
    assert (dest / tinymodel.BUILD_MARKER).is_file()
    assert (dest / "model.safetensors").is_file()


def test_builds_started_together_build_once(tmp_path, monkeypatch):
    """Two runs started side by side on a fresh cache: one builds, the other waits and reuses it."""
    import threading
    import time

    monkeypatch.setenv("ROUTERLIB_CACHE", str(tmp_path))
    builds = []

    def slow_build(dest, seed):
        builds.append(seed)
        time.sleep(0.5)  # long enough for the other thread to find no marker and wait
        dest.mkdir(parents=True)
        (dest / tinymodel.BUILD_MARKER).write_text("{}", encoding="utf-8")
        return dest

    monkeypatch.setattr(tinymodel, "build_model", slow_build)
    found = []
    threads = [
        threading.Thread(target=lambda: found.append(tinymodel.ensure_embedded_model()))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1 and len(found) == 2 and found[0] == found[1]
