"""routerlib prepare: byte identity with the original conversion, real-data proof, odd files,
the manifest, warnings, and bounded memory."""

from __future__ import annotations

import hashlib
import json
import random
import tracemalloc
from pathlib import Path

import pytest

from routerlib import dataset, schema, synth
from routerlib.cli import main
from routerlib.errors import InputError
from routerlib.runfolder import SYNTHETIC_ROWS_FILE

SPLIT_NAMES = ("train.jsonl", "validation.jsonl", "test.jsonl")


def reference_convert(
    path: Path, out: Path, val_ratio: float, test_ratio: float, seed: int, limit: int | None
) -> None:
    """The plain original algorithm: load everything, shuffle the rows, slice, dump."""
    with open(path, encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    if limit:
        rows = rows[:limit]
    random.Random(seed).shuffle(rows)
    n = len(rows)
    val = int(n * val_ratio)
    test = int(n * test_ratio)
    parts = {
        "train.jsonl": rows[: n - val - test],
        "validation.jsonl": rows[n - val - test : n - test],
        "test.jsonl": rows[n - test :],
    }
    out.mkdir(parents=True, exist_ok=True)
    for name, part in parts.items():
        with open(out / name, "w", encoding="utf-8") as handle:
            for row in part:
                prompt = schema.PROMPT_TEMPLATE + row["user_query"].strip() + "\n"
                completion = json.dumps(
                    {k: row[k] for k in schema.COMPLETION_KEYS}, ensure_ascii=False
                )
                handle.write(
                    json.dumps({"prompt": prompt, "completion": completion}, ensure_ascii=False)
                    + "\n"
                )


def _bytes(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in SPLIT_NAMES}


@pytest.fixture(scope="module")
def synth_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth.write_rows(tmp_path_factory.mktemp("synth") / "rows.jsonl", 400, 11)


def test_real_rows_reproduce_the_benchmark(real_data: Path, tmp_path: Path) -> None:
    result = dataset.prepare(
        real_data / "week2_rows_sample.jsonl", tmp_path / "out", progress=False
    )
    assert result.counts == {"total": 291, "train": 248, "validation": 29, "test": 14}
    produced: dict[str, str] = {}
    for name in dataset.SPLITS:
        for line in result.split_paths[name].read_text(encoding="utf-8").splitlines():
            example = json.loads(line)
            assert list(example) == ["prompt", "completion"]
            produced[example["prompt"]] = example["completion"]
    with open(real_data / "deep_router_benchmark.jsonl", encoding="utf-8") as handle:
        bench = {b["prompt"]: b["completion"] for b in map(json.loads, handle)}
    assert len(bench) == 291
    assert produced == bench
    assert result.warnings == []


@pytest.mark.parametrize(
    ("val_ratio", "test_ratio", "seed", "limit"),
    [
        (0.1, 0.05, 7, None),
        (0.2, 0.1, 1, 150),
        (0.0, 0.0, 3, None),
        (0.33, 0.33, 42, 97),
        (0.1, 0.05, 7, 1),
        (0.5, 0.0, 2024, 10_000),
    ],
)
def test_byte_identical_to_reference(
    synth_file: Path,
    tmp_path: Path,
    val_ratio: float,
    test_ratio: float,
    seed: int,
    limit: int | None,
) -> None:
    reference_convert(synth_file, tmp_path / "ref", val_ratio, test_ratio, seed, limit)
    dataset.prepare(
        synth_file,
        tmp_path / "new",
        val_ratio=val_ratio,
        test_ratio=test_ratio,
        seed=seed,
        limit=limit,
        progress=False,
    )
    assert _bytes(tmp_path / "new") == _bytes(tmp_path / "ref")


def test_real_rows_byte_identical_to_reference(real_data: Path, tmp_path: Path) -> None:
    src = real_data / "week2_rows_sample.jsonl"
    for seed, limit in ((7, None), (13, 200)):
        reference_convert(src, tmp_path / f"ref{seed}", 0.1, 0.05, seed, limit)
        code = main(
            [
                "prepare",
                "--input",
                str(src),
                "--output-dir",
                str(tmp_path / f"new{seed}"),
                "--seed",
                str(seed),
                "--no-progress",
                *(["--limit", str(limit)] if limit else []),
            ]
        )
        assert code == 0
        assert _bytes(tmp_path / f"new{seed}") == _bytes(tmp_path / f"ref{seed}")


def test_odd_but_valid_files_convert_like_the_clean_file(synth_file: Path, tmp_path: Path) -> None:
    clean = synth_file.read_bytes()
    lines = clean.splitlines(keepends=True)[:60]
    odd = (
        b"\xef\xbb\xbf"
        + b"\n\n".join(line.rstrip(b"\n") + b"\r\n" for line in lines)
        + b"   \r\n\n"
    )
    odd = odd.replace(lines[30].rstrip(b"\n"), b"\t\r\n" + lines[30].rstrip(b"\n"), 1)
    (tmp_path / "clean.jsonl").write_bytes(b"".join(lines))
    (tmp_path / "odd.jsonl").write_bytes(odd)
    a = dataset.prepare(tmp_path / "clean.jsonl", tmp_path / "a", progress=False)
    b = dataset.prepare(tmp_path / "odd.jsonl", tmp_path / "b", progress=False)
    assert a.counts == b.counts == {"total": 60, "train": 51, "validation": 6, "test": 3}
    assert _bytes(tmp_path / "a") == _bytes(tmp_path / "b")
    # No trailing newline on the last line is fine too.
    (tmp_path / "nonl.jsonl").write_bytes(b"".join(lines).rstrip(b"\n"))
    dataset.prepare(tmp_path / "nonl.jsonl", tmp_path / "c", progress=False)
    assert _bytes(tmp_path / "c") == _bytes(tmp_path / "a")


def test_manifest(synth_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = dataset.prepare(synth_file, out, seed=5, limit=300, progress=False)
    manifest = json.loads((out / "prepare.json").read_text(encoding="utf-8"))
    assert manifest == result.manifest
    assert manifest["input"]["sha256"] == hashlib.sha256(synth_file.read_bytes()).hexdigest()
    assert manifest["input"]["physical_lines"] == 400
    assert manifest["flags"]["seed"] == 5 and manifest["flags"]["limit"] == 300
    assert manifest["flags"]["max_seq_len"] == 4096
    assert manifest["counts"] == {"total": 300, "train": 255, "validation": 30, "test": 15}
    for name in dataset.SPLITS:
        entry = manifest["splits"][name]
        data = (out / entry["file"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["bytes"] == len(data)
        assert entry["rows"] == data.count(b"\n") == manifest["counts"][name]
        stats = entry["stats"]
        for key in ("first_tool", "route_length", "difficulty", "metrics_shapes"):
            assert sum(stats[key].values()) == entry["rows"]
        completions = [json.loads(json.loads(line)["completion"]) for line in data.splitlines()]
        assert stats["difficulty"] == {
            d: sum(c["difficulty"] == d for c in completions)
            for d in schema.DIFFICULTIES
            if any(c["difficulty"] == d for c in completions)
        }
        tokens = [
            -(-len(json.loads(line)["prompt"] + json.loads(line)["completion"]) // 4)
            for line in data.splitlines()
        ]
        assert stats["est_tokens_max"] == max(tokens)
        assert stats["est_tokens_mean"] == round(sum(tokens) / len(tokens), 2)
    dataset.verify_outputs(out)
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_stats_frame_and_plot(synth_file: Path, tmp_path: Path) -> None:
    from routerlib import data_plots

    dataset.prepare(synth_file, tmp_path, limit=200, progress=False)
    frame = dataset.stats_frame(tmp_path)
    assert list(frame.columns) == [
        "split",
        "first_tool",
        "route_length",
        "difficulty",
        "est_tokens",
    ]
    assert frame["split"].astype(str).value_counts().to_dict() == {
        "train": 170,
        "validation": 20,
        "test": 10,
    }
    assert set(frame["first_tool"]) <= set(schema.TOOLS)
    fig = data_plots.split_figure(frame)
    assert len(fig.axes) == 4
    fig.savefig(tmp_path / "stats.png")
    assert (tmp_path / "stats.png").stat().st_size > 1000


def _row(i: int, query: str | None = None) -> dict:
    return next(synth.generate_rows(1, i)) | {
        "id": f"r{i}",
        **({"user_query": query} if query else {}),
    }


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_warnings_and_strict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [_row(i) for i in range(40)]
    rows[5]["id"] = rows[2]["id"]  # duplicate id: line 6 repeats line 3
    rows[30]["user_query"] = "  " + rows[10]["user_query"]  # same stripped query
    src = _write(tmp_path / "rows.jsonl", rows)
    result = dataset.prepare(
        src,
        tmp_path / "out",
        val_ratio=0.5,
        test_ratio=0.0,
        seed=1,
        max_seq_len=1000,
        progress=False,
    )
    text = "\n".join(result.warnings)
    assert f"{src}:6: id: duplicate id 'r2' (first on line 3)" in text
    assert "exceed --max-seq-len 1000 estimated tokens on line(s) 1, 2, 3" in text
    assert result.manifest["warnings"] == result.warnings
    # Lines 11 and 31 share a query; whether they land in different splits depends on the shuffle.
    order = list(range(40))
    random.Random(1).shuffle(order)
    train = set(order[:20])
    crosses = (10 in train) != (30 in train)
    assert ("user_query: same query as line" in text) == crosses

    out = tmp_path / "strict"
    code = main(
        ["prepare", "--input", str(src), "--output-dir", str(out), "--strict", "--no-progress"]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert f"{src}:6: id: duplicate id 'r2' (first on line 3)" in err
    assert "Traceback" not in err
    assert not out.exists()


def test_max_seq_len_default_follows_model(tmp_path: Path) -> None:
    long_row = _row(1)
    long_row["route_rationale"] = "x" * 20_000  # about 6,200 estimated tokens
    src = _write(tmp_path / "rows.jsonl", [_row(0), long_row])
    peft = dataset.prepare(
        src, tmp_path / "a", base_model="meta/llama3_1@llama-3.1-8b-instruct", progress=False
    )
    assert any("exceed --max-seq-len 4096" in w and "on line(s) 2" in w for w in peft.warnings)
    full = dataset.prepare(
        src,
        tmp_path / "b",
        base_model="meta/llama3_1@llama-3.1-8b-instruct",
        tuning_mode="FULL",
        progress=False,
    )
    assert full.warnings == []
    assert full.manifest["flags"]["max_seq_len"] == 8192


def test_embedded_default_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["prepare", "--output-dir", str(tmp_path / "out"), "--synth-rows", "120", "--no-progress"]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "embedded synthetic rows" in out
    manifest = json.loads((tmp_path / "out" / "prepare.json").read_text(encoding="utf-8"))
    assert manifest["input"]["embedded"] is True and manifest["counts"]["total"] == 120
    again = tmp_path / "again.jsonl"
    synth.write_rows(again, 120, synth.DEFAULT_SEED)
    assert again.read_bytes() == (tmp_path / "out" / SYNTHETIC_ROWS_FILE).read_bytes()


def test_memory_does_not_grow_with_payloads(tmp_path: Path) -> None:
    """300 rows of ~150 kB each (45 MB): prepare's traced peak stays a small fraction of it."""
    base = _row(0)
    src = tmp_path / "big.jsonl"
    with open(src, "w", encoding="utf-8") as handle:
        for i in range(300):
            row = dict(
                base,
                id=f"b{i}",
                user_query=f"query {i} " + base["user_query"],
                route_rationale=f"{i} " + "y" * 150_000,
            )
            handle.write(json.dumps(row) + "\n")
    size = src.stat().st_size
    tracemalloc.start()
    try:
        dataset.prepare(src, tmp_path / "out", max_seq_len=10**9, progress=False, workers=1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size > 40_000_000
    assert peak < 8_000_000, f"peak {peak} bytes for a {size}-byte input"


def _tricky_rows(n: int) -> list[dict]:
    """Rows whose text exercises every escaping rule: quotes, backslashes, control characters,
    non-ASCII, U+2028, DEL, astral characters, and numbers/nesting inside metrics."""
    specials = [
        'say "hi"',
        "back\\slash",
        "tab\there",
        "nl\nx",
        "\x00\x1f\x7f",
        "é ü 中 🚀",
        "\u2028\u2029",
        "</script>",
        "  padded  ",
    ]
    rows = []
    for i, row in enumerate(synth.generate_rows(n, 21)):
        s = specials[i % len(specials)]
        row["user_query"] = f"  {s} {row['user_query']} {s}\n"
        row["route_rationale"] += s
        row["tags"] = [*row["tags"], s]
        row["metrics"] = {
            **row["metrics"],
            "extra": {"x": [1, 2.5, -0.0, 1e300, True, None], "s": s},
        }
        rows.append(row)
    return rows


def test_escaping_is_byte_identical(tmp_path: Path) -> None:
    src = tmp_path / "tricky.jsonl"
    with open(src, "w", encoding="utf-8") as handle:
        for row in _tricky_rows(90):
            handle.write(json.dumps(row, ensure_ascii=bool(len(row["id"]) % 2)) + "\n")
    reference_convert(src, tmp_path / "ref", 0.1, 0.05, 7, None)
    dataset.prepare(src, tmp_path / "new", progress=False)
    assert _bytes(tmp_path / "new") == _bytes(tmp_path / "ref")


@pytest.mark.parametrize("workers", [2, 3])
def test_parallel_scan_is_identical(synth_file: Path, tmp_path: Path, workers: int) -> None:
    """Several reader processes give the same bytes, manifest numbers, line numbers and warnings."""
    lines = synth_file.read_bytes().splitlines(keepends=True)
    lines[250] = lines[3].replace(b'"id": "synth_000003"', b'"id": "dup"')  # same query, new id
    lines[260] = lines[260].replace(b'"id": "synth_000260"', b'"id": "synth_000001"')
    src = tmp_path / "rows.jsonl"
    src.write_bytes(b"\xef\xbb\xbf" + b"".join(lines[:200]) + b"\n\n" + b"".join(lines[200:]))
    one = dataset.prepare(src, tmp_path / "one", workers=1, progress=False)
    many = dataset.prepare(src, tmp_path / "many", workers=workers, progress=False)
    assert _bytes(tmp_path / "one") == _bytes(tmp_path / "many")
    assert one.warnings == many.warnings
    assert any(":263: id: duplicate id 'synth_000001' (first on line 2)" in w for w in one.warnings)
    assert one.manifest["splits"] == many.manifest["splits"]
    assert one.manifest["input"] == many.manifest["input"]
    assert one.manifest["input"]["physical_lines"] == 402

    bad = (
        b"".join(lines[:5])
        + b"[]\n"
        + b"".join(lines[5:300])
        + b'{"id": 1}\n'
        + b"".join(lines[300:])
    )
    src.write_bytes(bad)
    with pytest.raises(InputError) as caught:
        dataset.prepare(src, tmp_path / "bad", workers=workers, progress=False)
    problems = caught.value.problems
    assert problems[0] == f"{src}:6: row: must be a JSON object, got list"
    assert problems[1] == f"{src}:302: id: must be str, got number"
    assert not (tmp_path / "bad").exists()


def test_parallel_scan_with_threads_running(synth_file: Path, tmp_path: Path) -> None:
    """With other threads alive (as in a notebook kernel) the readers are spawned, not forked."""
    import threading

    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, daemon=True)
    thread.start()
    try:
        dataset.prepare(synth_file, tmp_path / "spawned", workers=2, progress=False)
    finally:
        stop.set()
        thread.join()
    dataset.prepare(synth_file, tmp_path / "serial", workers=1, progress=False)
    assert _bytes(tmp_path / "spawned") == _bytes(tmp_path / "serial")
