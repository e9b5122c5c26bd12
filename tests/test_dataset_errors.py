"""Bad input: one line per problem naming file, line and field; exit 2; no traceback; nothing left."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from routerlib import dataset, synth
from routerlib.cli import main
from routerlib.errors import InputError


def _good_lines(n: int = 8) -> list[bytes]:
    return [
        (json.dumps(row, ensure_ascii=False) + "\n").encode() for row in synth.generate_rows(n, 3)
    ]


def _with(line_no: int, content: bytes, n: int = 8) -> bytes:
    lines = _good_lines(n)
    lines[line_no - 1] = content
    return b"".join(lines)


def _mutate(line_no: int, change) -> bytes:
    lines = _good_lines()
    row = json.loads(lines[line_no - 1])
    change(row)
    lines[line_no - 1] = (json.dumps(row) + "\n").encode()
    return b"".join(lines)


CASES = [
    (
        "truncated",
        _with(7, _good_lines()[6][:300] + b"\n"),
        ["rows.jsonl:7: row: invalid JSON: Unterminated string"],
    ),
    (
        "malformed",
        _with(2, b'{"id": "x",, }\n'),
        ["rows.jsonl:2: row: invalid JSON: Expecting property name"],
    ),
    ("array", _with(3, b"[1, 2]\n"), ["rows.jsonl:3: row: must be a JSON object, got list"]),
    ("null", _with(3, b"null\n"), ["rows.jsonl:3: row: must be a JSON object, got null"]),
    ("number", _with(4, b"42\n"), ["rows.jsonl:4: row: must be a JSON object, got number"]),
    ("missing", _mutate(7, lambda r: r.pop("user_query")), ["rows.jsonl:7: user_query: missing"]),
    (
        "ill-typed",
        _mutate(5, lambda r: r.update(tags="a,b")),
        ["rows.jsonl:5: tags: must be list[str], got str"],
    ),
    (
        "unknown tool",
        _mutate(1, lambda r: r["route_plan"].__setitem__(1, "/python(run it)")),
        ["rows.jsonl:1: route_plan[1]: unknown tool in '/python(run it)'"],
    ),
    (
        "bad mode",
        _mutate(
            1, lambda r: r["route_plan"].__setitem__(0, '/general-search(query="q", mode=deep)')
        ),
        ["rows.jsonl:1: route_plan[0]: bad search mode 'deep'"],
    ),
    (
        "empty plan",
        _mutate(8, lambda r: r.update(route_plan=[])),
        ["rows.jsonl:8: route_plan: must not be empty"],
    ),
    (
        "difficulty",
        _mutate(6, lambda r: r.update(difficulty="expert")),
        ["rows.jsonl:6: difficulty: unknown difficulty 'expert'"],
    ),
    (
        "not utf-8",
        _with(5, b'{"id": "caf\xe9"}\n'),
        ["rows.jsonl:5: row: not valid UTF-8 (byte 0xe9 at byte 12 of the line)"],
    ),
    (
        "lone surrogate",
        _mutate(2, lambda r: r.update(user_query="bad \ud800 query")),
        ["rows.jsonl:2: row: text holds a lone surrogate"],
    ),
    (
        "several",
        _with(2, b"[]\n").replace(b'"difficulty": "advanced"', b'"difficulty": 3', 1),
        [
            "rows.jsonl:2: row: must be a JSON object, got list",
            ": difficulty: must be str, got number",
        ],
    ),
]


@pytest.mark.parametrize(("content", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_rows(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    content: bytes,
    expected: list[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("rows.jsonl").write_bytes(content)
    out = tmp_path / "existing"
    out.mkdir()
    (out / "keep.txt").write_text("mine", encoding="utf-8")
    code = main(["prepare", "--input", "rows.jsonl", "--output-dir", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    for text in expected:
        assert text in err, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("routerlib prepare: rows.jsonl:")
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]  # nothing written, nothing removed


@pytest.mark.parametrize(
    "content", [b"", b"\n\n  \n", b"\xef\xbb\xbf\r\n"], ids=["empty", "blank", "bom-blank"]
)
def test_empty_input(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes) -> None:
    src = tmp_path / "rows.jsonl"
    src.write_bytes(content)
    code = main(
        ["prepare", "--input", str(src), "--output-dir", str(tmp_path / "out"), "--no-progress"]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "no rows (the file is empty or holds only blank lines)" in err
    assert not (tmp_path / "out").exists()


def test_every_problem_is_reported_before_failing(tmp_path: Path) -> None:
    lines = _good_lines(30)
    for i in (3, 9, 27):
        lines[i - 1] = b"{}\n"
    src = tmp_path / "rows.jsonl"
    src.write_bytes(b"".join(lines))
    with pytest.raises(InputError) as caught:
        dataset.prepare(src, tmp_path / "out", progress=False)
    problems = caught.value.problems
    assert {p.split(":")[1] for p in problems} == {"3", "9", "27"}
    assert sum(p.endswith("user_query: missing") for p in problems) == 3
    assert len(problems) == 3 * 12  # id, user_query and the 10 completion keys on each line
    assert "36 problem(s)" in str(caught.value)


def test_missing_input_and_bad_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "prepare",
            "--input",
            str(tmp_path / "nope.jsonl"),
            "--output-dir",
            str(tmp_path / "o"),
            "--no-progress",
        ]
    )
    assert code == 2 and "input file not found" in capsys.readouterr().err
    with pytest.raises(InputError, match="nothing would be left for train"):
        dataset.prepare(tmp_path / "nope.jsonl", tmp_path / "o", val_ratio=0.6, test_ratio=0.4)
    with pytest.raises(SystemExit):
        main(["prepare", "--output-dir", "o", "--val-ratio", "1.5"])
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("prefix", "words"),
    [
        ("gs:/bucket/x", "two slashes"),
        ("gs://", "no bucket name"),
        ("s3://bucket/x", "not s3:"),
        ("bucket/x", "must start with gs://"),
        ("gs:///x", "no bucket name"),
        ("gs://Bad_Bucket!/x", "not a valid bucket name"),
        ("gs://bucket//x", "empty path segment"),
    ],
)
def test_malformed_gcs_prefix_fails_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], prefix: str, words: str
) -> None:
    out = tmp_path / "out"
    code = main(["prepare", "--output-dir", str(out), "--gcs-prefix", prefix, "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"bad Cloud Storage URI {prefix!r}" in err and words in err
    assert not out.exists()
