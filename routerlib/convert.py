"""Week-2 rows -> training lines, pass 1 of ``prepare`` (docs/scoring.md, "The data contract"):
each row is validated (a fast exact-type check before ``schema.validate_row``), converted and
appended to a spool file, keeping a few small numbers per row (a ``Scan``); inputs of
PARALLEL_MIN_BYTES or more are scanned in byte ranges by several processes and merged in file
order (the same result for any number of workers). The training line formats and their reader.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import sys
import threading
from array import array
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from routerlib import metrics, models, progress, schema
from routerlib.errors import InputError
from routerlib.progress import is_terminal

#: At most this many problem lines are listed in one error (the count of the rest follows).
MAX_PROBLEMS = 200

_BOM = b"\xef\xbb\xbf"
#: Inputs at least this big are scanned by several processes (no --limit).
PARALLEL_MIN_BYTES = 32 << 20
MAX_WORKERS = 4
CHUNKS_PER_WORKER = 4
#: The string escaper json.dumps uses with ensure_ascii=False.
_escape = json.encoder.encode_basestring  # type: ignore[attr-defined]
_READ_BUFFER = 1 << 20
_WRITE_BUFFER = 1 << 20


@dataclass
class Scan:
    """Pass-1 result: per-row small numbers (no payloads), the problems and the duplicate ids (id,
    first line, line) found. A range's scan numbers lines from 1; merging shifts them to the file's."""

    spool_index: array = field(default_factory=lambda: array("h"))
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
    ids: list[str] = field(default_factory=list)
    problems: list[tuple[int, str]] = field(default_factory=list)
    duplicates: list[tuple[str, int, int]] = field(default_factory=list)
    problem_count: int = 0
    lines: int = 0

    def problem(self, line: int, text: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append((line, text))

    @property
    def rows(self) -> int:
        return len(self.spool_offsets)


def _query_key(query: str) -> int:
    digest = hashlib.blake2b(query.strip().encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def _json_problem(text: str) -> str:
    """The parse error of a line, without its line end (so a cut-off line reads as truncated)."""
    try:
        json.loads(text.rstrip("\r\n"))
    except json.JSONDecodeError as exc:
        message = exc.msg[: -len(" at")] if exc.msg.endswith(" at") else exc.msg
        return f"row: invalid JSON: {message} (column {exc.colno})"
    return "row: invalid JSON"  # pragma: no cover - the line failed to parse just before


#: Field -> (the exact JSON types it takes, whether items must be str, whether it is required).
_REQUIRED = frozenset(schema.REQUIRED_ROW_KEYS)
_FIELDS = tuple(
    (key, schema.JSON_TYPES[kind.removesuffix("[str]")], kind == "list[str]", key in _REQUIRED)
    for key, kind in schema.ROW_FIELD_TYPES.items()
)
_MISSING = object()


def _quick_valid(row: Any) -> bool:
    """A fast check that implies ``schema.validate_row(row) == []``; False means "ask the schema"
    (it takes exact JSON types only, so a False for a valid row only costs the full validation)."""
    if type(row) is not dict:
        return False
    for key, kinds, of_str, required in _FIELDS:
        value = row.get(key, _MISSING)
        if value is _MISSING:
            if required:
                return False
        elif type(value) not in kinds:
            return False
        elif of_str and any(type(item) is not str for item in value):
            return False
    plan = row["route_plan"]
    if not plan or row["difficulty"] not in schema.DIFFICULTIES:
        return False
    return all(schema.validate_route_step(step) is None for step in plan)


def _encode_line(prompt: str, completion: str) -> bytes:
    """``json.dumps({"prompt": prompt, "completion": completion}, ensure_ascii=False) + "\n"``
    as UTF-8, from the encoder's own string escaper (the same bytes, less overhead). The
    completion is json.dumps output (no control characters), so two ``str.replace`` calls escape
    it as the escaper would."""
    quoted = completion.replace("\\", "\\\\").replace('"', '\\"')
    return ('{"prompt": ' + _escape(prompt) + ', "completion": "' + quoted + '"}\n').encode("utf-8")


def to_messages(line: bytes) -> bytes:
    """A prompt/completion line as a ``messages`` line: one user turn, one assistant turn."""
    obj = json.loads(line)
    turns = [{"role": "user", "content": obj["prompt"]}]
    turns.append({"role": "assistant", "content": obj["completion"]})
    return (json.dumps({"messages": turns}, ensure_ascii=False) + "\n").encode("utf-8")


def example_pair(obj: Any) -> tuple[str, str] | None:
    """(prompt, completion) of one training line in either format, or None when it is neither.
    A ``messages`` line's prompt is its turns before the last joined by newlines, its completion
    the last turn, which must be the assistant's."""
    if not isinstance(obj, dict):
        return None
    prompt, completion = obj.get("prompt"), obj.get("completion")
    if isinstance(prompt, str) and isinstance(completion, str):
        return prompt, completion
    turns = obj.get("messages")
    if (
        isinstance(turns, list)
        and len(turns) >= 2
        and all(isinstance(t, dict) and isinstance(t.get("content"), str) for t in turns)
        and turns[-1].get("role") == "assistant"
    ):
        return "\n".join(t["content"] for t in turns[:-1]), turns[-1]["content"]
    return None


def example_problem(obj: Any) -> str:
    """Why a decoded line is not a training line in either format ("" when it is one)."""
    if example_pair(obj) is not None:
        return ""
    if not isinstance(obj, dict):
        return "expected an object with prompt and completion"
    if "messages" in obj:
        return "messages: expected chat turns ending with the assistant's"
    return "; ".join(
        f"{key}: must be a string (got {type(obj[key]).__name__ if key in obj else 'missing'})"
        for key in ("prompt", "completion")
        if not isinstance(obj.get(key), str)
    )


def read_prompt_completion(path: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """(prompt, completion) pairs of a JSONL file in either line format; InputError naming the
    file and line of every bad line (metrics.read_jsonl, example_problem)."""
    rows = metrics.read_jsonl(path, "dataset", example_problem)
    if not rows:
        raise InputError(f"{path}: no examples")
    return [pair for _, obj in rows if (pair := example_pair(obj)) is not None]


def _scan_range(
    path: str,
    start: int,
    end: int | None,
    spool_path: str,
    limit: int | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> Scan:
    """Read, validate and convert the lines in bytes [start, end) of ``path`` (``end`` None: to
    the end of the file), appending output lines to ``spool_path``. ``start`` is 0 or just
    after a newline. Stops after ``limit`` rows. ``on_bytes`` hears of progress now and then."""
    scan = Scan()
    difficulties, tools, chars_per_token = schema.DIFFICULTIES, schema.TOOLS, models.CHARS_PER_TOKEN
    spool_offset = number = 0
    position = start
    with (
        open(path, "rb", buffering=_READ_BUFFER) as handle,
        open(spool_path, "wb", buffering=_WRITE_BUFFER) as spool,
    ):
        handle.seek(start)
        for raw in handle:
            if end is not None and position >= end:
                break
            position += len(raw)
            number += 1
            if on_bytes is not None and number % 1000 == 0:
                on_bytes(position)
            if number == 1 and start == 0 and raw.startswith(_BOM):
                raw = raw[len(_BOM) :]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                bad = f"byte 0x{raw[exc.start : exc.start + 1].hex()} at byte {exc.start + 1}"
                scan.problem(number, f"row: not valid UTF-8 ({bad} of the line)")
                continue
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError:
                scan.problem(number, _json_problem(text))
                continue
            if not _quick_valid(row):
                violations = schema.validate_row(row)
                if violations:
                    for violation in violations:
                        scan.problem(number, str(violation))
                    continue
            prompt = schema.build_prompt(row["user_query"])
            completion = schema.completion_text(row)
            try:
                encoded = _encode_line(prompt, completion)
            except UnicodeEncodeError as exc:
                scan.problem(
                    number,
                    f"row: text holds a lone surrogate ({exc.object[exc.start : exc.end]!r}) "
                    "that cannot be written as UTF-8",
                )
                continue
            spool.write(encoded)
            scan.spool_offsets.append(spool_offset)
            scan.spool_lengths.append(len(encoded))
            spool_offset += len(encoded)
            scan.line_numbers.append(number)
            scan.query_keys.append(_query_key(row["user_query"]))
            # models.estimate_tokens of prompt + completion, without building the text
            scan.est_tokens.append(math.ceil((len(prompt) + len(completion)) / chars_per_token))
            plan = row["route_plan"]
            tool = schema.step_tool(plan[0])
            scan.first_tool.append(tools.index(tool) if tool in tools else -1)
            scan.route_length.append(len(plan))
            scan.difficulty.append(difficulties.index(row["difficulty"]))
            shape = ", ".join(sorted(row["metrics"]))
            scan.metrics_shape.append(scan.shapes.setdefault(shape, len(scan.shapes)))
            scan.ids.append(row["id"])
            if limit is not None and scan.rows >= limit:
                break
    scan.lines = number
    return scan


def _chunk_bounds(path: Path, size: int, chunks: int) -> list[tuple[int, int | None]]:
    """Byte ranges of roughly equal size, each starting at 0 or just after a newline."""
    starts = [0]
    with open(path, "rb") as handle:
        for k in range(1, chunks):
            handle.seek(max(size * k // chunks, starts[-1]))
            handle.readline()  # move to the start of the next line
            position = handle.tell()
            if position >= size:
                break
            if position > starts[-1]:
                starts.append(position)
    ends: list[int | None] = [*starts[1:], None]
    return list(zip(starts, ends, strict=True))


def _merge(parts: list[Scan]) -> Scan:
    """Join range scans in file order: shift line numbers, number the spools, remap metrics
    shapes, find the duplicate ids."""
    merged = Scan()
    id_lines: dict[str, int] = {}
    line_offset = 0
    for index, part in enumerate(parts):
        merged.spool_index.extend(array("h", [index]) * part.rows)
        merged.spool_offsets.extend(part.spool_offsets)
        merged.spool_lengths.extend(part.spool_lengths)
        merged.line_numbers.extend(array("l", (n + line_offset for n in part.line_numbers)))
        for name in ("query_keys", "est_tokens", "first_tool", "route_length", "difficulty"):
            getattr(merged, name).extend(getattr(part, name))
        remap = {
            local: merged.shapes.setdefault(shape, len(merged.shapes))
            for shape, local in part.shapes.items()
        }
        merged.metrics_shape.extend(array("l", (remap[k] for k in part.metrics_shape)))
        for row_id, line in zip(part.ids, part.line_numbers, strict=True):
            first = id_lines.setdefault(row_id, line + line_offset)
            if first != line + line_offset:
                merged.duplicates.append((row_id, first, line + line_offset))
        for line, text in part.problems:
            merged.problem(line + line_offset, text)  # counts the listed ones; then the rest
        merged.problem_count += part.problem_count - len(part.problems)
        line_offset += part.lines
    merged.lines = line_offset
    return merged


def hash_file(path: Path) -> tuple[str, int]:
    """sha256 and the number of physical lines of a file."""
    hasher = hashlib.sha256()
    newlines = 0
    last = b"\n"
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_READ_BUFFER), b""):
            hasher.update(chunk)
            newlines += chunk.count(b"\n")
            last = chunk[-1:]
    return hasher.hexdigest(), newlines + (0 if last == b"\n" else 1)


def auto_workers(size: int, limit: int | None) -> int:
    if limit is not None or size < PARALLEL_MIN_BYTES:
        return 1
    return max(1, min(MAX_WORKERS, os.cpu_count() or 1))


def remove_spools(spool_dir: Path) -> None:
    for spool in spool_dir.glob(f".prepare-spool.{os.getpid()}.*.tmp"):
        spool.unlink(missing_ok=True)


def scan_all(
    source: Path, spool_dir: Path, limit: int | None, workers: int | None, show: bool
) -> tuple[Scan, list[Path], tuple[str, int]]:
    """Pass 1 over the whole input, in ``workers`` processes (None: auto_workers) when above 1."""
    size = source.stat().st_size
    workers = auto_workers(size, limit) if workers is None else workers
    one = workers <= 1 or limit is not None
    bounds = [(0, None)] if one else _chunk_bounds(source, size, workers * CHUNKS_PER_WORKER)
    spools = [spool_dir / f".prepare-spool.{os.getpid()}.{i}.tmp" for i in range(len(bounds))]
    desc = f"prepare: reading {source.name}"
    if one:
        with progress_bar(show, size, desc, "B") as bar:
            part = _scan_range(
                str(source), 0, None, str(spools[0]), limit, lambda at: bar.update(at - bar.n)
            )
        parts, digest = [part], hash_file(source)
    else:
        # fork is cheapest, but forking a process that runs other threads (a Jupyter kernel) can
        # deadlock a child on a lock held at fork time; spawn starts clean interpreters instead.
        can_fork = "fork" in multiprocessing.get_all_start_methods()
        method = "fork" if threading.active_count() == 1 and can_fork else "spawn"
        context = multiprocessing.get_context(method)
        bar = progress_bar(show, len(bounds), desc, "chunk")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool, bar:
            futures = [
                pool.submit(_scan_range, str(source), start, end, str(spool))
                for (start, end), spool in zip(bounds, spools, strict=True)
            ]
            digest = hash_file(source)  # while the workers read
            parts = []
            for future in futures:
                parts.append(future.result())
                bar.update(1)
    return _merge(parts), spools, digest


def progress_bar(enabled: bool, total: int, desc: str, unit: str = "it") -> Any:
    """A tqdm bar on stderr when it is a terminal; silent elsewhere (logs and notebook streams
    never get partial lines). Byte counts are shown scaled (kB, MB)."""
    on = enabled and is_terminal(sys.stderr)
    return progress.progress_bar(
        on, total, desc=desc, unit=unit, unit_scale=unit == "B", leave=False
    )
