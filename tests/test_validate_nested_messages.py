"""Messages of ``validate_calls`` for rules inside nested objects, arrays and branches: each names
the argument by its full path (``o.a``, ``l[1]``), the rule broken and, for a conditional rule,
which condition asked for it; several messages come in the order the schema declares the rules.
Each case is checked on both paths: jsonschema-rs's errors, and the Python validator's (a call
holding ``1.0`` for an integer, here the extra argument ``zf``, is judged by it)."""

from __future__ import annotations

import pytest

from dataflow.tools import validate_calls

INT = {"type": "integer"}


def _obj(props: dict, **rules) -> dict:
    return {"type": "object", "properties": props, **rules}


#: (parameters, arguments, messages without "call 0 (f): ") — the same on both paths
CASES = {
    "dependentRequired in a nested object names both paths": (
        _obj({"o": _obj({"a": INT, "b": INT, "c": INT}, dependentRequired={"a": ["b"], "c": ["b"]})}),
        {"o": {"a": 1, "c": 2}},
        ["argument 'o.a' requires argument 'o.b' (dependentRequired)",
         "argument 'o.c' requires argument 'o.b' (dependentRequired)"]),
    "dependentSchemas says which rule requires the argument": (
        _obj({"a": INT, "b": INT}, dependentSchemas={"a": {"required": ["b"]}}), {"a": 1},
        ["missing required argument 'b' (required by dependentSchemas)"]),
    "a nested value matching two oneOf alternatives": (
        _obj({"x": {"oneOf": [{"type": "integer"}, {"minimum": 0}]}}), {"x": 3},
        ["argument 'x': matches more than one of the oneOf alternatives (exactly one must match)"]),
    "anyOf: the closest alternative is the object one, not the null listed first": (
        _obj({"o": {"anyOf": [{"type": "null"}, _obj({"a": INT})]}}), {"o": {"a": "x"}},
        ["argument 'o': matches none of the anyOf alternatives (closest: argument 'o.a': \"x\" is not of type 'integer')"]),
    "oneOf: the closest alternative is the object one, not the null listed first": (
        _obj({"o": {"oneOf": [{"type": "null"}, _obj({"a": INT})]}}), {"o": {"a": "x"}},
        ["argument 'o': matches none of the oneOf alternatives (closest: argument 'o.a': \"x\" is not of type 'integer')"]),
    "rules of allOf branches come in schema order": (
        _obj({"b": {}, "c": {}, "d": {}}, allOf=[{"properties": {"d": INT, "c": INT}}, {"properties": {"b": INT}}]),
        {"b": "x", "c": "y", "d": "z"},
        ["argument 'd': \"z\" is not of type 'integer'", "argument 'c': \"y\" is not of type 'integer'",
         "argument 'b': \"x\" is not of type 'integer'"]),
    "rules reached through $ref": (
        _obj({"a": {"$ref": "#/$defs/pos"}, "b": {"$ref": "#/$defs/pos"}}, **{"$defs": {"pos": {"type": "integer", "minimum": 0}}}),
        {"b": -2, "a": -1},
        ["argument 'a': -1 is less than the minimum of 0 (minimum)",
         "argument 'b': -2 is less than the minimum of 0 (minimum)"]),
    "a value of 60 characters is quoted whole, non-ASCII as it is": (
        _obj({"s": INT}), {"s": "é" * 58}, [f"argument 's': \"{'é' * 58}\" is not of type 'integer'"]),
    "a value of 61 characters is cut to 60": (
        _obj({"s": INT}), {"s": "a" * 59}, [f"argument 's': \"{'a' * 56}... is not of type 'integer'"]),
    "repeated items": (
        _obj({"l": {"type": "array", "uniqueItems": True}}), {"l": [1, 1]}, ["argument 'l': has repeated items (uniqueItems)"]),
    "two unknown arguments, in the call's order": (
        _obj({"a": INT}), {"a": 1, "zz": 1, "yy": 2}, ["unknown argument 'zz'", "unknown argument 'yy'"]),
    "an unknown argument of a nested object": (
        _obj({"o": _obj({"a": INT})}), {"o": {"a": 1, "zz": 1}}, ["unknown argument 'o.zz'"]),
    "too few items, with the count": (
        _obj({"l": {"type": "array", "minItems": 2}}), {"l": [1]}, ["argument 'l': has fewer than 2 items (minItems; got 1)"]),
    "an unknown argument checked against additionalProperties' schema": (
        _obj({"k": INT}, additionalProperties={"type": "string"}), {"k": 1, "x": 5},
        ["argument 'x': 5 is not of type 'string'"]),
    "pattern is ECMA-262: \\d is an ASCII digit": (
        _obj({"s": {"type": "string", "pattern": "^\\d$"}}), {"s": "٣"},
        ["argument 's': \"٣\" does not match the pattern '^\\\\d$'"]),
    "patternProperties are ECMA-262 too: a key they do not match is unknown": (
        _obj({"k": INT}, patternProperties={"^x_\\d$": {"type": "string"}}, additionalProperties=False),
        {"k": 1, "x_٣": 5, "x_1": "a"}, ["unknown argument 'x_٣'"]),
    "dependentRequired names only the argument that needs the missing one": (
        _obj({"a": INT, "b": INT, "c": INT, "d": INT}, dependentRequired={"a": ["b"], "c": ["d"]}),
        {"a": 1, "c": 1, "d": 1}, ["argument 'a' requires argument 'b' (dependentRequired)"]),
    "a single type reached through $ref": (
        _obj({"a": {"$ref": "#/$defs/i"}}, **{"$defs": {"i": INT}}), {"a": "s"},
        ["argument 'a': \"s\" is not of type 'integer'"]),
    "an argument declared by an allOf branch after a true branch is known": (
        _obj({"a": INT}, allOf=[True, {"properties": {"b": INT}}]), {"a": 1, "b": 2}, []),
    "an integral float inside an array of integers": (
        _obj({"l": {"type": "array", "items": INT}}), {"l": [1, 2.0]}, ["argument 'l[1]': 2.0 is not of type 'integer'"]),
    "the closest alternative's list of types as the schema writes it": (
        _obj({"x": {"anyOf": [{"type": ["string", "null"]}, {"type": "boolean"}]}}), {"x": 5},
        ["argument 'x': matches none of the anyOf alternatives (closest: argument 'x': 5 is not of type 'string' or 'null')"]),
    "a list of types reached through $ref": (
        _obj({"a": {"$ref": "#/$defs/t"}}, **{"$defs": {"t": {"type": ["string", "null"]}}}), {"a": 5},
        ["argument 'a': 5 is not of type 'string' or 'null'"]),
    "anyOf on the arguments themselves: the closest is the alternative of the right type": (
        _obj({"a": INT, "b": INT}, anyOf=[{"type": "array"}, {"required": ["a"]}]), {"b": 1},
        ["arguments: matches none of the anyOf alternatives (closest: missing required argument 'a')"]),
    "the closest alternative's most general problem first": (
        _obj({"o": {"anyOf": [{"type": "null"}, _obj({"a": INT, "b": INT}, required=["b"])]}}), {"o": {"a": "x"}},
        ["argument 'o': matches none of the anyOf alternatives (closest: missing required argument 'o.b')"]),
    "a list of types as the schema writes it": (
        _obj({"n": {"type": ["null", "integer"]}}), {"n": "x"}, ["argument 'n': \"x\" is not of type 'null' or 'integer'"]),
}


def _messages(parameters: dict, arguments: dict) -> list[str]:
    tool = {"type": "function", "function": {"name": "f", "description": "d", "parameters": parameters}}
    return [m.removeprefix("call 0 (f): ") for m in validate_calls([{"name": "f", "arguments": arguments}], [tool])]


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("path", ["jsonschema-rs", "python"])
def test_a_nested_rule_is_named_by_its_full_path(case, path):
    parameters, arguments, expected = CASES[case]
    if path == "python":  # an integral float for an integer sends the call to the Python validator
        parameters = {**parameters, "properties": {**parameters["properties"], "zf": INT}}
        arguments = {**arguments, "zf": 1.0}
        expected = [*expected, "argument 'zf': 1.0 is not of type 'integer'"]
        assert sorted(_messages(parameters, arguments)) == sorted(expected)
    else:
        assert _messages(parameters, arguments) == expected


def test_a_value_no_schema_allows_is_named_by_its_path():
    assert _messages(_obj({"x": False, "y": INT}), {"x": 1}) == ["unknown argument 'x'"]
    assert _messages(_obj({"o": _obj({"x": False})}), {"o": {"x": 1}}) == ["unknown argument 'o.x'"]
    assert _messages(_obj({"l": {"type": "array", "prefixItems": [INT], "items": False}}), {"l": [1, 2]}) == [
        "argument 'l[1]': no value is allowed here"]
    assert _messages(_obj({"l": {"type": "array", "items": _obj({"x": False})}}), {"l": [{"x": 1}]}) == [
        "unknown argument 'l[0].x'"]


def test_a_rule_without_its_own_wording_keeps_the_validators_text_cut_to_200_characters():
    assert _messages(_obj({"o": {"type": "object", "minProperties": 2}}), {"o": {"a": 1}}) == [
        "argument 'o': {\"a\":1} has less than 2 properties (MinProperties)"]
    (message,) = _messages(_obj({"l": {"type": "array", "contains": INT}}), {"l": ["x" * 150, "y" * 100]})
    assert message.startswith("argument 'l': None of [\"xxx")
    assert message.endswith("yyy... (Contains)")
    assert len(message) == len("argument 'l': ") + 200 + len(" (Contains)")


def test_the_python_validator_keeps_its_own_text_for_an_unworded_rule_cut_to_200_characters():
    parameters = _obj({"l": {"type": "array", "contains": INT}, "zf": INT})
    messages = _messages(parameters, {"l": ["x" * 150, "y" * 100], "zf": 1.0})
    assert "argument 'zf': 1.0 is not of type 'integer'" in messages
    (message,) = [m for m in messages if "'l'" in m]
    assert message.startswith("argument 'l': ") and message.endswith("... (contains)")
    assert len(message) == len("argument 'l': ") + 200 + len(" (contains)")


@pytest.mark.parametrize("length,cut", [(155, False), (156, True)])
def test_a_validator_text_of_200_characters_is_kept_whole_and_201_is_cut(length, cut):
    (message,) = _messages(_obj({"l": {"type": "array", "contains": INT}}), {"l": ["x" * length]})
    text = f'None of ["{"x" * length}"] are valid under the given schema'
    assert len(text) == length + 45
    assert message == f"argument 'l': {text[:197] + '...' if cut else text} (Contains)"


def test_a_valid_call_on_a_new_tool_compiles_no_validator():
    from dataflow.tools import compile_tools

    parameters = _obj({"a": INT, "s": {"type": "string", "description": "text", "maxLength": 5},
                       "l": {"type": "array", "items": INT}}, required=["a"])
    tool = {"type": "function", "function": {"name": "f", "description": "d", "parameters": parameters}}
    toolset = compile_tools([tool])
    assert validate_calls([{"name": "f", "arguments": {"a": 1, "s": "hi", "l": [1, 2]}}], toolset) == []
    assert toolset.tools["f"]._rs is None  # the pre-check proved it valid
    assert validate_calls([{"name": "f", "arguments": {"a": 1, "s": "too long"}}], toolset) != []
    assert toolset.tools["f"]._rs is not None


def test_calls_that_are_null_or_blank_text():
    assert validate_calls(None, []) == ["calls: expected a list of calls, got null"]
    assert validate_calls("  ", []) == []
    assert validate_calls("", []) == []
