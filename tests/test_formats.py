"""Split and format converters."""

from __future__ import annotations

import json

import pytest

from dataflow.exports import (
    call_signature, convert_row, openai_messages_to_hermes, read_glaive_row, read_xlam_row, stratified_split,
    to_chat_message_format, to_openai_chat, to_xlam_row,
)
from dataflow.tools import normalize_tools

TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather.", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}}, "required": ["city"]}}}
CALLS = [{"name": "get_weather", "arguments": {"city": "Oslo", "days": 2}}, {"name": "get_weather", "arguments": {"city": "Rome"}}]


# -- split -------------------------------------------------------------------------------------
def test_call_signature():
    assert call_signature(CALLS) == "get_weather(city)|get_weather(city,days)"
    assert call_signature(list(reversed(CALLS))) == call_signature(CALLS)
    assert call_signature([]) == "<no_call>"
    assert call_signature(json.dumps(CALLS)) == call_signature(CALLS)


def _rows():
    rows = []
    for i in range(20):
        rows.append({"id": i, "answers": [{"name": "a", "arguments": {"x": i}}]})
    for i in range(10):
        rows.append({"id": 100 + i, "answers": [{"name": "b", "arguments": {"y": i, "z": 1}}]})
    rows.append({"id": 999, "answers": [{"name": "rare", "arguments": {}}]})
    return rows


def test_stratified_split_is_seeded_stratified_and_keeps_rare_classes_in_train():
    rows = _rows()
    result = stratified_split(rows, 0.2, seed=1)
    assert len(result.train) + len(result.validation) == len(rows)
    assert result.class_counts["a(x)"] == {"train": 16, "validation": 4, "test": 0}
    assert result.class_counts["b(y,z)"] == {"train": 8, "validation": 2, "test": 0}
    assert result.kept_in_train == ["rare()"] and any(r["id"] == 999 for r in result.train)
    again = stratified_split(rows, 0.2, seed=1)
    assert [r["id"] for r in again.validation] == [r["id"] for r in result.validation]
    other = stratified_split(rows, 0.2, seed=2)
    assert [r["id"] for r in other.validation] != [r["id"] for r in result.validation]
    report = result.report()
    assert report["sizes"] == {"train": 25, "validation": 6, "test": 0}


def test_split_with_test():
    result = stratified_split(_rows(), 0.3, with_test=True, seed=0)
    assert result.class_counts["a(x)"] == {"train": 14, "validation": 3, "test": 3}
    assert len(result.test) == 3 + 1 and "rare()" in result.kept_in_train


def test_split_rejects_bad_size():
    with pytest.raises(ValueError):
        stratified_split(_rows(), 1.5)


# -- writers -----------------------------------------------------------------------------------
def test_openai_chat():
    out = to_openai_chat("Weather?", CALLS, [TOOL], system_prompt="sys")
    assert [m["role"] for m in out["messages"]] == ["system", "user", "assistant"]
    calls = out["messages"][2]["tool_calls"]
    assert [c["id"] for c in calls] == ["call_0", "call_1"]
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Oslo", "days": 2}
    assert isinstance(calls[0]["function"]["arguments"], str)
    assert out["tools"] == [TOOL]


def test_openai_chat_with_results_ends_with_the_assistant_answer():
    out = to_openai_chat("Weather?", CALLS, [TOOL], results=[{"t": 1}, "sunny"], final_answer="Oslo 1, Rome sunny.")
    roles = [m["role"] for m in out["messages"]]
    assert roles == ["user", "assistant", "tool", "tool", "assistant"]
    assert out["messages"][2]["tool_call_id"] == "call_0" and json.loads(out["messages"][2]["content"]) == {"t": 1}
    assert out["messages"][3]["content"] == "sunny" and out["messages"][4]["content"] == "Oslo 1, Rome sunny."
    with pytest.raises(ValueError, match="final assistant answer"):
        to_openai_chat("Weather?", CALLS, [TOOL], results=[{"t": 1}, "sunny"])
    with pytest.raises(ValueError, match="2 calls"):
        to_openai_chat("Weather?", CALLS, [TOOL], results=["sunny"], final_answer="ok")


def test_function_results_strip_the_execution_harness_fields():
    from dataflow.exports import function_results

    entries = [{"name": "get_weather", "ok": True, "result": {"high": 21}, "truncated": False},
               {"name": "get_weather", "ok": True, "result": [2, 3]}]
    assert function_results(entries) == [{"high": 21}, [2, 3]]
    with pytest.raises(ValueError, match="failed"):
        function_results([{"name": "get_weather", "ok": False, "error": "ValueError: bad city"}])
    row = {"query": "Weather?", "answers": CALLS, "tools": [TOOL], "execution_results": entries, "final_answer": "21 and 2, 3."}
    messages = convert_row(row, "openai", results_key="execution_results")["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "tool", "assistant"]
    assert [json.loads(m["content"]) for m in messages if m["role"] == "tool"] == [{"high": 21}, [2, 3]]
    hermes = convert_row(row, "hermes", results_key="execution_results")["conversations"]
    assert [t["from"] for t in hermes] == ["system", "human", "gpt", "tool", "gpt"] and '"ok"' not in hermes[3]["value"]


def test_openai_chat_irrelevance():
    out = to_openai_chat("Order pizza", [], [TOOL])
    assert out["messages"][-1]["role"] == "assistant" and "tool_calls" not in out["messages"][-1]


def test_chat_message_format():
    out = to_chat_message_format("Weather?", CALLS, "sys")
    assert [m["role"] for m in out["messages"]] == ["system", "user", "assistant"]
    assert json.loads(out["messages"][2]["content"]) == [{"function_name": "get_weather", "arguments": {"city": "Oslo", "days": 2}},
                                                        {"function_name": "get_weather", "arguments": {"city": "Rome"}}]


def test_xlam_row_round_trip():
    row = to_xlam_row("Weather?", CALLS, [TOOL], row_id=7)
    assert isinstance(row["tools"], str) and isinstance(row["answers"], str) and row["id"] == 7
    back = read_xlam_row(row)
    assert back["answers"] == CALLS and back["tools"] == [TOOL]
    xlam_dialect = to_xlam_row("Weather?", CALLS, [TOOL], tool_dialect="xlam")
    params = json.loads(xlam_dialect["tools"])[0]["parameters"]
    assert params == {"city": {"type": "str"}, "days": {"type": "int, optional"}}
    assert read_xlam_row(xlam_dialect)["answers"] == CALLS


def test_hermes_multi_turn_with_several_calls_and_responses():
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Oslo and Rome?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}},
            {"id": "c2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": '{"temp": 3}'},
        {"role": "tool", "tool_call_id": "c2", "content": "sunny"},
        {"role": "assistant", "content": "Oslo 3C, Rome sunny."},
        {"role": "user", "content": "Thanks"},
        {"role": "assistant", "content": "You're welcome."},
    ]
    out = openai_messages_to_hermes(messages, [TOOL])
    froms = [t["from"] for t in out["conversations"]]
    assert froms == ["system", "human", "gpt", "tool", "gpt", "human", "gpt"]
    system = out["conversations"][0]["value"]
    assert "<tools>" in system and '"get_weather"' in system and "Be brief." in system
    gpt = out["conversations"][2]["value"]
    assert gpt.count("<tool_call>") == 2 and '{"name": "get_weather", "arguments": {"city": "Rome"}}' in gpt
    tool_turn = out["conversations"][3]["value"]
    assert tool_turn.count("<tool_response>") == 2
    assert '{"name": "get_weather", "content": {"temp": 3}}' in tool_turn
    assert json.loads(out["tools"]) == [TOOL]


GLAIVE = {
    "system": 'SYSTEM: You are a helpful assistant with access to the following functions. Use them if required -\n'
              '{\n    "name": "get_news",\n    "description": "Get news",\n    "parameters": {\n        "type": "object",\n'
              '        "properties": {"country": {"type": "string"}},\n        "required": ["country"]\n    }\n}\n'
              '{\n    "name": "calc_tip",\n    "description": "Tip",\n    "parameters": {"type": "object", "properties": {"bill": {"type": "number"}}}\n}',
    "chat": "USER: What's the news in the US? And a 15% tip on $40?\n\n\nASSISTANT: <functioncall> {\"name\": \"get_news\", \"arguments\": '{\"country\": \"US\"}'} "
            "<functioncall> {\"name\": \"calc_tip\", \"arguments\": '{\"bill\": 40, \"note\": \"it's fine\"}'} <|endoftext|>\n\n\n"
            "FUNCTION RESPONSE: {\"headlines\": [\"A\"]}\n\n\nFUNCTION RESPONSE: {\"tip\": 6}\n\n\n"
            "ASSISTANT: Headline A; tip is $6. <|endoftext|>\n\n\nUSER: thanks\n\n\nASSISTANT: Welcome! <|endoftext|>",
}


def test_glaive_reader_multi_turn_multiple_calls_and_responses():
    out = read_glaive_row(GLAIVE)
    assert [t["function"]["name"] for t in out["tools"]] == ["get_news", "calc_tip"]
    roles = [m["role"] for m in out["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "tool", "assistant", "user", "assistant"]
    calls = out["messages"][2]["tool_calls"]
    assert json.loads(calls[0]["function"]["arguments"]) == {"country": "US"}
    assert json.loads(calls[1]["function"]["arguments"]) == {"bill": 40, "note": "it's fine"}
    assert out["messages"][3]["tool_call_id"] == calls[0]["id"] and out["messages"][4]["name"] == "calc_tip"
    assert out["messages"][5]["content"] == "Headline A; tip is $6."
    hermes = openai_messages_to_hermes(out["messages"], out["tools"])
    assert [t["from"] for t in hermes["conversations"]] == ["system", "human", "gpt", "tool", "gpt", "human", "gpt"]


def test_convert_row_all_formats():
    row = {"query": "Weather?", "answers": CALLS, "tools": [TOOL]}
    for fmt in ("openai", "chat_message", "hermes", "xlam"):
        assert convert_row(row, fmt, system_prompt="sys")
    with pytest.raises(ValueError):
        convert_row(row, "alpaca")
    seed_row = {"query": "Weather?", "function_calls": [{"function_name": "get_weather", "arguments": {"city": "x"}}]}
    assert json.loads(convert_row(seed_row, "chat_message", system_prompt="s")["messages"][2]["content"])[0]["function_name"] == "get_weather"
    assert normalize_tools(convert_row(row, "openai")["tools"]) == [TOOL]
