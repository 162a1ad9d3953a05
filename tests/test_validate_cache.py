"""``compile_tools``' caches: a tool list seen twice is compiled once (by identity for the same
object, by content for an equal copy), a list changed in place is compiled again, and dotted
names are names by default. Plus the unknown-argument messages of the Python validator path."""

from __future__ import annotations

import copy
import json

from dataflow.tools import compile_tools, validate_calls
from dataflow.tools.validation import clear_cache

TOOL = {"type": "function", "function": {"name": "math.factorial", "description": "n!",
                                         "parameters": {"type": "object", "properties": {"n": {"type": "integer"}}}}}
OTHER = {"type": "function", "function": {"name": "other", "description": "x",
                                          "parameters": {"type": "object", "properties": {"s": {"type": "string"}}}}}


def test_the_same_list_is_compiled_once_seen_twice():
    tools = [TOOL]
    first, second, third = compile_tools(tools), compile_tools(tools), compile_tools(tools)
    assert first is not second  # a list seen once is not kept
    assert third is second and list(third.tools) == ["math.factorial"]


def test_an_equal_copy_or_the_same_text_shares_the_compiled_tools():
    compile_tools([TOOL])
    kept = compile_tools(copy.deepcopy([TOOL]))
    assert compile_tools(copy.deepcopy([TOOL])) is kept
    text = json.dumps([TOOL])
    compile_tools(text)
    assert compile_tools(text) is compile_tools(text) and list(compile_tools(text).tools) == ["math.factorial"]
    assert compile_tools([TOOL], allow_dots=True) is not None


def test_a_list_changed_in_place_is_compiled_again():
    tools = [TOOL]
    compile_tools(tools)
    compile_tools(tools)
    tools[0] = OTHER  # same list object, another tool
    assert list(compile_tools(tools).tools) == ["other"]
    tools.append(TOOL)
    assert list(compile_tools(tools).tools) == ["other", "math.factorial"]
    clear_cache()
    assert list(compile_tools(tools).tools) == ["other", "math.factorial"]


def test_dotted_names_are_names_unless_refused():
    assert compile_tools([TOOL]).tools["math.factorial"].name == "math.factorial"
    assert validate_calls([{"name": "math.factorial", "arguments": {"n": 5}}], [TOOL]) == []
    try:
        compile_tools([TOOL], allow_dots=False)
    except Exception as exc:  # ToolSpecError
        assert "math.factorial" in str(exc)
    else:
        raise AssertionError("a dotted name was accepted with allow_dots=False")


def test_unknown_arguments_from_the_python_validator():
    """A call with ``1.0`` for an integer is judged by the Python validator; its unknown-argument
    messages read as jsonschema-rs's do, also beside patternProperties and under allOf."""
    pattern = {"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"k": {"type": "integer"}}, "patternProperties": {"^x_": {"type": "string"}},
        "additionalProperties": False}}}
    args = {"k": 1.0, "x_ok": "s", "zz": 1, "yy": 2}
    assert sorted(validate_calls([{"name": "f", "arguments": args}], [pattern])) == [
        "call 0 (f): argument 'k': 1.0 is not of type 'integer'", "call 0 (f): unknown argument 'yy'",
        "call 0 (f): unknown argument 'zz'"]
    branches = {"type": "function", "function": {"name": "g", "parameters": {
        "type": "object", "properties": {"k": {"type": "integer"}}, "allOf": [{"properties": {"b": {"type": "string"}}}]}}}
    for k in (1.0, 1):
        messages = validate_calls([{"name": "g", "arguments": {"k": k, "b": "s", "zz": 1}}], [branches])
        assert "call 0 (g): unknown argument 'zz'" in messages and not any("'b'" in m for m in messages)


def test_pattern_properties_are_checked_with_ecma_patterns_on_both_paths():
    tool = {"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"k": {"type": "integer"}},
        "patternProperties": {"^x_\\d$": {"type": "string"}}, "additionalProperties": False}}}
    for k in (1, 1.0):
        messages = validate_calls([{"name": "f", "arguments": {"k": k, "x_1": 5, "x_2": "fine", "x_٣": "s"}}], [tool])
        expected = ["call 0 (f): argument 'x_1': 5 is not of type 'string'", "call 0 (f): unknown argument 'x_٣'"]
        if isinstance(k, float):
            expected.append("call 0 (f): argument 'k': 1.0 is not of type 'integer'")
        assert sorted(messages) == sorted(expected), k  # \d is ASCII digits only (ECMA-262)
