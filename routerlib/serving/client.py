"""HTTP for every online transport: JSON over one pooled httpx client (thread-safe, keep-alive),
and the one retry policy (tenacity) with the one rule of which HTTP status is retryable
(:data:`RETRYABLE_STATUSES`, also used by the Vertex SDK path). See docs/serving.md, "Retries".
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import tenacity

from routerlib.errors import InputError, RemoteError

#: HTTP statuses worth another attempt: request timeout, too many requests, and every
#: server-side error (5xx). Everything else (400, 401, 403, 404, …) fails at once.
RETRYABLE_STATUSES: frozenset[int] = frozenset({408, 429, *range(500, 600)})
#: Longest wait between two attempts of one request, in seconds.
MAX_BACKOFF_S = 30.0
#: First wait (seconds) of the exponential backoff; each further wait doubles it.
BACKOFF_S = 0.5

T = TypeVar("T")


def is_retryable(status: int | None) -> bool:
    """Whether a failure with this HTTP status may pass when tried again (None: no answer at all:
    a timeout, a dropped connection, an endpoint not ready yet)."""
    return status is None or status in RETRYABLE_STATUSES


class TransientError(Exception):
    """A failure worth retrying: a retryable status, a timeout or a dropped connection.
    ``retry_after`` is the server's ``Retry-After`` in seconds, when it sent one."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Stopped(Exception):
    """A wait between two attempts was cut short: another row failed for good."""


def retry_policy(
    retries: int, backoff_s: float = BACKOFF_S, stop: threading.Event | None = None
) -> tenacity.Retrying:
    """Up to ``retries`` retries of a :class:`TransientError` (docs/serving.md, "Retries"); when
    ``stop`` is set during a wait, :class:`Stopped`."""
    if retries < 0:
        raise InputError(f"retries must be >= 0, got {retries}")
    backoff = tenacity.wait_exponential_jitter(
        initial=backoff_s, max=MAX_BACKOFF_S, jitter=backoff_s
    )

    def wait(state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome is not None else None
        retry_after = getattr(error, "retry_after", None) or 0.0
        return min(max(float(backoff(state)), float(retry_after)), MAX_BACKOFF_S)

    def sleep(seconds: float) -> None:
        if (stop or threading.Event()).wait(seconds):
            raise Stopped

    return tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(TransientError),
        stop=tenacity.stop_after_attempt(retries + 1),
        wait=wait,
        sleep=sleep,
        reraise=True,
    )


def call_with_retries(call: Callable[[], T], policy: tenacity.Retrying) -> tuple[T, int]:
    """``call()`` under ``policy``; returns its result and the attempts it took. A transient
    failure on the last attempt becomes a RemoteError saying how many attempts were made."""
    try:
        return policy(call), policy.statistics["attempt_number"]
    except TransientError as exc:
        attempts = policy.statistics["attempt_number"]
        raise RemoteError(
            f"gave up after {attempts} attempts (retries={attempts - 1}): {exc}"
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


def retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` header in seconds: delta-seconds or an HTTP date (RFC 9110, 10.2.3)."""
    if not value:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    with contextlib.suppress(TypeError, ValueError):
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    return None


def error_text(payload: bytes) -> str:
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


class JsonClient:
    """JSON requests to the server of ``base_url`` over a pooled keep-alive ``httpx.Client``
    (thread-safe); ``path``: the URL's path and query. ``token``: a bearer token source
    (``auth.headers_for``); ``keepalive=False``: a new connection per request (benchmarks)."""

    def __init__(
        self,
        base_url: str,
        timeout: float,
        headers: dict[str, str] | None = None,
        *,
        token: Any = None,
        keepalive: bool = True,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputError(f"{public_url(base_url)}: not an http(s) URL")
        self.label = public_url(base_url)
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.timeout = timeout

        def sign(request: httpx.Request) -> httpx.Request:
            request.headers.update(token.header())  # a BearerToken: refreshed when it expires
            return request

        self._http = httpx.Client(
            base_url=f"{parts.scheme}://{parts.netloc}",
            timeout=timeout,
            headers={"Content-Type": "application/json", "Accept": "application/json"}
            | (headers or {}),
            auth=sign if token is not None else None,
            limits=httpx.Limits(
                max_connections=None, max_keepalive_connections=64 if keepalive else 0
            ),
        )

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """Send one request; return the parsed JSON of a 2xx answer. TransientError: a
        retryable status, a timeout or no connection; RemoteError: any other failure."""
        content = None if body is None else json.dumps(body).encode("utf-8")
        try:
            response = self._http.request(method, path, content=content)
        except httpx.TimeoutException:
            raise TransientError(f"no answer within {self.timeout:g} s") from None
        except httpx.TransportError as exc:
            raise TransientError(f"connection failed: {type(exc).__name__}: {exc}") from None
        status, payload = response.status_code, response.content
        if is_retryable(status):
            raise TransientError(
                f"HTTP {status}: {error_text(payload)}",
                retry_after_seconds(response.headers.get("Retry-After")),
            )
        if not 200 <= status < 300:
            raise RemoteError(f"{self.label}: HTTP {status}: {error_text(payload)}")
        try:
            return json.loads(payload)
        except ValueError:
            raise RemoteError(
                f"{self.label}: HTTP {status} answer is not JSON: {payload[:120]!r}"
            ) from None

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.close()
