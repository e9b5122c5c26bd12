"""A model server stand-in that speaks the vLLM predict JSON and the OpenAI completions JSON,
answers canned completions, and injects faults on a schedule.

Routes (on RecordingServer, so every request is logged):
- ``POST …:predict``           ``{"instances": [{"prompt", …}]}`` → ``{"predictions": [text, …]}``
- ``POST /v1/completions``     ``{"model", "prompt", …}`` → ``{"choices": [{"text"}], "usage": …}``
- ``GET  /v1/models``          ``{"data": [{"id": MODEL}]}``
- ``GET  /v1/projects/…/endpoints/ID``  the endpoint resource (aiplatform reads it first)

Faults, chosen per request by ``plan(prompt, attempt)`` (attempt counts from 0 for each prompt):
``"429"`` and ``"503"`` (with a JSON error body, and ``Retry-After: retry_after`` when the
server has one), ``"timeout"``
(sleep ``hang_s`` then answer, long after the client gave up), ``"torn"`` (close the connection
without an answer). ``None`` answers normally.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.recording_server import RecordingServer, Request

MODEL_ID = "fault-model"

#: plan(prompt, attempt) -> fault name or None.
Plan = Callable[[str, int], "str | None"]


class TornConnection(Exception):
    """Raised inside a handler: the server closes the socket without answering."""


def gold_answers(gold_path: str | Path) -> dict[str, str]:
    """prompt → gold completion text of a gold JSONL file."""
    answers: dict[str, str] = {}
    for line in Path(gold_path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            answers[row["prompt"]] = row["completion"]
    return answers


def schedule(faults: dict[int, list[str | None]], prompts: list[str]) -> Plan:
    """A plan from ``{gold index: [fault of attempt 0, fault of attempt 1, …]}``."""
    by_prompt = {prompts[i]: seq for i, seq in faults.items()}

    def plan(prompt: str, attempt: int) -> str | None:
        seq = by_prompt.get(prompt, [])
        return seq[attempt] if attempt < len(seq) else None

    return plan


class FaultServer:
    """Canned answers after ``delay_s``, faults from ``plan``. Use as a context manager.

    ``answers`` maps prompt → text (unknown prompts get ``default``); ``wrap`` turns the answer
    text into what the server sends (e.g. code fences). A predict request without
    ``raw_response: true`` gets Model Garden's ``Prompt:\\n…\\nOutput:\\n…`` wrapper.
    """

    def __init__(
        self,
        answers: dict[str, str] | None = None,
        *,
        default: str = "{}",
        delay_s: float = 0.0,
        plan: Plan | None = None,
        hang_s: float = 2.0,
        wrap: Callable[[str], str] | None = None,
        usage: bool = True,
        retry_after: str | None = None,
    ) -> None:
        self.answers = answers or {}
        self.default = default
        self.delay_s = delay_s
        self.plan = plan
        self.hang_s = hang_s
        self.wrap = wrap
        self.usage = usage
        self.retry_after = retry_after
        self.attempts: Counter[str] = Counter()  # requests seen per prompt
        self.faults: Counter[str] = Counter()  # faults injected, by kind
        self._lock = threading.Lock()
        self._srv = RecordingServer()
        self._srv.route("POST", r".*:predict")(self._predict)
        self._srv.route("POST", r"/v1/completions")(self._completions)
        self._srv.route("GET", r"/v1/models")(self._models)
        self._srv.route("GET", r"/v1(?:beta1)?/(projects/[^/]+/locations/[^/]+/endpoints/[^/:]+)")(
            self._endpoint
        )

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> FaultServer:
        self._srv.__enter__()
        httpd = self._srv._httpd
        # Headers and body go out in two writes: without TCP_NODELAY, Nagle + delayed ACK add
        # ~40 ms to every keep-alive answer.
        httpd.RequestHandlerClass.disable_nagle_algorithm = True
        httpd.quiet = (TornConnection, ConnectionError)  # torn on purpose
        return self

    def __exit__(self, *exc: Any) -> None:
        self._srv.__exit__(*exc)

    @property
    def url(self) -> str:
        return self._srv.url

    @property
    def predict_url(self) -> str:
        return f"{self.url}/v1/projects/local/locations/local/endpoints/1:predict"

    @property
    def openai_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def requests(self) -> list[Request]:
        return self._srv.requests

    def bodies(self, method: str, path_regex: str) -> list[Any]:
        return self._srv.bodies(method, path_regex)

    # -- behaviour -------------------------------------------------------------------------
    def _fault(self, prompt: str) -> tuple[Any, ...] | None:
        with self._lock:
            attempt = self.attempts[prompt]
            self.attempts[prompt] += 1
        fault = self.plan(prompt, attempt) if self.plan else None
        if fault is None:
            return None
        with self._lock:
            self.faults[fault] += 1
        wait = {"Retry-After": self.retry_after} if self.retry_after is not None else {}
        if fault == "429":
            return 429, {"error": {"code": 429, "message": "rate limited"}}, wait
        if fault == "503":
            return 503, {"error": {"code": 503, "message": "model is loading"}}, wait
        if fault == "500":
            return 500, {"error": {"code": 500, "message": "internal"}}
        if fault == "400":
            return 400, {"error": {"code": 400, "message": "bad instance"}}
        if fault == "timeout":
            time.sleep(self.hang_s)
            return None
        if fault == "torn":
            raise TornConnection("closing without an answer")
        raise ValueError(f"unknown fault {fault!r}")

    def _text(self, prompt: str) -> str:
        text = self.answers.get(prompt, self.default)
        return self.wrap(text) if self.wrap else text

    def _predict(self, request: Request, match: Any) -> tuple[Any, ...]:
        instances = request.json()["instances"]
        for inst in instances:
            failed = self._fault(inst["prompt"])
            if failed:
                return failed
        if self.delay_s:
            time.sleep(self.delay_s)
        preds = []
        for inst in instances:
            text = self._text(inst["prompt"])
            if not inst.get("raw_response"):
                text = f"Prompt:\n{inst['prompt']}\nOutput:\n{text}"
            preds.append(text)
        return 200, {"predictions": preds, "deployedModelId": "1"}

    def _completions(self, request: Request, match: Any) -> tuple[Any, ...]:
        body = request.json()
        prompt = body["prompt"]
        failed = self._fault(prompt)
        if failed:
            return failed
        if self.delay_s:
            time.sleep(self.delay_s)
        text = self._text(prompt)
        answer: dict[str, Any] = {
            "id": "cmpl-1",
            "object": "text_completion",
            "model": body.get("model"),
            "choices": [{"index": 0, "text": text, "finish_reason": "stop"}],
        }
        if self.usage:
            answer["usage"] = {
                "prompt_tokens": len(prompt.split()),
                "completion_tokens": len(text.split()),
                "total_tokens": len(prompt.split()) + len(text.split()),
            }
        return 200, answer

    def _endpoint(self, request: Request, match: Any) -> tuple[int, Any]:
        """The endpoint resource aiplatform's ``Endpoint(name)`` reads before predicting."""
        name = match.group(1)
        model = name.split("/endpoints/")[0] + "/models/9"
        return 200, {
            "name": name,
            "displayName": "fault-endpoint",
            "deployedModels": [{"id": "1", "model": model, "displayName": "fault-model"}],
            "trafficSplit": {"1": 100},
        }

    def _models(self, request: Request, match: Any) -> tuple[int, Any]:
        return 200, {"object": "list", "data": [{"id": MODEL_ID, "object": "model"}]}


def serve_forever_cli() -> None:  # pragma: no cover - used by benchmarks and subprocess tests
    """``python -m tests.support.fault_server GOLD [--delay S]``: serve gold answers, print the URL."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("gold", nargs="?")
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--default", default="{}")
    args = parser.parse_args()
    from http.server import ThreadingHTTPServer

    ThreadingHTTPServer.request_queue_size = 128  # many clients connect at once (benchmarks)
    answers = gold_answers(args.gold) if args.gold else {}
    with FaultServer(answers, default=args.default, delay_s=args.delay) as srv:
        print(srv.url, flush=True)
        threading.Event().wait()


if __name__ == "__main__":  # pragma: no cover
    serve_forever_cli()
