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


def _counting_content_key(monkeypatch) -> list:
    """Count the content hashing ``compile_tools`` does (what its identity cache saves)."""
    from dataflow.tools import validation

    calls: list = []
    real = validation.content_key

    def counting(tools):
        calls.append(1)
        return real(tools)

    monkeypatch.setattr(validation, "content_key", counting)
    return calls


def _tool_named(name: str) -> dict:
    return {"type": "function", "function": {"name": name, "description": "x",
                                             "parameters": {"type": "object", "properties": {}}}}


def test_a_list_validated_in_a_loop_is_not_hashed_again(monkeypatch):
    hashed = _counting_content_key(monkeypatch)
    first, second = [TOOL], [OTHER]
    for tools in (first, first, second, second):  # each seen twice: both kept by identity
        compile_tools(tools)
    assert len(hashed) == 4
    kept_first, kept_second = compile_tools(first), compile_tools(second)
    for _ in range(3):
        assert compile_tools(first) is kept_first and compile_tools(second) is kept_second
    assert len(hashed) == 4  # no hashing for a list already kept
    first.append(OTHER)  # changed in place: compiled again, by content
    assert list(compile_tools(first).tools) == ["math.factorial", "other"]
    assert len(hashed) == 5


def test_a_tool_given_as_one_dict_is_kept_and_recompiled_when_changed_in_place(monkeypatch):
    hashed = _counting_content_key(monkeypatch)
    tool = copy.deepcopy(TOOL)
    compile_tools(tool)
    kept = compile_tools(tool)
    assert compile_tools(tool) is kept and len(hashed) == 2
    tool["function"] = copy.deepcopy(OTHER["function"])  # a value of the dict replaced
    assert list(compile_tools(tool).tools) == ["other"]


def test_the_identity_cache_keeps_the_256_lists_stored_last(monkeypatch):
    hashed = _counting_content_key(monkeypatch)
    lists = [[_tool_named(f"t{i}")] for i in range(257)]
    for tools in lists[:256]:
        compile_tools(tools)
        compile_tools(tools)
    hashed.clear()
    compile_tools(lists[0])
    assert hashed == []  # the oldest of 256 is still kept
    compile_tools(lists[256])
    compile_tools(lists[256])  # the 257th list is kept; the first stored (lists[0]) goes
    hashed.clear()
    compile_tools(lists[256])
    compile_tools(lists[1])
    assert hashed == []
    compile_tools(lists[0])
    assert hashed == [1]


def test_a_list_seen_once_is_not_kept_even_after_other_lists():
    compile_tools([TOOL])
    once = compile_tools([OTHER])
    assert compile_tools([OTHER]) is not once  # seen once: not kept
    assert compile_tools([OTHER]) is compile_tools([OTHER])


def test_a_compiled_tool_set_is_used_as_it_is():
    toolset = compile_tools([TOOL])  # dotted names allowed when compiled
    assert validate_calls([{"name": "math.factorial", "arguments": {"n": 1}}], toolset, allow_dots=False) == []
    assert validate_calls([{"name": "nope", "arguments": {}}], compile_tools([TOOL, OTHER])) == [
        "call 0 (nope): unknown function 'nope' (available: math.factorial, other)"]
    assert validate_calls([{"name": "nope", "arguments": {}}], compile_tools([])) == [
        "call 0 (nope): unknown function 'nope' (available: none)"]
