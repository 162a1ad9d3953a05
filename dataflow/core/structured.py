"""Structured output: a pydantic model defines the shape once; we send its JSON schema and
validate the reply against it.

Property order is part of the request: llama.cpp's grammar and OpenAI's structured outputs make
the model write fields in schema order, so ``schema_for`` keeps the model's declared order (put
reasoning fields before verdicts) and nothing on the way to the server may sort it.

Backends that honour ``response_format`` return bare JSON; others wrap it in fences or prose, and
reasoning models (Qwen3, DeepSeek-R1) write ``<think>...</think>`` first. Reasoning is set aside
before any JSON is looked for (``strip_reasoning``; a ``reasoning_content`` field never reaches
``LLMResult.text``), then ``parse_reply`` takes the first JSON value in the reply *that validates*
(``json_candidates``: the whole text, fenced blocks, then each balanced object/array). A reply with
none is a row failure whose reason is the first candidate's validation error; a reply cut at the
token limit is ``truncated: ...``, whatever JSON fragment it holds. The schema sent is the strict
form of ``dataflow.core.strict`` when there is one, whose optional fields are nullable: such a
``null`` is dropped before validation, so the field's default applies.
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


_REASONING = re.compile(r"<(think|thinking|reasoning)>.*?</\1>", re.DOTALL | re.IGNORECASE)
_REASONING_END = re.compile(r"</(?:think|thinking|reasoning)>", re.IGNORECASE)
_REASONING_OPEN = re.compile(r"<(?:think|thinking|reasoning)>", re.IGNORECASE)
_MAX_CANDIDATES = 64


def strip_reasoning(text: str) -> str:
    """``text`` without reasoning blocks: ``<think>...</think>`` (also ``thinking``/``reasoning``),
    the text before a closing tag whose opening tag the chat template wrote, and an opened block
    that never closes (the reply was all reasoning)."""
    text = _REASONING.sub("", text)
    end = None
    for end in _REASONING_END.finditer(text):
        pass
    if end is not None:
        text = text[end.end():]
    opened = _REASONING_OPEN.search(text)
    if opened:
        text = text[: opened.start()]
    return text


def json_candidates(text: str) -> Any:
    """The JSON values in ``text`` after its reasoning is set aside, in the order they are tried:
    the whole text, each fenced block, then each balanced object/array by position."""
    if text is None:
        return
    stripped = strip_reasoning(text).strip()
    if not stripped:
        return
    try:
        yield json.loads(stripped)
        return
    except json.JSONDecodeError:
        pass
    count = 0
    for block in _FENCE.findall(stripped):
        try:
            yield json.loads(block.strip())
            count += 1
        except json.JSONDecodeError:
            continue
    decoder = json.JSONDecoder()
    i, n = 0, len(stripped)
    while i < n and count < _MAX_CANDIDATES:
        if stripped[i] in "{[":
            try:
                value, end = decoder.raw_decode(stripped, i)
            except json.JSONDecodeError:
                i += 1
                continue
            count += 1
            yield value
            i = end
            continue
        i += 1


def extract_json(text: str) -> Any:
    """Decode the JSON value in ``text``: the whole text, a fenced block, or the first balanced
    object/array inside surrounding prose, reasoning blocks set aside. Raises ``ValueError`` when
    there is none."""
    if text is None or not text.strip():
        raise ValueError("empty reply")
    for value in json_candidates(text):
        return value
    rest = strip_reasoning(text).strip()
    if not rest:
        raise ValueError(f"the reply holds only reasoning, no answer: {_clip(text)}")
    raise ValueError(f"no JSON value found in reply: {_clip(rest)}")


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
    if result.truncated and not _is_whole_json(strip_reasoning(result.text or "").strip()):
        # an inner fragment of a cut reply may decode and even validate: never read it as data
        tokens = f" after {result.completion_tokens} tokens" if result.completion_tokens else ""
        return Parsed(None, f"truncated: the reply reached the token limit (max_tokens){tokens} before "
                            f"its JSON was complete; it ends: ...{_tail(result.text or '')}")
    try:
        extract_json(result.text or "")
    except ValueError as exc:
        return Parsed(None, f"invalid_reply: {exc}")
    first_error: ValidationError | None = None
    for data in json_candidates(result.text or ""):
        try:
            return Parsed(model.model_validate(_drop_null_optionals(data, model)), None)
        except ValidationError as exc:
            first_error = first_error or exc
    assert first_error is not None
    first = first_error.errors()[0]
    loc = ".".join(str(p) for p in first.get("loc", ())) or "(root)"
    return Parsed(None, f"invalid_reply: {loc}: {first.get('msg')} ({first_error.error_count()} error(s))")


def _drop_null_optionals(data: Any, model: Any) -> Any:
    """``data`` without the ``null`` of fields that have a default and do not take ``None`` (the
    strict schema sent them as nullable): the model's default applies, as if left out."""
    if not isinstance(data, dict) or not isinstance(model, type) or not issubclass(model, BaseModel):
        return data
    out = dict(data)
    for name, field in model.model_fields.items():
        key = field.alias or name
        if key not in out:
            continue
        if out[key] is None and not field.is_required() and not _takes_none(field.annotation):
            del out[key]
            continue
        inner = _model_in(field.annotation)
        if inner is not None:
            value = out[key]
            if isinstance(value, list):
                out[key] = [_drop_null_optionals(v, inner) for v in value]
            else:
                out[key] = _drop_null_optionals(value, inner)
    return out


def _takes_none(annotation: Any) -> bool:
    import types
    import typing

    if annotation is None or annotation is type(None) or annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return any(_takes_none(a) for a in typing.get_args(annotation))
    if origin is typing.Annotated:
        return _takes_none(typing.get_args(annotation)[0])
    return False


def _model_in(annotation: Any) -> Any:
    """The pydantic model inside ``Model``, ``list[Model]``, ``Optional[Model]``, or ``None``."""
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
