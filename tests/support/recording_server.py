"""A tiny HTTP server on 127.0.0.1 that records every request and answers from a route table.

Fakes of remote APIs (Vertex REST, vLLM predict, fault injection) register routes on it, so the
real SDKs can be pointed at it and the requests they send checked on the wire.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    """One recorded request."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


class _QuietServer(ThreadingHTTPServer):
    """A server that says nothing when a client hangs up mid-answer (a timeout or retry test
    does that on purpose); any other handler error is still printed."""

    daemon_threads = True
    #: exception types a handler may end with silently (a fake adds its own)
    quiet: tuple[type[BaseException], ...] = (ConnectionError,)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], self.quiet):
            super().handle_error(request, client_address)


#: A handler gets the request and the regex match; it returns (status, JSON-able body or bytes),
#: or (status, body, extra response headers).
Handler = Callable[[Request, "re.Match[str]"], tuple[Any, ...]]


@dataclass
class RecordingServer:
    """Route table + request log. Use as a context manager; ``url`` is the base address."""

    routes: list[tuple[str, re.Pattern[str], Handler]] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    #: When set, the server speaks HTTPS with this context (``url`` then starts with https).
    ssl_context: Any = None

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        """Decorator: register ``handler`` for ``method`` and a full-match path regex."""

        def decorate(handler: Handler) -> Handler:
            self.routes.append((method, re.compile(pattern), handler))
            return handler

        return decorate

    def __enter__(self) -> RecordingServer:
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # two writes per answer: without this, Nagle + delayed ACK stall keep-alive ~40 ms
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                parts = urlsplit(self.path)
                request = Request(
                    self.command,
                    parts.path,
                    parse_qs(parts.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length) if length else b"",
                )
                server.requests.append(request)
                answer: tuple[Any, ...] = (
                    404,
                    {"error": {"code": 404, "message": f"no route {parts.path}"}},
                )
                for method, pattern, handler in server.routes:
                    match = pattern.fullmatch(parts.path)
                    if method == self.command and match:
                        answer = handler(request, match)
                        break
                status, body = answer[0], answer[1]
                headers: dict[str, str] = answer[2] if len(answer) > 2 else {}
                payload = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_DELETE = do_PATCH = do_PUT = _serve

        self._httpd = _QuietServer(("127.0.0.1", 0), _Handler)
        if self.ssl_context is not None:
            self._httpd.socket = self.ssl_context.wrap_socket(self._httpd.socket, server_side=True)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{host}:{port}"

    def bodies(self, method: str, path_regex: str) -> list[Any]:
        """JSON bodies of recorded requests matching ``method`` and ``path_regex``."""
        pattern = re.compile(path_regex)
        return [r.json() for r in self.requests if r.method == method and pattern.search(r.path)]
