"""OpenAI's strict structured output: which reply schemas it takes, and in what form.

With ``"strict": true`` OpenAI refuses (HTTP 400) a schema unless every object lists all its
properties in ``required`` and says ``additionalProperties: false``, at every depth (inside
``items``, ``anyOf`` and ``$defs`` too), and uses only the keywords of its subset. So the client
sends ``strict_schema(schema)`` with ``strict: true`` when there is one, and the schema as it is
with ``strict: false`` otherwise (the server then takes it as guidance, and llama.cpp's grammar
ignores the flag either way). In the strict form an optional property is required and
nullable; ``parse_reply`` drops such a ``null`` before validating, so the field's default applies.

Impossible in strict form: a free-form object (``{"type": "object"}``, ``dict[str, Any]``), an
``additionalProperties`` schema (a map), and the keywords in ``STRICT_UNSUPPORTED`` (the length
bounds the library puts on strings for small local models among them): those requests say
``strict: false``. ``strict_problems`` names what breaks the rules, for tests and error messages.
Pure Python, no imports: the HTTP client calls it for every request.
"""

from __future__ import annotations

from typing import Any

__all__ = ["STRICT_UNSUPPORTED", "strict_schema", "strict_problems"]

#: keywords outside OpenAI's strict subset (documented supported keywords: type, properties,
#: required, additionalProperties: false, items, enum, const, anyOf, $defs/$ref, description,
#: title; pattern/format on strings, minimum/maximum/multipleOf on numbers, minItems/maxItems)
STRICT_UNSUPPORTED = frozenset({
    "minLength", "maxLength", "patternProperties", "unevaluatedProperties", "unevaluatedItems", "allOf",
    "oneOf", "not", "if", "then", "else", "dependentRequired", "dependentSchemas", "prefixItems", "contains",
    "propertyNames", "uniqueItems", "minProperties", "maxProperties", "$dynamicRef",
})
#: annotations left out of the strict form (a default applies when ``parse_reply`` drops the null)
_DROPPED = frozenset({"default"})


class _NotStrict(Exception):
    pass


def strict_schema(schema: Any) -> dict | None:
    """``schema`` in OpenAI's strict form (a new dict, property order kept; optional properties
    required and nullable, objects closed), or ``None`` when it has no strict form."""
    if not isinstance(schema, dict) or schema.get("type") != "object":
        return None
    try:
        return _strict(schema)
    except _NotStrict:
        return None


def strict_problems(schema: Any, path: str = "(root)") -> list[str]:
    """What keeps ``schema``, *as it is*, from being accepted with ``strict: true`` (``[]``: it
    is accepted as sent)."""
    problems: list[str] = []
    if path == "(root)" and (not isinstance(schema, dict) or schema.get("type") != "object"):
        problems.append("(root): the root must be an object schema")
    _problems(schema, path, problems)
    return problems


def _strict(node: Any) -> Any:
    if isinstance(node, bool) or not isinstance(node, dict):
        raise _NotStrict
    bad = STRICT_UNSUPPORTED.intersection(node)
    if bad:
        raise _NotStrict
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: _strict(sub) for name, sub in value.items()}
        elif key in ("items",):
            out[key] = _strict(value)
        elif key == "anyOf":
            out[key] = [_strict(sub) for sub in value]
        elif key in ("$defs", "definitions"):
            out[key] = {name: _strict(sub) for name, sub in value.items()}
        elif key not in _DROPPED:
            out[key] = value
    kind = node.get("type")
    is_object = kind == "object" or (isinstance(kind, list) and "object" in kind)
    if is_object or "properties" in node:
        if "properties" not in node or node.get("additionalProperties", False) is not False:
            raise _NotStrict  # a free-form object or a map: no closed, fully required form
        required = node.get("required") or []
        props = out["properties"]
        out["properties"] = {name: (sub if name in required else _nullable(sub)) for name, sub in props.items()}
        out["required"] = list(props)
        out["additionalProperties"] = False
    return out


def _nullable(schema: dict) -> dict:
    """``schema`` that also accepts ``null`` (an optional property in strict form)."""
    kind = schema.get("type")
    if kind == "null" or (isinstance(kind, list) and "null" in kind):
        return schema
    if isinstance(kind, str) and "enum" not in schema and "const" not in schema:
        return {**schema, "type": [kind, "null"]}
    if "anyOf" in schema and not any(s.get("type") == "null" for s in schema["anyOf"] if isinstance(s, dict)):
        return {**schema, "anyOf": [*schema["anyOf"], {"type": "null"}]}
    return {"anyOf": [schema, {"type": "null"}]}


def _problems(node: Any, path: str, problems: list[str]) -> None:
    if isinstance(node, bool) or not isinstance(node, dict):
        problems.append(f"{path}: a boolean schema")
        return
    for key in sorted((STRICT_UNSUPPORTED | _DROPPED).intersection(node)):
        problems.append(f"{path}: {key!r} is not supported in strict mode")
    kind = node.get("type")
    is_object = kind == "object" or (isinstance(kind, list) and "object" in kind) or "properties" in node
    if is_object:
        props = node.get("properties")
        if props is None:
            problems.append(f"{path}: an object without properties (free-form) cannot be strict")
        if node.get("additionalProperties") is not False:
            problems.append(f"{path}: additionalProperties must be false")
        missing = [n for n in (props or {}) if n not in (node.get("required") or [])]
        if missing:
            problems.append(f"{path}: every property must be required (not: {', '.join(missing)})")
    for name, sub in (node.get("properties") or {}).items():
        _problems(sub, f"{path}.{name}" if path != "(root)" else name, problems)
    if isinstance(node.get("items"), (dict, bool)):
        _problems(node["items"], f"{path}[]", problems)
    for index, sub in enumerate(node.get("anyOf") or []):
        _problems(sub, f"{path}.anyOf[{index}]", problems)
    for key in ("$defs", "definitions"):
        for name, sub in (node.get(key) or {}).items():
            _problems(sub, f"{path}.{key}.{name}", problems)
