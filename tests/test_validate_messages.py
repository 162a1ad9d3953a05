"""The messages ``validate_calls`` writes, one broken rule at a time, pinned exactly; the same
messages whichever validator writes them (jsonschema-rs, or the Python validator that a call with
an integral float such as ``1.0`` for an integer is judged by)."""

from __future__ import annotations

import pytest

from dataflow.tools import validate_calls

#: (properties, required, other schema keywords, arguments, the messages without "call 0 (f): ")
CASES = [({'n': {'type': 'integer'}}, [], {}, {'n': 'x'}, ['argument \'n\': "x" is not of type \'integer\'']),
 ({'n': {'type': 'integer'}}, [], {}, {'n': True}, ["argument 'n': true is not of type 'integer'"]),
 ({'n': {'type': 'number'}}, [], {}, {'n': True}, ["argument 'n': true is not of type 'number'"]),
 ({'n': {'type': ['integer', 'null']}},
  [],
  {},
  {'n': 'x'},
  ['argument \'n\': "x" is not of type \'integer\' or \'null\'']),
 ({'e': {'enum': ['a', 'b']}}, [], {}, {'e': 'c'}, ['argument \'e\': "c" is not one of ["a", "b"]']),
 ({'c': {'const': 1}}, [], {}, {'c': 2}, ["argument 'c': 2 must equal 1"]),
 ({'n': {'type': 'integer', 'minimum': 2}},
  [],
  {},
  {'n': 1},
  ["argument 'n': 1 is less than the minimum of 2 (minimum)"]),
 ({'n': {'type': 'integer', 'maximum': 2}},
  [],
  {},
  {'n': 3},
  ["argument 'n': 3 is greater than the maximum of 2 (maximum)"]),
 ({'n': {'type': 'number', 'exclusiveMinimum': 2}},
  [],
  {},
  {'n': 2},
  ["argument 'n': 2 must be greater than 2 (exclusiveMinimum)"]),
 ({'n': {'type': 'number', 'exclusiveMaximum': 2}},
  [],
  {},
  {'n': 2},
  ["argument 'n': 2 must be less than 2 (exclusiveMaximum)"]),
 ({'n': {'type': 'number', 'multipleOf': 2}},
  [],
  {},
  {'n': 3},
  ["argument 'n': 3 is not a multiple of 2 (multipleOf)"]),
 ({'s': {'type': 'string', 'minLength': 3}},
  [],
  {},
  {'s': 'ab'},
  ['argument \'s\': "ab" is shorter than 3 characters (minLength)']),
 ({'s': {'type': 'string', 'maxLength': 1}},
  [],
  {},
  {'s': 'ab'},
  ['argument \'s\': "ab" is longer than 1 characters (maxLength)']),
 ({'a': {'type': 'array', 'minItems': 2}},
  [],
  {},
  {'a': [1]},
  ["argument 'a': has fewer than 2 items (minItems; got 1)"]),
 ({'a': {'type': 'array', 'maxItems': 1}},
  [],
  {},
  {'a': [1, 2]},
  ["argument 'a': has more than 1 items (maxItems; got 2)"]),
 ({'a': {'type': 'array', 'uniqueItems': True}},
  [],
  {},
  {'a': [1, 1]},
  ["argument 'a': has repeated items (uniqueItems)"]),
 ({'s': {'type': 'string', 'pattern': '^[A-Z]+$'}},
  [],
  {},
  {'s': 'ab'},
  ['argument \'s\': "ab" does not match the pattern \'^[A-Z]+$\'']),
 ({'d': {'type': 'string', 'format': 'date'}},
  [],
  {},
  {'d': '2025-13-45'},
  ['argument \'d\': "2025-13-45" is not a valid \'date\' (format)']),
 ({'x': {'not': {'type': 'string'}}},
  [],
  {},
  {'x': 's'},
  ["argument 'x': matches a schema it must not match ('not')"]),
 ({'a': {'type': 'string'}}, ['a'], {}, {}, ["missing required argument 'a'"]),
 ({'a': {'type': 'string'}}, [], {}, {'zz': 1, 'yy': 2}, ["unknown argument 'zz'", "unknown argument 'yy'"]),
 ({'a': {'type': 'string'}, 'b': {'type': 'string'}},
  [],
  {'dependentRequired': {'a': ['b']}},
  {'a': 'x'},
  ["argument 'a' requires argument 'b' (dependentRequired)"]),
 ({'a': {'type': 'string'}, 'b': {'type': 'string'}},
  [],
  {'if': {'properties': {'a': {'const': 'x'}}, 'required': ['a']}, 'then': {'required': ['b']}},
  {'a': 'x'},
  ["missing required argument 'b' (required by if/then)"]),
 ({'a': {'type': 'string'}, 'b': {'type': 'string'}},
  [],
  {'if': {'properties': {'a': {'const': 'x'}}, 'required': ['a']},
   'then': {'required': ['b']},
   'else': {'required': ['a']}},
  {'b': 'y'},
  ["missing required argument 'a' (required by if/else)"]),
 ({'o': {'anyOf': [{'type': 'integer', 'minimum': 3}, {'type': 'null'}]}},
  [],
  {},
  {'o': 1},
  ["argument 'o': matches none of the anyOf alternatives (closest: argument 'o': 1 is less than the minimum of 3 "
   '(minimum))']),
 ({'o': {'anyOf': [{'type': 'integer'}, {'type': 'string', 'maxLength': 1}]}},
  [],
  {},
  {'o': 'abc'},
  ['argument \'o\': matches none of the anyOf alternatives (closest: argument \'o\': "abc" is longer than 1 '
   'characters (maxLength))']),
 ({'o': {'oneOf': [{'type': 'integer'}, {'type': 'number'}]}},
  [],
  {},
  {'o': 1},
  ["argument 'o': matches more than one of the oneOf alternatives (exactly one must match)"]),
 ({'o': {'oneOf': [{'type': 'integer'}, {'type': 'string'}]}},
  [],
  {},
  {'o': []},
  ["argument 'o': matches none of the oneOf alternatives (closest: argument 'o': [] is not of type 'integer')"]),
 ({'o': {'allOf': [{'type': 'integer'}, {'minimum': 5}]}},
  [],
  {},
  {'o': 1},
  ["argument 'o': 1 is less than the minimum of 5 (minimum)"]),
 ({'loc': {'type': 'object', 'properties': {'lat': {'type': 'number'}}, 'required': ['lat']}},
  [],
  {},
  {'loc': {'lat': 'x'}},
  ['argument \'loc.lat\': "x" is not of type \'number\'']),
 ({'loc': {'type': 'object', 'properties': {'lat': {'type': 'number'}}, 'required': ['lat']}},
  [],
  {},
  {'loc': {'lon': 1}},
  ["missing required argument 'loc.lat'", "unknown argument 'loc.lon'"]),
 ({'ids': {'type': 'array', 'items': {'type': 'integer'}}},
  [],
  {},
  {'ids': [1, '2']},
  ['argument \'ids[1]\': "2" is not of type \'integer\'']),
 ({'s': {'type': 'string', 'enum': ['xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx']}},
  [],
  {},
  {'s': 'yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy'},
  ['argument \'s\': "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy... is not one of '
   '["xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...'])]

INTEGRAL_FLOAT = "argument 'k': 1.0 is not of type 'integer'"


def _tool(properties: dict, required: list, extra: dict) -> dict:
    properties = dict(properties, k={"type": "integer"})
    return {"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": properties, "required": required, **extra}}}


@pytest.mark.parametrize("case", range(len(CASES)))
def test_each_broken_rule_has_its_message(case):
    properties, required, extra, arguments, expected = CASES[case]
    tools = [_tool(properties, required, extra)]
    assert validate_calls([{"name": "f", "arguments": arguments}], tools) == [f"call 0 (f): {m}" for m in expected]
    # with an integral float the Python validator judges the call: the same messages, plus that one
    strict = validate_calls([{"name": "f", "arguments": dict(arguments, k=1.0)}], tools)
    assert sorted(strict) == sorted(f"call 0 (f): {m}" for m in expected + [INTEGRAL_FLOAT])


def test_problems_with_the_call_list_itself():
    tools = [_tool({}, [], {})]
    assert validate_calls("nope", tools) == ["calls: not valid JSON (Expecting value at position 0)"]
    assert validate_calls(5, tools) == ["calls: expected a list of calls, got integer"]
    assert validate_calls({"name": "f"}, tools) == [] and validate_calls("[]", tools) == []
    assert validate_calls([{"name": "g"}, {"arguments": {}}, {"name": "f", "arguments": "[1]"}], tools) == [
        "call 0 (g): unknown function 'g' (available: f)", "call 1: has no function name",
        "call 2 (f): arguments must be a JSON object, got array"]
    assert validate_calls([{"name": "g"}], []) == ["call 0 (g): unknown function 'g' (available: none)"]


def test_values_in_messages_are_json_text_cut_at_60_characters():
    tools = [_tool({"s": {"type": "integer"}}, [], {})]
    for value, shown in (("é" * 58, '"' + "é" * 58 + '"'), ("é" * 59, '"' + "é" * 56 + "...")):
        assert validate_calls([{"name": "f", "arguments": {"s": value}}], tools) == [
            f"call 0 (f): argument 's': {shown} is not of type 'integer'"]


def test_messages_follow_the_schema_order_of_properties_and_items():
    tools = [_tool({"b": {"type": "integer"}, "a": {"type": "integer"},
                    "l": {"type": "array", "items": {"type": "integer"}}}, [], {})]
    arguments = {"l": ["x", 1, "y"], "a": "x", "b": "y"}
    assert validate_calls([{"name": "f", "arguments": arguments}], tools) == [
        "call 0 (f): argument 'b': \"y\" is not of type 'integer'", "call 0 (f): argument 'a': \"x\" is not of type 'integer'",
        "call 0 (f): argument 'l[0]': \"x\" is not of type 'integer'", "call 0 (f): argument 'l[2]': \"y\" is not of type 'integer'"]
