"""Online prediction: prompts through a transport, ``concurrency`` requests in flight
(``concurrent.futures``), each retried under the one retry policy (``serving.client``). The
kinds that answer request by request are subclasses that only choose the transport.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from typing import Any

from routerlib.config import run_default
from routerlib.errors import InputError, RemoteError
from routerlib.schema import completion_json_schema
from routerlib.serving import vertex
from routerlib.serving.base import DEFAULT_RETRIES, Completion, Result
from routerlib.serving.client import BACKOFF_S, Stopped, call_with_retries, retry_policy
from routerlib.serving.local import LocalServer
from routerlib.serving.settings import PLACE, VertexSettings
from routerlib.serving.transports import (
    OpenAIClient,
    PredictClient,
    Transport,
    VertexEndpointClient,
)


class OnlinePredictor:
    """Request by request through ``transport`` (a subclass makes its ``transport_class`` from
    a target) with bounded concurrency and retries. A row failing for good stops the run: what
    is in flight finishes and is yielded, then the lowest such row's error is raised."""

    kind = "client"
    mode = "endpoint"
    transport_class: Any = None
    _started: contextlib.ExitStack | None = None

    def __init__(
        self,
        transport: Transport | str,
        *,
        concurrency: int = run_default("concurrency"),
        retries: int = DEFAULT_RETRIES,
        backoff_s: float = BACKOFF_S,
        **transport_options: Any,
    ) -> None:
        if concurrency < 1:
            raise InputError(f"concurrency must be >= 1, got {concurrency}")
        retry_policy(retries, backoff_s)  # refuses retries < 0 now, not at the first row
        if isinstance(transport, str):  # a subclass's target
            self.transport: Transport = self.transport_class(transport, **transport_options)
        else:
            self.transport = transport
        self.concurrency = concurrency
        self.retries = retries
        self.backoff_s = backoff_s
        self.name = self.transport.name

    def predict(
        self,
        prompts: Mapping[int, str],
        *,
        max_tokens: int,
        constrained: bool = False,
        progress: bool = False,
    ) -> Iterator[dict[int, Result]]:
        """Answers in groups as they arrive (every request that finished since the last group)."""
        if not prompts:
            return
        schema = completion_json_schema(generation=True) if constrained else None
        stop = threading.Event()
        policy = retry_policy(self.retries, self.backoff_s, stop)

        def ask(prompt: str) -> Completion:
            if stop.is_set():  # another row failed for good: send nothing more
                raise Stopped
            try:
                answer, attempts = call_with_retries(
                    lambda: self.transport.complete(prompt, max_tokens, schema), policy.copy()
                )
            except Stopped:
                raise
            except BaseException:
                stop.set()  # at once, before this worker takes the next row
                raise
            return replace(answer, attempts=attempts)

        pool = ThreadPoolExecutor(
            max_workers=min(self.concurrency, len(prompts)), thread_name_prefix="predict"
        )
        todo = iter(prompts.items())
        rows: dict[Future[Completion], int] = {}
        errors: list[tuple[int, BaseException]] = []
        finished = False

        def submit() -> None:
            """Keep twice ``concurrency`` rows queued, so no worker waits for the next one (and
            waiting on them stays cheap however many rows there are)."""
            if not errors:
                for index, prompt in itertools.islice(todo, 2 * self.concurrency - len(rows)):
                    rows[pool.submit(ask, prompt)] = index

        try:
            submit()
            while rows:
                done, _ = wait(rows, return_when=FIRST_COMPLETED)
                chunk: dict[int, Result] = {}
                for future in done:
                    index = rows.pop(future)
                    if future.cancelled():
                        continue
                    error = future.exception()
                    if error is None:
                        chunk[index] = future.result()
                    elif not isinstance(error, Stopped):
                        errors.append((index, error))
                if errors:  # send nothing more; what is in flight finishes
                    for future in rows:
                        future.cancel()
                submit()
                if chunk:
                    yield chunk
            finished = True
        finally:
            stop.set()
            # abandoned (Ctrl-C, the consumer stopped): do not wait for requests in flight
            pool.shutdown(wait=finished, cancel_futures=True)
        if errors:
            index, error = min(errors, key=lambda e: e[0])
            if isinstance(error, RemoteError):
                raise RemoteError(f"row {index}: {error}") from None
            raise error  # bad input (InputError) or a bug: as it is, with its traceback

    def describe(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "kind": self.kind,
            "concurrency": self.concurrency,
            "retries": self.retries,
        }

    def close(self) -> None:
        try:
            self.transport.close()
        finally:
            if self._started is not None:  # a server or an endpoint the subclass started
                self._started.close()


class PredictURLPredictor(OnlinePredictor):
    """Kind ``predict``: an http(s) URL speaking the vLLM predict JSON (``…:predict``)."""

    kind = "predict"
    transport_class = PredictClient


class OpenAIPredictor(OnlinePredictor):
    """Kind ``openai``: an OpenAI-compatible ``…/v1`` (``model``: default the first listed)."""

    kind = "openai"
    transport_class = OpenAIClient


class EndpointPredictor(OnlinePredictor):
    """Kind ``endpoint``: a Vertex endpoint that exists (shared or dedicated), by resource name
    or numeric id, with its ``project``, ``location`` and ``api_endpoint``."""

    kind = "endpoint"
    transport_class = VertexEndpointClient


class LocalServerPredictor(OnlinePredictor):
    """Kind ``local-server``: a checkpoint folder (or a base model) served by routerlib's own
    HTTP server for the predictor's life, asked through the predict JSON like any endpoint;
    ``constrained``: the server decodes requests without a schema under the generation schema."""

    kind = "local-server"
    transport_class = PredictClient

    def __init__(self, checkpoint: str, *, max_batch: int = 16, **options: Any) -> None:
        """``host``, ``port`` and ``constrained`` go to the server, the rest to OnlinePredictor."""
        served = {k: options.pop(k) for k in ("host", "port", "constrained") if k in options}
        server = LocalServer(checkpoint, max_batch=max_batch, **served)
        with contextlib.ExitStack() as stack:
            self.server = stack.enter_context(server)
            super().__init__(server.endpoint_url, name=server.predictor.name, **options)
            self._started = stack.pop_all()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "max_batch": self.server.max_batch}


class DeployedPredictor(EndpointPredictor):
    """Kind ``vertex``: a ``gs://`` checkpoint deployed to its own Vertex endpoint for the
    predictor's life (``settings``: project, region, API address, machine); the endpoint and the
    model it uploaded are deleted on close, also after an error."""

    kind = "vertex"

    def __init__(
        self,
        checkpoint: str,
        *,
        settings: VertexSettings,
        base_model: str = "",
        **options: Any,
    ) -> None:
        with contextlib.ExitStack() as stack:
            self.deployment = d = stack.enter_context(
                vertex.deployed(checkpoint, settings, base_model=base_model)
            )
            cloud = {k: getattr(d, k) for k in PLACE}
            # the checkpoint names the model: a redeploy to resume a run reads the same cache
            super().__init__(d.endpoint_name, name=f"vertex:{checkpoint}", **cloud, **options)
            self._started = stack.pop_all()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "endpoint": self.deployment.endpoint_name}
