"""prepare --format messages beside the default prompt/completion (byte-identical to before)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from routerlib import dataset, pricing
from routerlib.cli import main
from routerlib.config import load_config
from routerlib.convert import example_pair, read_prompt_completion
from routerlib.errors import InputError

ROWS = 40


def _prepare(out: Path, **kwargs: object) -> dataset.PrepareResult:
    return dataset.prepare(None, out, synth_rows=ROWS, progress=False, workers=1, **kwargs)  # type: ignore[arg-type]


def test_default_format_is_the_original_conversion_byte_for_byte(tmp_path: Path) -> None:
    plain = _prepare(tmp_path / "plain")
    named = _prepare(tmp_path / "named", data_format="prompt_completion")
    for name in dataset.SPLITS:
        a = (plain.output_dir / f"{name}.jsonl").read_bytes()
        assert a == (named.output_dir / f"{name}.jsonl").read_bytes()
        for line in a.decode("utf-8").splitlines():
            obj = json.loads(line)
            assert list(obj) == ["prompt", "completion"]
            assert line == json.dumps(obj, ensure_ascii=False)  # the original's json.dumps
    assert plain.manifest["flags"]["data_format"] == "prompt_completion"


def test_messages_format_holds_the_same_examples_as_chat_turns(tmp_path: Path) -> None:
    plain = _prepare(tmp_path / "plain")
    chat = _prepare(tmp_path / "chat", data_format="messages")
    assert chat.manifest["flags"]["data_format"] == "messages"
    for name in ("train", "validation"):
        before = (plain.output_dir / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
        after = (chat.output_dir / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
        assert len(before) == len(after) > 0
        for old, new in zip(before, after, strict=True):
            pair = json.loads(old)
            assert json.loads(new) == {
                "messages": [
                    {"role": "user", "content": pair["prompt"]},
                    {"role": "assistant", "content": pair["completion"]},
                ]
            }
            assert example_pair(json.loads(new)) == (pair["prompt"], pair["completion"])
        assert chat.manifest["splits"][name]["sha256"] != plain.manifest["splits"][name]["sha256"]
    # the evaluator reads test.jsonl's prompts and gold completions: unchanged
    test = "test.jsonl"
    assert (chat.output_dir / test).read_bytes() == (plain.output_dir / test).read_bytes()
    dataset.verify_outputs(chat.output_dir)  # the manifest's hashes are those of what was written
    # the estimate and the local backend read both formats alike
    train_plain, train_chat = plain.output_dir / "train.jsonl", chat.output_dir / "train.jsonl"
    assert pricing.example_characters(train_chat) == pricing.example_characters(train_plain)
    assert read_prompt_completion(train_chat) == read_prompt_completion(train_plain)
    assert len(dataset.stats_frame(chat.output_dir)) == ROWS


def test_bad_messages_lines_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"messages": [{"role": "user", "content": "only a question"}]}) + "\n"
    )
    with pytest.raises(InputError) as info:
        read_prompt_completion(bad)
    assert any(f"{bad}:1: messages:" in line for line in info.value.lines())
    with pytest.raises(InputError, match=r"bad.jsonl:1: messages:"):
        pricing.example_characters(bad)


def test_cli_and_config_take_the_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    argv = ["prepare", "--output-dir", str(out), "--synth-rows", "20", "--no-progress"]
    assert main([*argv, "--format", "messages"]) == 0
    first = json.loads((out / "train.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert [t["role"] for t in first["messages"]] == ["user", "assistant"]
    with pytest.raises(SystemExit):
        main([*argv, "--format", "chatml"])
    assert load_config(overrides={"data_format": "messages"}).data_format == "messages"
    with pytest.raises(InputError) as info:
        load_config(overrides={"data_format": "chatml"})
    assert any("data_format" in line for line in info.value.lines())
