"""The serving interface: a :class:`Predictor` answers a batch of prompts, free or constrained to
the completion's generation schema, says what it is, and closes what it started. Every way of
serving is one Predictor made by ``serving.factory``; see docs/serving.md."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

#: Seconds an online transport waits for one answer, unless told otherwise.
DEFAULT_TIMEOUT_S = 120.0
#: Retries per row after the first attempt, unless told otherwise.
DEFAULT_RETRIES = 5


@dataclass(frozen=True)
class Completion:
    """One generated answer. Token counts are None when the server does not report them
    (``tokens_estimated``: filled in from the text, chars/4). ``attempts`` counts the requests
    it took; ``meta`` holds backend facts for the cache record (a batch job's name)."""

    text: str
    latency_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    attempts: int = 1
    tokens_estimated: bool = False
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Failed:
    """A row the backend could not answer and will not retry (a batch job's failed row): scored
    as an invalid prediction, listed in the report, never cached (asked again next time)."""

    message: str


#: What a predictor yields for one row.
Result = Completion | Failed


@runtime_checkable
class Predictor(Protocol):
    """Anything that answers prompts. ``name`` identifies the model behind it: the cache key and
    the report's ``generation.source`` (``#constrained`` is appended for constrained decoding)."""

    name: str

    def predict(
        self,
        prompts: Mapping[int, str],
        *,
        max_tokens: int,
        constrained: bool = False,
        progress: bool = False,
    ) -> Iterator[dict[int, Result]]:
        """Answer every prompt (keyed by its gold row index), greedy; yield the answers in groups
        as they arrive, every index exactly once (docs/serving.md, "The Predictor interface")."""
        ...

    def describe(self) -> dict[str, Any]:
        """What the report records about this backend (``mode``, ``kind``, settings; small)."""
        ...

    def close(self) -> None:
        """Release what the predictor started (a server, an endpoint, connections)."""
        ...
