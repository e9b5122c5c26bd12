"""One request, one answer, per protocol: the vLLM predict JSON (:class:`PredictClient`), an
OpenAI-compatible ``/v1`` (:class:`OpenAIClient`) and a Vertex endpoint through the SDK
(:class:`VertexEndpointClient`). A transport tries once: a failure worth retrying is a
``client.TransientError``; the predictor's retry policy decides what happens next.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Protocol

from routerlib import auth
from routerlib.errors import RemoteError
from routerlib.serving import vertex
from routerlib.serving.base import DEFAULT_TIMEOUT_S, Completion
from routerlib.serving.client import JsonClient, TransientError, cache_name
from routerlib.serving.wire import (
    CONSTRAINED_SUFFIX,
    extra_tag,
    openai_schema_fields,
    predict_instance,
    prediction_text,
)


class Transport(Protocol):
    """Anything that completes one prompt. ``name`` identifies the model behind it."""

    name: str

    def complete(
        self, prompt: str, max_tokens: int, schema: dict[str, Any] | None = None
    ) -> Completion: ...

    def close(self) -> None: ...


class PredictJson:
    """What the two vLLM predict-JSON transports share: the instance sent for a prompt
    (``wire.predict_instance``; ``extra``: more instance fields, ``schema``: the JSON Schema of
    every request that names none) and the text read back; a subclass sends the instance."""

    def __init__(
        self, name: str, label: str, extra: dict[str, Any] | None, schema: dict[str, Any] | None
    ) -> None:
        self.extra = dict(extra or {})
        self.schema = schema
        self.label = label
        self.name = name + extra_tag(self.extra) + (CONSTRAINED_SUFFIX if schema else "")

    def instance(
        self, prompt: str, max_tokens: int, schema: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The predict instance sent for ``prompt`` (a chat-completions instance with the JSON
        Schema in ``response_format`` when constrained)."""
        return predict_instance(prompt, max_tokens, self.extra, schema or self.schema)

    def complete(
        self, prompt: str, max_tokens: int, schema: dict[str, Any] | None = None
    ) -> Completion:
        start = time.perf_counter()
        preds = self._predictions(self.instance(prompt, max_tokens, schema))
        if not isinstance(preds, list) or not preds:
            raise RemoteError(f"{self.label}: answer has no predictions: {str(preds)[:120]}")
        return Completion(prediction_text(preds[0], self.label), time.perf_counter() - start)

    def _predictions(self, instance: dict[str, Any]) -> Any:
        """The predictions answering ``instance`` (a non-empty list, else a RemoteError)."""
        raise NotImplementedError

    def close(self) -> None:
        """Nothing to release."""


class PredictClient(PredictJson):
    """vLLM predict JSON to a ``…:predict`` URL, with the bearer token ``auth.headers_for`` gives."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        name: str | None = None,
        extra: dict[str, Any] | None = None,
        schema: dict[str, Any] | None = None,
        keepalive: bool = True,
    ) -> None:
        self.url = url
        self._http = JsonClient(url, timeout, token=auth.headers_for(url), keepalive=keepalive)
        super().__init__(name or cache_name(url), self._http.label, extra, schema)

    def _predictions(self, instance: dict[str, Any]) -> Any:
        body = self._http.request("POST", self._http.path, {"instances": [instance]})
        if not isinstance(body, dict) or "predictions" not in body:  # vLLM and Vertex wrap them
            raise RemoteError(f"{self.label}: answer has no predictions: {str(body)[:120]}")
        return body["predictions"]

    def close(self) -> None:
        self._http.close()


class OpenAIClient:
    """An OpenAI-compatible ``http://host:port/v1`` (vLLM, Ollama, TGI): ``POST …/completions``
    for ``model`` (default: the first the server lists), the schema in ``schema_field``, the
    bearer key from ``OPENAI_API_KEY`` when set."""

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        schema: dict[str, Any] | None = None,
        schema_field: str = "response_format",
    ) -> None:
        self.schema_field = schema_field
        self.schema_fields = openai_schema_fields(schema, schema_field) if schema else {}
        self.base_url = base_url.rstrip("/").removesuffix("/completions")
        key = os.environ.get("OPENAI_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else None
        self._http = JsonClient(self.base_url, timeout, headers)
        self.label = self._http.label
        self._base_path = self._http.path.rstrip("/")
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
                    raise RemoteError(f"{self.label}/models lists no model; pass a model name")
                self._model = str(ids[0])
            return self._model

    def complete(
        self, prompt: str, max_tokens: int, schema: dict[str, Any] | None = None
    ) -> Completion:
        fields = openai_schema_fields(schema, self.schema_field) if schema else self.schema_fields
        request = dict(model=self.model(), prompt=prompt, max_tokens=max_tokens, temperature=0)
        start = time.perf_counter()
        body = self._http.request("POST", f"{self._base_path}/completions", request | fields)
        latency = time.perf_counter() - start
        choices = body.get("choices") if isinstance(body, dict) else None
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise RemoteError(f"{self.label}/completions: answer has no choices")
        text = choices[0].get("text")
        if not isinstance(text, str):
            raise RemoteError(f"{self.label}/completions: choice has no text")
        usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
        return Completion(text, latency, usage.get("prompt_tokens"), usage.get("completion_tokens"))

    def close(self) -> None:
        self._http.close()


class VertexEndpointClient(PredictJson):
    """A Vertex AI endpoint (resource name ``projects/…/endpoints/…`` or a numeric id) through
    ``routerlib.serving.vertex.predict``; instances are the same vLLM form as PredictClient's."""

    def __init__(
        self,
        endpoint: str,
        *,
        project: str | None = None,
        location: str | None = None,
        api_endpoint: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        name: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        if endpoint.isdigit() and project and location:
            endpoint = f"projects/{project}/locations/{location}/endpoints/{endpoint}"
        self.endpoint = endpoint
        self.cloud = {"project": project, "location": location, "api_endpoint": api_endpoint}
        self.timeout = timeout
        super().__init__(name or endpoint, endpoint, extra, None)

    def _predictions(self, instance: dict[str, Any]) -> Any:
        try:
            return vertex.predict(self.endpoint, [instance], timeout=self.timeout, **self.cloud)
        except vertex.PredictError as exc:  # carries whether a retry may help
            if exc.retryable:
                raise TransientError(str(exc)) from None
            raise
