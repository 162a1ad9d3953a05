"""Structured output: a pydantic model defines the shape once; we send its JSON schema and
validate the reply against it.

Property order is part of the request: llama.cpp's grammar and OpenAI's structured outputs make
the model write fields in schema order, so ``schema_for`` keeps the model's declared order (put
reasoning fields before verdicts) and nothing on the way to the server may sort it.

Backends that honour ``response_format`` return bare JSON; others wrap it in fences or prose, so
``extract_json`` looks for the first JSON value it can decode. A reply that still does not validate
is a row failure whose reason is the validation error; a reply cut at the token limit is
``truncated: ...``, whatever JSON fragment it holds.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from .llm import LLMResult

T = TypeVar("T", bound=BaseModel)

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)


@lru_cache(maxsize=None)
def _schema_cached(model: type[BaseModel]) -> str:
    schema = model.model_json_schema()
    _close_objects(schema)
    return json.dumps(schema)  # not sort_keys: the declared property order is what the model writes


def schema_for(model: type[BaseModel]) -> dict:
    """JSON schema for ``model``, with every object closed (``additionalProperties: false``),
    which OpenAI's strict structured output and llama.cpp's grammar both take. Properties come in
    the order the model declares its fields (a fresh copy on every call)."""
    return json.loads(_schema_cached(model))


def _close_objects(node: Any) -> None:
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node:
            node.setdefault("additionalProperties", False)
        for value in node.values():
            _close_objects(value)
    elif isinstance(node, list):
        for value in node:
            _close_objects(value)


def extract_json(text: str) -> Any:
    """Decode the JSON value in ``text``: the whole text, a fenced block, or the first balanced
    object/array inside surrounding prose. Raises ``ValueError`` when there is none."""
    if text is None:
        raise ValueError("empty reply")
    stripped = text.strip()
    if not stripped:
        raise ValueError("empty reply")
    try:
        return json.loads(stripped)
    except json.JSONDecodeError:
        pass
    for block in _FENCE.findall(stripped):
        try:
            return json.loads(block.strip())
        except json.JSONDecodeError:
            continue
    decoder = json.JSONDecoder()
    for i, ch in enumerate(stripped):
        if ch in "{[":
            try:
                value, _ = decoder.raw_decode(stripped, i)
                return value
            except json.JSONDecodeError:
                continue
    raise ValueError(f"no JSON value found in reply: {_clip(stripped)}")


def _is_whole_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _tail(text: str, n: int = 80) -> str:
    text = " ".join(text.split())
    return text[-n:]


def _clip(text: str, n: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 3] + "..."


@dataclass(frozen=True)
class Parsed(Generic[T]):
    """A validated reply, or the reason it is not one."""

    value: T | None
    reason: str | None

    @property
    def ok(self) -> bool:
        return self.reason is None


def parse_reply(result: LLMResult, model: type[T]) -> Parsed[T]:
    """Validate one LLM result against ``model``. Failed requests and invalid replies both come
    back as ``Parsed(value=None, reason=...)``; the reason starts with a short code:
    ``llm_error:``, ``truncated:`` (cut at max_tokens before its JSON was complete) or
    ``invalid_reply:``."""
    if result.truncated and not result.ok:
        return Parsed(None, f"truncated: {result.reason}")
    if not result.ok:
        return Parsed(None, f"llm_error: {result.reason}")
    if result.truncated and not _is_whole_json(result.text or ""):
        # an inner fragment of a cut reply may decode and even validate: never read it as data
        tokens = f" after {result.completion_tokens} tokens" if result.completion_tokens else ""
        return Parsed(None, f"truncated: the reply reached the token limit (max_tokens){tokens} before "
                            f"its JSON was complete; it ends: ...{_tail(result.text or '')}")
    try:
        data = extract_json(result.text or "")
    except ValueError as exc:
        return Parsed(None, f"invalid_reply: {exc}")
    try:
        return Parsed(model.model_validate(data), None)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ())) or "(root)"
        return Parsed(None, f"invalid_reply: {loc}: {first.get('msg')} ({exc.error_count()} error(s))")
