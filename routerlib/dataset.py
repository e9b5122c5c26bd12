"""Week-2 router rows -> Vertex AI prompt/completion JSONL splits (``routerlib prepare``), byte for
byte as the original conversion. Pass 2, after routerlib.convert: split, write, manifest; the rules
and both passes are in docs/scoring.md ("The data contract").
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import random
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from routerlib import __version__, convert, models, schema, storage, synth
from routerlib.atomic import write_json
from routerlib.config import TuningMode, run_default
from routerlib.errors import InputError
from routerlib.runfolder import PREPARE_FILE, SPLITS, SYNTHETIC_ROWS_FILE

if TYPE_CHECKING:
    import pandas as pd

SPLIT_FILES: dict[str, str] = {name: f"{name}.jsonl" for name in SPLITS}
#: Line formats of the training splits. ``prompt_completion`` is the original conversion's
#: (byte-identical); ``messages`` is the turn-based chat format Vertex documents for open models:
#: one user turn (the prompt) and one assistant turn (the completion). The test split keeps
#: prompt/completion in both: the evaluator reads its prompts and gold completions.
DATA_FORMATS: tuple[str, ...] = ("prompt_completion", "messages")
MESSAGES_SPLITS: tuple[str, ...] = ("train", "validation")
TUNING_MODES: tuple[str, ...] = get_args(TuningMode)

#: At most this many lines are named in one warning.
MAX_NAMED_LINES = 20
_WRITE_BUFFER = 1 << 20

TOKEN_ESTIMATE_NOTE = (
    "estimated tokens = ceil((characters of prompt + completion) / "
    f"{models.CHARS_PER_TOKEN:g}) (about {models.CHARS_PER_TOKEN:g} characters per token for "
    "Llama/Gemma/Qwen vocabularies on English text)"
)


@dataclass
class PrepareResult:
    """What prepare wrote: the folder, the split files and the manifest (prepare.json), whose
    row counts, warnings and uploaded URIs are also properties."""

    output_dir: Path
    split_paths: dict[str, Path]
    manifest: dict[str, Any]

    manifest_path = property(lambda self: self.output_dir / PREPARE_FILE)
    counts = property(lambda self: self.manifest["counts"])
    warnings = property(lambda self: self.manifest["warnings"])
    uris = property(lambda self: self.manifest["uris"])


def _check_flags(
    val_ratio: float, test_ratio: float, limit: int | None, max_seq_len: int | None, mode: str
) -> None:
    problems = [
        f"{name} must be in [0, 1), got {value}"
        for name, value in (("--val-ratio", val_ratio), ("--test-ratio", test_ratio))
        if not 0.0 <= value < 1.0
    ]
    if not problems and val_ratio + test_ratio >= 1.0:
        problems.append(
            f"--val-ratio + --test-ratio must be below 1 (got {val_ratio + test_ratio}): "
            "nothing would be left for train"
        )
    problems += [
        f"{name} must be at least 1, got {value}"
        for name, value in (("--limit", limit), ("--max-seq-len", max_seq_len))
        if value is not None and value < 1
    ]
    if mode not in TUNING_MODES:
        problems.append(f"--tuning-mode must be one of {', '.join(TUNING_MODES)}, got {mode!r}")
    if problems:
        raise InputError("invalid prepare options: " + "; ".join(problems))


def _capped(lines: list[str], label: str, more: str) -> list[str]:
    """The first MAX_NAMED_LINES of ``lines`` and one line counting the rest."""
    extra = len(lines) - MAX_NAMED_LINES
    return lines[:MAX_NAMED_LINES] + ([f"{label}: {extra} more {more}"] if extra > 0 else [])


def _warnings(
    scan: convert.Scan,
    label: str,
    splits: dict[str, list[int]],
    max_seq_len: int,
    limit_note: str,
) -> list[str]:
    dups = [
        f"{label}:{line}: id: duplicate id {i!r} (first on line {at})"
        for i, at, line in scan.duplicates
    ]
    out = _capped(dups, label, "duplicate ids")

    # The same (stripped) user_query in two splits leaks evaluation data into training.
    split_of: dict[int, tuple[str, int]] = {}
    leaks: list[str] = []
    for name, rows in splits.items():
        for row in rows:
            seen_in, at = split_of.setdefault(scan.query_keys[row], (name, row))
            if seen_in != name:
                leaks.append(
                    f"{label}:{scan.line_numbers[row]}: user_query: same query as line "
                    f"{scan.line_numbers[at]}, which is in {seen_in} while this one is in {name}"
                )
    out += _capped(leaks, label, "queries appear in two splits")

    long_lines = [
        scan.line_numbers[i] for i in range(scan.rows) if scan.est_tokens[i] > max_seq_len
    ]
    if long_lines:
        more = len(long_lines) - MAX_NAMED_LINES
        out.append(
            f"{label}: {len(long_lines)} example(s) exceed --max-seq-len {max_seq_len} estimated "
            f"tokens{limit_note} on line(s) {', '.join(map(str, long_lines[:MAX_NAMED_LINES]))}"
            + (f" (and {more} more)" if more > 0 else "")
        )
    return out


def _consume(hasher: Any, out: Any, buffer: bytearray) -> None:
    hasher.update(buffer)
    out.write(buffer)


def _write_splits(
    spools: list[Path],
    scan: convert.Scan,
    splits: dict[str, list[int]],
    output_dir: Path,
    progress: bool,
    data_format: str = "prompt_completion",
) -> tuple[dict[str, Path], dict[str, dict[str, Any]]]:
    """Write every split to a temp file, then rename all of them; returns paths and file info
    with stats. Under ``messages`` the training splits' lines are rewritten as chat turns."""
    temps = {name: output_dir / f".{SPLIT_FILES[name]}.{os.getpid()}.tmp" for name in SPLITS}
    info: dict[str, dict[str, Any]] = {}
    offsets, lengths, which = scan.spool_offsets, scan.spool_lengths, scan.spool_index
    bar = convert.progress_bar(progress, scan.rows, "prepare: writing splits", "row")
    fds = [os.open(spool, os.O_RDONLY) for spool in spools]
    pread = os.pread
    # hashing and writing release the GIL: a helper thread does them while this thread gathers
    # the next buffer (at most two buffers exist at a time).
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare-sink")
    try:
        for name, rows in splits.items():
            hasher = hashlib.sha256()
            messages = data_format == "messages" and name in MESSAGES_SPLITS
            with open(temps[name], "wb") as out:
                pending: Future[None] = pool.submit(lambda: None)
                try:
                    buffer = bytearray()
                    for row in rows:
                        line = pread(fds[which[row]], lengths[row], offsets[row])
                        buffer += convert.to_messages(line) if messages else line
                        if len(buffer) >= _WRITE_BUFFER:
                            pending.result()
                            pending = pool.submit(_consume, hasher, out, buffer)
                            buffer = bytearray()
                finally:
                    pending.result()
                _consume(hasher, out, buffer)
                out.flush()
                os.fsync(out.fileno())
                info[name] = {"file": SPLIT_FILES[name], "rows": len(rows), "bytes": out.tell()}
            info[name].update(sha256=hasher.hexdigest(), stats=_split_stats(scan, rows))
            bar.update(len(rows))
        paths = {name: output_dir / SPLIT_FILES[name] for name in SPLITS}
        for name, final in paths.items():
            os.replace(temps[name], final)
        return paths, info
    except BaseException:
        for temp in temps.values():
            temp.unlink(missing_ok=True)
        raise
    finally:
        pool.shutdown(wait=True)
        for fd in fds:
            os.close(fd)
        bar.close()


def _split_stats(scan: convert.Scan, rows: list[int]) -> dict[str, Any]:
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
            schema.DIFFICULTIES[k]: c
            for k, c in sorted(Counter(scan.difficulty[i] for i in rows).items())
        },
        "metrics_shapes": dict(Counter(shapes[scan.metrics_shape[i]] for i in rows).most_common()),
        "est_tokens_mean": round(sum(tokens) / len(tokens), 2) if tokens else 0.0,
        "est_tokens_max": max(tokens) if tokens else 0,
    }


def prepare(
    input_path: str | os.PathLike[str] | None,
    output_dir: str | os.PathLike[str],
    *,
    val_ratio: float = run_default("val_ratio"),
    test_ratio: float = run_default("test_ratio"),
    seed: int = run_default("seed"),
    limit: int | None = None,
    max_seq_len: int | None = None,
    base_model: str = run_default("base_model"),
    tuning_mode: str = run_default("tuning_mode"),
    strict: bool = False,
    gcs_prefix: str | None = None,
    progress: bool = True,
    synth_rows: int | None = None,
    synth_seed: int | None = None,
    workers: int | None = None,
    data_format: str = run_default("data_format"),
) -> PrepareResult:
    """Convert Week-2 rows at ``input_path`` into train/validation/test JSONL in ``output_dir``.

    ``input_path`` None means the embedded synthetic rows (``synth_rows`` from ``synth_seed``); a
    gs:// input is downloaded beside the splits. Raises InputError (every problem, one line each)
    before writing any split when a row is invalid, and under ``strict`` when there are warnings.
    ``workers`` reader processes (default: convert.auto_workers) never change the output;
    ``data_format`` is the training splits' line format (DATA_FORMATS)."""
    _check_flags(val_ratio, test_ratio, limit, max_seq_len, tuning_mode)
    if data_format not in DATA_FORMATS:
        raise InputError(f"--format {data_format!r}: use one of {', '.join(DATA_FORMATS)}")
    if gcs_prefix is not None:
        storage.parse_gcs_uri(gcs_prefix)  # a malformed prefix fails before any work
    limit_seq = max_seq_len or models.max_seq_len(base_model, tuning_mode)
    out_dir = Path(output_dir)
    created_dir = not out_dir.exists()
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: --output-dir exists and is not a folder")
    if gcs_prefix is not None:
        storage.bucket_info(gcs_prefix)

    input_info: dict[str, Any] = {"embedded": input_path is None}
    if input_path is None:
        rows_n = synth_rows or synth.DEFAULT_ROWS
        seed_n = synth.DEFAULT_SEED if synth_seed is None else synth_seed
        source = synth.write_rows(out_dir / SYNTHETIC_ROWS_FILE, rows_n, seed_n)
        input_info.update(synth_rows=rows_n, synth_seed=seed_n)
    elif storage.is_gcs_uri(input_path):
        uri = input_info["uri"] = str(input_path)
        storage.parse_gcs_uri(uri, allow_empty_path=False)
        source = storage.download_file(uri, out_dir / ("input-" + uri.rsplit("/", 1)[-1]))
    else:
        source = Path(input_path)
        if not source.is_file():
            raise InputError(f"{input_path}: input file not found")
    label = str(source if input_path is None else input_path)

    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        scan, spools, (sha256, physical_lines) = convert.scan_all(
            source, out_dir, limit, workers, progress
        )
        if scan.problem_count:
            more = scan.problem_count - len(scan.problems)
            problems = [f"{label}:{line}: {text}" for line, text in scan.problems]
            problems += [f"... and {more} more problems"] if more > 0 else []
            raise InputError(
                f"{label}: {scan.problem_count} problem(s) found; nothing was written", problems
            )
        if scan.rows == 0:
            raise InputError(f"{label}: no rows (the file is empty or holds only blank lines)")

        n = scan.rows
        val, test = int(n * val_ratio), int(n * test_ratio)  # as the original
        sizes = {"train": n - val - test, "validation": val, "test": test}
        order = list(range(n))
        random.Random(seed).shuffle(order)
        cuts = [0, *itertools.accumulate(sizes.values())]  # train, then validation, then test
        splits = {name: order[cuts[i] : cuts[i + 1]] for i, name in enumerate(SPLITS)}
        note = f" ({base_model}, {tuning_mode})" if max_seq_len is None else ""
        warnings = _warnings(scan, label, splits, limit_seq, note)
        if strict and warnings:
            raise InputError(
                f"{label}: {len(warnings)} warning(s) are errors under --strict; nothing was written",
                warnings,
            )
        split_paths, info = _write_splits(spools, scan, splits, out_dir, progress, data_format)
    except BaseException:
        convert.remove_spools(out_dir)
        if created_dir:
            with contextlib.suppress(OSError):
                out_dir.rmdir()  # only when empty: never removes anything else
        raise
    convert.remove_spools(out_dir)

    manifest: dict[str, Any] = {
        "tool": "routerlib prepare",
        "routerlib_version": __version__,
        "input": {
            "path": label,
            "sha256": sha256,
            "bytes": source.stat().st_size,
            "physical_lines": physical_lines,
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
            "data_format": data_format,
        },
        "token_estimate": TOKEN_ESTIMATE_NOTE,
        "counts": {"total": n, **sizes},
        "splits": info,
        "warnings": warnings,
        "uris": {},
    }
    manifest_path = out_dir / PREPARE_FILE
    write_json(manifest_path, manifest)

    if gcs_prefix is not None:
        client = storage.gcs_client()
        manifest["uris"] = storage.upload_splits(split_paths, gcs_prefix, client)
        manifest["uris"]["manifest"] = storage.join_uri(gcs_prefix, PREPARE_FILE)
        write_json(manifest_path, manifest)
        storage.upload_file(manifest_path, manifest["uris"]["manifest"], client)
    return PrepareResult(out_dir, split_paths, manifest)


def _prepared(output_dir: str | os.PathLike[str], name: str) -> Path:
    path = Path(output_dir) / name
    if not path.is_file():
        raise InputError(f"{path}: not found (run routerlib prepare first)")
    return path


def verify_outputs(output_dir: str | os.PathLike[str]) -> None:
    """Raise InputError when a split no longer matches the sha256 recorded in prepare.json."""
    manifest = json.loads(_prepared(output_dir, PREPARE_FILE).read_text(encoding="utf-8"))
    problems = []
    for name, entry in manifest["splits"].items():
        path = Path(output_dir) / entry["file"]
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif convert.hash_file(path)[0] != entry["sha256"]:
            problems.append(f"{path}: sha256 differs from prepare.json ({name})")
    if problems:
        raise InputError(f"{output_dir}: splits do not match prepare.json", problems)


def stats_frame(output_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """One row per example of the three splits: split, first_tool, route_length, difficulty,
    est_tokens (the prepare estimate of prompt + completion)."""
    import pandas as pd

    records = []
    for name in SPLITS:
        path = _prepared(output_dir, SPLIT_FILES[name])
        for prompt, text in convert.read_prompt_completion(path) if path.stat().st_size else []:
            completion = json.loads(text)
            plan, tokens = completion["route_plan"], models.estimate_tokens(prompt + text)
            first = schema.step_tool(plan[0]) if plan else ""
            records.append((name, first, len(plan), completion["difficulty"], tokens))
    frame = pd.DataFrame.from_records(
        records, columns=["split", "first_tool", "route_length", "difficulty", "est_tokens"]
    )
    frame["split"] = pd.Categorical(frame["split"], categories=list(SPLITS), ordered=True)
    return frame
