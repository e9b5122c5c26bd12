"""The resumable prediction cache, a wrapper around any predictor (lm-evaluation-harness's
``CachingLM``): answers are appended to a JSONL file as they arrive (fsync'd per group) and read
back on the next run. One writer per cache (``fcntl.flock``, dropped by the OS when the process
dies); a torn last line (a kill mid-write) is cut off. See docs/serving.md.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from routerlib.errors import InputError, RemoteError
from routerlib.models import estimate_tokens
from routerlib.serving.base import Completion, Predictor, Result
from routerlib.serving.wire import CONSTRAINED_SUFFIX

#: The Completion fields a cache record holds, in record order.
_FIELDS = ("attempts", "text", "latency_s", "prompt_tokens", "completion_tokens")


def prompt_sha(text: str) -> str:
    """A short hash of a prompt (what a cache record and a batch row key carry)."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def target_name(predictor: Predictor, constrained: bool) -> str:
    """The model a cache record names: the predictor, ``#constrained`` for constrained decoding."""
    return predictor.name + (CONSTRAINED_SUFFIX if constrained else "")


def load_cache(cache_path: str | os.PathLike[str]) -> dict[int, dict[str, Any]]:
    """Records of a prediction cache by gold index (the last one wins). A torn last line is cut
    off the file; any other line that does not parse is skipped (its row is asked again)."""
    path = Path(cache_path)
    if not path.exists():
        return {}
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):  # torn tail: keep only whole lines
        with open(path, "r+b") as handle:
            handle.truncate(end)
            handle.flush()
            os.fsync(handle.fileno())
        data = data[:end]
    records: dict[int, dict[str, Any]] = {}
    for line in data.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if (
            isinstance(rec, dict)
            and isinstance(rec.get("index"), int)
            and isinstance(rec.get("text"), str)
        ):
            records[rec["index"]] = rec
    return records


def cache_record(
    index: int, prompt: str, target: str, max_tokens: int, answer: Completion
) -> dict[str, Any]:
    """The cache line of one answer; token counts the server did not report are estimated from
    the text (chars/4) and marked ``tokens_estimated``."""
    rec: dict[str, Any] = {"index": index, "prompt_sha": prompt_sha(prompt), "target": target}
    rec |= {"max_tokens": max_tokens, **{k: getattr(answer, k) for k in _FIELDS}, **answer.meta}
    if answer.tokens_estimated or None in (answer.prompt_tokens, answer.completion_tokens):
        if answer.prompt_tokens is None:
            rec["prompt_tokens"] = estimate_tokens(prompt)
        if answer.completion_tokens is None:
            rec["completion_tokens"] = estimate_tokens(answer.text)
        rec["tokens_estimated"] = True
    return rec


def completion_of(rec: dict[str, Any]) -> Completion:
    """A cache record read back as the answer it holds."""
    answer = {k: rec[k] for k in (*_FIELDS, "tokens_estimated") if k in rec}
    known = {"index", "prompt_sha", "target", "max_tokens", *answer}
    return Completion(**answer, meta={k: v for k, v in rec.items() if k not in known})


class CachingPredictor:
    """``inner`` behind the cache file ``cache_path``: the same interface, resumable. A row whose
    prompt changed is asked again; a cache of another model or ``max_tokens`` is refused."""

    def __init__(self, inner: Predictor, cache_path: str | os.PathLike[str]) -> None:
        self.inner = inner
        self.cache_path = Path(cache_path)
        self.name = inner.name

    def predict(
        self,
        prompts: Mapping[int, str],
        *,
        max_tokens: int,
        constrained: bool = False,
        progress: bool = False,
    ) -> Iterator[dict[int, Result]]:
        """Cached answers first (one group), then ``inner``'s answers for the rest as they come."""
        cache = self.cache_path
        cache.parent.mkdir(parents=True, exist_ok=True)
        target = target_name(self.inner, constrained)
        with open(cache, "a", encoding="utf-8") as handle:
            try:  # one writer at a time
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise InputError(
                    f"{cache}: another run is writing this cache right now; wait for it to end "
                    "or write the report elsewhere"
                ) from None
            kept: dict[int, Result] = {}
            for index, rec in load_cache(cache).items():
                if index not in prompts or rec.get("prompt_sha") != prompt_sha(prompts[index]):
                    continue  # another gold row now sits at this index: ask again
                if rec.get("target") != target or rec.get("max_tokens") != max_tokens:
                    raise InputError(
                        f"{cache}: cached predictions come from {rec.get('target')} with "
                        f"max_tokens={rec.get('max_tokens')}, not {target} with "
                        f"max_tokens={max_tokens}; delete the cache or write the report elsewhere"
                    )
                kept[index] = completion_of(rec)
            if kept:
                yield kept
            pending = {i: p for i, p in prompts.items() if i not in kept}
            if not pending:
                return
            cached = len(kept)
            try:
                for chunk in self.inner.predict(
                    pending, max_tokens=max_tokens, constrained=constrained, progress=progress
                ):
                    lines: list[str] = []
                    answers: dict[int, Result] = {}
                    for i, answer in chunk.items():
                        if isinstance(answer, Completion):
                            rec = cache_record(i, prompts[i], target, max_tokens, answer)
                            lines.append(json.dumps(rec, ensure_ascii=False) + "\n")
                            answer = completion_of(rec)  # as a resumed run reads it back
                        answers[i] = answer
                    if lines:
                        handle.write("".join(lines))
                        handle.flush()
                        os.fsync(handle.fileno())
                        cached += len(lines)
                    yield answers
            except RemoteError as exc:
                raise RemoteError(
                    f"{exc} — {cached}/{len(prompts)} predictions cached in {cache}; "
                    "run again to resume",
                    exc.problems,
                ) from None

    def describe(self) -> dict[str, Any]:
        return {**self.inner.describe(), "cache_path": str(self.cache_path)}

    def close(self) -> None:
        self.inner.close()
