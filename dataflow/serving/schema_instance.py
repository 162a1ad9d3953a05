"""A minimal, deterministic JSON instance for a JSON schema.

Used by the fake OpenAI server to answer structured-output requests with something that validates:
objects get their required properties (all of them when none are listed), strings their property
name (padded to ``minLength``), numbers their ``minimum`` (or 0), arrays ``minItems`` items.
``$ref`` into ``$defs``/``definitions``, ``anyOf``/``oneOf`` (first non-null branch), ``allOf``,
``enum`` and ``const`` are understood. Not a full generator: enough for pydantic-made schemas.
"""

from __future__ import annotations

from typing import Any

_MAX_DEPTH = 12


def instance_for(schema: Any, root: Any = None) -> Any:
    """A small JSON value that satisfies ``schema`` (best effort for exotic keywords)."""
    return _instance(schema, root if root is not None else schema, "value", 0)


def _resolve(ref: str, root: Any) -> Any:
    if not ref.startswith("#"):
        return {}
    node = root
    for part in ref.lstrip("#").strip("/").split("/"):
        if not part:
            continue
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict):
            node = node.get(part, {})
        elif isinstance(node, list) and part.isdigit():
            node = node[int(part)]
        else:
            return {}
    return node


def _instance(schema: Any, root: Any, name: str, depth: int) -> Any:
    if depth > _MAX_DEPTH or not isinstance(schema, dict):
        return None if schema is False else {}
    if "$ref" in schema:
        return _instance(_resolve(schema["$ref"], root), root, name, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            branches = schema[key]
            chosen = next((b for b in branches if not _is_null(b, root)), branches[0])
            return _instance(chosen, root, name, depth + 1)
    if schema.get("allOf"):
        merged: dict = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            part = _resolve(part["$ref"], root) if isinstance(part, dict) and "$ref" in part else part
            if isinstance(part, dict):
                for k, v in part.items():
                    if k == "properties":
                        merged.setdefault("properties", {}).update(v)
                    elif k == "required":
                        merged["required"] = list(merged.get("required", [])) + list(v)
                    else:
                        merged.setdefault(k, v)
        return _instance(merged, root, name, depth + 1)

    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        if "properties" in schema:
            kind = "object"
        elif "items" in schema:
            kind = "array"
        else:
            kind = "string"

    if kind == "object":
        props = schema.get("properties") or {}
        required = schema.get("required")
        keys = list(required) if required is not None else list(props)
        out = {}
        for key in keys:
            out[key] = _instance(props.get(key, {}), root, key, depth + 1)
        for _ in range(int(schema.get("minProperties", 0)) - len(out)):
            extra = f"{name}_{len(out)}"
            out[extra] = "x"
        return out
    if kind == "array":
        items = schema.get("items", {})
        count = int(schema.get("minItems", 0))
        if isinstance(items, list):  # tuple form
            return [_instance(s, root, name, depth + 1) for s in items]
        prefix = schema.get("prefixItems")
        if prefix:
            return [_instance(s, root, name, depth + 1) for s in prefix]
        return [_instance(items, root, name, depth + 1) for _ in range(count)]
    if kind == "string":
        value = name if isinstance(name, str) and name else "x"
        lo = int(schema.get("minLength", 0))
        hi = schema.get("maxLength")
        if len(value) < lo:
            value = value + "x" * (lo - len(value))
        if hi is not None and len(value) > int(hi):
            value = value[: int(hi)]
        return value
    if kind in ("integer", "number"):
        value: float = 0
        if "minimum" in schema:
            value = schema["minimum"]
        elif "exclusiveMinimum" in schema and not isinstance(schema["exclusiveMinimum"], bool):
            value = schema["exclusiveMinimum"] + 1
        elif "maximum" in schema and schema["maximum"] < 0:
            value = schema["maximum"]
        if kind == "integer":
            return int(value) if float(value).is_integer() else int(value) + 1
        return value
    if kind == "boolean":
        return False
    return None


def _is_null(schema: Any, root: Any) -> bool:
    if isinstance(schema, dict) and "$ref" in schema:
        schema = _resolve(schema["$ref"], root)
    return isinstance(schema, dict) and schema.get("type") == "null"
