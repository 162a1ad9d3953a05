"""The pure-Python acceptance pre-check of ``validate_calls`` (``_accepts``) decides exactly like
the validator wherever a schema uses only the keywords it reads: it never accepts an invalid
call (that would let a broken example through) and never sends a valid one to the compiler
needlessly (the pre-check exists so that a new tool set on every row compiles nothing)."""

from __future__ import annotations

import itertools

import pytest

from dataflow.tools.spec import normalize_tool
from dataflow.tools.validation import CompiledTool, _accepts

#: one argument's schemas, each using only keywords the pre-check decides
ARGUMENT_SCHEMAS = [
    {"type": "string"}, {"type": "integer"}, {"type": "number"}, {"type": "boolean"}, {"type": "null"},
    {"type": "array"}, {"type": "object"}, {"type": ["string", "null"]}, {"type": ["integer", "boolean"]},
    {"type": "integer", "description": "a count"}, {"type": "string", "title": "t", "default": "x"},
    {"type": "integer", "minimum": 2}, {"type": "integer", "maximum": 2}, {"type": "number", "exclusiveMinimum": 2},
    {"type": "number", "exclusiveMaximum": 2}, {"minimum": 2}, {"type": "string", "minLength": 2},
    {"type": "string", "maxLength": 2}, {"type": "array", "minItems": 2}, {"type": "array", "maxItems": 1},
    {"type": "string", "pattern": "^[A-Z]{2}$"}, {"pattern": "b"}, {"enum": ["a", 1, True]}, {"enum": [0, None]},
    {"const": 1}, {"const": "a"}, {"type": "array", "items": {"type": "integer"}},
    {"type": "array", "items": {"type": "string", "maxLength": 1}, "maxItems": 2},
    {"type": "object", "properties": {"k": {"type": "integer"}}, "required": ["k"]},
    {"type": "object", "properties": {"k": {"type": "integer"}}, "additionalProperties": True},
    {"type": "object", "properties": {"k": {"type": "integer"}}, "additionalProperties": {"type": "string"}},
    {"type": "object", "additionalProperties": {"type": "integer"}},
    {"type": "object", "properties": {"k": {"type": "string"}, "j": {"type": "string"}}, "dependentRequired": {"k": ["j"]}},
    {"anyOf": [{"type": "integer", "minimum": 3}, {"type": "null"}]}, {"anyOf": [{"type": "string"}, {"type": "boolean"}]},
    True,
    # a described argument with one more rule is not a plain typed one: its bound is checked
    {"type": "integer", "description": "a count", "minimum": 2},
    {"items": {"type": "integer"}},  # items without a type: a non-array value is fine
    {"type": "array", "items": {"type": "object", "properties": {"k": {"type": "integer"}}}},  # closed items
    {"additionalProperties": {"type": "integer"}},  # without a type: a non-object value is fine
    {"type": "object", "properties": {"k": {"type": "integer"}}, "additionalProperties": False},
    {"type": "object", "additionalProperties": {"type": "object", "properties": {"k": {"type": "integer"}}}},
]
VALUES = [None, True, False, 0, 1, 2, 3, -1, 1.5, 2.0, 2.5, "", "a", "b", "AB", "ABC", "abc", [], [1], [1, 2], ["a"],
          ["a", "b", "c"], [1, "a"], {}, {"k": 1}, {"k": "1"}, {"k": 1, "x": "y"}, {"k": 1, "x": 2}, {"x": "y"},
          {"k": "v", "j": "w"}, {"k": "v"}, {"x": "y", "k": "1"}, {"x": 1, "k": 1}, [{"k": 1}],
          [{"k": 1, "x": 2}], {"a": {"k": 1}}, {"a": {"k": 1, "x": 2}}, {"a": 1}]


def _tool(parameters: dict) -> CompiledTool:
    return CompiledTool("t", normalize_tool({"type": "function", "function": {"name": "t", "parameters": parameters}}))


def _verdict(tool: CompiledTool, arguments: dict) -> bool:
    """The module's verdict without the pre-check: the compiled validator (strict integers)."""
    tool.validator  # compiled first: errors() then never consults the pre-check
    return tool.errors(arguments) == []


@pytest.mark.parametrize("index", range(len(ARGUMENT_SCHEMAS)))
def test_the_precheck_decides_like_the_validator(index):
    parameters = {"type": "object", "properties": {"x": ARGUMENT_SCHEMAS[index]}, "required": ["x"]}
    tool = _tool(parameters)
    for value in VALUES:
        arguments = {"x": value}
        assert _accepts(tool.spec["function"]["parameters"], arguments, True) == _verdict(tool, arguments), \
            (ARGUMENT_SCHEMAS[index], value)


def test_required_unknown_and_dependent_arguments_at_the_top():
    parameters = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
                  "required": ["a"], "dependentRequired": {"b": ["a"]}}
    tool = _tool(parameters)
    for names in itertools.chain.from_iterable(itertools.combinations(["a", "b", "zz"], n) for n in range(4)):
        arguments = {name: ("v" if name != "b" else 1) for name in names}
        assert _accepts(tool.spec["function"]["parameters"], arguments, True) == _verdict(tool, arguments), arguments
    # closed objects are this module's rule: with closed=False an unknown argument is fine
    assert _accepts(parameters, {"a": "v", "zz": 1}, False) is True
    assert _accepts(parameters, {"a": "v", "zz": 1}, True) is False


def test_what_the_precheck_leaves_to_the_validator():
    """``False`` means "not decided here" for these, whatever the value."""
    for schema in ({"type": "string", "format": "date"}, {"oneOf": [{"type": "string"}]}, {"$ref": "#/$defs/x"},
                   {"type": "object", "patternProperties": {"^a": {}}, "additionalProperties": False},
                   {"enum": [[1]]}, {"if": {"type": "string"}}, 5):
        assert _accepts(schema, "2025-01-01", True) is False
    assert _accepts({"enum": [{"a": 1}]}, {"a": 1}, True) is False  # structured enum values
    for pattern_and_more in (  # whichever keyword comes first
            {"type": "object", "properties": {"k": {"type": "integer"}},
             "patternProperties": {"^x_": {"type": "string"}}, "additionalProperties": {"type": "integer"}},
            {"type": "object", "properties": {"k": {"type": "integer"}},
             "additionalProperties": {"type": "integer"}, "patternProperties": {"^x_": {"type": "string"}}}):
        for value in ({"k": 1}, {"k": 1, "x_1": "s"}, {"k": 1, "z": 2}):
            assert _accepts(pattern_and_more, value, True) is False, value
    assert _accepts({"type": "array", "prefixItems": [{"type": "string"}], "items": {"type": "integer"}}, ["a"], True) \
        is False  # prefixItems: not read here
    closed_any = {"type": "object", "properties": {"a": {"type": "integer"}},
                  "anyOf": [{"required": ["a"]}, {"required": ["b"]}]}
    assert _accepts(closed_any, {"a": 1}, True) is False and _accepts(closed_any, {"a": 1}, False) is True
