"""``dataflow.tools.calls``, the one reading of calls, arguments and results: exact readings and
exact problems for each accepted and refused shape (found by mutation testing: the suites that
use the reader did not pin its messages or its edge cases)."""

from __future__ import annotations

import json

import pytest

from dataflow.tools.calls import (
    CallError, Pairing, arguments_or_raise, dumps_arguments, dumps_json, json_type, loads_strict, nonfinite_path,
    pair_results, parse_call, read_arguments, read_calls,
)

NAN, INF = float("nan"), float("inf")
NOT_A_NUMBER = " is not a JSON number (NaN and Infinity are invalid argument values)"


class Float(float):
    """A float subclass, as numpy.float64 is."""


@pytest.mark.parametrize("raw, expected", [
    (None, ({}, None)), ("", ({}, None)), ("  \n", ({}, None)), ({}, ({}, None)),
    ('{"a": 1}', ({"a": 1}, None)), ('"{\\"a\\": 1}"', ({"a": 1}, None)),  # encoded twice
    ('"{not json"', (None, "arguments must be a JSON object, got string")),
    ('"plain"', (None, "arguments must be a JSON object, got string")),
    ("{bad", (None, "arguments are not valid JSON (Expecting property name enclosed in double quotes at position 1)")),
    ("[1]", (None, "arguments must be a JSON object, got array")),
    (5, (None, "arguments must be a JSON object, got integer")),
    ({"t": NAN}, (None, "argument 't': NaN" + NOT_A_NUMBER)),
    ({"t": {"u": [1, INF]}}, (None, "argument 't.u[1]': Infinity" + NOT_A_NUMBER)),
    ({"t": [[-INF]]}, (None, "argument 't[0][0]': -Infinity" + NOT_A_NUMBER)),
    ('{"t": NaN}', (None, "argument 't': NaN" + NOT_A_NUMBER)),
    ('{"t": -Infinity}', (None, "argument 't': -Infinity" + NOT_A_NUMBER)),
    ({"s": "x", "i": 1, "b": True, "n": None, "f": 0.0, "z": Float(INF)}, (None, "argument 'z': Infinity" + NOT_A_NUMBER)),
])
def test_read_arguments(raw, expected):
    assert read_arguments(raw) == expected


def test_nonfinite_path():
    assert nonfinite_path(NAN) == "" and nonfinite_path(1.5) is None and nonfinite_path("NaN") is None
    assert nonfinite_path((1, [2, -INF])) == "[1][1]"
    assert nonfinite_path({"a": {"b": 1}, "c": Float(NAN)}) == "c"
    assert nonfinite_path(Float(2.0)) is None and nonfinite_path({"a": [1.0, {"b": 2.5}]}) is None


def test_arguments_or_raise():
    assert arguments_or_raise('{"a": 1}') == {"a": 1}
    with pytest.raises(ValueError, match=r"^arguments must be a JSON object, got array$"):
        arguments_or_raise([1])


def test_loads_strict_refuses_the_constants_python_accepts():
    assert loads_strict('{"a": 1.5}') == {"a": 1.5}
    for text in ("NaN", '{"a": Infinity}', "[-Infinity]"):
        with pytest.raises(ValueError, match=r"is not a JSON number \(JSON has no NaN or Infinity\)"):
            loads_strict(text)
    for text in ('{"a": 1e400}', "[-1e999]"):  # numbers too large for a float read as infinity: refused too
        with pytest.raises(ValueError, match=r"is not a JSON number \(out of range\)"):
            loads_strict(text)


@pytest.mark.parametrize("call, expected", [
    ({"name": "f", "arguments": {"a": 1}}, ("f", {"a": 1}, None)),
    ({"function": {"name": "f", "arguments": '{"a": 1}'}, "id": "c1"}, ("f", {"a": 1}, None)),
    ({"function_name": "f", "arguments": {}}, ("f", {}, None)),
    ({"name": "f", "parameters": {"a": 2}}, ("f", {"a": 2}, None)),
    ({"name": "f", "arguments": None, "parameters": {"a": 2}}, ("f", {}, None)),  # arguments wins
    ({"name": "f"}, ("f", {}, None)),
    ('{"name": "f", "arguments": {"a": 3}}', ("f", {"a": 3}, None)),
    ('{"name": "f", "arguments": {"a": NaN}}', (None, None, "not a call object (a string that is not JSON)")),
    ("get_weather(city='Oslo')", (None, None, "not a call object (a string that is not JSON)")),
    (5, (None, None, "not a call object (got int)")),
    ("[1]", (None, None, "not a call object (got list)")),
    ({"name": ""}, (None, None, "has no function name")),
    ({"name": 5, "arguments": {}}, (None, None, "has no function name")),
    ({"function": "f", "name": "g"}, ("g", {}, None)),
    ({"name": "f", "arguments": "[]"}, ("f", None, "arguments must be a JSON object, got array")),
])
def test_parse_call(call, expected):
    assert parse_call(call) == expected


def test_read_calls():
    assert read_calls(None) == [] and read_calls("") == [] and read_calls("  ") == [] and read_calls([]) == []
    assert read_calls({"name": "f"}) == [{"name": "f", "arguments": {}}]
    assert read_calls('[{"name": "f", "arguments": "{\\"a\\": 1}"}]') == [{"name": "f", "arguments": {"a": 1}}]
    assert read_calls(({"name": "f"}, {"name": "g"})) == [{"name": "f", "arguments": {}}, {"name": "g", "arguments": {}}]
    with pytest.raises(CallError, match=r"^calls are not valid JSON: Expecting value: line 1 column 1 \(char 0\)$"):
        read_calls("nope")
    with pytest.raises(CallError, match=r"^calls are not valid JSON: NaN is not a JSON number"):
        read_calls("[NaN]")
    with pytest.raises(CallError, match=r"^calls: expected a list of calls, got integer$"):
        read_calls(5)
    with pytest.raises(CallError, match=r"^call 1 \(g\): arguments must be a JSON object, got array$"):
        read_calls([{"name": "f"}, {"name": "g", "arguments": [1]}])
    with pytest.raises(CallError, match=r"^call 0: has no function name$"):
        read_calls([{"arguments": {}}])


def test_dumps_json_keeps_text_and_refuses_nan():
    assert dumps_json({"a": "é"}) == '{"a": "é"}'
    assert dumps_json({"a": "é"}, ensure_ascii=True) == '{"a": "\\u00e9"}'
    assert dumps_json([1, 2], separators=(",", ":")) == "[1,2]"
    assert dumps_arguments({"city": "Zürich"}) == '{"city": "Zürich"}'
    for bad in (NAN, {"a": INF}):
        with pytest.raises(ValueError):
            dumps_json(bad)


@pytest.mark.parametrize("value, name", [
    (None, "null"), (True, "boolean"), (3, "integer"), (2.5, "number"), ("x", "string"), ([1], "array"),
    ((1,), "array"), ({}, "object"), (object(), "object"), (b"x", "bytes")])
def test_json_type(value, name):
    assert json_type(value) == name


def _call(call_id, name="f"):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": "{}"}}


def test_pair_results_by_id_by_order_and_orphans():
    messages = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "tool_calls": [_call("c1", "f"), _call("c2", "g")]},
        {"role": "tool", "tool_call_id": "c2", "content": "2"},
        {"role": "tool", "tool_call_id": "c1", "content": "1"},
        "not a message",
        {"role": "tool", "tool_call_id": "c1", "content": "again"},   # already answered
        {"role": "assistant", "tool_calls": [_call("", "h"), "bad call", _call("c4", "k")]},
        {"role": "tool", "name": "k", "content": "by name"},           # no id: paired by order, by name
        {"role": "tool", "content": "first open"},                     # no id, no name: the oldest open call
        {"role": "user", "content": "next"},
        {"role": "tool", "content": "late"},                           # a user turn closed the calls
    ]
    pairing = pair_results(messages)
    assert pairing.results == {2: ("c2", "g"), 3: ("c1", "f"), 7: ("c4", "k"), 8: (None, "h")}
    assert pairing.orphans == [5, 10] and pairing.by_order is True
    assert pairing.problems == [
        "orphan_result: message 5 (tool, id 'c1') answers no earlier call",
        "orphan_result: message 10 (tool, no tool_call_id) answers no earlier call"]


def test_pair_results_by_id_only_is_not_by_order():
    messages = [{"role": "assistant", "tool_calls": [_call("c1")]}, {"role": "tool", "tool_call_id": "c1"},
                {"role": "assistant", "tool_calls": [_call("c2")]}, {"role": "tool", "tool_call_id": "c1"}]
    pairing = pair_results(messages)
    assert pairing == Pairing(results={1: ("c1", "f")}, orphans=[3], by_order=False,
                              problems=["orphan_result: message 3 (tool, id 'c1') answers no earlier call"])
    assert pair_results([]) == Pairing()


def test_a_result_naming_another_function_is_an_orphan():
    messages = [{"role": "assistant", "tool_calls": [_call(None, "f")]}, {"role": "tool", "name": "g"}]
    assert pair_results(messages).orphans == [1]


def test_call_key_is_equal_for_calls_that_read_the_same():
    from dataflow.tools import call_key

    key = call_key({"name": "f", "arguments": {"b": 1, "a": "é"}})
    assert key == '{"arguments":{"a":"é","b":1},"name":"f"}'
    assert key == call_key({"function": {"name": "f", "arguments": '{"a": "é", "b": 1}'}, "id": "c9"})
    assert key == call_key('{"function_name": "f", "parameters": {"a": "é", "b": 1}}')
    assert call_key({"name": "f", "arguments": ""}) == call_key({"name": "f"}) == '{"arguments":{},"name":"f"}'
    assert call_key({"name": "f", "arguments": {"a": 1}}) != call_key({"name": "f", "arguments": {"a": 1.5}})
    # one JSON number however written: 2 and 2.0 (found in review: a turn calling f(days=2) and f(days=2.0)
    # escaped repeated_call)
    assert call_key({"name": "f", "arguments": {"a": [2, {"b": -0.0}]}}) == call_key(
        {"name": "f", "arguments": '{"a": [2.0, {"b": 0}]}'})
    from dataflow.tools import repeated_calls

    assert repeated_calls([{"name": "f", "arguments": {"a": 2}}, {"name": "f", "arguments": {"a": 2.0}}]) == [
        "call 1 repeats call 0 (f with the same arguments)"]
    assert call_key({"name": "f", "arguments": {"a": True}}) != call_key({"name": "f", "arguments": {"a": 1}})
    assert call_key({"name": "f", "arguments": {"a": 1}}) != call_key({"name": "g", "arguments": {"a": 1}})
    with pytest.raises(CallError, match="has no function name"):
        call_key({"arguments": {}})


def test_tools_key_is_equal_for_the_same_tools_in_any_order_or_dialect():
    from dataflow.core.errors import ToolSpecError
    from dataflow.tools import tools_key

    weather = {"type": "function", "function": {"name": "weather", "description": "Weather in a city",
                                                "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                               "required": ["city"]}}}
    bare_time = {"name": "time", "description": "Time in a city",
                 "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
    key = tools_key([weather, bare_time])
    assert key == tools_key([bare_time, weather]) == tools_key(json.dumps([bare_time, weather]))
    assert key.index('"name":"time"') < key.index('"name":"weather"')  # sorted by name
    assert tools_key([weather]) != key and tools_key([]) == "[]"
    with pytest.raises(ToolSpecError):
        tools_key([weather, weather])


def test_pair_results_edge_cases():
    # a result before any call is an orphan (not an error)
    assert pair_results([{"role": "tool", "tool_call_id": "c1", "content": "x"}]).orphans == [0]
    # a call without a function name is paired under the name ""
    nameless = [{"role": "assistant", "tool_calls": [{"id": "c1", "function": {"arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "x"}]
    assert pair_results(nameless).results == {1: ("c1", "")}
    # a tool_call_id that is not a string is no id: the result pairs by order
    odd = [{"role": "assistant", "tool_calls": [_call("c1")]}, {"role": "tool", "tool_call_id": 5, "content": "x"}]
    pairing = pair_results(odd)
    assert pairing.results == {1: ("c1", "f")} and pairing.by_order is True


def test_repeated_calls_reads_past_an_unreadable_call():
    from dataflow.tools import repeated_calls

    calls = [{"arguments": {}}, {"name": "f", "arguments": {"a": 1}}, {"name": "f", "arguments": '{"a": 1}'}]
    assert repeated_calls(calls) == ["call 2 repeats call 1 (f with the same arguments)"]
    assert repeated_calls("not a list") == []


def test_every_error_raised_on_purpose_is_a_dataflow_error():
    from dataflow.core.errors import DataFlowError, InvalidInput, Reask
    from dataflow.exports import RowError

    for error in (CallError, RowError, InvalidInput):
        assert issubclass(error, DataFlowError) and issubclass(error, ValueError)
    assert issubclass(Reask, DataFlowError)
    with pytest.raises(DataFlowError):
        read_calls("{not json")
