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
  An argument is required unless its type says ``optional`` or it has a ``default``; the type
  string may carry the default itself (``"str, optional, default 'en'"``, ``"int, default: 5"``,
  numpydoc's ``"{'asc', 'desc'}"`` choices), which goes into the schema's ``default``;
- a boolean ``"required": true`` / ``"optional": true`` inside a property (older dialects);
- BFCL's conventions: an optional argument whose ``default`` is ``null`` accepts ``null``, and an
  ``enum`` written on an array constrains its items;
- ``{"type": "object"}`` with no ``properties`` (MCP's free-form input) accepts any arguments, at
  the root as anywhere else (``additionalProperties: true``); ``{}`` or no ``parameters`` is a
  tool without arguments.

Names are 1-64 characters of ``a-zA-Z0-9_-``, and dots (BFCL's ``math.factorial``): a dotted
name is a name, checked as declared. A writer whose format forbids dots (OpenAI's ``tools``)
renames them (``dataflow.exports.convert.openai_names``); ``allow_dots=False`` refuses
them here instead.

A spec that cannot be normalised, or whose ``parameters`` is not a valid JSON Schema (checked
against the Draft 2020-12 metaschema by jsonschema-rs; ``pattern`` is an ECMA-262 regex), raises
``ToolSpecError(tool_name, problem)``.
"""

from __future__ import annotations

import json
import re
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


def normalize_tools(tools: Any, *, allow_dots: bool = True) -> list[dict]:
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


def tools_key(tools: Any) -> str:
    """The canonical key of a tool list in any dialect (``normalize_tools``): its OpenAI specs
    sorted by name, as compact JSON with sorted keys. The same tools, in any order or dialect,
    have one key; raises ``ToolSpecError`` for an invalid list."""
    import json

    specs = sorted(normalize_tools(tools), key=lambda tool: tool["function"]["name"])
    return json.dumps(specs, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def normalize_tool(spec: Any, *, allow_dots: bool = True, index: int | None = None) -> dict:
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
    inner = spec.get("function")
    if inner is not None and isinstance(inner, dict):
        if spec.get("type", "function") != "function":
            raise ToolSpecError(label, f"unsupported tool type {spec.get('type')!r} (expected 'function')")
        fn = inner
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


_NO_PARAMETERS = '{"type": "object", "properties": {}}'


def normalize_parameters(tool: str, params: Any) -> dict:
    """Normalise the ``parameters`` of tool ``tool`` to a valid JSON Schema object schema.

    ``None`` or ``{}`` is a tool without parameters (``properties: {}``, closed); an object schema
    that names no properties (``{"type": "object"}``, MCP's free-form input) accepts any
    arguments, and says so with ``additionalProperties: true``."""
    if params is None:
        return json.loads(_NO_PARAMETERS)
    if isinstance(params, str):
        try:
            params = json.loads(params)
        except json.JSONDecodeError as exc:
            raise ToolSpecError(tool, f"'parameters' is a string that is not valid JSON: {exc.msg}") from None
    if not isinstance(params, dict):
        raise ToolSpecError(tool, f"'parameters' must be an object schema, got {type(params).__name__}")
    if not params:
        return json.loads(_NO_PARAMETERS)
    if _is_xlam_parameters(params):
        schema = _from_xlam(tool, params)
    else:
        schema = _normalized(tool, params, "parameters")
        if "type" not in schema and "properties" in schema:
            schema["type"] = "object"
    if schema.get("type") != "object":
        raise ToolSpecError(tool, f"'parameters' must have type 'object', got {schema.get('type')!r}")
    if "properties" not in schema:
        if not any(k in schema for k in _OPENNESS_KEYS):
            schema["additionalProperties"] = True  # a free-form object, here as anywhere else
        schema["properties"] = {}
    _meta_check(tool, schema)
    return schema


_OPENNESS_KEYS = ("additionalProperties", "unevaluatedProperties", "patternProperties", "allOf", "anyOf",
                  "oneOf", "if", "$ref", "dependentSchemas")

_VALID_PATTERNS: dict[str, str | None] = {}


def schema_key(schema: Any) -> bytes | str | None:
    """Canonical JSON of ``schema`` (keys sorted) for caching, or ``None`` if it is not plain JSON."""
    try:
        import orjson

        return orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)
    except (TypeError, ValueError, ImportError):
        try:
            return json.dumps(schema, sort_keys=True, ensure_ascii=False)
        except (TypeError, ValueError):
            return None


def content_key(schema: Any) -> bytes | str | None:
    """JSON of ``schema`` with keys in their order (faster than ``schema_key``), for caches that
    may miss on a reordered copy."""
    try:
        import orjson

        return orjson.dumps(schema)
    except (TypeError, ValueError, ImportError):
        return schema_key(schema)


def check_json_schema(tool: str, schema: dict) -> None:
    """Raise ``ToolSpecError`` if ``schema`` is not valid under the Draft 2020-12 metaschema, a
    ``pattern`` is not an ECMA-262 regular expression, or its ``required`` names arguments it
    does not define. The metaschema check is jsonschema-rs's (a few microseconds)."""
    _meta_check(tool, schema, lambda: _check_subschemas(tool, schema, ""))


_RS: Any = None


def _rs() -> Any:
    """jsonschema_rs, imported on first use."""
    global _RS
    if _RS is None:
        import jsonschema_rs

        _RS = jsonschema_rs
    return _RS


def _meta_check(tool: str, schema: dict, more: Any = None) -> None:
    """The metaschema check (jsonschema-rs: about as fast as hashing the schema to cache it, so
    nothing is cached); ``more()`` runs after it."""
    rs = _rs()
    try:
        valid = rs.meta.is_valid(schema)
        if not valid:
            rs.meta.validate(schema)
    except rs.ValidationError as exc:
        where = "/".join(str(p) for p in exc.instance_path) or "(root)"
        raise ToolSpecError(tool, f"'parameters' is not a valid JSON Schema at {where}: {exc.message}") from None
    except (TypeError, ValueError, OverflowError) as exc:
        raise ToolSpecError(tool, f"'parameters' is not a valid JSON Schema: {exc}") from None
    if more is not None:
        more()


def regex_problem(pattern: str) -> str | None:
    """Why ``pattern`` is not an ECMA-262 regular expression JSON Schema accepts, or ``None``."""
    if pattern in _VALID_PATTERNS:
        return _VALID_PATTERNS[pattern]
    import jsonschema_rs

    try:
        jsonschema_rs.validator_for({"pattern": pattern})
        problem = None
    except jsonschema_rs.ValidationError as exc:
        problem = exc.message
    except Exception as exc:  # noqa: BLE001 - a regex the engine cannot build
        problem = str(exc)
    if len(_VALID_PATTERNS) > 4096:
        _VALID_PATTERNS.clear()
    _VALID_PATTERNS[pattern] = problem
    return problem


def _require_ecma(tool: str, where: str, what: str, pattern: str) -> None:
    problem = regex_problem(pattern)
    if problem:
        raise ToolSpecError(tool, f"{where}: {what} {pattern!r} is not an ECMA-262 regular expression ({problem})")


def _check_subschemas(tool: str, schema: Any, path: str) -> None:
    """``required`` names defined properties; every ``pattern`` is an ECMA regex."""
    if not isinstance(schema, dict):
        return
    props = schema.get("properties")
    required = schema.get("required")
    if isinstance(props, dict) and isinstance(required, list) and schema.get("additionalProperties") is not True:
        for key in required:
            if key not in props and not schema.get("patternProperties"):
                where = f" of '{path}'" if path else ""
                raise ToolSpecError(tool, f"required argument {key!r}{where} is not defined in 'properties'")
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        _require_ecma(tool, f"argument {path or '(root)'!r}", "'pattern'", pattern)
    for key, sub in schema.items():
        if key in _SCHEMA_CHILD_MAPS and isinstance(sub, dict):
            if key == "patternProperties":
                for rx in sub:
                    _require_ecma(tool, f"argument {path or '(root)'!r}", "'patternProperties' key", rx)
            for name, child in sub.items():
                _check_subschemas(tool, child, f"{path}.{name}" if path else str(name))
        elif key in _SCHEMA_CHILD_LISTS and isinstance(sub, list):
            for child in sub:
                _check_subschemas(tool, child, path)
        elif key in _SCHEMA_CHILDREN and isinstance(sub, dict):
            _check_subschemas(tool, sub, f"{path}[]" if key == "items" else path)


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
        prop = dict(info)
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
        prop = _normalized(tool, prop, f"parameters.{arg}")
        if not optional:
            required.append(arg)
        properties[arg] = _bfcl_conventions(prop, optional)
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


_OPTIONAL_SUFFIX = re.compile(r"\s*(?:,\s*)?\(?\s*optional\s*\)?\s*$", re.IGNORECASE)
_DEFAULT_PART = re.compile(r"^\(?\s*defaults?(?:\s+(?:to|is))?\s*[:=]?\s*(.*?)\s*\)?$", re.IGNORECASE | re.DOTALL)
_MISSING = object()


def parse_type_string(tool: str, text: str, where: str = "") -> tuple[dict, bool]:
    """Parse a dialect type string -> ``(schema, optional)``: the forms xLAM, numpydoc and Python
    annotations use (``"str, optional"``, ``"str, optional, default 'en'"``, ``"int, default: 5"``,
    ``"List[List[str]]"``, ``"Optional[float]"``, ``"int | None"``, ``"Dict[str, int]"``,
    ``"{'asc', 'desc'}"``). A default is carried into the schema (``"default"``) and makes the
    argument optional."""
    optional = False
    default: Any = _MISSING
    kept = []
    for index, part in enumerate(_split_top(text, ",")):
        lowered = part.strip().lower().strip("()").strip()
        match = _DEFAULT_PART.match(part.strip()) if index else None
        if index and lowered == "optional":
            optional = True
        elif match and lowered.startswith("default"):
            default = _literal(match.group(1))
        else:
            kept.append(part)
    body = ", ".join(kept).strip()
    inline = re.search(r"\(\s*defaults?\s*[:=]?\s*(.*?)\s*\)\s*$", body, re.IGNORECASE)
    if inline:
        default = _literal(inline.group(1))
        body = body[: inline.start()].strip()
    if _OPTIONAL_SUFFIX.search(body):
        body = _OPTIONAL_SUFFIX.sub("", body).strip()
        optional = True
    schema, was_optional = _parse_type_expr(tool, body, where, text)
    if default is not _MISSING:
        schema = {**schema, "default": default}
        optional = True
    return schema, optional or was_optional


def _literal(text: str) -> Any:
    """A default value as written in a type string: JSON, a Python literal, or the bare text."""
    text = text.strip()
    if text in ("None", "null"):
        return None
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        import ast

        value = ast.literal_eval(text)
        if isinstance(value, (str, int, float, bool, list, dict)):
            return value
    except (ValueError, SyntaxError):
        pass
    return text.strip("'\"")


def _parse_type_expr(tool: str, body: str, where: str, original: str) -> tuple[dict, bool]:
    body = body.strip()
    parts = _split_top(body, "|")
    if len(parts) == 1 and " or " in body and "[" not in body:
        parts = [p.strip() for p in body.split(" or ")]
    if len(parts) > 1:
        return _union(tool, parts, where, original)
    if body.startswith("{") and body.endswith("}"):  # numpydoc's set of choices
        return {"enum": [_literal(v) for v in _split_top(body[1:-1], ",")]}, False
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
    """Split on ``sep`` outside brackets and quotes."""
    if text is None:
        return []
    parts, depth, current, quote = [], 0, [], ""
    for ch in text:
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "[({":
            depth += 1
        elif ch in "])}":
            depth -= 1
        if ch == sep and depth == 0 and not quote:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    parts.append("".join(current).strip())
    return [p for p in parts if p]


def _copy_slow(value: Any) -> Any:
    kind = type(value)
    if kind is dict:
        return {k: _copy_slow(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [_copy_slow(v) for v in value]
    return value


#: keys of an argument schema whose values are all scalars and need no check: copied flat
_PLAIN_LEAF_KEYS = frozenset({"type", "description", "title", "format", "minimum", "maximum", "exclusiveMinimum",
                              "exclusiveMaximum", "minLength", "maxLength", "multipleOf", "minItems", "maxItems",
                              "minProperties", "maxProperties", "uniqueItems", "readOnly", "writeOnly",
                              "deprecated", "$comment"})
#: a plain argument may also carry a scalar ``default`` and an ``enum`` of scalars
_LEAF_KEYS = _PLAIN_LEAF_KEYS | {"default", "enum"}
_SCALAR_TYPES = frozenset({str, int, float, bool, type(None)})


def _plain_values(leaf: dict) -> bool:
    """Whether ``leaf``'s ``default`` is a scalar and its ``enum`` a list of scalars (so a flat
    copy shares nothing mutable with the input)."""
    if "default" in leaf and type(leaf["default"]) not in _SCALAR_TYPES:
        return False
    enum = leaf.get("enum")
    if enum is not None and (type(enum) is not list or any(type(v) not in _SCALAR_TYPES for v in enum)):
        return False
    return True


_MAP_KEYS = frozenset(_SCHEMA_CHILD_MAPS)
_LIST_KEYS = frozenset(_SCHEMA_CHILD_LISTS)
_CHILD_KEYS = frozenset(_SCHEMA_CHILDREN)


#: type names mapped without parsing (JSON's own, the usual aliases, and their capitalised forms)
_SIMPLE_TYPES: dict[str, str] = {k: v for k, v in TYPE_ALIASES.items() if v is not None}
_SIMPLE_TYPES.update({k.capitalize(): v for k, v in list(_SIMPLE_TYPES.items())})
_SIMPLE_TYPES.update({t: t for t in JSON_TYPES})


def _normalized(tool: str, schema: Any, where: str) -> Any:
    """A normalised copy of ``schema``: dialect type names mapped to JSON Schema types, boolean
    ``required``/``optional`` flags of properties lifted into the parent's ``required`` list,
    draft-4 tuple ``items`` as ``prefixItems``, BFCL's conventions read (``_bfcl_conventions``);
    ``required`` must name defined properties and every ``pattern`` must be an ECMA-262 regex.
    One copying walk: it is on the path of every new tool list, so it is written for speed."""
    if type(schema) is not dict:
        return _copy_slow(schema)
    out: dict[str, Any] = {}
    props = None
    odd_type = False
    pattern = None
    for key, value in schema.items():
        kind = type(value)
        if kind is str:  # description, title, type, format, pattern ...: most values
            if key == "type":
                mapped = _SIMPLE_TYPES.get(value)
                if mapped is None:
                    odd_type = True
                else:
                    value = mapped
            elif key == "pattern":
                pattern = value
            out[key] = value
        elif kind is dict:
            if key == "properties":
                props = out[key] = {}
                for name, sub in value.items():
                    if type(sub) is dict and sub.keys() <= _LEAF_KEYS and _plain_values(sub):  # copied flat
                        kind_of = sub.get("type")
                        mapped = _SIMPLE_TYPES.get(kind_of) if type(kind_of) is str else None
                        if mapped is not None or kind_of is None:
                            leaf = props[name] = dict(sub)
                            if mapped is not None and mapped is not kind_of:
                                leaf["type"] = mapped
                            if "enum" in leaf:
                                leaf["enum"] = list(leaf["enum"])
                            continue
                    props[name] = _normalized(tool, sub, where + "." + name)
            elif key in _MAP_KEYS:
                out[key] = {name: _normalized(tool, sub, where + "." + name) for name, sub in value.items()}
                if key == "patternProperties":
                    for rx in value:
                        _require_ecma(tool, where, "'patternProperties' key", rx)
            elif key in _CHILD_KEYS:
                out[key] = _normalized(tool, value, where + "." + key)
            else:
                out[key] = _copy_slow(value)
        elif kind is list:
            if key == "required":
                out[key] = list(value)
            elif key == "type":
                out[key] = list(value)
                odd_type = True
            elif key in _LIST_KEYS:
                out[key] = [_normalized(tool, sub, f"{where}.{key}[{i}]") for i, sub in enumerate(value)]
            elif key == "items":  # draft-4 tuple form -> prefixItems
                out["prefixItems"] = [_normalized(tool, sub, f"{where}.items[{i}]") for i, sub in enumerate(value)]
            else:
                out[key] = _copy_slow(value)
        elif key == "type":  # not a name: _normalize_type_keyword says so
            out[key] = value
            odd_type = True
        else:
            out[key] = value
    if odd_type:
        _normalize_type_keyword(tool, out, where)
    if pattern is not None:
        _require_ecma(tool, where, "'pattern'", pattern)
    required = out.get("required")
    if props is not None:
        lifted = None
        special = False
        for key, sub in props.items():
            if type(sub) is not dict:
                continue
            if "required" in sub or "optional" in sub:
                flag, optional = sub.get("required"), sub.get("optional")
                if isinstance(flag, bool) or isinstance(optional, bool):
                    if lifted is None:
                        lifted = list(required) if type(required) is list else []
                    if isinstance(flag, bool):
                        del sub["required"]
                        if flag and key not in lifted:
                            lifted.append(key)
                    if isinstance(optional, bool):
                        del sub["optional"]
                        if optional and key in lifted:
                            lifted.remove(key)
            if "default" in sub or "enum" in sub:
                special = True
        if lifted is not None or isinstance(required, bool):
            if lifted:
                out["required"] = required = lifted
            else:
                out.pop("required", None)
                required = None
        if type(required) is list and out.get("additionalProperties") is not True and not out.get("patternProperties"):
            for name in required:
                if name not in props:
                    raise ToolSpecError(tool, f"required argument {name!r}{_of(where)} is not defined in 'properties'")
        if special:
            wanted = required if type(required) is list else ()
            for key, sub in props.items():
                if type(sub) is dict and ("default" in sub or "enum" in sub):
                    props[key] = _bfcl_conventions(sub, key not in wanted)
    elif isinstance(required, bool):
        out.pop("required")
    return out


def _of(where: str) -> str:
    inner = where.partition(".")[2]
    return f" of '{inner}'" if inner else ""


def _bfcl_conventions(prop: dict, optional: bool) -> dict:
    """Read a property as BFCL means it: an optional argument whose default is ``None`` accepts
    ``null``; an ``enum`` written on an array constrains its items."""
    if optional and "default" in prop and prop["default"] is None:
        kind = prop.get("type")
        if isinstance(kind, str) and kind != "null":
            prop["type"] = [kind, "null"]
        elif isinstance(kind, list) and "null" not in kind:
            prop["type"] = [*kind, "null"]
        if isinstance(prop.get("enum"), list) and None not in prop["enum"]:
            prop["enum"] = [*prop["enum"], None]
    kind = prop.get("type")
    is_array = kind == "array" or (isinstance(kind, list) and "array" in kind)
    enum = prop.get("enum")
    items = prop.get("items")
    if is_array and isinstance(enum, list) and enum and not any(isinstance(v, list) for v in enum if v is not None):
        if items is None or (isinstance(items, dict) and "enum" not in items):
            values = [v for v in enum if v is not None]
            prop["items"] = {**(items or {}), "enum": values}
            prop.pop("enum")
    return prop


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
