"""Structured output as servers see it: a schema goes out with ``strict: true`` only in a form
OpenAI's strict mode accepts (every schema the library sends is checked), optional fields come back
as ``null`` and are dropped; reasoning before the JSON is set aside and the JSON that validates is
the one taken."""

from __future__ import annotations

import importlib
import json
import pkgutil
from typing import Optional

import pytest
from pydantic import BaseModel, ConfigDict

import dataflow
from dataflow.core.llm import LLMResult
from dataflow.core.strict import strict_problems, strict_schema
from dataflow.core.structured import extract_json, parse_reply, schema_for, strip_reasoning
from dataflow.serving import APILLMServing_request

pytestmark = pytest.mark.usefixtures("no_api_key")


def _client() -> APILLMServing_request:
    return APILLMServing_request(api_url="http://127.0.0.1:9/v1/chat/completions", model_name="m", cache=False)


def sent(schema: dict) -> dict:
    return _client()._payload([{"role": "user", "content": "x"}], schema)["response_format"]["json_schema"]


class Booking(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reasoning: str
    seats: int
    note: Optional[str] = None
    children: int = 0


# -- kind 1: strict structured output -------------------------------------------------------------
def test_optional_fields_are_sent_required_and_nullable_then_dropped():
    body = sent(schema_for(Booking))
    assert body["strict"] is True and strict_problems(body["schema"]) == []
    schema = body["schema"]
    assert schema["required"] == ["reasoning", "seats", "note", "children"]
    assert list(schema["properties"]) == ["reasoning", "seats", "note", "children"]  # declared order kept
    assert {"type": "null"} in schema["properties"]["children"].get("anyOf", []) or \
        "null" in schema["properties"]["children"].get("type", [])
    reply = LLMResult.success(json.dumps({"reasoning": "two adults", "seats": 2, "note": None, "children": None}))
    parsed = parse_reply(reply, Booking)
    assert parsed.ok and parsed.value.children == 0 and parsed.value.note is None


def test_a_schema_without_a_strict_form_is_sent_with_strict_false_unchanged():
    class Loose(BaseModel):
        arguments: dict

    schema = schema_for(Loose)
    body = sent(schema)
    assert body["strict"] is False and body["schema"] == schema
    assert strict_schema({"type": "object", "properties": {"q": {"type": "string", "maxLength": 5}}}) is None


def _library_models() -> list[type]:
    for module in pkgutil.walk_packages(dataflow.__path__, "dataflow."):
        if any(part in module.name for part in ("_sandbox_worker", "_llama_child", "cli.", "runners.ray")):
            continue
        try:
            importlib.import_module(module.name)
        except Exception:  # noqa: BLE001 - an optional dependency: its models are not sent here
            continue
    found, todo = [], list(BaseModel.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__module__.startswith("dataflow."):
            found.append(cls)
    return found


def _hand_built_schemas() -> list[dict]:
    from dataflow.operators.apigen.generator import pairs_schema
    from dataflow.operators.conversations.multi_turn import _tool_reply_schema, assistant_reply_schema, user_reply_schema

    from pathlib import Path

    tools = json.loads((Path(dataflow.__path__[0]).parent / "example_data/APIGen/function_definitions.json").read_text())
    schemas = [assistant_reply_schema(tools, 0), assistant_reply_schema(tools[:2], 2),
               user_reply_schema({tools[0]["function"]["name"]: tools[0]["function"]["parameters"]["properties"]}),
               _tool_reply_schema({"type": "object", "properties": {"temp": {"type": "number"}}, "required": ["temp"]})]
    for style in ("simple", "parallel"):
        schemas.append(pairs_schema(tools[:2], 2, style))
    return schemas


def test_every_schema_the_library_sends_is_strict_only_when_strict_mode_takes_it():
    models = _library_models()
    assert len(models) >= 8
    schemas = [schema_for(m) for m in models] + _hand_built_schemas()
    strict = 0
    for schema in schemas:
        body = sent(schema)
        if body["strict"]:
            strict += 1
            assert strict_problems(body["schema"]) == [], (schema.get("title"), strict_problems(body["schema"]))
        else:
            assert body["schema"] == schema
    assert strict >= 1


# -- kind 3: reasoning before the JSON ---------------------------------------------------------------
class Verdict(BaseModel):
    checks: str
    passes: bool


@pytest.mark.parametrize("text", [
    '<think>Maybe {"passes": "no"} or [1, 2]? Let me check.</think>\n{"checks": "ok", "passes": true}',
    'The user wants [x]. Let me think {about it}.</think>{"checks": "ok", "passes": true}',  # template opened it
    '<thinking>[draft]</thinking>```json\n{"checks": "ok", "passes": true}\n```',
])
def test_reasoning_is_set_aside_before_the_json(text):
    parsed = parse_reply(LLMResult.success(text), Verdict)
    assert parsed.ok, parsed.reason
    assert parsed.value.passes is True


def test_the_json_value_that_validates_is_taken():
    text = 'Example: {"passes": "maybe"} and the answer: {"checks": "values stated", "passes": false}'
    parsed = parse_reply(LLMResult.success(text), Verdict)
    assert parsed.ok and parsed.value.checks == "values stated"
    bad = parse_reply(LLMResult.success('{"passes": "maybe"}'), Verdict)
    assert bad.reason.startswith("invalid_reply: ")


def test_a_reply_that_is_only_reasoning_is_an_invalid_reply():
    parsed = parse_reply(LLMResult.success("<think>{\"checks\": \"x\", \"passes\": true} still thinking"), Verdict)
    assert not parsed.ok and "only reasoning" in parsed.reason
    assert strip_reasoning("<think>a</think>b") == "b"
    assert extract_json('<think>[1]</think>{"a": 1}') == {"a": 1}


def test_reasoning_content_field_is_not_the_answer():
    from dataflow.serving._wire import parse_reply as _parse_reply

    body = {"choices": [{"finish_reason": "stop", "message": {
        "role": "assistant", "content": '{"checks": "fine", "passes": true}',
        "reasoning_content": 'Draft: {"checks": "draft", "passes": false}'}}]}
    result = _parse_reply(json.dumps(body).encode()).result
    parsed = parse_reply(result, Verdict)
    assert parsed.ok and parsed.value.checks == "fine" and "draft" not in result.text
    only_reasoning = {"choices": [{"finish_reason": "stop", "message": {"content": "", "reasoning_content": "{}"}}]}
    assert not _parse_reply(json.dumps(only_reasoning).encode()).result.ok
