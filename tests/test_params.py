"""Every file in params/ loads and validates; the config reports every problem with file and key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from routerlib.config import RunConfig, load_config
from routerlib.errors import InputError

PARAMS = Path(__file__).resolve().parent.parent / "params"
#: Default files shipped inside the package (routerlib/data), and the validator of each.
PACKAGED = PARAMS.parent / "routerlib" / "data"
#: Files in params/ or routerlib/data/ that are not run configs, and the validator of each.
SPECIAL = {
    "pricing.yaml": "routerlib.pricing:load_pricing",
    "thresholds.yaml": "routerlib.metrics:load_thresholds",
}


def run_params() -> list[Path]:
    return sorted(p for p in PARAMS.glob("*.yaml") if p.name not in SPECIAL)


@pytest.mark.parametrize("path", run_params(), ids=lambda p: p.name)
def test_run_params_validate(path: Path) -> None:
    config = load_config(path)
    assert isinstance(config, RunConfig)
    text = path.read_text(encoding="utf-8")
    # the header holds the exact papermill command for this file, kernel named
    assert re.search(
        rf"papermill notebooks/\S+\.ipynb \S+ -k python3 -p params_file params/{path.name}", text
    )
    assert text.splitlines()[0].startswith("#")
    # flat: every value is a scalar except labels
    import yaml

    data = yaml.safe_load(text)
    assert all(not isinstance(v, (dict, list)) or k == "labels" for k, v in data.items())
    assert set(data) == set(RunConfig.model_fields), "params files spell out every key"


@pytest.mark.parametrize("name", sorted(SPECIAL))
def test_special_params_validate(name: str) -> None:
    module_name, func = SPECIAL[name].split(":")
    module = pytest.importorskip(module_name)
    getattr(module, func)(PACKAGED / name)


def test_every_params_file_is_covered() -> None:
    covered = {p.name for p in run_params()} | set(SPECIAL)
    assert {p.name for p in PARAMS.iterdir() if p.is_file()} <= covered


def test_unknown_keys_and_bad_values_are_all_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nepochz: 3\ntuning_mode: FULL\nadapter_size: 16\nepochs: 0\n")
    with pytest.raises(InputError) as info:
        load_config(bad)
    lines = info.value.lines()
    assert f"{bad}: epochz: unknown key" in lines
    assert any(line.startswith(f"{bad}: epochs:") for line in lines)
    assert any(line.startswith(f"{bad}: adapter_size:") and "FULL" in line for line in lines)


def test_not_a_mapping_and_missing_file(tmp_path: Path) -> None:
    listing = tmp_path / "list.yaml"
    listing.write_text("- a\n- b\n")
    with pytest.raises(InputError, match="flat mapping"):
        load_config(listing)
    with pytest.raises(InputError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_vertex_needs_a_bucket() -> None:
    with pytest.raises(InputError) as info:
        load_config(PARAMS / "llama31_8b.yaml", {"gcs_prefix": ""})
    assert any(": gcs_prefix: backend vertex needs it" in line for line in info.value.lines())
    with pytest.raises(InputError) as info:
        load_config(PARAMS / "local.yaml", {"gcs_prefix": "gs:/bucket/x"})
    assert any("is not gs://bucket[/prefix]" in line for line in info.value.lines())
