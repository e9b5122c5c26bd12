"""The predict JSON, both ways: what routerlib sends, what it reads back, and how the local
server parses a request; one place, so the local server, the online transports and batch jobs
agree (docs/structured-output.md, "Endpoints").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from routerlib.errors import InputError, RemoteError

#: What a prediction without ``raw_response`` looks like (Model Garden vLLM containers).
MODEL_GARDEN_FORMAT = "Prompt:\n{prompt}\nOutput:\n{text}"

#: Default for an instance without ``max_tokens``.
DEFAULT_MAX_TOKENS = 256

#: Appended to a predictor's name when its requests are constrained (keeps the caches apart).
CONSTRAINED_SUFFIX = "#constrained"

#: The instance field and value that make Model Garden's vLLM predict handler read an instance
#: as an OpenAI chat-completions request and answer a chat completion object (sources, the
#: vllm.patch of vertex-ai-samples and its Llama Guard notebook: docs/structured-output.md).
REQUEST_FORMAT = "@requestFormat"
CHAT_COMPLETIONS = "chatCompletions"

#: How an OpenAI-compatible request carries a schema (and where the local server reads one):
#: OpenAI's documented ``response_format``, vLLM's ``structured_outputs`` (v0.12+) or its older
#: ``guided_json``.
OPENAI_SCHEMA_FIELDS = ("response_format", "structured_outputs", "guided_json")


def predict_instance(
    prompt: str,
    max_tokens: int,
    extra: dict[str, Any] | None = None,
    schema: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The vLLM predict instance for ``prompt`` (greedy) of every predict route; ``extra`` adds
    container fields. A prompt instance, or with ``schema`` or ``chat_template_kwargs`` a
    chat-completions instance (docs/structured-output.md, "Endpoints")."""
    greedy = {"max_tokens": max_tokens, "temperature": 0}
    if schema is None and "chat_template_kwargs" not in (extra or {}):
        instance: dict[str, Any] = {"prompt": prompt, **greedy, "raw_response": True}
    else:
        messages = [{"role": "user", "content": prompt}]
        instance = {REQUEST_FORMAT: CHAT_COMPLETIONS, "messages": messages, **greedy}
        instance |= openai_schema_fields(schema) if schema is not None else {}
    return instance | (extra or {})


def extra_tag(extra: dict[str, Any]) -> str:
    """What extra instance fields add to a predictor's name, so a cache made without them (or
    with others) is not mistaken for this one's."""
    return f"#{json.dumps(extra, sort_keys=True)}" if extra else ""


def openai_schema_fields(schema: dict[str, Any], field: str = "response_format") -> dict[str, Any]:
    """The request fields that send ``schema`` to an OpenAI-compatible server as ``field``."""
    json_schema = {"name": "router_completion", "schema": schema, "strict": True}
    carried = {
        "response_format": {"type": "json_schema", "json_schema": json_schema},
        "structured_outputs": {"json": schema},
        "guided_json": schema,
    }
    if field not in carried:
        raise InputError(
            f"schema field must be one of {', '.join(OPENAI_SCHEMA_FIELDS)}, got {field!r}"
        )
    return {field: carried[field]}


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


@dataclass(frozen=True)
class Instance:
    """One parsed predict instance."""

    prompt: str
    max_tokens: int = DEFAULT_MAX_TOKENS
    temperature: float = 0.0
    raw_response: bool = False
    #: JSON Schema the answer is constrained to (None: the server's default).
    schema: dict[str, Any] | None = None
    #: Sent as a chat-completions instance (``"@requestFormat": "chatCompletions"``): answered
    #: with a chat completion object instead of a text.
    chat: bool = False


def _as_schema(value: Any, where: str) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError(f"{where}: not valid JSON") from None
    if not isinstance(value, dict):
        raise ValueError(f"{where}: must be a JSON Schema object")
    return _whole_numbers(value)


def _whole_numbers(value: Any) -> Any:
    """``8.0`` → ``8`` throughout: Endpoint.predict sends numbers as protobuf Values, and a
    schema's maxLength or maxItems must be an integer."""
    if isinstance(value, dict):
        return {key: _whole_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def schema_from_fields(item: dict[str, Any], where: str) -> dict[str, Any] | None:
    """The JSON Schema a request object carries in one of :data:`OPENAI_SCHEMA_FIELDS`, else None.
    ValueError names the field when its shape is wrong or two fields are given."""
    given = [name for name in OPENAI_SCHEMA_FIELDS if item.get(name) is not None]
    if len(given) > 1:
        raise ValueError(f"{where}: give one of {', '.join(given)}, not several")
    if not given:
        return None
    name = given[0]
    value = item[name]
    if name == "guided_json":
        return _as_schema(value, f"{where}.guided_json")
    if name == "structured_outputs":
        if not isinstance(value, dict) or "json" not in value:
            raise ValueError(f"{where}.structured_outputs: must be an object with 'json'")
        return _as_schema(value["json"], f"{where}.structured_outputs.json")
    if not isinstance(value, dict) or value.get("type") != "json_schema":
        raise ValueError(f"{where}.response_format: type must be 'json_schema'")
    inner = value.get("json_schema")
    if not isinstance(inner, dict) or "schema" not in inner:
        raise ValueError(f"{where}.response_format.json_schema: must be an object with 'schema'")
    return _as_schema(inner["schema"], f"{where}.response_format.json_schema.schema")


def _json_body(body: bytes) -> Any:
    try:
        return json.loads(body or b"")
    except (ValueError, UnicodeDecodeError):
        raise ValueError("body: not valid JSON") from None


def parse_predict_body(body: bytes) -> list[Instance]:
    """The instances of a predict request; ValueError names the first bad field."""
    data = _json_body(body)
    if not isinstance(data, dict):
        raise ValueError("body: must be a JSON object with an 'instances' list")
    instances = data.get("instances")
    if not isinstance(instances, list) or not instances:
        raise ValueError("instances: must be a non-empty list")
    parsed = []
    for i, item in enumerate(instances):
        where = f"instances[{i}]"
        if not isinstance(item, dict):
            raise ValueError(f"{where}: must be an object with a 'prompt'")
        chat = item.get(REQUEST_FORMAT) == CHAT_COMPLETIONS
        prompt = _chat_prompt(item.get("messages"), where) if chat else item.get("prompt")
        if not isinstance(prompt, str):
            raise ValueError(f"{where}.prompt: must be a string")
        # Endpoint.predict sends numbers as protobuf Values, so 256 arrives as 256.0.
        max_tokens = _whole_numbers(item.get("max_tokens", DEFAULT_MAX_TOKENS))
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise ValueError(f"{where}.max_tokens: must be a positive integer")
        temperature = item.get("temperature", 0.0)
        if type(temperature) not in (int, float) or temperature < 0:  # bool is not a number
            raise ValueError(f"{where}.temperature: must be a number >= 0")
        raw = item.get("raw_response", False)
        if not isinstance(raw, bool):
            raise ValueError(f"{where}.raw_response: must be true or false")
        schema = schema_from_fields(item, where)
        parsed.append(Instance(prompt, max_tokens, float(temperature), raw, schema, chat))
    return parsed


def _chat_prompt(messages: Any, where: str) -> str:
    """The prompt of a chat-completions instance: its turns' texts joined by newlines (a turn's
    ``content`` is a string or a list of ``{"type": "text", "text": …}`` parts)."""
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"{where}.messages: must be a non-empty list of chat turns")
    texts = []
    for j, turn in enumerate(messages):
        content = turn.get("content") if isinstance(turn, dict) else None
        if isinstance(content, list):
            parts = [c.get("text") for c in content if isinstance(c, dict)]
            content = "".join(p for p in parts if isinstance(p, str)) if parts else None
        if not isinstance(content, str):
            raise ValueError(f"{where}.messages[{j}].content: must be text")
        texts.append(content)
    return "\n".join(texts)


def parse_completions_body(body: bytes) -> list[Instance]:
    """The prompts of an OpenAI-style ``/v1/completions`` request (``prompt`` a string or a
    list of strings; OpenAI's defaults: max_tokens 16, temperature 1)."""
    data = _json_body(body)
    if not isinstance(data, dict):
        raise ValueError("body: must be a JSON object with a 'prompt'")
    prompt = data.get("prompt")
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise ValueError("prompt: must be a string or a non-empty list of strings")
    item = {
        "max_tokens": data.get("max_tokens", 16),
        "temperature": data.get("temperature", 1.0),
        "raw_response": True,
        **{name: data[name] for name in OPENAI_SCHEMA_FIELDS if name in data},
    }
    encoded = json.dumps({"instances": [{**item, "prompt": p} for p in prompts]}).encode()
    try:
        return parse_predict_body(encoded)
    except ValueError as exc:
        raise ValueError(str(exc).split(".", 1)[-1]) from None


def format_prediction(instance: Instance, text: str) -> Any:
    """The prediction: a chat completion object for a chat-completions instance, else the bare
    text with raw_response and Model Garden's frame without."""
    if instance.chat:
        message = {"role": "assistant", "content": text}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return {"object": "chat.completion", "choices": [choice]}
    if instance.raw_response:
        return text
    return MODEL_GARDEN_FORMAT.format(prompt=instance.prompt, text=text)
