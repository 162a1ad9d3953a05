"""Normalise tool specifications in the dialects people bring to OpenAI function specs.

The internal form of a tool is ``{"type": "function", "function": {"name", "description",
"parameters"}}`` where ``parameters`` is a JSON Schema (Draft 2020-12) object schema.

Accepted dialects (detected per tool, so a list may mix them):

- OpenAI tool specs ``{"type": "function", "function": {...}}``;
- bare function specs ``{"name", "description", "parameters"}`` (legacy ``functions=``, BFCL,
  glaive), and ``input_schema`` / ``inputSchema`` instead of ``parameters`` (Anthropic, MCP);
- BFCL-style type names anywhere in the schema: ``dict`` -> ``object``, ``float`` -> ``number``,
  ``tuple``/``list`` -> ``array``, ``any`` -> no type constraint (also ``String``, ``long``,
  ``HashMap`` and friends of BFCL's Java/JavaScript categories);
- xLAM-style ``parameters``: a mapping of argument name -> ``{"type": "str" | "int" | "float" |
  "bool" | "List[int]" | "Dict[str, int]" | "str, optional" | ..., "description", "default"}``.
  An argument is required unless its type says ``optional`` or it has a ``default``;
- a boolean ``"required": true`` / ``"optional": true`` inside a property (older dialects).

Names must match ``^[a-zA-Z0-9_-]{1,64}$`` (what the OpenAI API accepts). Dotted names such as
BFCL's ``math.factorial`` are rejected by default, because the OpenAI API and most chat templates
reject them; pass ``allow_dots=True`` to keep them as they are.

A spec that cannot be normalised, or whose ``parameters`` is not a valid JSON Schema (checked
against the Draft 2020-12 metaschema), raises ``ToolSpecError(tool_name, problem)``.
"""

from __future__ import annotations

import copy
import json
import re
from collections import OrderedDict
from typing import Any, Iterable

from ..core.errors import ToolSpecError

NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
DOTTED_NAME_RE = re.compile(r"^[a-zA-Z0-9_.-]{1,64}$")

JSON_TYPES = frozenset({"string", "number", "integer", "boolean", "array", "object", "null"})

#: dialect type name (lower case) -> JSON Schema type; ``None`` means "no type constraint"
TYPE_ALIASES: dict[str, str | None] = {
    "string": "string", "str": "string", "text": "string", "char": "string", "character": "string",
    "integer": "integer", "int": "integer", "long": "integer", "short": "integer", "byte": "integer",
    "number": "number", "float": "number", "double": "number", "decimal": "number", "num": "number",
    "boolean": "boolean", "bool": "boolean",
    "array": "array", "list": "array", "tuple": "array", "set": "array", "arraylist": "array",
    "sequence": "array", "iterable": "array",
    "object": "object", "dict": "object", "hashmap": "object", "map": "object", "mapping": "object",
    "null": "null", "none": "null", "nonetype": "null",
    "any": None, "callable": None, "function": None,
}

_SCHEMA_CHILD_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SCHEMA_CHILD_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SCHEMA_CHILDREN = ("items", "additionalProperties", "not", "if", "then", "else", "contains",
                    "propertyNames", "unevaluatedProperties", "unevaluatedItems", "additionalItems")


def normalize_tools(tools: Any, *, allow_dots: bool = False) -> list[dict]:
    """Normalise a tool list: a list of specs, a JSON string of one, a single spec, or a mapping
    ``name -> spec``. Raises ``ToolSpecError`` for the first invalid tool and for duplicate names."""
    items = _as_tool_list(tools)
    out: list[dict] = []
    seen: set[str] = set()
    for index, spec in enumerate(items):
        tool = normalize_tool(spec, allow_dots=allow_dots, index=index)
        name = tool["function"]["name"]
        if name in seen:
            raise ToolSpecError(name, "the tool list defines this name twice; tool names must be unique")
        seen.add(name)
        out.append(tool)
    return out


def normalize_tool(spec: Any, *, allow_dots: bool = False, index: int | None = None) -> dict:
    """One tool spec in any supported dialect -> a new OpenAI tool spec (the input is not changed)."""
    label = f"<tool #{index}>" if index is not None else "<tool>"
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except json.JSONDecodeError as exc:
            raise ToolSpecError(label, f"not valid JSON: {exc.msg} at position {exc.pos}") from None
    if not isinstance(spec, dict):
        raise ToolSpecError(label, f"a tool spec must be a JSON object, got {type(spec).__name__}")
    fn = spec
    if "function" in spec and isinstance(spec["function"], dict):
        if spec.get("type", "function") != "function":
            raise ToolSpecError(label, f"unsupported tool type {spec.get('type')!r} (expected 'function')")
        fn = spec["function"]
    name = fn.get("name")
    if not isinstance(name, str) or not name:
        raise ToolSpecError(label, "has no 'name' (a non-empty string)")
    _check_name(name, allow_dots)
    description = fn.get("description", "")
    if description is None:
        description = ""
    if not isinstance(description, str):
        raise ToolSpecError(name, f"'description' must be a string, got {type(description).__name__}")
    params = _first_present(fn, ("parameters", "input_schema", "inputSchema", "arguments"))
    parameters = normalize_parameters(name, params)
    function: dict[str, Any] = {"name": name, "description": description, "parameters": parameters}
    if isinstance(fn.get("strict"), bool):
        function["strict"] = fn["strict"]
    return {"type": "function", "function": function}


def normalize_parameters(tool: str, params: Any) -> dict:
    """Normalise the ``parameters`` of tool ``tool`` to a valid JSON Schema object schema."""
    if params is None:
        return {"type": "object", "properties": {}}
    if isinstance(params, str):
        try:
            params = json.loads(params)
        except json.JSONDecodeError as exc:
            raise ToolSpecError(tool, f"'parameters' is a string that is not valid JSON: {exc.msg}") from None
    if not isinstance(params, dict):
        raise ToolSpecError(tool, f"'parameters' must be an object schema, got {type(params).__name__}")
    if _is_xlam_parameters(params):
        schema = _from_xlam(tool, params)
    else:
        schema = copy.deepcopy(params)
        if "type" not in schema and ("properties" in schema or not schema):
            schema["type"] = "object"
        _normalize_schema(tool, schema, "parameters")
    if schema.get("type") != "object":
        raise ToolSpecError(tool, f"'parameters' must have type 'object', got {schema.get('type')!r}")
    schema.setdefault("properties", {})
    check_json_schema(tool, schema)
    return schema


#: canonical JSON of schemas that passed ``check_json_schema`` (the metaschema check costs ~2 ms
#: per schema, and one tool list is checked by several operators and by every ``validate_calls``)
_VALID_SCHEMAS: "OrderedDict[str, None]" = OrderedDict()
_VALID_SCHEMAS_SIZE = 8192


def check_json_schema(tool: str, schema: dict) -> None:
    """Raise ``ToolSpecError`` if ``schema`` is not valid under the Draft 2020-12 metaschema or
    its ``required`` names arguments it does not define."""
    try:
        key: str | None = json.dumps(schema, sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError):  # not plain JSON: check it, do not remember it
        key = None
    if key is not None and key in _VALID_SCHEMAS:
        try:
            _VALID_SCHEMAS.move_to_end(key)
            return
        except KeyError:  # evicted meanwhile by another thread: check again
            pass
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise ToolSpecError(tool, f"'parameters' is not a valid JSON Schema at {where}: {exc.message}") from None
    _check_required(tool, schema, "")
    if key is not None:
        _VALID_SCHEMAS[key] = None
        if len(_VALID_SCHEMAS) > _VALID_SCHEMAS_SIZE:
            _VALID_SCHEMAS.popitem(last=False)


def _check_required(tool: str, schema: Any, path: str) -> None:
    if not isinstance(schema, dict):
        return
    props = schema.get("properties")
    required = schema.get("required")
    if isinstance(props, dict) and isinstance(required, list) and schema.get("additionalProperties") is not True:
        for key in required:
            if key not in props and not schema.get("patternProperties"):
                where = f" of '{path}'" if path else ""
                raise ToolSpecError(tool, f"required argument {key!r}{where} is not defined in 'properties'")
    if isinstance(props, dict):
        for key, sub in props.items():
            _check_required(tool, sub, f"{path}.{key}" if path else key)
    items = schema.get("items")
    if isinstance(items, dict):
        _check_required(tool, items, f"{path}[]")


# -- helpers ------------------------------------------------------------------------------------
def _as_tool_list(tools: Any) -> list:
    if tools is None:
        return []
    if isinstance(tools, str):
        text = tools.strip()
        if not text:
            return []
        try:
            tools = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ToolSpecError("<tools>", f"the tool list is not valid JSON: {exc.msg} at position {exc.pos}") from None
    if isinstance(tools, dict):
        if "name" in tools or "function" in tools:
            return [tools]
        # mapping name -> spec (e.g. a module's get_tools())
        out = []
        for key, value in tools.items():
            if isinstance(value, dict) and "name" not in value and "function" not in value:
                value = {"name": key, **value}
            out.append(value)
        return out
    if isinstance(tools, (list, tuple)):
        return list(tools)
    raise ToolSpecError("<tools>", f"expected a list of tool specs, got {type(tools).__name__}")


def _check_name(name: str, allow_dots: bool) -> None:
    if (DOTTED_NAME_RE if allow_dots else NAME_RE).match(name):
        return
    if not allow_dots and DOTTED_NAME_RE.match(name):
        raise ToolSpecError(
            name, "tool names may not contain '.' (the OpenAI API rejects them); rename it, e.g. "
            f"{name.replace('.', '_')!r}, or pass allow_dots=True"
        )
    raise ToolSpecError(name, "a tool name must be 1-64 characters of a-z, A-Z, 0-9, '_' or '-'")


def _first_present(d: dict, keys: Iterable[str]) -> Any:
    for key in keys:
        if key in d:
            return d[key]
    return None


def _is_xlam_parameters(params: dict) -> bool:
    """xLAM maps argument names to ``{type, description, default}`` directly, with no ``type:
    object`` / ``properties`` wrapper."""
    if not params or isinstance(params.get("type"), str):
        return False
    props = params.get("properties")
    if isinstance(props, dict) and all(isinstance(v, dict) for v in props.values()):
        return False
    return all(isinstance(v, dict) for v in params.values())


def _from_xlam(tool: str, params: dict) -> dict:
    properties: dict[str, Any] = {}
    required: list[str] = []
    for arg, info in params.items():
        prop = copy.deepcopy(info)
        optional = False
        raw_type = prop.pop("type", None)
        if isinstance(raw_type, str):
            type_schema, optional = parse_type_string(tool, raw_type, arg)
            prop = {**type_schema, **prop}
        elif raw_type is not None:
            prop["type"] = raw_type
        if "default" in prop or prop.pop("optional", False) is True:
            optional = True
        flag = prop.pop("required", None)
        if flag is True:
            optional = False
        elif flag is False:
            optional = True
        _normalize_schema(tool, prop, f"parameters.{arg}")
        properties[arg] = prop
        if not optional:
            required.append(arg)
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


_OPTIONAL_SUFFIX = re.compile(r"\s*(?:,\s*)?\(?\s*optional\s*\)?\s*$", re.IGNORECASE)


def parse_type_string(tool: str, text: str, where: str = "") -> tuple[dict, bool]:
    """Parse a dialect type string (``"str, optional"``, ``"List[int]"``, ``"Optional[float]"``,
    ``"int | None"``, ``"Dict[str, int]"``) -> ``(schema, optional)``."""
    optional = False
    body = text.strip()
    if _OPTIONAL_SUFFIX.search(body):
        body = _OPTIONAL_SUFFIX.sub("", body).strip()
        optional = True
    schema, was_optional = _parse_type_expr(tool, body, where, text)
    return schema, optional or was_optional


def _parse_type_expr(tool: str, body: str, where: str, original: str) -> tuple[dict, bool]:
    body = body.strip()
    parts = _split_top(body, "|")
    if len(parts) == 1 and " or " in body and "[" not in body:
        parts = [p.strip() for p in body.split(" or ")]
    if len(parts) > 1:
        return _union(tool, parts, where, original)
    m = re.fullmatch(r"([A-Za-z_][A-Za-z_0-9.]*)\s*(?:\[(.*)\])?", body, re.DOTALL)
    if not m:
        raise ToolSpecError(tool, f"argument {where!r}: cannot read type {original!r}")
    head = m.group(1).split(".")[-1].lower()
    args = _split_top(m.group(2), ",") if m.group(2) is not None else []
    if head == "optional" and len(args) == 1:
        schema, _ = _parse_type_expr(tool, args[0], where, original)
        return schema, True
    if head == "union" and args:
        return _union(tool, args, where, original)
    if head == "literal" and args:
        values = []
        for a in args:
            try:
                values.append(json.loads(a.replace("'", '"')))
            except json.JSONDecodeError:
                raise ToolSpecError(tool, f"argument {where!r}: cannot read Literal value {a!r}") from None
        return {"enum": values}, False
    if head not in TYPE_ALIASES:
        raise ToolSpecError(tool, f"argument {where!r}: unknown type {original!r}")
    json_type = TYPE_ALIASES[head]
    schema: dict[str, Any] = {} if json_type is None else {"type": json_type}
    if json_type == "array" and args:
        if head == "tuple" and len(args) > 1 and args[-1] != "...":
            schema["prefixItems"] = [_parse_type_expr(tool, a, where, original)[0] for a in args]
            schema["minItems"] = schema["maxItems"] = len(args)
        else:
            schema["items"] = _parse_type_expr(tool, args[0], where, original)[0]
    elif json_type == "object" and len(args) == 2:
        value_schema = _parse_type_expr(tool, args[1], where, original)[0]
        if value_schema:
            schema["additionalProperties"] = value_schema
    return schema, False


def _union(tool: str, parts: list[str], where: str, original: str) -> tuple[dict, bool]:
    optional = False
    schemas = []
    for part in parts:
        schema, _ = _parse_type_expr(tool, part, where, original)
        if schema.get("type") == "null":
            optional = True
            continue
        schemas.append(schema)
    if not schemas:
        return {"type": "null"}, True
    if len(schemas) == 1:
        return schemas[0], optional
    if all(set(s) == {"type"} for s in schemas):
        return {"type": sorted({s["type"] for s in schemas})}, optional
    return {"anyOf": schemas}, optional


def _split_top(text: str | None, sep: str) -> list[str]:
    """Split on ``sep`` outside brackets."""
    if text is None:
        return []
    parts, depth, current = [], 0, []
    for ch in text:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    parts.append("".join(current).strip())
    return [p for p in parts if p]


def _normalize_schema(tool: str, schema: Any, where: str) -> None:
    """Map dialect type names to JSON Schema types in place, recursively; lift boolean
    ``required``/``optional`` flags of properties into the parent's ``required`` list."""
    if not isinstance(schema, dict):
        return
    if "type" in schema:
        _normalize_type_keyword(tool, schema, where)
    props = schema.get("properties")
    if isinstance(props, dict):
        required = schema.get("required")
        lifted = list(required) if isinstance(required, list) else []
        changed = False
        for key, sub in props.items():
            if isinstance(sub, dict):
                flag = sub.get("required")
                if isinstance(flag, bool):
                    sub.pop("required")
                    changed = True
                    if flag and key not in lifted:
                        lifted.append(key)
                if isinstance(sub.get("optional"), bool):
                    changed = True
                    if sub.pop("optional") and key in lifted:
                        lifted.remove(key)
        if changed or isinstance(required, bool):
            if isinstance(required, bool):
                changed = True
            if lifted:
                schema["required"] = lifted
            else:
                schema.pop("required", None)
    for key in _SCHEMA_CHILD_MAPS:
        child = schema.get(key)
        if isinstance(child, dict):
            for name, sub in child.items():
                _normalize_schema(tool, sub, f"{where}.{name}")
    for key in _SCHEMA_CHILD_LISTS:
        child = schema.get(key)
        if isinstance(child, list):
            for i, sub in enumerate(child):
                _normalize_schema(tool, sub, f"{where}.{key}[{i}]")
    for key in _SCHEMA_CHILDREN:
        child = schema.get(key)
        if isinstance(child, dict):
            _normalize_schema(tool, child, f"{where}.{key}")
        elif key == "items" and isinstance(child, list):  # draft-4 tuple form -> prefixItems
            schema.pop("items")
            schema["prefixItems"] = child
            for i, sub in enumerate(child):
                _normalize_schema(tool, sub, f"{where}.items[{i}]")


def _normalize_type_keyword(tool: str, schema: dict, where: str) -> None:
    value = schema["type"]
    names = value if isinstance(value, list) else [value]
    mapped: list[str] = []
    extra: dict[str, Any] = {}
    any_type = False
    for name in names:
        if not isinstance(name, str):
            raise ToolSpecError(tool, f"{where}: 'type' must be a string or a list of strings, got {name!r}")
        if name in JSON_TYPES:
            mapped.append(name)
            continue
        lowered = name.strip().lower()
        if lowered in TYPE_ALIASES:
            json_type = TYPE_ALIASES[lowered]
        else:
            parsed, _ = parse_type_string(tool, name, where)
            json_type = parsed.pop("type", None)
            if isinstance(json_type, list):
                mapped.extend(json_type)
                continue
            extra.update(parsed)
        if json_type is None:
            any_type = True
        else:
            mapped.append(json_type)
    if any_type:
        schema.pop("type")
        return
    deduped = list(dict.fromkeys(mapped))
    schema["type"] = deduped[0] if len(deduped) == 1 and not isinstance(value, list) else deduped
    for key, val in extra.items():
        schema.setdefault(key, val)


def tool_name(spec: dict) -> str:
    """The name of a normalised tool spec."""
    return spec["function"]["name"]
