"""Generate predictions from a served model and score them against gold.

One small client protocol, three transports:

- :class:`PredictClient` — the vLLM predict JSON (a local ``routerlib serve`` or any ``…:predict`` URL),
- :class:`VertexEndpointClient` — a Vertex endpoint resource name or numeric id (aiplatform),
- :class:`OpenAIClient` — an OpenAI-compatible ``http://host:port/v1`` (vLLM, Ollama, TGI).

:func:`generate_predictions` sends every gold prompt with bounded concurrency, retries transient
failures (429, 5xx, timeouts, dropped connections) with exponential backoff and jitter a bounded
number of times, and appends each answer to a cache JSONL the moment it arrives (fsync'd), so a
killed run resumes where it stopped. It then writes the prediction file in gold order.
:func:`evaluate` ties generation (or a given prediction file) to the scorer in ``metrics.py``.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import queue
import random
import re
import select
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from routerlib.atomic import atomic_writer
from routerlib.config import run_default
from routerlib.errors import InputError, RemoteError
from routerlib.models import estimate_tokens
from routerlib.serving.local import CHAT_COMPLETIONS, REQUEST_FORMAT

#: Longest wait between two attempts of one request, in seconds.
MAX_BACKOFF_S = 30.0


@dataclass(frozen=True)
class Completion:
    """One generated answer. Token counts are None when the server does not report them."""

    text: str
    latency_s: float
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class Client(Protocol):
    """Anything that completes a prompt. ``name`` identifies the model behind it (cache key)."""

    name: str

    def complete(self, prompt: str, max_tokens: int) -> Completion: ...


class TransientError(Exception):
    """A failure worth retrying: 429, 5xx, a timeout or a dropped connection."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


# --------------------------------------------------------------------------------------------
# HTTP transport: one keep-alive connection per worker thread (stdlib http.client)
# --------------------------------------------------------------------------------------------


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def _error_text(payload: bytes) -> str:
    """A short message out of an error body (JSON ``error.message`` / ``detail`` or raw text)."""
    text = payload.decode("utf-8", "replace").strip()
    try:
        body = json.loads(text)
    except ValueError:
        return text[:200]
    if isinstance(body, dict):
        err = body.get("error", body.get("detail", body.get("message")))
        if isinstance(err, dict):
            err = err.get("message", err)
        if err is not None:
            return str(err)[:200]
    return text[:200]


class _JsonHttp:
    """POST/GET JSON to one host, reusing a keep-alive connection per thread."""

    def __init__(
        self, base_url: str, timeout: float, headers: dict[str, str] | None = None
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputError(f"{base_url}: not an http(s) URL")
        self.base_url = base_url
        self.label = public_url(base_url)
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port
        self.timeout = timeout
        self.headers = {"Content-Type": "application/json", "Accept": "application/json"}
        self.headers.update(headers or {})
        #: Google bearer token source for a Vertex https address (routerlib.auth's rule).
        self.token: Any = None
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            cls = (
                http.client.HTTPSConnection
                if self.scheme == "https"
                else http.client.HTTPConnection
            )
            conn = cls(self.host, self.port, timeout=self.timeout)
            self._local.conn = conn
        elif conn.sock is not None:
            # A keep-alive socket that is readable while idle was closed by the server: reopen.
            try:
                readable = select.select([conn.sock], [], [], 0)[0]
            except (OSError, ValueError):
                readable = [True]
            if readable:
                conn.close()
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """Send one request; return the parsed JSON of a 2xx answer.

        Raises TransientError on 429, 5xx, timeouts and connection failures, RemoteError on any
        other status or a 2xx answer that is not JSON.
        """
        data = None if body is None else json.dumps(body).encode("utf-8")
        headers = {**self.headers, **self.token.header()} if self.token else self.headers
        conn = self._connection()
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
        except TimeoutError:
            self._drop()
            raise TransientError(f"no answer within {self.timeout:g} s") from None
        except (OSError, http.client.HTTPException) as exc:
            self._drop()
            raise TransientError(f"connection failed: {type(exc).__name__}: {exc}") from None
        status = resp.status
        if status == 429 or status >= 500:
            raise TransientError(
                f"HTTP {status}: {_error_text(payload)}",
                _retry_after(resp.getheader("Retry-After")),
            )
        if not 200 <= status < 300:
            raise RemoteError(f"{self.label}: HTTP {status}: {_error_text(payload)}")
        try:
            return json.loads(payload)
        except ValueError:
            raise RemoteError(
                f"{self.label}: HTTP {status} answer is not JSON: {payload[:120]!r}"
            ) from None


_LOOPBACK = ("127.0.0.1", "localhost", "::1", "0.0.0.0")


def public_url(url: str, *, loopback_port: bool = True) -> str:
    """``url`` without user info, query or fragment, so no secret lands in a message or file."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None:
        keep = loopback_port or parts.hostname not in _LOOPBACK
        host += f":{parts.port}" if keep else ":*"
    return parts._replace(netloc=host, query="", fragment="").geturl()


def cache_name(url: str) -> str:
    """How a URL identifies its model in the cache and the report: :func:`public_url` without a
    loopback server's port (a local server restarted to resume a run gets a new free port)."""
    return public_url(url, loopback_port=False)


def _path_of(url: str) -> str:
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


# --------------------------------------------------------------------------------------------
# Clients
# --------------------------------------------------------------------------------------------


def prediction_text(pred: Any, where: str) -> str:
    """The text of one predict-JSON prediction (a string, or an object holding the text)."""
    if isinstance(pred, str):
        return pred
    if isinstance(pred, list) and pred:
        return prediction_text(pred[0], where)
    if isinstance(pred, dict):
        for key in ("text", "output", "generated_text", "content", "completion"):
            if isinstance(pred.get(key), str):
                return pred[key]
        choices = pred.get("choices")  # a chat completion (a chatCompletions instance's answer)
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            message = choices[0].get("message")
            if isinstance(message, dict) and isinstance(message.get("content"), str):
                return str(message["content"])
    raise RemoteError(f"{where}: prediction is not text: {json.dumps(pred)[:120]}")


#: Appended to a client's name when its requests are constrained (keeps the caches apart).
CONSTRAINED_SUFFIX = "#constrained"


def predict_instance(
    prompt: str,
    max_tokens: int,
    extra: dict[str, Any] | None = None,
    schema: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The vLLM predict instance for ``prompt`` (greedy), the same for a local server, a Vertex
    endpoint and a batch job. ``extra`` adds container fields (e.g. ``chat_template_kwargs``).

    Free: a prompt instance (raw text, no Prompt/Output wrapper). With ``schema``: a
    chat-completions instance carrying it in ``response_format``, the one way Model Garden's
    vLLM predict handler documents to reach vLLM's structured outputs; its prompt instances pass
    every other field to vLLM's ``SamplingParams``, which has no ``guided_json``
    (docs/structured-output.md, "Endpoints"). The server then applies the model's chat template
    to the prompt.
    ``chat_template_kwargs`` in ``extra`` (Qwen 3's thinking switch) also makes a chat instance:
    only the chat route applies a template, and ``SamplingParams`` refuses the field."""
    chat = schema is not None or "chat_template_kwargs" in (extra or {})
    if not chat:
        instance: dict[str, Any] = {
            "prompt": prompt,
            "max_tokens": max_tokens,
            "temperature": 0,
            "raw_response": True,
        }
    else:
        instance = {
            REQUEST_FORMAT: CHAT_COMPLETIONS,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens,
            "temperature": 0,
            **(openai_schema_fields(schema) if schema is not None else {}),
        }
    instance.update(extra or {})
    return instance


def _extra_tag(extra: dict[str, Any]) -> str:
    """What extra instance fields add to a client's name, so a cache made without them (or with
    others) is not mistaken for this one's."""
    return f"#{json.dumps(extra, sort_keys=True)}" if extra else ""


#: How an OpenAI-compatible request carries a schema: OpenAI's documented ``response_format``,
#: vLLM's ``structured_outputs`` (v0.12+) or its older ``guided_json``.
OPENAI_SCHEMA_FIELDS = ("response_format", "structured_outputs", "guided_json")


def openai_schema_fields(schema: dict[str, Any], field: str = "response_format") -> dict[str, Any]:
    """The request fields that send ``schema`` to an OpenAI-compatible server as ``field``."""
    if field == "response_format":
        return {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "router_completion", "schema": schema, "strict": True},
            }
        }
    if field == "structured_outputs":
        return {"structured_outputs": {"json": schema}}
    if field == "guided_json":
        return {"guided_json": schema}
    raise InputError(
        f"schema field must be one of {', '.join(OPENAI_SCHEMA_FIELDS)}, got {field!r}"
    )


class PredictClient:
    """vLLM predict JSON: ``POST URL {"instances": [{prompt, max_tokens, temperature, raw_response}]}``.

    ``url`` ends with ``:predict`` (a local ``routerlib serve`` or a Vertex-style REST address).
    An https Vertex predict address is sent application-default credentials (routerlib.auth).
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 120.0,
        name: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
        schema: dict[str, Any] | None = None,
    ) -> None:
        from routerlib import auth

        self.url = url
        self.extra = dict(extra or {})
        self.schema = schema
        self.name = (name or cache_name(url)) + _extra_tag(self.extra)
        self.name += CONSTRAINED_SUFFIX if schema else ""
        self._http = _JsonHttp(url, timeout, headers)
        self._http.token = auth.headers_for(url)
        self._path = _path_of(url)

    def instance(self, prompt: str, max_tokens: int) -> dict[str, Any]:
        """The predict instance sent for ``prompt`` (a chat-completions instance with the JSON
        Schema in ``response_format`` when constrained; see :func:`predict_instance`)."""
        return predict_instance(prompt, max_tokens, self.extra, self.schema)

    def complete(self, prompt: str, max_tokens: int) -> Completion:
        start = time.perf_counter()
        body = self._http.request(
            "POST", self._path, {"instances": [self.instance(prompt, max_tokens)]}
        )
        latency = time.perf_counter() - start
        preds = body.get("predictions") if isinstance(body, dict) else None
        if not isinstance(preds, list) or not preds:
            where = self._http.label
            raise RemoteError(f"{where}: answer has no predictions: {json.dumps(body)[:120]}")
        return Completion(prediction_text(preds[0], self._http.label), latency)


class OpenAIClient:
    """An OpenAI-compatible server (vLLM, Ollama, TGI): ``POST {base}/completions``.

    ``base_url`` is ``http://host:port/v1``. Without ``model`` the first id of ``GET {base}/models``
    is used. A bearer key is read from ``OPENAI_API_KEY`` when set (never written anywhere).
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        timeout: float = 120.0,
        schema: dict[str, Any] | None = None,
        schema_field: str = "response_format",
    ) -> None:
        self.schema_fields = openai_schema_fields(schema, schema_field) if schema else {}
        self.base_url = base_url.rstrip("/")
        if self.base_url.endswith("/completions"):
            self.base_url = self.base_url[: -len("/completions")]
        key = os.environ.get("OPENAI_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else None
        self._http = _JsonHttp(self.base_url, timeout, headers)
        self._base_path = _path_of(self.base_url).rstrip("/")
        self._model = model
        self._lock = threading.Lock()
        self.name = cache_name(self.base_url) + (f"#{model}" if model else "")
        self.name += CONSTRAINED_SUFFIX if schema else ""

    def model(self) -> str:
        """The model id to request (given, else the first one the server lists)."""
        with self._lock:
            if self._model is None:
                body = self._http.request("GET", f"{self._base_path}/models")
                data = body.get("data") if isinstance(body, dict) else None
                ids = [m.get("id") for m in data or [] if isinstance(m, dict) and m.get("id")]
                if not ids:
                    raise RemoteError(
                        f"{self._http.label}/models lists no model; pass a model name"
                    )
                self._model = str(ids[0])
            return self._model

    def complete(self, prompt: str, max_tokens: int) -> Completion:
        request = {
            "model": self.model(),
            "prompt": prompt,
            "max_tokens": max_tokens,
            "temperature": 0,
            **self.schema_fields,
        }
        start = time.perf_counter()
        body = self._http.request("POST", f"{self._base_path}/completions", request)
        latency = time.perf_counter() - start
        choices = body.get("choices") if isinstance(body, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise RemoteError(f"{self._http.label}/completions: answer has no choices")
        text = choices[0].get("text")
        if not isinstance(text, str):
            raise RemoteError(f"{self._http.label}/completions: choice has no text")
        usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
        return Completion(text, latency, usage.get("prompt_tokens"), usage.get("completion_tokens"))


class VertexEndpointClient:
    """A Vertex AI endpoint (resource name ``projects/…/endpoints/…`` or a numeric id) through
    ``routerlib.serving.vertex.predict``; instances are the same vLLM form as PredictClient's."""

    def __init__(
        self,
        endpoint: str,
        *,
        project: str | None = None,
        location: str | None = None,
        api_endpoint: str | None = None,
        timeout: float = 120.0,
        extra: dict[str, Any] | None = None,
        schema: dict[str, Any] | None = None,
    ) -> None:
        if endpoint.isdigit() and project and location:
            endpoint = f"projects/{project}/locations/{location}/endpoints/{endpoint}"
        self.endpoint = endpoint
        self.schema = schema
        self.name = endpoint + (CONSTRAINED_SUFFIX if schema else "")
        self.project = project
        self.location = location
        self.api_endpoint = api_endpoint
        self.timeout = timeout
        self.extra = dict(extra or {})
        self.name += _extra_tag(self.extra)

    def complete(self, prompt: str, max_tokens: int) -> Completion:
        from routerlib.serving import vertex

        instance = predict_instance(prompt, max_tokens, self.extra, self.schema)
        start = time.perf_counter()
        try:
            preds = vertex.predict(
                self.endpoint,
                [instance],
                project=self.project,
                location=self.location,
                api_endpoint=self.api_endpoint,
                timeout=self.timeout,
            )
        except vertex.PredictError as exc:  # carries whether a retry may help
            if exc.retryable:
                raise TransientError(str(exc)) from None
            raise
        latency = time.perf_counter() - start
        if not isinstance(preds, list) or not preds:
            raise RemoteError(f"{self.endpoint}: answer has no predictions")
        return Completion(prediction_text(preds[0], self.endpoint), latency)


_PREDICT_PATH = re.compile(r"/endpoints/[^/:]+$")


def make_client(
    target: str,
    *,
    timeout: float = 120.0,
    model: str | None = None,
    project: str | None = None,
    location: str | None = None,
    api_endpoint: str | None = None,
    extra: dict[str, Any] | None = None,
    schema: dict[str, Any] | None = None,
) -> Client:
    """The client for an ``--endpoint`` value (``extra``: more predict-instance fields;
    ``schema``: constrain every request to that JSON Schema).

    - ``http(s)://…/v1`` (or ``…/v1/completions``): OpenAI-compatible completions;
    - ``http(s)://…:predict`` (or ``…/endpoints/ID``): vLLM predict JSON;
    - ``projects/P/locations/L/endpoints/ID`` or a numeric id: a Vertex endpoint.
    """
    target = target.strip()
    if target.startswith(("http://", "https://")):
        path = urlsplit(target).path.rstrip("/")
        if path.endswith("/v1") or path.endswith("/v1/completions"):
            return OpenAIClient(target, model=model, timeout=timeout, schema=schema)
        if path.endswith(":predict"):
            return PredictClient(target, timeout=timeout, extra=extra, schema=schema)
        if _PREDICT_PATH.search(path):
            url = target.rstrip("/") + ":predict"
            return PredictClient(url, timeout=timeout, extra=extra, schema=schema)
        raise InputError(
            f"--endpoint {public_url(target)}: cannot tell the protocol; end the URL with ':predict' "
            "(vLLM predict JSON) or '/v1' (OpenAI-compatible)"
        )
    if target.isdigit() or re.fullmatch(r"projects/[^/]+/locations/[^/]+/endpoints/[^/]+", target):
        return VertexEndpointClient(
            target,
            project=project,
            location=location,
            api_endpoint=api_endpoint,
            timeout=timeout,
            extra=extra,
            schema=schema,
        )
    raise InputError(
        f"--endpoint {public_url(target)!r}: expected an http(s) URL (…:predict or …/v1), "
        "projects/P/locations/L/endpoints/ID, or a numeric endpoint id"
    )


# --------------------------------------------------------------------------------------------
# Gold prompts and the resumable cache
# --------------------------------------------------------------------------------------------


def read_gold_prompts(gold_path: str | os.PathLike[str], limit: int | None = None) -> list[str]:
    """The ``prompt`` of every non-blank gold line, in order (the first ``limit`` when given)."""
    path = Path(gold_path)
    if not path.is_file():
        raise InputError(f"{path}: gold file not found")
    prompts: list[str] = []
    try:
        with open(path, encoding="utf-8") as handle:
            for lineno, line in enumerate(handle, 1):
                line = line.strip()
                if not line:
                    continue
                if limit is not None and len(prompts) >= limit:
                    break
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(f"{path}:{lineno}: not JSON ({exc.msg})") from None
                if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
                    raise InputError(f"{path}:{lineno}: prompt: missing or not a string")
                prompts.append(row["prompt"])
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason})") from None
    if not prompts:
        raise InputError(f"{path}: no gold rows")
    return prompts


def _sha(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def load_cache(cache_path: str | os.PathLike[str]) -> dict[int, dict[str, Any]]:
    """Records of a prediction cache by gold index (the last one wins).

    A torn last line (a run killed mid-write) is cut off the file so appends stay line-aligned;
    any other line that does not parse is skipped (its row is simply asked again).
    """
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


def _backoff(attempt: int, base: float, retry_after: float | None) -> float:
    """Exponential backoff with jitter (0.5x–1.5x), at least Retry-After, capped."""
    delay = base * (2**attempt) * (0.5 + random.random())
    if retry_after is not None:
        delay = max(delay, retry_after)
    return min(delay, MAX_BACKOFF_S)


class _Stopped(Exception):
    """Another worker failed for good; this one stops between attempts."""


def _complete_with_retries(
    client: Client,
    prompt: str,
    max_tokens: int,
    retries: int,
    backoff_s: float,
    stop: threading.Event,
) -> tuple[Completion, int]:
    """Call ``client.complete`` up to ``retries + 1`` times; return the answer and attempts used."""
    attempt = 0
    while True:
        if stop.is_set():
            raise _Stopped
        try:
            return client.complete(prompt, max_tokens), attempt + 1
        except TransientError as exc:
            if attempt >= retries:
                raise RemoteError(
                    f"gave up after {attempt + 1} attempts (retries={retries}): {exc}"
                ) from None
            if stop.wait(_backoff(attempt, backoff_s, exc.retry_after)):
                raise _Stopped from None
            attempt += 1


# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------


def prediction_path_for(cache_path: str | os.PathLike[str]) -> Path:
    """``x.cache.jsonl`` → ``x.predictions.jsonl`` (else ``<cache stem>.predictions.jsonl``)."""
    cache = Path(cache_path)
    name = cache.name
    stem = name[: -len(".cache.jsonl")] if name.endswith(".cache.jsonl") else cache.stem
    return cache.with_name(f"{stem}.predictions.jsonl")


def prediction_record(index: int, rec: dict[str, Any]) -> dict[str, Any]:
    """One prediction-file line from a cache record: the extracted JSON text plus the raw text."""
    from routerlib.extract import extract_json_object, split_thinking

    raw = rec["text"]
    obj, note = extract_json_object(raw)
    thinking, _ = split_thinking(raw)
    completion = json.dumps(obj, ensure_ascii=False) if obj is not None else raw
    out: dict[str, Any] = {
        "index": index,
        "completion": completion,
        "raw": raw,
        "extraction": note,
        "latency_s": rec.get("latency_s"),
        "prompt_tokens": rec.get("prompt_tokens"),
        "completion_tokens": rec.get("completion_tokens"),
    }
    if rec.get("tokens_estimated"):
        out["tokens_estimated"] = True
    if thinking is not None:
        out["thinking"] = thinking  # dropped before extraction (Qwen 3 <think> block)
    return out


def generate_predictions(
    gold_path: str | os.PathLike[str],
    *,
    client: Client | str,
    cache_path: str | os.PathLike[str],
    concurrency: int = run_default("concurrency"),
    max_tokens: int = run_default("max_tokens"),
    limit: int | None = None,
    retries: int = 5,
    timeout: float = 120.0,
    progress: bool = True,
    pred_path: str | os.PathLike[str] | None = None,
    backoff_s: float = 0.5,
) -> Path:
    """Ask ``client`` for every gold prompt not yet cached; write the prediction file; return it.

    ``client`` is a Client or an ``--endpoint`` value (then built with ``timeout`` seconds per
    request). Each answer is appended to ``cache_path`` as it arrives; rows already there (same
    prompt, same model, same max_tokens) are not asked again. A row still failing after
    ``retries`` retries stops the run with a RemoteError; what arrived stays cached. The
    prediction file (default beside the cache, ``*.predictions.jsonl``) has one line per gold row.
    """
    if concurrency < 1:
        raise InputError(f"concurrency must be >= 1, got {concurrency}")
    if retries < 0:
        raise InputError(f"retries must be >= 0, got {retries}")
    prompts = read_gold_prompts(gold_path, limit)
    if isinstance(client, str):
        client = make_client(client, timeout=timeout)
    cache = Path(cache_path)
    cache.parent.mkdir(parents=True, exist_ok=True)
    name = getattr(client, "name", type(client).__name__)

    with open(cache, "a", encoding="utf-8") as handle:
        _lock_or_refuse(handle, cache)  # one writer per cache; the OS drops the lock on a kill
        records: dict[int, dict[str, Any]] = {}
        for index, rec in load_cache(cache).items():
            if index >= len(prompts) or rec.get("prompt_sha") != _sha(prompts[index]):
                continue  # another gold row now sits at this index: ask again
            if rec.get("target") != name or rec.get("max_tokens") != max_tokens:
                raise InputError(
                    f"{cache}: cached predictions come from {rec.get('target')} with max_tokens="
                    f"{rec.get('max_tokens')}, not {name} with max_tokens={max_tokens}; "
                    "delete the cache or write the report elsewhere"
                )
            records[index] = rec
        pending = [i for i in range(len(prompts)) if i not in records]
        if pending:
            _run_pending(
                client,
                name,
                prompts,
                pending,
                records,
                handle,
                cache,
                concurrency,
                max_tokens,
                retries,
                backoff_s,
                progress,
            )

    from routerlib.runfolder import PredictionRecord, write_predictions

    out = Path(pred_path) if pred_path else prediction_path_for(cache)
    lines = [PredictionRecord(**prediction_record(i, records[i])) for i in range(len(prompts))]
    return write_predictions(out, lines)


def _lock_or_refuse(handle: Any, cache: Path) -> None:
    """Take an exclusive lock on the open cache, or refuse: another run is writing it now."""
    import fcntl

    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise InputError(
            f"{cache}: another run is writing this cache right now; wait for it to end or "
            "write the report elsewhere"
        ) from None


def _run_pending(
    client: Client,
    name: str,
    prompts: list[str],
    pending: list[int],
    records: dict[int, dict[str, Any]],
    handle: Any,
    cache: Path,
    concurrency: int,
    max_tokens: int,
    retries: int,
    backoff_s: float,
    progress: bool,
) -> None:
    """Workers call the client; this thread appends their answers to the cache in small fsync'd
    batches (one fsync per batch of answers that arrived together) and moves the progress bar
    (off a terminal: one whole line per tenth of the rows)."""
    from routerlib.progress import progress_bar

    work: queue.SimpleQueue[int] = queue.SimpleQueue()
    for index in pending:
        work.put(index)
    results: queue.SimpleQueue[tuple[str, int, Any]] = queue.SimpleQueue()
    stop = threading.Event()

    def worker() -> None:
        try:
            while not stop.is_set():
                try:
                    index = work.get_nowait()
                except queue.Empty:
                    return
                try:
                    answer, attempts = _complete_with_retries(
                        client, prompts[index], max_tokens, retries, backoff_s, stop
                    )
                except _Stopped:
                    return
                except BaseException as exc:  # noqa: BLE001 - reported by the writer thread
                    results.put(("error", index, exc))
                    stop.set()
                    return
                results.put(("ok", index, (answer, attempts)))
        finally:
            results.put(("done", -1, None))

    threads = [
        threading.Thread(target=worker, name=f"predict-{n}", daemon=True)
        for n in range(min(concurrency, len(pending)))
    ]
    errors: list[tuple[int, BaseException]] = []
    total = len(prompts)
    bar = progress_bar(
        progress,
        total,
        desc="predict",
        unit="row",
        initial=total - len(pending),
        dynamic_ncols=True,
    )
    live = len(threads)
    try:
        for thread in threads:
            thread.start()
        while live:
            batch = [results.get()]
            while True:
                try:
                    batch.append(results.get_nowait())
                except queue.Empty:
                    break
            lines: list[str] = []
            for kind, index, payload in batch:
                if kind == "done":
                    live -= 1
                elif kind == "error":
                    errors.append((index, payload))
                else:
                    answer, attempts = payload
                    rec = _cache_record(index, prompts[index], name, max_tokens, answer, attempts)
                    records[index] = rec
                    lines.append(json.dumps(rec, ensure_ascii=False) + "\n")
            if lines:
                handle.write("".join(lines))
                handle.flush()
                os.fsync(handle.fileno())
                bar.update(len(lines))
    except BaseException:
        stop.set()
        raise
    finally:
        bar.close()
    if errors:
        index, exc = min(errors, key=lambda e: e[0])
        if isinstance(exc, RemoteError):
            raise RemoteError(
                f"row {index}: {exc} — {len(records)}/{total} predictions cached in {cache}; "
                "run again to resume"
            )
        raise exc  # bad input (InputError) or a bug: as it is, with its traceback


def _cache_record(
    index: int, prompt: str, name: str, max_tokens: int, answer: Completion, attempts: int
) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "index": index,
        "prompt_sha": _sha(prompt),
        "target": name,
        "max_tokens": max_tokens,
        "attempts": attempts,
        **asdict(answer),
    }
    if answer.prompt_tokens is None or answer.completion_tokens is None:
        # The predict JSON reports no usage: estimate (chars/4) and say so.
        rec["prompt_tokens"] = (
            estimate_tokens(prompt) if answer.prompt_tokens is None else answer.prompt_tokens
        )
        rec["completion_tokens"] = (
            estimate_tokens(answer.text)
            if answer.completion_tokens is None
            else answer.completion_tokens
        )
        rec["tokens_estimated"] = True
    return rec


# --------------------------------------------------------------------------------------------
# evaluate: predictions (given or generated) → scored report
# --------------------------------------------------------------------------------------------


def artifact_paths(out: str | os.PathLike[str]) -> dict[str, Path]:
    """Files written beside a report ``X.json``: cache, predictions, and the gold/pred subsets of
    ``--limit``."""
    from routerlib import runfolder

    report = Path(out)
    return {
        "report": report,
        "cache": runfolder.report_artifact(report, "cache"),
        "predictions": runfolder.predictions_path(report),
        "gold_subset": runfolder.report_artifact(report, "gold"),
        "pred_subset": runfolder.report_artifact(report, "pred"),
        "compare_subset": runfolder.report_artifact(report, "compare"),
    }


def _first_lines(src: Path, dst: Path, limit: int, what: str) -> Path:
    """Copy the first ``limit`` non-blank lines of ``src`` to ``dst`` (atomically)."""
    if not src.is_file():
        raise InputError(f"{src}: {what} file not found")
    kept = 0
    with open(src, encoding="utf-8") as reader, atomic_writer(dst) as writer:
        for line in reader:
            if kept >= limit:
                break
            if line.strip():
                writer.write(line.rstrip("\n") + "\n")
                kept += 1
    return dst


def evaluate(
    gold: str | os.PathLike[str],
    *,
    pred: str | os.PathLike[str] | None = None,
    endpoint: str | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str],
    thresholds: str | os.PathLike[str] | dict[str, Any] | None = None,
    compare_to: str | os.PathLike[str] | None = None,
    concurrency: int = run_default("concurrency"),
    max_tokens: int = run_default("max_tokens"),
    limit: int | None = None,
    project: str | None = None,
    location: str | None = None,
    api_endpoint: str | None = None,
    model: str | None = None,
    timeout: float = 120.0,
    retries: int = 5,
    progress: bool = True,
    predictor: Any = None,
    batch: str | None = None,
    gcs_prefix: str | None = None,
    machine_type: str | None = None,
    accelerator_type: str | None = None,
    accelerator_count: int | None = None,
    rerun_failed: bool = False,
    poll_s: float = 30.0,
    constrained: bool = False,
) -> dict[str, Any]:
    """Score ``pred`` — or predictions generated from ``endpoint``, a local ``checkpoint``, a
    ``batch`` prediction job on a Model Registry model, or any serving ``predictor``
    (routerlib.serving.base.Predictor) — against ``gold``; write the report to ``out`` (with
    samples, cache and predictions beside it) and return it. ``--limit N`` scores the first N
    gold rows (subset files are written beside). ``constrained`` sends the completion's
    generation JSON Schema with every request (or batch instance)."""
    from routerlib.metrics import score_files

    sources = [s for s in (pred, endpoint, checkpoint, predictor, batch) if s is not None]
    if len(sources) != 1:
        raise InputError("give exactly one of --pred, --endpoint, --checkpoint, --batch")
    if batch is not None and not gcs_prefix:
        raise InputError("--batch needs --gcs-prefix gs://BUCKET/PREFIX (instances and outputs)")
    if constrained and pred is not None:
        raise InputError("--constrained applies to --endpoint, --checkpoint or --batch")
    if limit is not None and limit < 1:
        raise InputError(f"--limit must be >= 1, got {limit}")
    gold_path = Path(gold)
    if not gold_path.is_file():
        raise InputError(f"{gold_path}: gold file not found")
    paths = artifact_paths(out)
    paths["report"].parent.mkdir(parents=True, exist_ok=True)
    if limit is not None:
        gold_path = _first_lines(gold_path, paths["gold_subset"], limit, "gold")
    if compare_to is not None:
        if not Path(compare_to).is_file():
            raise InputError(f"{compare_to}: --compare-to prediction file not found")
        if limit is not None:
            compare_to = _first_lines(Path(compare_to), paths["compare_subset"], limit, "previous")

    if pred is None:
        # Check everything scoring will read before spending time on generation.
        from routerlib.metrics import load_gold, read_jsonl

        n_gold = len(load_gold(gold_path))
        if compare_to is not None:
            n_prev = len(read_jsonl(compare_to, "previous prediction"))
            if n_prev != n_gold:
                raise InputError(
                    f"gold {gold_path} has {n_gold} rows but --compare-to {compare_to} has "
                    f"{n_prev} rows; they must match line for line"
                )
        if thresholds is not None and not isinstance(thresholds, dict):
            from routerlib.metrics import load_thresholds

            load_thresholds(thresholds)

    if pred is not None:
        pred_path = Path(pred)
        if not pred_path.is_file():
            raise InputError(f"{pred_path}: prediction file not found")
        if limit is not None:
            pred_path = _first_lines(pred_path, paths["pred_subset"], limit, "prediction")
    else:
        from routerlib.serving.base import BatchPredictor, OnlinePredictor

        online: dict[str, Any] = {
            "concurrency": concurrency,
            "retries": retries,
            "timeout": timeout,
        }
        with contextlib.ExitStack() as stack:
            if endpoint is not None:
                client = make_client(
                    endpoint,
                    timeout=timeout,
                    model=model,
                    project=project,
                    location=location,
                    api_endpoint=api_endpoint,
                )
                predictor = OnlinePredictor(client, name=cache_name(endpoint), **online)
            elif batch is not None:
                predictor = BatchPredictor(
                    batch,
                    str(gcs_prefix),
                    machine_type=machine_type,
                    accelerator_type=accelerator_type,
                    accelerator_count=accelerator_count,
                    project=project,
                    location=location,
                    api_endpoint=api_endpoint,
                    rerun_failed=rerun_failed,
                    poll_s=poll_s,
                )
            elif checkpoint is not None:
                from routerlib.serving.local import LocalServer

                ckpt = Path(checkpoint)
                if not ckpt.exists():
                    raise InputError(f"{ckpt}: checkpoint folder not found")
                server = stack.enter_context(LocalServer(ckpt))
                client = PredictClient(
                    server.endpoint_url,
                    timeout=timeout,
                    name=f"checkpoint:{ckpt.resolve()}",
                )
                predictor = OnlinePredictor(client, name=f"checkpoint:{checkpoint}", **online)
            if constrained:
                predictor = constrained_predictor(predictor)
            pred_path = predictor.predict_file(
                gold_path,
                cache_path=paths["cache"],
                pred_path=paths["predictions"],
                max_tokens=max_tokens,
                progress=progress,
            )

    report = score_files(
        gold_path, pred_path, out_path=paths["report"], thresholds=thresholds, compare_to=compare_to
    )
    if pred is None:
        report["generation"] = generation_summary(
            pred_path,
            paths["cache"],
            source=predictor.name,
            max_tokens=max_tokens,
            concurrency=concurrency,
        )
        report["generation"]["decoding"] = "constrained" if constrained else "free"
        from routerlib import runfolder

        report["generation"].update(predictor.summary())
        runfolder.write_report(paths["report"], report)
    return report


def constrain_client(client: Any, schema: dict[str, Any]) -> Any:
    """A copy of ``client`` that sends ``schema`` with every request, in its server's field."""
    import copy

    clone = copy.copy(client)
    if isinstance(clone, OpenAIClient):
        clone.schema_fields = openai_schema_fields(schema)
    elif isinstance(clone, PredictClient | VertexEndpointClient):
        clone.schema = schema
    else:
        raise InputError(f"constrained decoding is not supported by {type(client).__name__}")
    clone.name = str(getattr(client, "name", type(client).__name__)) + CONSTRAINED_SUFFIX
    return clone


def constrained_predictor(predictor: Any) -> Any:
    """``predictor`` (online, or a batch job) constrained to the completion's generation schema:
    an online client sends it with every request, a batch job in every instance."""
    import dataclasses

    from routerlib.schema import completion_json_schema
    from routerlib.serving.base import BatchPredictor, OnlinePredictor

    schema = completion_json_schema(generation=True)
    name = predictor.name + CONSTRAINED_SUFFIX
    if isinstance(predictor, BatchPredictor):
        return dataclasses.replace(predictor, schema=schema, name=name, outcome=None)
    if not isinstance(predictor, OnlinePredictor):
        raise InputError(f"constrained decoding is not supported by {type(predictor).__name__}")
    return OnlinePredictor(
        constrain_client(predictor.client, schema),
        concurrency=predictor.concurrency,
        retries=predictor.retries,
        timeout=predictor.timeout,
        name=name,
    )


def generation_summary(
    pred_path: Path, cache_path: Path, *, source: str, max_tokens: int, concurrency: int
) -> dict[str, Any]:
    """What a report says about generated predictions: where from, how they were extracted
    (how often the JSON came wrapped), and how many attempts they took."""
    notes: Counter[str] = Counter()
    with open(pred_path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                notes[json.loads(line).get("extraction", "")] += 1
    cached = load_cache(cache_path)
    attempts = [int(rec.get("attempts", 1)) for rec in cached.values()]
    return {
        "source": source,
        "max_tokens": max_tokens,
        "concurrency": concurrency,
        "predictions_path": str(pred_path),
        "cache_path": str(cache_path),
        "extraction": dict(sorted(notes.items())),
        "retried_rows": sum(1 for a in attempts if a > 1),
        "attempts_total": sum(attempts),
    }
