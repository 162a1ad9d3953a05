"""Check function calls against tool specs: ``validate_calls(calls, tools) -> list[str]``.

Every call is checked (not only the first): the function exists, required arguments are present,
no unknown arguments are given, and every argument satisfies its JSON Schema (types, enums,
bounds, string patterns and lengths, array items, nested objects, and the conditional rules of the
schema itself: ``dependentRequired``, ``if``/``then``/``else``, ``oneOf``/``anyOf``/``allOf``).
Calls and their arguments are read by ``dataflow.tools.calls`` (the one reader: ``""`` is ``{}``,
a JSON string is decoded, NaN/Infinity are invalid values).

The verdict is jsonschema-rs's Draft 2020-12 validator (ECMA-262 ``pattern``, formats checked),
compiled for a tool the first time a call needs it, with two deliberate changes below. Before
that, ``_accepts`` (pure Python, no compiling) takes the calls it can prove valid: a new tool set
on every row (APIGen sampling, generated functions) mostly needs no validator at all.

- objects are closed by default: an object schema that has ``properties`` and says nothing about
  ``additionalProperties`` gets ``additionalProperties: false`` (or ``unevaluatedProperties:
  false`` when it also uses ``allOf``/``anyOf``/``oneOf``/``if``, so arguments declared in those
  branches still count). A spec that sets ``additionalProperties`` keeps its own rule, and an
  object schema without ``properties`` is free-form;
- ``integer`` is strict: ``1.5``, ``3.0`` and ``true`` are rejected (JSON Schema would accept
  ``3.0``; a training example should not teach a model to write it). ``number`` accepts integers
  and rejects booleans; ``boolean`` rejects the string ``"true"``.

The messages of an invalid call are written from jsonschema-rs's errors (from the Python
``jsonschema`` library's only where ``3.0`` is given for an integer, which jsonschema-rs accepts;
its ``pattern`` is ECMA-262 here too), each reading ``call <i> (<function>): <problem>``,
``<i>`` counting from 0 as the list does, e.g. ``call 1 (get_weather): argument 'days': 1.5 is
not of type 'integer'``. Under ``anyOf``/``oneOf`` the message names the failing rule of the
branch whose type fits the value (not "is not of type 'null'" for an optional value).

Tool specs in any dialect of ``dataflow.tools.spec`` are normalised first; an invalid tool spec
raises ``ToolSpecError`` naming the tool (the calls cannot be judged against it).
"""

from __future__ import annotations

import ast
import json
import re
from collections import OrderedDict
from typing import Any, Iterable

from ..core.errors import ToolSpecError
from .calls import json_type as _json_type
from .calls import loads_strict, parse_call
from .spec import content_key, normalize_tools

__all__ = ["validate_calls", "compile_tools", "ToolSet", "CompiledTool", "parse_call",
           "close_objects", "clear_cache", "ecma_search"]

_TOOLSET_CACHE: "OrderedDict[Any, ToolSet]" = OrderedDict()
_IDENTITY_CACHE: "OrderedDict[tuple, tuple]" = OrderedDict()
_CACHE_SIZE = 4096
_MAX_VALUE_CHARS = 60


class CompiledTool:
    """A normalised tool spec; its validators are built on the first call to check."""

    __slots__ = ("name", "spec", "_schema", "_rs", "_py")

    def __init__(self, name: str, spec: dict):
        self.name = name
        self.spec = spec
        self._schema: dict | None = None
        self._rs: Any = None
        self._py: Any = None

    @property
    def schema(self) -> dict:
        """The parameters schema as checked (objects closed)."""
        if self._schema is None:
            self._schema = close_objects(self.spec["function"]["parameters"])
        return self._schema

    @property
    def validator(self) -> Any:
        """The jsonschema-rs validator (the verdict)."""
        if self._rs is None:
            import jsonschema_rs

            try:
                self._rs = jsonschema_rs.Draft202012Validator(self.schema, validate_formats=True)
            except jsonschema_rs.ValidationError as exc:
                raise ToolSpecError(self.name, f"cannot compile parameters: {exc.message}") from None
        return self._rs

    @property
    def py_validator(self) -> Any:
        """The Python jsonschema validator (strict types, ECMA pattern) that writes messages."""
        if self._py is None:
            cls = _validator_class()
            self._py = cls(self.schema, format_checker=cls.FORMAT_CHECKER)
        return self._py

    def errors(self, arguments: dict) -> list[str]:
        """Problems of ``arguments`` (no call prefix); empty when valid."""
        rs = self._rs
        if rs is None:
            if _accepts(self.spec["function"]["parameters"], arguments, True):
                return []  # certainly valid: no validator needed for this tool yet
            rs = self.validator
        if rs.is_valid(arguments):
            if not _has_integral_float(arguments):
                return []
            return self._strict_errors(arguments)
        if _has_integral_float(arguments):
            return self._strict_errors(arguments)
        messages: list[str] = []
        schema = self.schema
        found = sorted(rs.iter_errors(arguments), key=lambda e: _schema_order(schema, e))
        for error in found:
            for message in _describe_rs(error, schema):
                if message not in messages:
                    messages.append(message)
        return messages

    def _strict_errors(self, arguments: dict) -> list[str]:
        """Messages from the Python validator, whose ``integer`` rejects ``3.0``."""
        messages: list[str] = []
        for error in self.py_validator.iter_errors(arguments):
            for message in _describe(error):
                if message not in messages:
                    messages.append(message)
        return messages


class ToolSet:
    """Compiled tools of one tool list, by name. Build with ``compile_tools``."""

    __slots__ = ("tools",)

    def __init__(self, tools: dict[str, CompiledTool]):
        self.tools = tools

    @property
    def specs(self) -> list[dict]:
        return [t.spec for t in self.tools.values()]

    def validate(self, calls: Any) -> list[str]:
        """``validate_calls(calls, <these tools>)``."""
        parsed, problem = _as_call_list(calls)
        if problem:
            return [problem]
        errors: list[str] = []
        for index, call in enumerate(parsed):
            name, arguments, problem = parse_call(call)
            if problem:
                label = f"call {index} ({name})" if name else f"call {index}"
                errors.append(f"{label}: {problem}")
                continue
            tool = self.tools.get(name)  # type: ignore[arg-type]
            if tool is None:
                known = ", ".join(self.tools) or "none"
                errors.append(f"call {index} ({name}): unknown function {name!r} (available: {known})")
                continue
            for message in tool.errors(arguments):  # type: ignore[arg-type]
                errors.append(f"call {index} ({name}): {message}")
        return errors


def validate_calls(calls: Any, tools: Any, *, allow_dots: bool = True) -> list[str]:
    """Check ``calls`` against ``tools``; an empty list means every call is valid.

    ``calls``: a list of ``{"name", "arguments"}`` (``arguments`` a dict or a JSON string), of
    OpenAI tool calls ``{"function": {"name", "arguments"}}``, or of ``{"function_name",
    "arguments"}``; or a JSON string of such a list. ``[]`` (no call) is valid.
    ``tools``: tool specs in any supported dialect (see ``dataflow.tools.spec``), a JSON string of
    them, or a ``ToolSet``. Names are checked as declared (``math.factorial`` is a name);
    ``allow_dots=False`` refuses dotted names. Raises ``ToolSpecError`` when a tool spec itself
    is invalid.
    """
    toolset = tools if isinstance(tools, ToolSet) else compile_tools(tools, allow_dots=allow_dots)
    return toolset.validate(calls)


def compile_tools(tools: Any, *, allow_dots: bool = True) -> ToolSet:
    """Normalise (spec checks included) and index a tool list; each tool's validator is compiled
    on its first call. A tool list seen before is cached by content, and a list/dict object also
    by identity, so a loop validating against the same list pays no hashing; after changing a
    tool list *in place*, pass a new list (or call ``clear_cache()``). A list seen once is not
    kept: with a new tool set on every row, caching would only feed the garbage collector."""
    ident = None
    if not isinstance(tools, str):
        ident = (id(tools), allow_dots)
        hit = _IDENTITY_CACHE.get(ident)
        if hit is not None and hit[0] is tools and hit[1] == _shallow_ids(tools):
            return hit[2]
    content = tools if isinstance(tools, str) else content_key(tools)
    key = (allow_dots, content)
    toolset = _TOOLSET_CACHE.get(key) if content is not None else None
    if toolset is not None:
        _TOOLSET_CACHE.move_to_end(key)
    else:
        compiled: dict[str, CompiledTool] = {}
        for spec in normalize_tools(tools, allow_dots=allow_dots):
            name = spec["function"]["name"]
            compiled[name] = CompiledTool(name, spec)  # validators built on a first call that needs them
        toolset = ToolSet(compiled)
        if content is not None and not _first_sighting(key):
            _remember(_TOOLSET_CACHE, key, toolset)
    if ident is not None and not _first_sighting(ident):
        _remember(_IDENTITY_CACHE, ident, (tools, _shallow_ids(tools), toolset), size=256)
    return toolset


_SEEN: dict[Any, None] = {}


def _first_sighting(key: Any) -> bool:
    """Whether ``key`` is new (then it is noted: the next time it is not)."""
    if key in _SEEN:
        return False
    if len(_SEEN) >= 16384:
        _SEEN.clear()
    _SEEN[key] = None
    return True


def clear_cache() -> None:
    """Forget every compiled tool list and pattern, and the Python validator class."""
    global _VALIDATOR_CLASS
    _TOOLSET_CACHE.clear()
    _IDENTITY_CACHE.clear()
    _SEEN.clear()
    _PATTERNS.clear()
    _VALIDATOR_CLASS = None


def _shallow_ids(tools: Any) -> tuple:
    if isinstance(tools, (list, tuple)):
        return tuple(map(id, tools))
    if isinstance(tools, dict):
        return tuple(map(id, tools.values()))
    return ()


def close_objects(schema: Any) -> Any:
    """A copy of ``schema`` in which object schemas with ``properties`` reject unknown keys unless
    they say otherwise. Only schemas that describe a value are closed (not ``allOf``/``oneOf``/
    ``if``/``then`` branches, which describe a part of their parent)."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    props = out.get("properties")
    if isinstance(props, dict):
        out["properties"] = {k: close_objects(v) for k, v in props.items()}
        open_keys = ("additionalProperties", "unevaluatedProperties", "patternProperties")
        if not any(k in out for k in open_keys):
            branch_names = _branch_property_names(out)
            if branch_names is None or not branch_names <= set(props):
                out["unevaluatedProperties"] = False
            else:
                out["additionalProperties"] = False
    for key in ("items", "additionalProperties", "contains"):
        if isinstance(out.get(key), dict):
            out[key] = close_objects(out[key])
    if isinstance(out.get("prefixItems"), list):
        out["prefixItems"] = [close_objects(s) for s in out["prefixItems"]]
    for key in ("$defs", "definitions"):
        if isinstance(out.get(key), dict):
            out[key] = {k: close_objects(v) for k, v in out[key].items()}
    return out


def _branch_property_names(schema: dict) -> set[str] | None:
    """Names declared by the conditional branches of ``schema`` (``None``: cannot tell, e.g.
    a ``$ref``). When they are all declared at the top too, ``additionalProperties: false`` is
    exact; otherwise ``unevaluatedProperties: false`` keeps branch-declared arguments legal."""
    names: set[str] = set()
    if "$ref" in schema or "$dynamicRef" in schema:
        return None
    subs: list[Any] = []
    for key in ("allOf", "anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            subs.extend(schema[key])
    for key in ("if", "then", "else"):
        if key in schema:
            subs.append(schema[key])
    if isinstance(schema.get("dependentSchemas"), dict):
        subs.extend(schema["dependentSchemas"].values())
    for sub in subs:
        if not isinstance(sub, dict):
            continue
        if isinstance(sub.get("properties"), dict):
            names.update(sub["properties"])
        if isinstance(sub.get("patternProperties"), dict) and sub["patternProperties"]:
            return None
        inner = _branch_property_names(sub)
        if inner is None:
            return None
        names |= inner
    return names


def _has_integral_float(value: Any) -> bool:
    """Whether ``value`` holds a float with an integral value (``3.0``) anywhere: jsonschema-rs
    counts it as an integer, this module does not, so such calls are judged by the strict checker."""
    kind = type(value)
    if kind is float:
        return value.is_integer()
    if kind is dict:
        for item in value.values():
            t = type(item)
            if t is str or t is int or t is bool:
                continue
            if _has_integral_float(item):
                return True
    elif kind is list:
        for item in value:
            if _has_integral_float(item):
                return True
    return False


_PATTERNS: dict[str, Any] = {}


def ecma_search(pattern: str, text: str) -> bool:
    """Whether ECMA-262 ``pattern`` matches somewhere in ``text`` (JSON Schema's regex dialect:
    ``\\d`` is ASCII digits, ``\\p{L}`` is a Unicode letter)."""
    validator = _PATTERNS.get(pattern)
    if validator is None:
        import jsonschema_rs

        if len(_PATTERNS) > 4096:
            _PATTERNS.clear()
        validator = _PATTERNS[pattern] = jsonschema_rs.validator_for({"type": "string", "pattern": pattern})
    return validator.is_valid(text)


# -- the acceptance pre-check ----------------------------------------------------------------
_ANNOTATIONS = frozenset({"description", "title", "default", "examples", "$comment", "deprecated",
                          "readOnly", "writeOnly", "$schema", "$id", "x-response", "x-sub-tasks"})
#: JSON type -> the Python types of its values (exact: ``True`` is no integer here)
_PY_TYPES: dict[str, frozenset] = {
    "string": frozenset({str}), "integer": frozenset({int}), "number": frozenset({int, float}),
    "boolean": frozenset({bool}), "array": frozenset({list}), "object": frozenset({dict}),
    "null": frozenset({type(None)}),
}
_NO_TYPES: frozenset = frozenset()


def _accepts(schema: Any, value: Any, closed: bool) -> bool:
    """``True`` only when ``value`` is certainly valid under ``schema`` with this module's rules
    (objects with ``properties`` closed when ``closed``, strict ``integer``); ``False`` means
    invalid *or not decided here* (``format``, ``oneOf``, ``if``, ``$ref``, ...), and the
    compiled validator decides. Reading a new tool's schema costs less than compiling it, and
    most calls are valid. ``tests/test_tool_reader.py`` cross-checks it with the validators."""
    if schema is True:
        return True
    if type(schema) is not dict:
        return False
    for key, rule in schema.items():
        if key in _ANNOTATIONS:
            continue
        if key == "type":
            if type(rule) is str:
                if type(value) not in _PY_TYPES.get(rule, _NO_TYPES):
                    return False
            elif not any(type(value) in _PY_TYPES.get(r, _NO_TYPES) for r in rule):
                return False
        elif key == "properties":
            if type(value) is dict:
                for name, item in value.items():
                    sub = rule.get(name)
                    if sub is None:
                        if closed and not _open(schema):
                            return False
                        if "additionalProperties" in schema or "patternProperties" in schema:  # pragma: no mutate (the loop goes on either way: states the rule)
                            continue
                    elif type(sub) is dict and len(sub) <= 2 and type(sub.get("type")) is str and (
                            len(sub) == 1 or "description" in sub):  # a plain typed argument
                        if type(item) not in _PY_TYPES.get(sub["type"], _NO_TYPES):
                            return False
                    elif not _accepts(sub, item, closed):
                        return False
        elif key == "required":
            if type(value) is dict:
                for name in rule:
                    if name not in value:
                        return False
        elif key == "enum":
            if not _in_enum(value, rule):
                return False
        elif key == "items":
            if type(value) is list and "prefixItems" not in schema:
                for item in value:
                    if not _accepts(rule, item, closed):
                        return False
        elif key == "additionalProperties":
            if type(value) is dict and rule is not True:
                props = schema.get("properties") or {}
                if "patternProperties" in schema:
                    return False
                for name, item in value.items():
                    if name not in props and not _accepts(rule, item, closed):
                        return False
        elif key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            if (type(value) is int or type(value) is float) and not _in_bound(key, value, rule):
                return False
        elif key == "minLength":
            if type(value) is str and len(value) < rule:
                return False
        elif key == "maxLength":
            if type(value) is str and len(value) > rule:
                return False
        elif key == "minItems":
            if type(value) is list and len(value) < rule:
                return False
        elif key == "maxItems":
            if type(value) is list and len(value) > rule:
                return False
        elif key == "pattern":
            if type(value) is str and not ecma_search(rule, value):
                return False
        elif key == "const":
            if not _in_enum(value, [rule]):
                return False
        elif key == "anyOf":
            if not any(_accepts(sub, value, False) for sub in rule) or (closed and type(value) is dict and not _open(schema)):
                return False
        elif key == "dependentRequired":
            if type(value) is dict:
                for name, needs in rule.items():
                    if name in value and any(n not in value for n in needs):
                        return False
        else:
            return False  # a keyword decided by the validator
    return True


def _open(schema: dict) -> bool:
    """Whether an object schema with ``properties`` says how to treat other keys itself."""
    return "additionalProperties" in schema or "patternProperties" in schema or "unevaluatedProperties" in schema


def _in_bound(key: str, value: Any, limit: Any) -> bool:
    if key == "minimum":
        return value >= limit
    if key == "maximum":
        return value <= limit
    if key == "exclusiveMinimum":
        return value > limit
    return value < limit


def _in_enum(value: Any, options: list) -> bool:
    kind = type(value)
    if kind is dict or kind is list:
        return False  # structural equality with bool/int care: the validator decides
    for option in options:
        if option == value and (type(option) is bool) == (kind is bool):
            return True
    return False


# -- messages from jsonschema-rs errors --------------------------------------------------------
#: jsonschema-rs error kind -> (JSON Schema keyword, the key of its value in ``kind.as_dict()``)
_RS_RULES = {
    "Type": ("type", "types"), "Enum": ("enum", "options"), "Constant": ("const", "expected_value"),
    "Minimum": ("minimum", "limit"), "Maximum": ("maximum", "limit"), "ExclusiveMinimum": ("exclusiveMinimum", "limit"),
    "ExclusiveMaximum": ("exclusiveMaximum", "limit"), "MultipleOf": ("multipleOf", "multiple_of"),
    "MinLength": ("minLength", "limit"), "MaxLength": ("maxLength", "limit"), "MinItems": ("minItems", "limit"),
    "MaxItems": ("maxItems", "limit"), "Pattern": ("pattern", "pattern"), "Format": ("format", "format"),
    "UniqueItems": ("uniqueItems", None), "Not": ("not", None),
}
_BOUND_WORDS = {
    "minimum": "is less than the minimum of", "maximum": "is greater than the maximum of",
    "exclusiveMinimum": "must be greater than", "exclusiveMaximum": "must be less than",
    "multipleOf": "is not a multiple of",
}


def _rule_message(keyword: str, path: str, instance: Any, value: Any) -> str | None:
    """The message for a broken rule, the same whichever validator found it (``None``: a rule
    without its own wording)."""
    where = _where(path)
    if keyword == "type":
        types = value if isinstance(value, list) else [value]
        return f"{where}{_short(instance)} is not of type {' or '.join(repr(t) for t in types)}"
    if keyword == "enum":
        return f"{where}{_short(instance)} is not one of {_short(value)}"
    if keyword == "const":
        return f"{where}{_short(instance)} must equal {_short(value)}"
    if keyword == "not":
        return f"{where}matches a schema it must not match ('not')"
    if keyword in _BOUND_WORDS:
        return f"{where}{_short(instance)} {_BOUND_WORDS[keyword]} {value} ({keyword})"
    if keyword in ("minLength", "maxLength"):
        rel = "shorter than" if keyword == "minLength" else "longer than"
        return f"{where}{_short(instance)} is {rel} {value} characters ({keyword})"
    if keyword in ("minItems", "maxItems"):
        rel = "fewer than" if keyword == "minItems" else "more than"
        count = len(instance) if isinstance(instance, list) else "?"
        return f"{where}has {rel} {value} items ({keyword}; got {count})"
    if keyword == "pattern":
        return f"{where}{_short(instance)} does not match the pattern {value!r}"
    if keyword == "format":
        return f"{where}{_short(instance)} is not a valid {value!r} (format)"
    if keyword == "uniqueItems":
        return f"{where}has repeated items (uniqueItems)"
    return None


def _missing(path: str, name: Any, condition: str) -> str:
    return f"missing required argument {_join(path, str(name))!r}{condition}"


def _unknown(path: str, names: Iterable[Any], fallback: str) -> list[str]:
    return [f"unknown argument {_join(path, str(k))!r}" for k in names] or [f"{_where(path)}{fallback}"]


def _requires(path: str, owner: Any, need: Any) -> str:
    return f"argument {_join(path, str(owner))!r} requires argument {_join(path, str(need))!r} (dependentRequired)"


def _alternatives(path: str, keyword: str, detail: str | None) -> str:
    if detail is None:
        return f"{_where(path)}matches more than one of the oneOf alternatives (exactly one must match)"
    return f"{_where(path)}matches none of the {keyword} alternatives{detail}"


def _other(path: str, message: str, keyword: str) -> str:
    message = message if len(message) <= 200 else message[:197] + "..."
    return f"{_where(path)}{message} ({keyword})"


def _describe_rs(error: Any, schema: Any = None, prefix: tuple = ()) -> list[str]:
    """Human messages for one jsonschema-rs error (``schema``: the schema validated against, to
    quote a rule as it is written there)."""
    kind = type(error.kind).__name__
    data = error.kind.as_dict()
    path = _path([*prefix, *error.instance_path])
    instance = error.instance
    schema_path = [p for p in error.schema_path if isinstance(p, str)]
    if kind == "Required":
        if schema_path and schema_path[-1] == "dependentRequired":
            rules = _at(schema, error.schema_path) or {}
            owners = [k for k, needs in rules.items() if isinstance(instance, dict) and k in instance
                      and data["property"] in needs] or ["?"]
            return [_requires(path, owner, data["property"]) for owner in owners]
        return [_missing(path, data["property"], _condition_of(schema_path))]
    if kind in ("AdditionalProperties", "UnevaluatedProperties"):
        return _unknown(path, data.get("unexpected", []), error.message)
    if kind == "OneOfMultipleValid":
        return [_alternatives(path, "oneOf", None)]
    if kind in ("AnyOf", "OneOfNotValid"):
        keyword = "anyOf" if kind == "AnyOf" else "oneOf"
        return [_alternatives(path, keyword, _closest_rs(data.get("context"), schema, prefix))]
    if kind == "FalseSchema":
        if not path:
            return ["arguments: no value is allowed here"]
        last = path.rpartition(".")[2]
        return [f"unknown argument {path!r}"] if "[" not in last else [f"{_where(path)}no value is allowed here"]
    rule = _RS_RULES.get(kind)
    if rule is not None:
        keyword, field = rule
        value = data.get(field) if field else None
        if keyword == "type":  # as the schema writes it (jsonschema-rs sorts the names)
            declared = _at(schema, error.schema_path)
            value = declared if isinstance(declared, list) else value
        message = _rule_message(keyword, path, instance, value)
        if message is not None:
            return [message]
    return [_other(path, error.message, kind)]


def _condition_of(schema_path: list[str]) -> str:
    if "then" in schema_path:
        return " (required by if/then)"
    if "else" in schema_path:
        return " (required by if/else)"
    if "dependentSchemas" in schema_path:
        return " (required by dependentSchemas)"
    return ""


def _schema_order(schema: Any, error: Any) -> tuple:
    """Where an error's rule stands in the schema as written (then where its value stands), so
    messages come in the order the Python validator gives them: the schema's own order."""
    key: list = []
    node = schema
    for part in error.schema_path:
        if isinstance(node, dict):
            keys = list(node)
            key.append(keys.index(part) if part in node else len(keys))
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int):
            key.append(part)
            node = node[part] if 0 <= part < len(node) else None
        else:
            key.append(0)
    return (tuple(key), tuple(str(p) for p in error.instance_path))


def _at(schema: Any, path: Any) -> Any:
    """The value at ``path`` (a schema path) inside ``schema``, or ``None``."""
    node = schema
    for part in path:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            return None
    return node


def _closest_rs(context: Any, schema: Any, prefix: tuple) -> str:
    """The first problem of the alternative that fits the value's type (an optional value's real
    schema, not its ``null`` branch); else of the first alternative."""
    if not context:
        return ""
    branches = [list(b) for b in context if b]
    if not branches:
        return ""

    def fits(errors: list) -> bool:
        return not any(type(e.kind).__name__ == "Type" and len(e.instance_path) == len(errors[0].instance_path)
                       and e.schema_path and e.schema_path[-1] == "type" and _branch_root(e) for e in errors)

    fitting = [b for b in branches if fits(b)]
    chosen = fitting[0] if fitting else branches[0]
    messages = _describe_rs(chosen[0], schema, prefix)
    return f" (closest: {messages[0]})" if messages else ""


def _branch_root(error: Any) -> bool:
    """Whether a ``type`` error is the alternative's own type (``anyOf/<i>/type``)."""
    path = list(error.schema_path)
    return len(path) >= 3 and path[-3] in ("anyOf", "oneOf") and isinstance(path[-2], int)


# -- internals ----------------------------------------------------------------------------------
_VALIDATOR_CLASS: Any = None


def _validator_class() -> Any:
    """Draft 2020-12 with a strict ``integer`` (no bools, no floats) and ECMA-262 ``pattern``."""
    global _VALIDATOR_CLASS
    if _VALIDATOR_CLASS is None:
        from jsonschema import Draft202012Validator, ValidationError, validators

        def is_integer(checker: Any, instance: Any) -> bool:
            return isinstance(instance, int) and not isinstance(instance, bool)

        def is_number(checker: Any, instance: Any) -> bool:
            return isinstance(instance, (int, float)) and not isinstance(instance, bool)

        def pattern(validator: Any, value: str, instance: Any, schema: dict) -> Any:
            if isinstance(instance, str) and not ecma_search(value, instance):
                yield ValidationError(f"{instance!r} does not match {value!r}")

        def pattern_properties(validator: Any, value: dict, instance: Any, schema: dict) -> Any:
            if not isinstance(instance, dict):
                return
            for rx, subschema in value.items():
                for key, item in instance.items():
                    if ecma_search(rx, key):
                        yield from validator.descend(item, subschema, path=key, schema_path=rx)

        def additional_properties(validator: Any, value: Any, instance: Any, schema: dict) -> Any:
            # the keys no ``properties`` name and no ECMA-262 ``patternProperties`` pattern matches
            # (jsonschema's own would match the patterns with Python's ``re``, whose \d matches "٣")
            if not isinstance(instance, dict):
                return
            extras = _unknown_keys(instance, schema)
            if isinstance(value, dict):
                for extra in extras:
                    yield from validator.descend(instance[extra], value, path=extra)
            elif value is False and extras:
                yield ValidationError(f"additional properties {extras!r} are not allowed")

        type_checker = Draft202012Validator.TYPE_CHECKER.redefine_many(
            {"integer": is_integer, "number": is_number}
        )
        _VALIDATOR_CLASS = validators.extend(
            Draft202012Validator, type_checker=type_checker,
            validators={"pattern": pattern, "patternProperties": pattern_properties,
                        "additionalProperties": additional_properties},
        )
    return _VALIDATOR_CLASS


def _remember(cache: OrderedDict, key: Any, value: Any, size: int = _CACHE_SIZE) -> None:
    cache[key] = value
    if len(cache) > size:
        cache.popitem(last=False)


def _as_call_list(calls: Any) -> tuple[list, str | None]:
    if calls is None:
        return [], "calls: expected a list of calls, got null"
    if isinstance(calls, str):
        text = calls.strip()
        try:
            calls = loads_strict(text) if text else []
        except json.JSONDecodeError as exc:
            return [], f"calls: not valid JSON ({exc.msg} at position {exc.pos})"
        except ValueError as exc:
            return [], f"calls: {exc}"
    if isinstance(calls, dict):
        return [calls], None
    if not isinstance(calls, (list, tuple)):
        return [], f"calls: expected a list of calls, got {_json_type(calls)}"
    return list(calls), None


def _short(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 3] + "..."


def _path(parts: Iterable[Any]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _join(base: str, key: str) -> str:
    return f"{base}.{key}" if base else key


def _where(path: str) -> str:
    return f"argument {path!r}: " if path else "arguments: "


def _condition(error: Any) -> str:
    """Which conditional rule led to the error, if any (from the schema path)."""
    parts = [p for p in error.absolute_schema_path if isinstance(p, str)]
    if "then" in parts:
        return " (required by if/then)"
    if "else" in parts:
        return " (required by if/else)"
    if "dependentSchemas" in parts:
        return " (required by dependentSchemas)"
    return ""


_QUOTED_LIST = re.compile(r"\((.*) (?:was|were) unexpected\)")


def _describe(error: Any, prefix: tuple = ()) -> list[str]:
    """Human messages for one jsonschema (Python) error, worded as ``_describe_rs``'s."""
    keyword = error.validator
    path = _path([*prefix, *error.absolute_path])
    instance = error.instance
    value = error.validator_value
    if keyword == "required":
        match = re.match(r"^(.*) is a required property$", error.message)
        try:
            missing = [ast.literal_eval(match.group(1))] if match else [m for m in value if m not in instance]
        except (ValueError, SyntaxError):
            missing = [m for m in value if m not in instance]
        return [_missing(path, m, _condition(error)) for m in missing]
    if keyword in ("additionalProperties", "unevaluatedProperties") and value is False:
        return _unknown(path, _unexpected(error), error.message)
    if keyword == "dependentRequired":
        return [_requires(path, prop, need) for prop, needs in value.items() if prop in instance
                for need in needs if need not in instance]
    if keyword in ("oneOf", "anyOf"):
        multiple = keyword == "oneOf" and not error.context
        return [_alternatives(path, keyword, None if multiple else _closest(error, prefix))]
    message = _rule_message(keyword, path, instance, value)
    return [message if message is not None else _other(path, error.message, keyword)]


def _unexpected(error: Any) -> list[str]:
    instance = error.instance
    if not isinstance(instance, dict):
        return []
    if error.validator == "additionalProperties":
        return _unknown_keys(instance, error.schema)
    match = _QUOTED_LIST.search(error.message)
    if match:
        try:
            names = ast.literal_eval(f"({match.group(1)},)")
            return [str(n) for n in names]
        except (ValueError, SyntaxError):
            pass
    return []


def _unknown_keys(instance: dict, schema: dict) -> list[str]:
    """The keys of ``instance`` that ``schema``'s ``properties`` do not name and none of its
    ``patternProperties`` (ECMA-262) matches."""
    props = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    return [k for k in instance if k not in props and not any(ecma_search(p, k) for p in patterns)]


def _closest(error: Any, prefix: tuple = ()) -> str:
    """The failing rule of the alternative that fits the value: an alternative whose own
    ``type`` the value has (an optional value's real schema, not its ``null`` branch)."""
    from jsonschema.exceptions import best_match

    if not error.context:
        return ""
    branches: dict[Any, list] = {}
    for sub in error.context:
        branch = sub.relative_schema_path[0] if sub.relative_schema_path else None
        branches.setdefault(branch, []).append(sub)
    fitting = [errors for errors in branches.values()
               if not any(e.validator == "type" and not e.relative_path for e in errors)]
    candidates = fitting[0] if fitting else next(iter(branches.values()))
    best = candidates[0] if not fitting else best_match(candidates)
    if best is None:  # pragma: no cover
        return ""
    messages = _describe(best, prefix)
    return f" (closest: {messages[0]})" if messages else ""
