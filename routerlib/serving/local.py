"""Serve a checkpoint on this machine: batched generation (:class:`LocalPredictor`), the
in-process serving kind (:class:`InProcessPredictor`) and an HTTP server speaking the predict
JSON of a vLLM-backed Vertex endpoint plus OpenAI-style ``/v1/completions`` (:class:`LocalServer`).
See docs/serving.md, "The local server and its limits".
"""

from __future__ import annotations

import contextlib
import functools
import json
import queue
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from routerlib.errors import InputError, RouterlibError
from routerlib.models import gguf_path
from routerlib.schema import completion_json_schema
from routerlib.serving.base import Completion, Result
from routerlib.serving.constrained import SchemaLogitsProcessor, compiled
from routerlib.serving.wire import (
    Instance,
    format_prediction,
    parse_completions_body,
    parse_predict_body,
)
from routerlib.tuning.model_io import load_for_inference

#: ``loader(checkpoint_dir) -> (model, tokenizer)``.
Loader = Callable[[str | Path], tuple[Any, Any]]

PREDICT_PATH = re.compile(
    r"/(?P<version>v1|v1beta1)/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
    r"/endpoints/(?P<endpoint>[^/:]+):predict"
)


@dataclass(frozen=True)
class GenerationResult:
    """One completion: its text (EOS and padding removed), token counts and the batch's time."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    finish_reason: str = "stop"  # "stop" (EOS) or "length" (max_tokens reached)


class LocalPredictor:
    """Greedy (temperature 0) or sampled batched generation from a checkpoint folder (with the
    default loader also anything ``tuning.model_io.load_for_inference`` takes, such as the embedded
    base model's name). Thread-safe: calls to :meth:`generate` run one at a time. Also a
    ``serving.base.Predictor`` (its kind ``local`` is :class:`InProcessPredictor`)."""

    kind = "local"
    mode = "local"

    def __init__(
        self,
        checkpoint_dir: str | Path,
        *,
        loader: Loader | None = None,
        max_batch: int = 16,
        constrained: bool = False,
    ) -> None:
        if str(checkpoint_dir).startswith("gs://"):
            raise InputError(
                f"{checkpoint_dir}: local serving needs a local folder; copy the checkpoint "
                "down first (or deploy it with `routerlib deploy`)"
            )
        path = Path(checkpoint_dir)
        if path.exists() and not path.is_dir() and gguf_path(str(path)) is None:
            raise InputError(f"{checkpoint_dir}: not a checkpoint folder")
        if not path.exists() and loader is not None:
            raise InputError(f"{checkpoint_dir}: checkpoint folder not found")
        if max_batch < 1:
            raise InputError(f"max_batch must be at least 1, got {max_batch}")
        self.checkpoint_dir = path
        #: The model (cache key, report source): ``checkpoint:<absolute folder>`` or a base
        #: model's name as it is.
        self.name = f"checkpoint:{path.resolve() if path.exists() else checkpoint_dir}"
        self.max_batch = max_batch
        self.model, self.tokenizer = (loader or load_for_inference)(path)
        self.model.eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        config_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        ids = [config_eos] if isinstance(config_eos, int) else list(config_eos or [])
        ids.append(self.tokenizer.eos_token_id)
        self.eos_token_ids: list[int] = sorted({int(i) for i in ids if i is not None})
        #: The schema every prompt is constrained to unless a request names its own (None: free).
        self.default_schema = completion_json_schema(generation=True) if constrained else None
        self._lock = threading.Lock()

    def predict(
        self,
        prompts: Mapping[int, str],
        *,
        max_tokens: int,
        constrained: bool = False,
        progress: bool = False,
    ) -> Iterator[dict[int, Result]]:
        """One group of answers per generation batch of ``max_batch`` (greedy; constrained: every
        row under the generation schema)."""
        schema = completion_json_schema(generation=True) if constrained else None
        rows = list(prompts.items())
        for start in range(0, len(rows), self.max_batch):
            batch = rows[start : start + self.max_batch]
            results = self.generate(
                [prompt for _, prompt in batch], max_tokens, schemas=[schema] * len(batch)
            )
            yield {
                index: Completion(r.text, r.seconds, r.prompt_tokens, r.completion_tokens)
                for (index, _), r in zip(batch, results, strict=True)
            }

    def describe(self) -> dict[str, Any]:
        return {"mode": self.mode, "kind": self.kind, "max_batch": self.max_batch}

    def close(self) -> None:
        """Nothing to stop: the model is freed with the predictor."""

    def compiled_schema(self, schema: dict[str, Any]) -> Any:
        """``schema`` compiled for this model's tokenizer (cached across calls)."""
        width = int(self.model.get_output_embeddings().weight.shape[0])
        return compiled(self.tokenizer, schema, vocab_size=width, eos_ids=self.eos_token_ids)

    def generate(
        self,
        prompts: Sequence[str],
        max_tokens: int | Sequence[int],
        temperature: float = 0.0,
        schemas: Sequence[dict[str, Any] | None] | None = None,
    ) -> list[GenerationResult]:
        """Complete every prompt in batches of ``max_batch``, each at its own EOS or limit
        (``max_tokens``: one, or one per prompt) and under its schema (``schemas``: one per
        prompt, None = free; default :attr:`default_schema` for all)."""
        prompts = list(prompts)
        schemas = [self.default_schema] * len(prompts) if schemas is None else list(schemas)
        limits = [max_tokens] * len(prompts) if isinstance(max_tokens, int) else list(max_tokens)
        for name, given in (("schemas", schemas), ("max_tokens", limits)):
            if len(given) != len(prompts):
                raise InputError(f"{name}: {len(given)} values for {len(prompts)} prompts")
        for i, (prompt, limit) in enumerate(zip(prompts, limits, strict=True)):
            if not isinstance(prompt, str):
                raise InputError(f"prompts[{i}]: must be a string")
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                raise InputError(f"max_tokens[{i}]: must be a positive integer, got {limit!r}")
        if not isinstance(temperature, int | float) or temperature < 0:
            raise InputError(f"temperature: must be a number >= 0, got {temperature!r}")
        with self._lock:
            return [
                result
                for at in range(0, len(prompts), self.max_batch)
                for result in self._generate_batch(
                    prompts[at : at + self.max_batch],
                    limits[at : at + self.max_batch],
                    schemas[at : at + self.max_batch],
                    float(temperature),
                )
            ]

    def _generate_batch(
        self,
        prompts: list[str],
        limits: list[int],
        schemas: list[dict[str, Any] | None],
        temperature: float,
    ) -> list[GenerationResult]:
        import torch
        from transformers import GenerationConfig, LogitsProcessorList

        processors = LogitsProcessorList()
        if any(schema is not None for schema in schemas):
            per_row = [self.compiled_schema(s) if s is not None else None for s in schemas]
            # greedy decoding with no processor after it: the processor picks the token itself
            # and makes a row's mask only when its best-scored token breaks the schema
            processors.append(
                SchemaLogitsProcessor(per_row, max_new_tokens=list(limits), greedy=temperature <= 0)
            )

        begin = time.perf_counter()
        encoded = self.tokenizer(prompts, return_tensors="pt", padding=True)
        device = next(self.model.parameters()).device
        input_ids = encoded["input_ids"].to(device)
        attention_mask = encoded["attention_mask"].to(device)
        sampling = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}
        config = GenerationConfig(
            max_new_tokens=max(limits),
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.eos_token_ids or None,
            bos_token_id=self.tokenizer.bos_token_id,
            use_cache=True,
            **(sampling if temperature > 0 else {"do_sample": False}),
        )
        with torch.inference_mode():
            output = self.model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                generation_config=config,
                logits_processor=processors,
            )
        seconds = time.perf_counter() - begin
        eos = set(self.eos_token_ids)
        results = []
        for row, limit in enumerate(limits):
            new_tokens = output[row, input_ids.shape[1] :].tolist()[:limit]
            end = next((pos for pos, token in enumerate(new_tokens) if token in eos), None)
            finish, kept = ("length", new_tokens) if end is None else ("stop", new_tokens[:end])
            text = self.tokenizer.decode(kept, skip_special_tokens=True)
            used = len(new_tokens) if end is None else end + 1  # the EOS token counts
            prompt_tokens = int(attention_mask[row].sum())
            results.append(GenerationResult(text, prompt_tokens, used, seconds, finish))
        return results


class InProcessPredictor(LocalPredictor):
    """Kind ``local``: a checkpoint generated from in this process, no HTTP (``loader``: how the
    folder is loaded, default the local trainer's)."""


#: The largest request body read, in bytes (a larger one: 413 before any of it is read): what
#: Vertex AI accepts for one online prediction (source: docs/serving.md, "The local server").
MAX_BODY_BYTES = 1_500_000
#: Seconds a connection may stay silent (idle, or stalled mid-request) before it is closed.
READ_TIMEOUT_S = 60.0
#: google.rpc status names of the HTTP errors answered (any other 4xx: INVALID_ARGUMENT).
_STATUS = {
    404: "NOT_FOUND",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
    505: "UNIMPLEMENTED",
}
_DIGITS = re.compile(r"[0-9]+")
#: How long (in batch windows after the first request) a batch may keep gathering requests
#: that keep arriving within a window of each other.
MAX_WINDOWS = 10


class _HTTPServer(ThreadingHTTPServer):
    """A threading server whose failures outside a request handler (a client that hung up while
    its request line was read) cost one line on stderr, never a traceback."""

    daemon_threads = True
    local: LocalServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if not isinstance(error, ConnectionError | TimeoutError):  # else: the client went away
            print(f"routerlib serve: {client_address[0]}: {error!r}", file=sys.stderr)


@dataclass
class _Pending:
    instance: Instance
    enqueued: float
    done: threading.Event = field(default_factory=threading.Event)
    result: GenerationResult | None = None
    error: str | None = None


@dataclass
class ServerStats:
    """Counters of a running server (read them for tests and logs)."""

    requests: int = 0
    instances: int = 0
    batches: int = 0
    batch_sizes: list[int] = field(default_factory=list)


_STOP = object()


class _Refused(Exception):
    """A request the server answers with ``status`` and closes the connection after."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class LocalServer:
    """A checkpoint (or a ready ``predictor``) served over HTTP on ``host:port`` (port 0: any
    free port). Use as a context manager. ``url`` is the base address, ``endpoint_url`` the full
    predict URL; ``on_batch(size)`` is called as each batch starts."""

    endpoint_id = "local"
    #: Seconds a request waits for its answer before a 504.
    request_timeout = 600.0

    def __init__(
        self,
        checkpoint_dir: str | Path | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        predictor: LocalPredictor | None = None,
        max_batch: int = 16,
        batch_window: float = 0.02,
        on_batch: Callable[[int], None] | None = None,
        constrained: bool = False,
    ) -> None:
        if predictor is None:
            if checkpoint_dir is None:
                raise InputError("serve: give a checkpoint folder or a predictor")
            predictor = LocalPredictor(checkpoint_dir, max_batch=max_batch, constrained=constrained)
        self.predictor = predictor
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else predictor.checkpoint_dir
        self.host, self.port = host, port
        self.max_batch = max_batch
        self.batch_window = batch_window
        self.model_id = f"local/{self.checkpoint_dir.name}"
        self.on_batch = on_batch
        self.stats = ServerStats()
        self._queue: queue.Queue[Any] = queue.Queue()
        self._gate = threading.Event()
        self._gate.set()
        self._counted = threading.Condition()  # guards stats
        self._httpd: _HTTPServer | None = None
        self._threads: list[threading.Thread] = []

    def start(self) -> LocalServer:
        """Bind, start the HTTP and batch-worker threads; returns self."""
        if self._httpd is not None:
            return self
        try:
            self._httpd = _HTTPServer((self.host, self.port), _Handler)
        except OSError as exc:
            raise InputError(f"serve: cannot listen on {self.host}:{self.port}: {exc}") from None
        self._httpd.local = self
        serve = functools.partial(self._httpd.serve_forever, poll_interval=0.05)
        self._threads = [
            threading.Thread(target=target, name=f"routerlib-{name}", daemon=True)
            for target, name in ((self._work, "batcher"), (serve, "http"))
        ]
        for thread in self._threads:
            thread.start()
        return self

    def close(self) -> None:
        """Stop accepting requests, fail what is still queued, and join the threads."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        self._gate.set()
        self._queue.put(_STOP)
        for thread in self._threads:
            thread.join(timeout=30)
        while not self._queue.empty():  # anything left behind gets an answer instead of hanging
            item = self._queue.get_nowait()
            if isinstance(item, _Pending):
                item.error = "server shutting down"
                item.done.set()
        self._httpd = None

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def url(self) -> str:
        """Base address, e.g. ``http://127.0.0.1:8080``."""
        if self._httpd is None:
            raise RouterlibError("the server is not running")
        host, port = self._httpd.server_address[:2]
        return f"http://{host.decode() if isinstance(host, bytes) else host}:{port}"

    @property
    def endpoint_url(self) -> str:
        """The full predict URL a Vertex-style client posts to."""
        return f"{self.url}/v1/projects/local/locations/local/endpoints/{self.endpoint_id}:predict"

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Pause the batch worker inside the block; queued prompts run together on exit."""
        self._gate.clear()
        try:
            yield
        finally:
            self._gate.set()

    def wait_queued(self, count: int, timeout: float = 30.0) -> bool:
        """Block until ``count`` instances have been queued in total (or ``timeout``)."""
        with self._counted:
            return self._counted.wait_for(lambda: self.stats.instances >= count, timeout)

    def complete(self, instances: list[Instance]) -> list[GenerationResult]:
        """Queue ``instances`` for the batch worker and wait for their results (in order).
        Raises TimeoutError after ``request_timeout`` and RuntimeError when generation failed
        or the server is shutting down."""
        items = [_Pending(inst, time.monotonic()) for inst in instances]
        for item in items:
            self._queue.put(item)
        with self._counted:
            self.stats.requests += 1
            self.stats.instances += len(items)
            self._counted.notify_all()
        deadline = time.monotonic() + self.request_timeout
        for item in items:
            if not item.done.wait(max(0.0, deadline - time.monotonic())):
                raise TimeoutError("prediction timed out")
            if item.error is not None or item.result is None:
                raise RuntimeError(item.error or "no result")
        return [item.result for item in items if item.result is not None]

    def _work(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                return
            self._gate.wait()
            batch = [first]
            # the window slides: it closes batch_window after the latest arrival (requests
            # sent together but spread by a busy machine stay one batch, not 6 + 2), and at the
            # latest MAX_WINDOWS windows after the first
            latest = first.enqueued
            cap = first.enqueued + MAX_WINDOWS * self.batch_window
            while len(batch) < self.max_batch:
                remaining = min(latest + self.batch_window, cap) - time.monotonic()
                try:
                    item = self._queue.get(timeout=max(0.0, remaining))  # 0: only what is queued
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
                latest = max(latest, item.enqueued)
            self._run(batch)

    def _run(self, batch: list[_Pending]) -> None:
        with self._counted:
            self.stats.batches += 1
            self.stats.batch_sizes.append(len(batch))
        if self.on_batch is not None:
            with contextlib.suppress(Exception):  # a faulty hook must not stop the worker
                self.on_batch(len(batch))
        groups: dict[float, list[_Pending]] = {}
        for item in batch:  # one generate per temperature; schemas may differ per row
            groups.setdefault(item.instance.temperature, []).append(item)
        default = self.predictor.default_schema
        for temperature, items in groups.items():
            try:
                results = self.predictor.generate(
                    [i.instance.prompt for i in items],
                    [i.instance.max_tokens for i in items],
                    temperature,
                    [i.instance.schema or default for i in items],
                )
            except Exception as exc:  # answer every waiter, keep the worker alive
                for item in items:
                    item.error = f"generation failed: {exc}"
                    item.done.set()
                continue
            for item, result in zip(items, results, strict=True):
                item.result = result
                item.done.set()


class _Handler(BaseHTTPRequestHandler):
    """One connection of a :class:`LocalServer` (``self.local``)."""

    protocol_version = "HTTP/1.1"
    # headers and body go out in two writes: without this, Nagle + delayed ACK add ~40 ms
    disable_nagle_algorithm = True
    timeout = READ_TIMEOUT_S

    def log_message(self, *args: Any) -> None:
        pass

    @property
    def local(self) -> LocalServer:
        return cast(_HTTPServer, self.server).local

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (a bad request line, headers too long, a method
        with no route) as JSON errors too; the connection is closed after them."""
        if self.request_version == "HTTP/0.9":  # no version on the line: answer 1.1
            self.request_version = self.protocol_version
        reason = self.responses.get(code, ("error",))[0]
        self._error(code, message or reason, close=True)

    def _error(self, status: int, message: str, state: str = "", *, close: bool = False) -> None:
        """A JSON error (``state``: default the google.rpc name of ``status``).
        ``close``: then close the connection, whose remaining bytes (an unread or
        half-sent body) cannot be told from the next request."""
        if close:
            self.close_connection = True
        state = state or _STATUS.get(status, "INVALID_ARGUMENT")
        self._reply(status, {"error": {"code": status, "message": message, "status": state}})

    def _body(self) -> bytes:
        """The request body (``Content-Length`` bytes; none without the header), or
        :class:`_Refused` (docs/serving.md, "The local server and its limits")."""
        if self.headers.get("Transfer-Encoding"):
            raise _Refused(411, "Transfer-Encoding (chunked) is not read; send Content-Length")
        values = {v.strip() for v in self.headers.get_all("Content-Length") or []}
        if not values:
            return b""
        if len(values) > 1:
            raise _Refused(400, f"Content-Length: given twice ({', '.join(sorted(values))})")
        (value,) = values
        if not _DIGITS.fullmatch(value):
            raise _Refused(400, f"Content-Length: {value[:40]!r} is not a byte count")
        length = int(value)
        if length > MAX_BODY_BYTES:
            raise _Refused(
                413,
                f"body: {length} bytes is over the limit of {MAX_BODY_BYTES} bytes "
                "(routerlib.serving.local.MAX_BODY_BYTES)",
            )
        body = self.rfile.read(length)  # stalled or gone: do_POST closes the connection
        if len(body) < length:
            raise _Refused(400, f"body: ended after {len(body)} of {length} bytes")
        return body

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:  # noqa: N802
        path = urlsplit(self.path).path
        if path in ("/health", "/"):
            health = {"status": "ok", "checkpoint": str(self.local.checkpoint_dir)}
            self._reply(200, {**health, "deployedModelId": self.local.endpoint_id})
        elif path == "/v1/models":
            model = {"id": self.local.model_id, "object": "model", "owned_by": "routerlib"}
            self._reply(200, {"object": "list", "data": [model]})
        else:
            self._error(404, f"no route GET {path}")

    def do_POST(self) -> None:  # noqa: N802
        path = urlsplit(self.path).path
        try:
            body = self._body()
            if path == "/v1/completions":
                self._answer(
                    body, parse_completions_body, self._completions, "invalid_request_error"
                )
            elif PREDICT_PATH.fullmatch(path):
                self._answer(body, parse_predict_body, self._predictions)
            else:
                self._error(404, f"no route POST {path}")
        except _Refused as refused:
            self._error(refused.status, str(refused), close=True)
        except (ConnectionError, TimeoutError):
            self.close_connection = True  # the client stalled or went away
        except Exception as exc:  # a bug: one JSON error, the server keeps serving
            self._error(500, f"internal error: {type(exc).__name__}: {exc}", close=True)

    def _answer(
        self,
        body: bytes,
        parse: Callable[[bytes], list[Instance]],
        answer: Callable[[list[Instance], list[GenerationResult]], dict[str, Any]],
        state: str = "",
    ) -> None:
        """Parse a request (400 naming its first bad field), generate, reply with ``answer``."""
        try:
            instances = parse(body)
        except ValueError as exc:
            self._error(400, str(exc), state)
            return
        try:
            results = self.local.complete(instances)
        except TimeoutError as exc:
            self._error(504, str(exc))
        except RuntimeError as exc:
            self._error(503 if "shutting down" in str(exc) else 500, str(exc))
        else:
            self._reply(200, answer(instances, results))

    def _predictions(
        self, instances: list[Instance], results: list[GenerationResult]
    ) -> dict[str, Any]:
        pairs = zip(instances, results, strict=True)
        usage = [
            {k: v for k, v in asdict(r).items() if k not in ("text", "seconds")} for r in results
        ]
        return {
            "predictions": [format_prediction(i, r.text) for i, r in pairs],
            "deployedModelId": self.local.endpoint_id,
            "model": self.local.model_id,
            "modelDisplayName": str(self.local.checkpoint_dir),
            # Not sent by Vertex's vLLM containers; clients may use it when present.
            "metadata": {"usage": usage},
        }

    def _completions(
        self, instances: list[Instance], results: list[GenerationResult]
    ) -> dict[str, Any]:
        usage = {
            k: sum(getattr(r, k) for r in results) for k in ("prompt_tokens", "completion_tokens")
        }
        choices = [
            {"index": n, "text": r.text, "finish_reason": r.finish_reason, "logprobs": None}
            for n, r in enumerate(results)
        ]
        return {
            "id": f"cmpl-{time.time_ns()}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": self.local.model_id,
            "choices": choices,
            "usage": {**usage, "total_tokens": sum(usage.values())},
        }
