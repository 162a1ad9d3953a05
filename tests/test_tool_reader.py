"""The one reader of tools, calls and arguments (``dataflow.tools.calls``, ``dataflow.tools.spec``)
and the validator built on it: each reported fault kind with inputs of our own."""

from __future__ import annotations

import json
import math
import random

import pytest

from dataflow.core.errors import ToolSpecError
from dataflow.tools import normalize_tool, pair_results, parse_call, read_arguments, read_calls, validate_calls
from dataflow.tools.calls import CallError, dumps_json
from dataflow.tools.validation import _accepts, _describe, _describe_rs, _validator_class, close_objects, CompiledTool


def spec(name: str, properties: dict, required: list | None = None, **extra) -> dict:
    params = {"type": "object", "properties": properties, **extra}
    if required is not None:
        params["required"] = required
    return {"type": "function", "function": {"name": name, "description": name, "parameters": params}}


THERMO = spec("set_thermostat", {"celsius": {"type": "number"}, "room": {"type": "string"}}, ["celsius"])
PING = {"name": "ping", "description": "no arguments", "parameters": {"type": "object", "properties": {}}}


# -- kind 4: arguments as a JSON string ---------------------------------------------------------
def test_arguments_as_json_string_are_read():
    call = {"name": "set_thermostat", "arguments": "{\"celsius\": 21.5, \"room\": \"Oslo\"}"}
    assert parse_call(call) == ("set_thermostat", {"celsius": 21.5, "room": "Oslo"}, None)
    assert validate_calls([call], [THERMO]) == []
    assert read_calls(json.dumps([call])) == [{"name": "set_thermostat", "arguments": {"celsius": 21.5, "room": "Oslo"}}]


def test_arguments_encoded_twice_are_read_once_more():
    twice = json.dumps(json.dumps({"celsius": 19}))
    assert read_arguments(twice) == ({"celsius": 19}, None)


def test_arguments_that_are_not_an_object_are_a_problem():
    assert read_arguments("[1, 2]")[1] == "arguments must be a JSON object, got array"
    assert "not valid JSON" in read_arguments("{celsius: 3}")[1]
    with pytest.raises(CallError, match="call 0 \\(set_thermostat\\)"):
        read_calls([{"name": "set_thermostat", "arguments": "{oops"}])


# -- kind 5: empty arguments mean {} --------------------------------------------------------------
@pytest.mark.parametrize("raw", ["", "   ", None, {}])
def test_empty_arguments_mean_an_empty_object(raw):
    assert read_arguments(raw) == ({}, None)
    assert validate_calls([{"name": "ping", "arguments": raw}], [PING]) == []


def test_empty_arguments_for_a_tool_with_required_ones_is_one_clear_verdict():
    assert validate_calls([{"name": "set_thermostat", "arguments": ""}], [THERMO]) == [
        "call 0 (set_thermostat): missing required argument 'celsius'"]


# -- kind 2: NaN and Infinity ----------------------------------------------------------------------
@pytest.mark.parametrize("arguments", [
    {"celsius": float("nan")}, {"celsius": math.inf}, {"celsius": -math.inf},
    '{"celsius": NaN}', '{"celsius": Infinity}', '{"celsius": -Infinity}',
])
def test_nan_and_infinity_are_invalid_argument_values(arguments):
    errors = validate_calls([{"name": "set_thermostat", "arguments": arguments}], [THERMO])
    assert len(errors) == 1 and "argument 'celsius'" in errors[0] and "not a JSON number" in errors[0]


def test_nan_deep_inside_is_found_with_its_path():
    tool = spec("plot", {"points": {"type": "array", "items": {"type": "object", "properties": {"y": {"type": "number"}}}}})
    [error] = validate_calls([{"name": "plot", "arguments": {"points": [{"y": 1}, {"y": float("nan")}]}}], [tool])
    assert "argument 'points[1].y'" in error


def test_writers_refuse_nan():
    with pytest.raises(ValueError):
        dumps_json({"celsius": float("nan")})
    assert dumps_json({"city": "Zürich"}) == '{"city": "Zürich"}'


# -- kind 8: xLAM and numpydoc type strings --------------------------------------------------------
def test_xlam_type_string_with_optional_and_default():
    tool = normalize_tool({"name": "translate", "description": "", "parameters": {
        "text": {"type": "str", "description": "text"},
        "lang": {"type": "str, optional, default 'en'", "description": "target"},
        "limit": {"type": "int, default: 5"},
        "order": {"type": "{'asc', 'desc'}, optional"},
        "grid": {"type": "List[List[str]]"},
    }})
    params = tool["function"]["parameters"]
    assert params["required"] == ["text", "grid"]
    assert params["properties"]["lang"] == {"type": "string", "default": "en", "description": "target"}
    assert params["properties"]["limit"] == {"type": "integer", "default": 5}
    assert params["properties"]["order"] == {"enum": ["asc", "desc"]}
    assert params["properties"]["grid"] == {"type": "array", "items": {"type": "array", "items": {"type": "string"}}}
    bad = validate_calls([{"name": "translate", "arguments": {"text": "hi", "grid": [["a"], [1]]}}], [tool])
    assert bad == ["call 0 (translate): argument 'grid[1][0]': 1 is not of type 'string'"]


@pytest.mark.parametrize("text, schema, optional", [
    ("int, optional", {"type": "integer"}, True),
    ("str (default: 'metric')", {"type": "string", "default": "metric"}, True),
    ("float, defaults to 0.5", {"type": "number", "default": 0.5}, True),
    ("bool, default=True", {"type": "boolean", "default": True}, True),
    ("Optional[List[int]]", {"type": "array", "items": {"type": "integer"}}, True),
    ("Dict[str, int]", {"type": "object", "additionalProperties": {"type": "integer"}}, False),
])
def test_type_string_forms(text, schema, optional):
    from dataflow.tools.spec import parse_type_string

    assert parse_type_string("t", text) == (schema, optional)


# -- kind 9: optional values ---------------------------------------------------------------------
def test_error_under_nullable_anyof_names_the_fitting_branch():
    tool = spec("book", {"seats": {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}]}})
    [error] = validate_calls([{"name": "book", "arguments": {"seats": 0}}], [tool])
    assert "0 is less than the minimum of 1" in error and "null" not in error
    [error] = validate_calls([{"name": "book", "arguments": {"seats": "two"}}], [tool])
    assert "matches none of the anyOf alternatives" in error


# -- kind 10: ECMA-262 patterns ------------------------------------------------------------------
def test_pattern_digits_are_ascii_digits():
    tool = spec("zip", {"code": {"type": "string", "pattern": "^\\d{6}$"}})
    assert validate_calls([{"name": "zip", "arguments": {"code": "123456"}}], [tool]) == []
    [error] = validate_calls([{"name": "zip", "arguments": {"code": "\u0661\u0662\u0663\u0664\u0665\u0666"}}], [tool])
    assert "does not match the pattern" in error


def test_unicode_property_escapes_are_a_valid_pattern():
    tool = spec("greet", {"name": {"type": "string", "pattern": "^\\p{L}+$"}})
    assert validate_calls([{"name": "greet", "arguments": {"name": "Zoë"}}], [tool]) == []
    assert validate_calls([{"name": "greet", "arguments": {"name": "Zoë2"}}], [tool]) != []


def test_invalid_pattern_makes_the_tool_invalid():
    with pytest.raises(ToolSpecError, match="ECMA-262"):
        normalize_tool(spec("t", {"a": {"type": "string", "pattern": "("}}))


# -- kind 11: free-form objects ------------------------------------------------------------------
def test_free_form_object_accepts_any_arguments_at_the_root_and_below():
    mcp = {"name": "run_query", "description": "", "inputSchema": {"type": "object"}}
    assert validate_calls([{"name": "run_query", "arguments": {"sql": "select 1", "limit": 3}}], [mcp]) == []
    nested = spec("wrap", {"options": {"type": "object"}})
    assert validate_calls([{"name": "wrap", "arguments": {"options": {"anything": [1]}}}], [nested]) == []
    assert validate_calls([{"name": "ping", "arguments": {"x": 1}}], [PING]) == ["call 0 (ping): unknown argument 'x'"]


# -- kind 16: BFCL's conventions -----------------------------------------------------------------
def test_bfcl_null_for_an_optional_argument_whose_default_is_none():
    tool = {"name": "geo.distance", "description": "", "parameters": {"type": "dict", "properties": {
        "a": {"type": "string"}, "unit": {"type": "string", "default": None}}, "required": ["a"]}}
    assert validate_calls([{"name": "geo.distance", "arguments": {"a": "x", "unit": None}}], [tool]) == []
    required = {"name": "f", "parameters": {"type": "dict", "properties": {"u": {"type": "string", "default": None}},
                                            "required": ["u"]}}
    assert validate_calls([{"name": "f", "arguments": {"u": None}}], [required]) != []


def test_bfcl_enum_on_an_array_constrains_its_items():
    tool = {"name": "pick", "description": "", "parameters": {"type": "dict", "properties": {
        "colors": {"type": "array", "items": {"type": "string"}, "enum": ["red", "green"]}}}}
    assert validate_calls([{"name": "pick", "arguments": {"colors": ["red", "green"]}}], [tool]) == []
    [error] = validate_calls([{"name": "pick", "arguments": {"colors": ["blue"]}}], [tool])
    assert "argument 'colors[0]'" in error and "is not one of" in error


def test_flat_copied_arguments_with_default_and_enum_share_nothing_with_the_input():
    params = {"type": "dict", "properties": {
        "unit": {"type": "String", "enum": ["c", "f"], "default": None},
        "tags": {"type": "array", "items": {"type": "string"}, "enum": ["a", "b"]},
        "box": {"type": "string", "default": ["not", "a", "scalar"]}}}
    before = json.loads(json.dumps(params))
    tool = normalize_tool({"name": "t", "parameters": params})
    assert params == before  # the input is not changed
    props = tool["function"]["parameters"]["properties"]
    assert props["unit"] == {"type": ["string", "null"], "enum": ["c", "f", None], "default": None}
    assert props["unit"]["enum"] is not params["properties"]["unit"]["enum"]
    assert props["tags"]["items"] == {"type": "string", "enum": ["a", "b"]} and "enum" not in props["tags"]
    assert props["box"]["default"] == ["not", "a", "scalar"] and props["box"]["default"] is not params["properties"]["box"]["default"]


def test_repeated_calls_reads_calls_one_way():
    from dataflow.tools import repeated_calls

    calls = [{"name": "f", "arguments": {"a": 1, "b": 2}}, {"function": {"name": "f", "arguments": '{"b": 2, "a": 1}'}},
             {"name": "f", "arguments": {"a": 2}}, {"name": "g", "arguments": ""}, {"name": "g", "arguments": {}}, "junk"]
    assert repeated_calls(calls) == ["call 1 repeats call 0 (f with the same arguments)",
                                     "call 4 repeats call 3 (g with the same arguments)"]
    assert repeated_calls(calls[:1] + calls[2:3]) == [] and repeated_calls(None) == []


# -- kind 6/14: results paired with calls ---------------------------------------------------------
def _assistant(*calls):
    return {"role": "assistant", "content": None, "tool_calls": [
        {"id": cid, "type": "function", "function": {"name": name, "arguments": "{}"}} for cid, name in calls]}


def test_results_pair_by_id_whatever_their_order():
    messages = [{"role": "user", "content": "x"}, _assistant(("a1", "first"), ("b2", "second")),
                {"role": "tool", "tool_call_id": "b2", "content": "2"},
                {"role": "tool", "tool_call_id": "a1", "content": "1"}]
    pairing = pair_results(messages)
    assert pairing.results == {2: ("b2", "second"), 3: ("a1", "first")} and not pairing.by_order and not pairing.orphans


def test_results_without_ids_pair_by_order_and_say_so():
    messages = [{"role": "user", "content": "x"}, _assistant((None, "first"), (None, "second")),
                {"role": "tool", "content": "1"}, {"role": "tool", "content": "2"}]
    pairing = pair_results(messages)
    assert pairing.by_order and [name for _, name in pairing.results.values()] == ["first", "second"]


def test_a_result_with_no_call_is_an_orphan():
    messages = [{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "zz", "content": "1"}]
    pairing = pair_results(messages)
    assert pairing.orphans == [1] and pairing.problems[0].startswith("orphan_result:")


# -- the verdict, the pre-check and the two message writers agree ------------------------------
def _random_value(rng: random.Random, depth: int = 0):
    choices = [None, True, False, 0, 1, -1, 1.5, 3.0, 14, 15, "", "a", "LIS", "abcde", "2025-01-01", "x@y.z", "\u0661"]
    if depth < 2:
        choices += [[], [1, "2"], [1, 2], {}, {"lat": 1}, {"lat": "x", "lon": 2}]
    value = rng.choice(choices)
    return value if not isinstance(value, (list, dict)) else json.loads(json.dumps(value))


SAMPLE_TOOLS = [
    spec("a", {"n": {"type": "integer", "minimum": 0, "maximum": 14}, "s": {"type": "string", "pattern": "^[A-Z]{3}$"},
               "e": {"enum": ["a", 1, True]}}, ["n"]),
    spec("b", {"loc": {"type": "object", "properties": {"lat": {"type": "number"}, "lon": {"type": "number"}},
                       "required": ["lat"]}, "ids": {"type": "array", "items": {"type": "integer"}, "minItems": 1},
               "v": {"type": ["string", "null"]}}),
    spec("c", {"o": {"anyOf": [{"type": "integer", "minimum": 3}, {"type": "null"}]}, "t": {"type": "string", "maxLength": 3},
               "r": {"type": "string"}, "k": {"type": "integer"}}, dependentRequired={"k": ["r"]}),
    spec("d", {"free": {"type": "object"}, "d": {"type": "string", "format": "date"}, "c": {"const": 1}}),
]


def test_precheck_never_accepts_what_the_validator_rejects():
    rng = random.Random(3)
    cls = _validator_class()
    for tool in SAMPLE_TOOLS:
        compiled = CompiledTool(tool["function"]["name"], normalize_tool(tool))
        strict = cls(compiled.schema, format_checker=cls.FORMAT_CHECKER)
        names = list(compiled.schema["properties"]) + ["unknown"]
        for _ in range(500):
            args = {n: _random_value(rng) for n in rng.sample(names, rng.randint(0, len(names)))}
            if _accepts(compiled.spec["function"]["parameters"], args, True):
                assert compiled.validator.is_valid(args) and strict.is_valid(args), (tool["function"]["name"], args)


def test_messages_from_either_validator_read_the_same():
    rng = random.Random(4)
    cls = _validator_class()
    for tool in SAMPLE_TOOLS[:3]:
        compiled = CompiledTool(tool["function"]["name"], normalize_tool(tool))
        schema = close_objects(compiled.spec["function"]["parameters"])
        python = cls(schema, format_checker=cls.FORMAT_CHECKER)
        names = list(schema["properties"]) + ["unknown"]
        for _ in range(300):
            args = {n: _random_value(rng) for n in rng.sample(names, rng.randint(0, len(names)))}
            if any(isinstance(v, float) and v.is_integer() for v in args.values()):
                continue
            rs = {m for e in compiled.validator.iter_errors(args) for m in _describe_rs(e, schema)}
            py = {m for e in python.iter_errors(args) for m in _describe(e)}
            assert rs == py, (tool["function"]["name"], args)


def test_new_tools_per_row_throughput_is_reasonable():
    """A new tool set on every row (spec checks included) stays in the tens of thousands of
    calls per second; loose bound, benchmarks/bench_validate_calls.py measures properly."""
    import sys
    import time
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from bench_validate_calls import make_bfcl_rows

    rows = make_bfcl_rows(2000, seed=7)
    calls = sum(len(c) for _, c in rows)
    started = time.process_time()
    invalid = sum(bool(validate_calls(c, t)) for t, c in rows)
    rate = calls / max(time.process_time() - started, 1e-9)
    assert 0 < invalid < len(rows) // 5
    assert rate > 3000, rate
