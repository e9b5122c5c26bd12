"""The contract table (routerlib/models.py) is the one home of per-model rules: checked against
the installed google-genai, read by config validation and the tuning spec, and the params files
of the three Vertex models agree with it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from routerlib import config, models
from routerlib.config import load_config
from routerlib.errors import InputError
from routerlib.tuning import base
from routerlib.tuning.base import TuningSpec
from tests.support.vertex_params import EDITS

ROOT = Path(__file__).resolve().parent.parent
VERTEX_PARAMS = {
    "llama31_8b.yaml": "meta/llama3_1@llama-3.1-8b-instruct",
    "gemma3_27b.yaml": "google/gemma3@gemma-3-27b-it",
    "qwen3_32b.yaml": "qwen/qwen3@qwen3-32b",
}


def test_every_block_says_what_it_was_read_from_and_when() -> None:
    assert set(VERTEX_PARAMS.values()) <= set(models.CONTRACTS)
    for model_id, row in models.CONTRACTS.items():
        assert row.model_id == model_id
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", row.checked)
        assert row.source.startswith("https://docs.cloud.google.com/")
        assert row.deploy_source
        assert isinstance(row.deploy, models.DeployHardware) and row.deploy.accelerator_count >= 1
        assert set(row.tuning_modes) <= {models.PEFT, models.FULL}
        assert "global" in row.tuning_regions
    assert models.contract(models.EMBEDDED_MODEL) is None
    assert models.model_info(models.EMBEDDED_MODEL) is not None  # the older API still answers
    assert models.max_seq_len("meta/llama3_1@llama-3.1-8b-instruct", "PEFT_ADAPTER") == 4096
    assert models.max_seq_len("meta/llama3_1@llama-3.1-8b-instruct", "FULL") == 8192
    assert models.max_seq_len("qwen/qwen3@qwen3-32b", "FULL") == 8192
    assert models.max_seq_len("some/hf-model") == models.DEFAULT_MAX_SEQ_LEN


def test_hyperparameters_and_adapter_sizes_agree_with_the_installed_sdk() -> None:
    from google.genai import types

    fields = types.CreateTuningJobConfig.model_fields
    assert "1P models only" in (fields["learning_rate_multiplier"].description or "")
    assert "OSS models only" in (fields["learning_rate"].description or "")
    names = {"ONE": 1, "TWO": 2, "FOUR": 4, "EIGHT": 8, "SIXTEEN": 16, "THIRTY_TWO": 32}
    sdk_sizes = {
        names[m.value.removeprefix("ADAPTER_SIZE_")]
        for m in types.AdapterSize
        if m.value.removeprefix("ADAPTER_SIZE_") in names
    }
    for row in models.CONTRACTS.values():
        assert not row.takes("learning_rate_multiplier") and row.takes("learning_rate")
        assert set(row.adapter_sizes) <= sdk_sizes


def test_adapter_sizes_are_what_the_vertex_sdk_takes() -> None:
    import typing

    from vertexai.tuning import _supervised_tuning

    hints = typing.get_type_hints(_supervised_tuning.train)
    (literal,) = (a for a in typing.get_args(hints["adapter_size"]) if a is not type(None))
    assert typing.get_args(literal) == models.ADAPTER_SIZES
    doc = _supervised_tuning.train.__doc__ or ""
    assert re.search(r"learning_rate: Learning rate for tuning\.\s+Can only be used with OSS", doc)
    assert re.search(r"learning_rate_multiplier: [^:]*Can only\s+be used with 1P models", doc)


def test_the_table_is_the_one_home_of_adapter_sizes() -> None:
    assert not hasattr(config, "ADAPTER_SIZES") and not hasattr(base, "ADAPTER_SIZES")
    hits = [
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "routerlib").rglob("*.py")
        if "(1, 4, 8, 16, 32)" in p.read_text(encoding="utf-8")
    ]
    assert hits == ["routerlib/models.py"]
    with pytest.raises(InputError) as info:
        TuningSpec.build(training_dataset_uri="gs://b/t", output_uri="gs://b/o", adapter_size=2)
    assert any("one of (1, 4, 8, 16, 32)" in line for line in info.value.lines())


@pytest.mark.parametrize(("name", "model_id"), sorted(VERTEX_PARAMS.items()))
def test_vertex_params_files_validate_against_the_table(name: str, model_id: str) -> None:
    cfg = load_config(ROOT / "params" / name, EDITS)
    row = models.contract(cfg.base_model)
    assert cfg.base_model == model_id and row is not None
    assert cfg.learning_rate_multiplier is None
    assert cfg.location in row.tuning_regions
    assert cfg.deploy_location != "global"
    assert (
        models.DeployHardware(cfg.machine_type, cfg.accelerator_type, cfg.accelerator_count)
        == row.deploy
    )
    problems = models.contract_problems(dict(cfg))
    assert problems == []


@pytest.mark.parametrize(
    ("overrides", "line"),
    [
        (
            {"base_model": "google/gemma3@gemma-3-27b-it", "learning_rate_multiplier": 0.5},
            "learning_rate_multiplier: Gemma 3 27B IT is an open model; Vertex takes learning_rate",
        ),
        ({"location": "asia-east1"}, "location: Llama 3.1 8B Instruct is not tuned in"),
        ({"deploy_location": "global"}, "deploy_location: endpoints live in a region"),
        ({"checkpoint": "epoch-0"}, "checkpoint: 'epoch-0' must be best, final or epoch-N"),
        ({"checkpoint": "latest"}, "checkpoint: 'latest' must be best, final or epoch-N"),
        (
            {"base_model": "google/gemma-3-27b-it"},
            "base_model: google/gemma-3-27b-it is an older id; the current Vertex id is "
            "google/gemma3@gemma-3-27b-it",
        ),
    ],
)
def test_config_refuses_what_the_table_refuses(overrides: dict, line: str) -> None:
    with pytest.raises(InputError) as info:
        load_config(ROOT / "params" / "llama31_8b.yaml", overrides)
    assert any(line in got for got in info.value.lines()), info.value.lines()


def test_config_accepts_global_and_epoch_checkpoints() -> None:
    cfg = load_config(
        ROOT / "params" / "llama31_8b.yaml",
        {**EDITS, "location": "global", "checkpoint": "epoch-2"},
    )
    assert (cfg.location, cfg.deploy_location, cfg.checkpoint) == (
        "global",
        "us-central1",
        "epoch-2",
    )
    # the local backend keeps the multiplier (it scales its own default learning rate) and takes
    # any Hugging Face id, including the one Vertex renamed
    assert load_config(overrides={"learning_rate_multiplier": 2.0}).learning_rate_multiplier == 2.0
    local = load_config(overrides={"base_model": "google/gemma-3-27b-it", "location": "global"})
    assert local.base_model == "google/gemma-3-27b-it"


def test_the_table_is_packaged_yaml_and_a_broken_row_names_file_line_and_field(
    tmp_path: Path,
) -> None:
    from routerlib.paths import packaged_file
    from routerlib.tables import read_yaml

    source = packaged_file(models.MODELS_FILE)
    assert read_yaml(source, models.ModelTable, "model table") == models.TABLE
    text = source.read_text(encoding="utf-8")
    broken = tmp_path / "models.yaml"
    edited = text.replace("    max_seq_len_full: 8192\n", "    max_seq_len_full: lots\n", 1)
    edited = edited.replace(
        "    display: Llama 3.1 8B\n", "    display: Llama 3.1 8B\n    gpus: 2\n", 1
    )
    broken.write_text(edited, encoding="utf-8")
    lines = text.splitlines()
    bad_len = lines.index("    max_seq_len_full: 8192") + 1
    unknown = lines.index("    display: Llama 3.1 8B") + 2
    with pytest.raises(InputError) as info:
        read_yaml(broken, models.ModelTable, "model table")
    assert str(info.value) == f"{broken}: invalid model table"
    problems = info.value.problems
    assert any(
        p.startswith(f"{broken}:{bad_len}: contracts.0.max_seq_len_full: ") for p in problems
    )
    assert f"{broken}:{unknown}: contracts.1.gpus: unknown key" in problems, problems
