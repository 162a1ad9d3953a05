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
