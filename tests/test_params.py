"""Every file in params/ loads and validates; the config reports every problem with file and key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from routerlib.config import RunConfig, load_config, run_default
from routerlib.errors import InputError

PARAMS = Path(__file__).resolve().parent.parent / "params"
#: The test suite's own run configs (the end-to-end run's smallest params).
TEST_PARAMS = Path(__file__).resolve().parent / "data"
#: Keys every params file states although they may equal RunConfig's default.
STATED = ("name", "backend")
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
    # flat: every value is a scalar except labels and the decoding list
    data = yaml.safe_load(text)
    assert all(
        not isinstance(v, (dict, list)) or k in ("labels", "decoding") for k, v in data.items()
    )
    # one line says where every key the file leaves out gets its default
    assert re.search(r"^# Every other key takes RunConfig's default .*docs/params\.md", text, re.M)


def _overrides_problems(path: Path) -> list[str]:
    """Keys of a params file beyond name and backend that repeat RunConfig's default."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    resolved = load_config(path).model_dump()  # as validated: 300.0 is 300
    problems = [
        f"{path.name}: {key}: missing (every file states it)" for key in STATED if key not in data
    ]
    for key, value in data.items():
        if key not in STATED and resolved[key] == run_default(key):
            problems.append(f"{path.name}: {key}: {value!r} is RunConfig's default; drop the line")
    return problems


@pytest.mark.parametrize(
    "path", [*run_params(), *sorted(TEST_PARAMS.glob("*.yaml"))], ids=lambda p: p.name
)
def test_params_files_state_name_and_backend_and_override_only(path: Path) -> None:
    assert _overrides_problems(path) == []


def test_a_key_repeating_its_default_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / "copy.yaml"
    copy.write_text("name: x\nbackend: local\nepochs: 2\nmax_tokens: 64\nsynth_rows: 300.0\n")
    assert _overrides_problems(copy) == [
        "copy.yaml: epochs: 2 is RunConfig's default; drop the line",
        "copy.yaml: synth_rows: 300.0 is RunConfig's default; drop the line",
    ]
    (tmp_path / "bare.yaml").write_text("epochs: 3\n")
    assert _overrides_problems(tmp_path / "bare.yaml") == [
        "bare.yaml: name: missing (every file states it)",
        "bare.yaml: backend: missing (every file states it)",
    ]


def test_every_runconfig_key_has_a_description() -> None:
    assert [k for k, f in RunConfig.model_fields.items() if not (f.description or "").strip()] == []


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
