"""``close_objects``: the copy of a parameters schema that the validators check, in which every
object schema with ``properties`` rejects undeclared keys unless it says otherwise, and arguments
declared in conditional branches stay legal."""

from __future__ import annotations

from dataflow.tools.validation import close_objects

P = {"a": {"type": "string"}}
INNER = {"type": "object", "properties": {"x": {"type": "integer"}}}
CLOSED_INNER = {"type": "object", "properties": {"x": {"type": "integer"}}, "additionalProperties": False}


def test_objects_are_closed_everywhere_a_value_is_described():
    schema = {"type": "object", "properties": {"o": INNER, "l": {"type": "array", "items": INNER}},
              "$defs": {"d": INNER}, "definitions": {"e": INNER}}
    closed = close_objects(schema)
    assert closed["additionalProperties"] is False
    assert closed["properties"]["o"] == CLOSED_INNER and closed["properties"]["l"]["items"] == CLOSED_INNER
    assert closed["$defs"] == {"d": CLOSED_INNER} and closed["definitions"] == {"e": CLOSED_INNER}
    assert close_objects({"type": "array", "prefixItems": [INNER, {"type": "string"}], "contains": INNER}) == {
        "type": "array", "prefixItems": [CLOSED_INNER, {"type": "string"}], "contains": CLOSED_INNER}
    assert close_objects({"type": "object", "additionalProperties": INNER}) == {
        "type": "object", "additionalProperties": CLOSED_INNER}
    assert schema["properties"]["o"] == INNER  # a copy: the input is left as it was


def test_a_schema_that_says_how_to_treat_other_keys_is_left_open():
    for key, value in (("additionalProperties", True), ("unevaluatedProperties", True),
                       ("patternProperties", {"^x": {}})):
        schema = {"type": "object", "properties": P, key: value}
        assert close_objects(schema) == schema
    assert close_objects({"type": "object"}) == {"type": "object"}  # free-form
    assert close_objects("not a schema") == "not a schema" and close_objects(True) is True


def test_branch_arguments_stay_legal():
    """Names declared only in a branch need ``unevaluatedProperties: false``; names all declared
    at the top allow the exact ``additionalProperties: false``."""
    for key in ("allOf", "anyOf", "oneOf"):
        inside = {"type": "object", "properties": P, key: [{"properties": {"b": {"type": "string"}}}]}
        assert close_objects(inside)["unevaluatedProperties"] is False and "additionalProperties" not in close_objects(inside)
        top = {"type": "object", "properties": {**P, "b": {}}, key: [{"properties": {"b": {"type": "string"}}}, 5]}
        assert close_objects(top)["additionalProperties"] is False and "unevaluatedProperties" not in close_objects(top)
    for key in ("if", "then", "else"):
        inside = {"type": "object", "properties": P, key: {"properties": {"b": {}}}}
        assert "unevaluatedProperties" in close_objects(inside)
        assert "additionalProperties" in close_objects({"type": "object", "properties": {**P, "b": {}}, key: {"properties": {"b": {}}}})
    dependent = {"type": "object", "properties": P, "dependentSchemas": {"a": {"properties": {"c": {}}}}}
    assert "unevaluatedProperties" in close_objects(dependent)
    nested = {"type": "object", "properties": P, "allOf": [{"anyOf": [{"properties": {"z": {}}}]}]}
    assert "unevaluatedProperties" in close_objects(nested)
    for undecidable in ({"$ref": "#/$defs/x"}, {"$dynamicRef": "#x"}, {"allOf": [{"patternProperties": {"^q": {}}}]},
                        {"allOf": [{"$ref": "#/$defs/x"}]}):
        closed = close_objects({"type": "object", "properties": P, **undecidable})
        assert closed["unevaluatedProperties"] is False and "additionalProperties" not in closed
    assert "additionalProperties" in close_objects({"type": "object", "properties": P, "allOf": [{"patternProperties": {}}]})
