"""``check_conversation``: the structural rules every exported conversation keeps, one test per
rule, and the exporter refusing what it flags."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from dataflow.operators.conversations import check_conversation
from dataflow.operators.conversations.export import export_conversations

GOOD = Path(__file__).resolve().parent / "data" / "quality" / "good_conversations.jsonl"


def _good() -> dict:
    """A two-turn conversation (``call_1`` answered, a final answer, then ``call_2``) that passes
    every structural and quality check."""
    return json.loads(GOOD.read_text(encoding="utf-8").splitlines()[0])


def _with_second_call_id(record: dict, call_id) -> dict:
    record = copy.deepcopy(record)
    messages = record["messages"]
    call_msg = next(m for m in messages[5:] if m.get("tool_calls"))
    call_msg["tool_calls"][0]["id"] = call_id
    next(m for m in messages[5:] if m["role"] == "tool")["tool_call_id"] = call_id
    return record


def test_the_good_conversation_is_valid_and_exported(tmp_path):
    record = _good()
    assert check_conversation(record["messages"], record["tools"]) == []
    result = export_conversations([{"conversations": record["messages"], "tools": record["tools"]}], tmp_path)
    assert result.written == 1 and result.skipped == {}


def test_a_tool_call_id_reused_in_a_later_turn_is_refused_and_never_exported(tmp_path):
    record = _with_second_call_id(_good(), "call_1")  # call_1 was already answered in turn one
    problems = check_conversation(record["messages"], record["tools"])
    assert problems == ["message 6: tool_call id 'call_1' missing or reused",
                        "message 7: tool message answers unknown or already answered id 'call_1'"]
    result = export_conversations([{"conversations": record["messages"], "tools": record["tools"]}], tmp_path)
    assert result.written == 0 and result.skipped == {"invalid_conversation": 1}
    for path in result.paths.values():
        assert "call_1" not in Path(path).read_text(encoding="utf-8")


@pytest.mark.parametrize("call_id", [None, ""])
def test_a_tool_call_without_an_id_is_refused(call_id):
    record = _with_second_call_id(_good(), call_id)
    problems = check_conversation(record["messages"], record["tools"])
    assert f"message 6: tool_call id {call_id!r} missing or reused" in problems


def test_two_calls_of_one_message_with_the_same_id_are_refused():
    record = _good()
    messages = record["messages"][:3]
    call = messages[2]["tool_calls"][0]
    messages[2] = {**messages[2], "tool_calls": [call, dict(call)]}
    messages += [{"role": "tool", "tool_call_id": "call_1", "content": "{\"ok\": true}"},
                 {"role": "assistant", "content": "Done."}]
    problems = check_conversation(messages, record["tools"])
    assert "message 2: tool_call id 'call_1' missing or reused" in problems


# -- one broken rule at a time: the exact problems reported ---------------------------------------
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
S = {"role": "system", "content": "You have tools."}
U = {"role": "user", "content": "Weather in Oslo?"}
A = {"role": "assistant", "content": "It is 3 degrees in Oslo."}


def _call(call_id: str, arguments: str = '{"city": "Oslo"}', content=None) -> dict:
    return {"role": "assistant", "content": content, "tool_calls": [
        {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": arguments}}]}


def _result(call_id: str, content: str = '{"temp_c": 3}') -> dict:
    return {"role": "tool", "tool_call_id": call_id, "content": content}


NEVER_ENDS = "conversation does not end with a final assistant answer"
CASES = {
    "valid with a system prompt": ([S, U, _call("c1"), _result("c1"), A], []),
    "not a list": ("hello", ["conversation is not a non-empty list of messages"]),
    "a dict": ({"role": "user"}, ["conversation is not a non-empty list of messages"]),
    "empty": ([], ["conversation is not a non-empty list of messages"]),
    "system later": ([U, S, A], ["message 1: system message after the start"]),
    "user while a call is open": ([U, _call("c1"), U, A], [
        "message 2: user message while tool calls ['c1'] are unanswered",
        "message 2: user message where tool was expected",
        "message 3: assistant message while tool calls ['c1'] are unanswered",
        "tool calls ['c1'] are never answered"]),
    "two user turns in a row": ([U, U, A], ["message 1: user message where assistant was expected"]),
    "blank user turn": ([{"role": "user", "content": "  "}, A], ["message 0: empty user message"]),
    "user content not text": ([{"role": "user", "content": 5}, A], ["message 0: empty user message"]),
    "user content missing": ([{"role": "user"}, A], ["message 0: empty user message"]),
    "assistant first": ([A], ["message 0: assistant message where system_or_user was expected"]),
    "assistant twice": ([U, A, A], ["message 2: assistant message where user was expected"]),
    "assistant says nothing": ([U, {"role": "assistant", "content": ""}], [
        "message 1: assistant message with neither content nor tool calls", NEVER_ENDS]),
    "blank tool result": ([U, _call("c1"), _result("c1", ""), A], ["message 2: empty tool result"]),
    "result for an unknown id": ([U, _call("c1"), _result("c2"), A], [
        "message 2: tool message answers unknown or already answered id 'c2'",
        "message 3: assistant message while tool calls ['c1'] are unanswered",
        "message 3: assistant message where tool was expected",
        "tool calls ['c1'] are never answered"]),
    "result answered twice": ([U, _call("c1"), _result("c1"), _result("c1"), A], [
        "message 3: tool message answers unknown or already answered id 'c1'"]),
    "illegal role": ([U, {"role": "robot", "content": "beep"}, A], ["message 1: illegal role 'robot'"]),
    "message not an object": ([U, "hello", A], ["message 1: illegal role None"]),
    "last message not an object": ([U, A, 5], ["message 2: illegal role None", NEVER_ENDS]),
    "ends on a tool result": ([U, _call("c1"), _result("c1")], [NEVER_ENDS]),
    "ends on a user turn": ([U], [NEVER_ENDS]),
    "ends on a call with text": ([U, _call("c1", content="Let me look.")], [
        "tool calls ['c1'] are never answered", NEVER_ENDS]),
    "malformed call": ([U, {"role": "assistant", "tool_calls": ["x"]}, A], [
        "message 1: malformed tool_call 'x'", "message 2: assistant message where tool was expected"]),
    "call whose function is text": ([U, {"role": "assistant", "tool_calls": [{"id": "c1", "function": "f"}]}, A], [
        "message 1: malformed tool_call {'id': 'c1', 'function': 'f'}",
        "message 2: assistant message where tool was expected"]),
    "unreadable arguments": ([U, _call("c1", "{bad"), _result("c1"), A], None),
    "arguments against the schema": ([U, _call("c1", '{"town": "Oslo"}'), _result("c1"), A], None),
}


@pytest.mark.parametrize("name", list(CASES))
def test_each_rule_reports_exactly_its_problem(name):
    messages, expected = CASES[name]
    problems = check_conversation(messages, [WEATHER])
    if name == "unreadable arguments":
        assert len(problems) == 1 and problems[0].startswith("message 1: call to get_weather: ")
        assert "arguments" in problems[0]
    elif name == "arguments against the schema":
        assert len(problems) >= 1 and all(p.startswith("call 0 (get_weather): ") for p in problems)
    else:
        assert problems == expected


def test_an_invalid_tool_list_is_a_problem_not_an_exception():
    broken = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {}, "required": ["city"]}}}
    problems = check_conversation([U, _call("c1"), _result("c1"), A], [broken])
    assert len(problems) == 1 and problems[0].startswith("invalid tools: tool 'get_weather'")
