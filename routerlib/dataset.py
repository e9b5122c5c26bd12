"""Week-2 router rows -> Vertex AI prompt/completion JSONL splits (``routerlib prepare``).

The output is byte-identical to the original conversion (../shared/README.md): rows in file order,
blank lines skipped, ``--limit`` keeps the first N, ``random.Random(seed).shuffle`` of the list,
``val = int(N * val_ratio)``, ``test = int(N * test_ratio)``, train first, then validation, then
test; each line ``json.dumps({"prompt": ..., "completion": ...}, ensure_ascii=False)``.

Memory does not grow with row payloads. Pass 1 reads the input line by line, validates each row,
converts it and appends the output line to a spool file beside the splits, keeping only the
spool offset, length and a few small numbers per row. ``Random.shuffle`` moves items by position
only (its swaps depend on the list length, not the values), so shuffling the list of row indices
gives the same permutation as shuffling the rows. Pass 2 copies each line from the spool, by
offset, into its split. Nothing is written under the final names until every row is valid.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import sys
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from routerlib import __version__, models, schema, storage
from routerlib.atomic import write_json
from routerlib.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

SPLITS: tuple[str, ...] = ("train", "validation", "test")
SPLIT_FILES: dict[str, str] = {name: f"{name}.jsonl" for name in SPLITS}
MANIFEST_FILE = "prepare.json"
TUNING_MODES: tuple[str, ...] = ("PEFT_ADAPTER", "FULL")

#: At most this many problem lines are listed in one error (the count of the rest follows).
MAX_PROBLEMS = 200
#: At most this many lines are named in one warning.
MAX_NAMED_LINES = 20

_BOM = b"\xef\xbb\xbf"
_READ_BUFFER = 1 << 20
_WRITE_BUFFER = 1 << 20

TOKEN_ESTIMATE_NOTE = (
    "estimated tokens = ceil(characters of prompt + completion / "
    f"{models.CHARS_PER_TOKEN:g}) (about {models.CHARS_PER_TOKEN:g} characters per token for "
    "Llama/Gemma/Qwen vocabularies on English text)"
)


@dataclass
class PrepareResult:
    """What prepare wrote: the folder, split files, row counts, the manifest and warnings."""

    output_dir: Path
    split_paths: dict[str, Path]
    counts: dict[str, int]
    manifest: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    uris: dict[str, str] = field(default_factory=dict)

    @property
    def manifest_path(self) -> Path:
        """Path of prepare.json."""
        return self.output_dir / MANIFEST_FILE


@dataclass
class _Scan:
    """Pass-1 result: per-row small numbers (no payloads) and the problems found."""

    spool_offsets: array = field(default_factory=lambda: array("q"))
    spool_lengths: array = field(default_factory=lambda: array("l"))
    line_numbers: array = field(default_factory=lambda: array("l"))
    query_keys: array = field(default_factory=lambda: array("q"))
    est_tokens: array = field(default_factory=lambda: array("l"))
    first_tool: array = field(default_factory=lambda: array("b"))
    route_length: array = field(default_factory=lambda: array("l"))
    difficulty: array = field(default_factory=lambda: array("b"))
    metrics_shape: array = field(default_factory=lambda: array("l"))
    shapes: dict[str, int] = field(default_factory=dict)
    id_lines: dict[str, int] = field(default_factory=dict)
    duplicate_ids: list[tuple[str, int, int]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0
    physical_lines: int = 0
    sha256: str = ""
    size: int = 0

    def problem(self, text: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)

    @property
    def rows(self) -> int:
        return len(self.spool_offsets)


# --------------------------------------------------------------------------------------------
# Validation of the flags (before any work)
# --------------------------------------------------------------------------------------------


def _check_flags(
    val_ratio: float,
    test_ratio: float,
    limit: int | None,
    max_seq_len: int | None,
    tuning_mode: str,
) -> None:
    problems = []
    for name, value in (("--val-ratio", val_ratio), ("--test-ratio", test_ratio)):
        if not 0.0 <= value < 1.0:
            problems.append(f"{name} must be in [0, 1), got {value}")
    if not problems and val_ratio + test_ratio >= 1.0:
        problems.append(
            f"--val-ratio + --test-ratio must be below 1 (got {val_ratio + test_ratio}): "
            "nothing would be left for train"
        )
    if limit is not None and limit < 1:
        problems.append(f"--limit must be at least 1, got {limit}")
    if max_seq_len is not None and max_seq_len < 1:
        problems.append(f"--max-seq-len must be at least 1, got {max_seq_len}")
    if tuning_mode not in TUNING_MODES:
        problems.append(
            f"--tuning-mode must be one of {', '.join(TUNING_MODES)}, got {tuning_mode!r}"
        )
    if problems:
        raise InputError("invalid prepare options: " + "; ".join(problems))


def split_sizes(n: int, val_ratio: float, test_ratio: float) -> dict[str, int]:
    """Rows per split exactly as the original: val = int(n*val_ratio), test = int(n*test_ratio)."""
    val = int(n * val_ratio)
    test = int(n * test_ratio)
    return {"train": n - val - test, "validation": val, "test": test}


# --------------------------------------------------------------------------------------------
# Pass 1: read, validate, convert to the spool
# --------------------------------------------------------------------------------------------


def _query_key(query: str) -> int:
    digest = hashlib.blake2b(query.strip().encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def _estimate_tokens(chars: int) -> int:
    """models.estimate_tokens of a text of ``chars`` characters, without building the text."""
    return math.ceil(chars / models.CHARS_PER_TOKEN)


def _tool_index(step: str) -> int:
    name = schema.tool_name(step)
    return schema.TOOLS.index(name) if name in schema.TOOLS else -1


def _decode_problem(raw: bytes, exc: UnicodeDecodeError) -> str:
    bad = raw[exc.start : exc.start + 1]
    return f"row: not valid UTF-8 (byte 0x{bad.hex()} at byte {exc.start + 1} of the line)"


def _json_problem(text: str) -> str:
    """The parse error of a line, without its line end (so a cut-off line reads as truncated)."""
    try:
        json.loads(text.rstrip("\r\n"))
    except json.JSONDecodeError as exc:
        message = exc.msg[: -len(" at")] if exc.msg.endswith(" at") else exc.msg
        return f"row: invalid JSON: {message} (column {exc.colno})"
    return "row: invalid JSON"  # pragma: no cover - the line failed to parse just before


def _scan(
    path: Path,
    label: str,
    spool: Any,
    limit: int | None,
    progress: bool,
) -> _Scan:
    scan = _Scan()
    hasher = hashlib.sha256()
    size = path.stat().st_size
    loads = json.loads
    dumps = json.dumps
    build_prompt = schema.build_prompt
    completion_text = schema.completion_text
    validate_row = schema.validate_row
    difficulties = schema.DIFFICULTIES
    spool_offset = 0
    bar = _progress_bar(progress, size, f"prepare: reading {path.name}")
    consumed = 0
    pending = 0
    number = 0
    with open(path, "rb", buffering=_READ_BUFFER) as handle:
        for raw in handle:
            hasher.update(raw)
            number += 1
            if number == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM) :]
            pending += len(raw)
            if pending >= _READ_BUFFER:
                consumed += pending
                if bar is not None:
                    bar.update(pending)
                pending = 0
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                scan.problem(f"{label}:{number}: {_decode_problem(raw, exc)}")
                continue
            if not text.strip():
                continue
            try:
                row = loads(text)
            except json.JSONDecodeError:
                scan.problem(f"{label}:{number}: {_json_problem(text)}")
                continue
            violations = validate_row(row)
            if violations:
                for violation in violations:
                    scan.problem(f"{label}:{number}: {violation}")
                continue
            prompt = build_prompt(row["user_query"])
            completion = completion_text(row)
            try:
                encoded = (
                    dumps({"prompt": prompt, "completion": completion}, ensure_ascii=False) + "\n"
                ).encode("utf-8")
            except UnicodeEncodeError as exc:
                scan.problem(
                    f"{label}:{number}: row: text holds a lone surrogate "
                    f"({exc.object[exc.start : exc.end]!r}) that cannot be written as UTF-8"
                )
                continue
            spool.write(encoded)
            scan.spool_offsets.append(spool_offset)
            scan.spool_lengths.append(len(encoded))
            spool_offset += len(encoded)
            scan.line_numbers.append(number)
            scan.query_keys.append(_query_key(row["user_query"]))
            scan.est_tokens.append(_estimate_tokens(len(prompt) + len(completion)))
            plan = row["route_plan"]
            scan.first_tool.append(_tool_index(plan[0]))
            scan.route_length.append(len(plan))
            scan.difficulty.append(difficulties.index(row["difficulty"]))
            shape = ", ".join(sorted(row["metrics"]))
            shape_id = scan.shapes.setdefault(shape, len(scan.shapes))
            scan.metrics_shape.append(shape_id)
            row_id = row["id"]
            first = scan.id_lines.setdefault(row_id, number)
            if first != number:
                scan.duplicate_ids.append((row_id, first, number))
            if limit is not None and scan.rows >= limit:
                break
        # The input checksum covers the whole file, also lines past --limit.
        tail_newlines = 0
        ends_open = False
        for chunk in iter(lambda: handle.read(_READ_BUFFER), b""):
            hasher.update(chunk)
            tail_newlines += chunk.count(b"\n")
            ends_open = not chunk.endswith(b"\n")
        scan.physical_lines = number + tail_newlines + (1 if ends_open else 0)
    if bar is not None:
        bar.update(size - consumed)
        bar.close()
    scan.sha256 = hasher.hexdigest()
    scan.size = size
    return scan


def _progress_bar(enabled: bool, total: int, desc: str) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, desc=desc, file=sys.stderr, leave=False)


# --------------------------------------------------------------------------------------------
# Warnings
# --------------------------------------------------------------------------------------------


def _name_lines(numbers: list[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:MAX_NAMED_LINES])
    more = len(numbers) - MAX_NAMED_LINES
    return shown + (f" (and {more} more)" if more > 0 else "")


def _warnings(
    scan: _Scan,
    label: str,
    order: list[int],
    sizes: dict[str, int],
    max_seq_len: int,
    limit_note: str,
) -> list[str]:
    out: list[str] = []
    for row_id, first, line in scan.duplicate_ids[:MAX_NAMED_LINES]:
        out.append(f"{label}:{line}: id: duplicate id {row_id!r} (first on line {first})")
    if len(scan.duplicate_ids) > MAX_NAMED_LINES:
        out.append(f"{label}: {len(scan.duplicate_ids) - MAX_NAMED_LINES} more duplicate ids")

    # The same (stripped) user_query in two splits leaks evaluation data into training.
    split_of: dict[int, tuple[int, int]] = {}
    leaks: list[str] = []
    position = 0
    for split_index, name in enumerate(SPLITS):
        for row in order[position : position + sizes[name]]:
            key = scan.query_keys[row]
            seen = split_of.setdefault(key, (split_index, row))
            if seen[0] != split_index:
                leaks.append(
                    f"{label}:{scan.line_numbers[row]}: user_query: same query as line "
                    f"{scan.line_numbers[seen[1]]}, which is in {SPLITS[seen[0]]} while this one "
                    f"is in {name}"
                )
        position += sizes[name]
    out.extend(leaks[:MAX_NAMED_LINES])
    if len(leaks) > MAX_NAMED_LINES:
        out.append(f"{label}: {len(leaks) - MAX_NAMED_LINES} more queries appear in two splits")

    long_lines = [
        scan.line_numbers[i] for i in range(scan.rows) if scan.est_tokens[i] > max_seq_len
    ]
    if long_lines:
        out.append(
            f"{label}: {len(long_lines)} example(s) exceed --max-seq-len {max_seq_len} estimated "
            f"tokens{limit_note} on lines {_name_lines(long_lines)}"
        )
    return out


# --------------------------------------------------------------------------------------------
# Pass 2: write the splits from the spool
# --------------------------------------------------------------------------------------------


def _write_splits(
    spool_path: Path,
    scan: _Scan,
    order: list[int],
    sizes: dict[str, int],
    output_dir: Path,
    progress: bool,
) -> tuple[dict[str, Path], dict[str, dict[str, Any]]]:
    """Write every split to a temp file, then rename all of them; returns paths and file info."""
    temps: dict[str, Path] = {}
    info: dict[str, dict[str, Any]] = {}
    offsets, lengths = scan.spool_offsets, scan.spool_lengths
    bar = _progress_bar(progress, len(order), "prepare: writing splits")
    fd = os.open(spool_path, os.O_RDONLY)
    try:
        position = 0
        for name in SPLITS:
            target = output_dir / SPLIT_FILES[name]
            temp = output_dir / f".{target.name}.{os.getpid()}.tmp"
            temps[name] = temp
            hasher = hashlib.sha256()
            written = 0
            with open(temp, "wb", buffering=0) as out:
                buffer = bytearray()
                for row in order[position : position + sizes[name]]:
                    data = os.pread(fd, lengths[row], offsets[row])
                    buffer += data
                    if len(buffer) >= _WRITE_BUFFER:
                        hasher.update(buffer)
                        out.write(buffer)
                        written += len(buffer)
                        buffer = bytearray()
                hasher.update(buffer)
                out.write(buffer)
                written += len(buffer)
                out.flush()
                os.fsync(out.fileno())
            position += sizes[name]
            if bar is not None:
                bar.update(sizes[name])
            info[name] = {
                "file": target.name,
                "rows": sizes[name],
                "bytes": written,
                "sha256": hasher.hexdigest(),
            }
        paths = {}
        for name in SPLITS:
            final = output_dir / SPLIT_FILES[name]
            os.replace(temps[name], final)
            paths[name] = final
        return paths, info
    except BaseException:
        for temp in temps.values():
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
        raise
    finally:
        os.close(fd)
        if bar is not None:
            bar.close()


# --------------------------------------------------------------------------------------------
# Stats
# --------------------------------------------------------------------------------------------


def _split_stats(scan: _Scan, rows: list[int]) -> dict[str, Any]:
    shapes = {index: shape for shape, index in scan.shapes.items()}
    tokens = [scan.est_tokens[i] for i in rows]
    first = Counter(
        schema.TOOLS[scan.first_tool[i]] if scan.first_tool[i] >= 0 else "other" for i in rows
    )
    return {
        "rows": len(rows),
        "first_tool": dict(first.most_common()),
        "route_length": {
            str(k): v for k, v in sorted(Counter(scan.route_length[i] for i in rows).items())
        },
        "difficulty": {
            d: c
            for d, c in (
                (d, sum(1 for i in rows if scan.difficulty[i] == k))
                for k, d in enumerate(schema.DIFFICULTIES)
            )
            if c
        },
        "metrics_shapes": dict(Counter(shapes[scan.metrics_shape[i]] for i in rows).most_common()),
        "est_tokens_mean": round(sum(tokens) / len(tokens), 2) if tokens else 0.0,
        "est_tokens_max": max(tokens) if tokens else 0,
    }


def _file_sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_READ_BUFFER), b""):
            hasher.update(chunk)
    return hasher.hexdigest()


# --------------------------------------------------------------------------------------------
# The public entry point
# --------------------------------------------------------------------------------------------


def prepare(
    input_path: str | os.PathLike[str] | None,
    output_dir: str | os.PathLike[str],
    *,
    val_ratio: float = 0.1,
    test_ratio: float = 0.05,
    seed: int = 7,
    limit: int | None = None,
    max_seq_len: int | None = None,
    base_model: str = models.EMBEDDED_MODEL,
    tuning_mode: str = "PEFT_ADAPTER",
    strict: bool = False,
    gcs_prefix: str | None = None,
    progress: bool = True,
    synth_rows: int | None = None,
    synth_seed: int | None = None,
) -> PrepareResult:
    """Convert Week-2 rows at ``input_path`` into train/validation/test JSONL in ``output_dir``.

    ``input_path`` None means the embedded synthetic rows (``synth_rows`` rows from
    ``synth_seed``), written to ``output_dir/synthetic_rows.jsonl`` first. A gs:// input is
    downloaded beside the splits. Raises InputError (every problem, one line each) before
    writing any split when a row is invalid, and under ``strict`` when there are warnings.
    """
    _check_flags(val_ratio, test_ratio, limit, max_seq_len, tuning_mode)
    if gcs_prefix is not None:
        storage.parse_gcs_uri(gcs_prefix)  # a malformed prefix fails before any work
    limit_seq = max_seq_len or models.max_seq_len(base_model, tuning_mode)
    out_dir = Path(output_dir)
    created_dir = not out_dir.exists()
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: --output-dir exists and is not a folder")
    if gcs_prefix is not None:
        storage.check_bucket(gcs_prefix)

    embedded = input_path is None
    if embedded:
        from routerlib import synth

        rows_n = synth_rows or synth.DEFAULT_ROWS
        seed_n = synth.DEFAULT_SEED if synth_seed is None else synth_seed
        source = synth.write_rows(out_dir / synth.EMBEDDED_FILE, rows_n, seed_n)
        label = str(source)
        input_info: dict[str, Any] = {"embedded": True, "synth_rows": rows_n, "synth_seed": seed_n}
    elif storage.is_gcs_uri(input_path):  # type: ignore[arg-type]
        uri = str(input_path)
        storage.parse_gcs_uri(uri, allow_empty_path=False)
        source = storage.download_file(uri, out_dir / ("input-" + uri.rsplit("/", 1)[-1]))
        label = uri
        input_info = {"embedded": False, "uri": uri}
    else:
        source = Path(input_path)  # type: ignore[arg-type]
        label = str(input_path)
        if not source.is_file():
            raise InputError(f"{label}: input file not found")
        input_info = {"embedded": False}

    out_dir.mkdir(parents=True, exist_ok=True)
    spool_path = out_dir / f".prepare-spool.{os.getpid()}.tmp"
    try:
        with open(spool_path, "wb", buffering=_WRITE_BUFFER) as spool:
            scan = _scan(source, label, spool, limit, progress)
        if scan.problem_count:
            more = scan.problem_count - len(scan.problems)
            problems = scan.problems + ([f"... and {more} more problems"] if more > 0 else [])
            raise InputError(
                f"{label}: {scan.problem_count} problem(s) found; nothing was written", problems
            )
        if scan.rows == 0:
            raise InputError(f"{label}: no rows (the file is empty or holds only blank lines)")

        n = scan.rows
        sizes = split_sizes(n, val_ratio, test_ratio)
        order = list(range(n))
        random.Random(seed).shuffle(order)
        note = f" ({base_model}, {tuning_mode})" if max_seq_len is None else ""
        warnings = _warnings(scan, label, order, sizes, limit_seq, note)
        if strict and warnings:
            raise InputError(
                f"{label}: {len(warnings)} warning(s) are errors under --strict; nothing was written",
                warnings,
            )
        split_paths, info = _write_splits(spool_path, scan, order, sizes, out_dir, progress)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            spool_path.unlink()
        if created_dir:
            with contextlib.suppress(OSError):
                out_dir.rmdir()  # only when empty: never removes anything else
        raise
    spool_path.unlink()

    position = 0
    for name in SPLITS:
        info[name]["stats"] = _split_stats(scan, order[position : position + sizes[name]])
        position += sizes[name]

    manifest: dict[str, Any] = {
        "tool": "routerlib prepare",
        "routerlib_version": __version__,
        "input": {
            "path": label,
            "sha256": scan.sha256,
            "bytes": scan.size,
            "physical_lines": scan.physical_lines,
            "rows_used": n,
            **input_info,
        },
        "flags": {
            "val_ratio": val_ratio,
            "test_ratio": test_ratio,
            "seed": seed,
            "limit": limit,
            "max_seq_len": limit_seq,
            "max_seq_len_from": "flag"
            if max_seq_len
            else f"models.max_seq_len({base_model!r}, {tuning_mode!r})",
            "base_model": base_model,
            "tuning_mode": tuning_mode,
            "strict": strict,
            "gcs_prefix": gcs_prefix,
        },
        "token_estimate": TOKEN_ESTIMATE_NOTE,
        "counts": {"total": n, **sizes},
        "splits": info,
        "warnings": warnings,
        "uris": {},
    }
    manifest_path = out_dir / MANIFEST_FILE
    write_json(manifest_path, manifest)

    uris: dict[str, str] = {}
    if gcs_prefix is not None:
        client = storage.gcs_client()
        uploaded = storage.upload_splits(out_dir, gcs_prefix, storage.SPLIT_FILES, client)
        uris = {name: uploaded[SPLIT_FILES[name]] for name in SPLITS}
        manifest["uris"] = {**uris, "manifest": storage.join_uri(gcs_prefix, MANIFEST_FILE)}
        write_json(manifest_path, manifest)
        storage.upload_file(manifest_path, manifest["uris"]["manifest"], client)
        uris["manifest"] = manifest["uris"]["manifest"]

    return PrepareResult(
        output_dir=out_dir,
        split_paths=split_paths,
        counts={"total": n, **sizes},
        manifest=manifest,
        warnings=warnings,
        uris=uris,
    )


def load_manifest(output_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """prepare.json of ``output_dir``."""
    path = Path(output_dir) / MANIFEST_FILE
    if not path.is_file():
        raise InputError(f"{path}: not found (run routerlib prepare first)")
    return dict(json.loads(path.read_text(encoding="utf-8")))


def verify_outputs(output_dir: str | os.PathLike[str]) -> None:
    """Raise InputError when a split no longer matches the sha256 recorded in prepare.json."""
    manifest = load_manifest(output_dir)
    problems = []
    for name, entry in manifest["splits"].items():
        path = Path(output_dir) / entry["file"]
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif _file_sha256(path) != entry["sha256"]:
            problems.append(f"{path}: sha256 differs from prepare.json ({name})")
    if problems:
        raise InputError(f"{output_dir}: splits do not match prepare.json", problems)


def stats_frame(output_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """One row per example of the three splits: split, first_tool, route_length, difficulty,
    est_tokens (the prepare estimate of prompt + completion)."""
    import pandas as pd

    records = []
    for name in SPLITS:
        path = Path(output_dir) / SPLIT_FILES[name]
        if not path.is_file():
            raise InputError(f"{path}: not found (run routerlib prepare first)")
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                example = json.loads(line)
                completion = json.loads(example["completion"])
                plan = completion["route_plan"]
                records.append(
                    {
                        "split": name,
                        "first_tool": schema.tool_name(plan[0]) if plan else "",
                        "route_length": len(plan),
                        "difficulty": completion["difficulty"],
                        "est_tokens": models.estimate_tokens(
                            example["prompt"] + example["completion"]
                        ),
                    }
                )
    frame = pd.DataFrame.from_records(
        records, columns=["split", "first_tool", "route_length", "difficulty", "est_tokens"]
    )
    frame["split"] = pd.Categorical(frame["split"], categories=list(SPLITS), ordered=True)
    return frame
