"""Check function calls against tool specs: ``validate_calls(calls, tools) -> list[str]``.

Every call is checked (not only the first): the function exists, required arguments are present,
no unknown arguments are given, and every argument satisfies its JSON Schema (types, enums,
bounds, string patterns and lengths, array items, nested objects, and the conditional rules of the
schema itself: ``dependentRequired``, ``if``/``then``/``else``, ``oneOf``/``anyOf``/``allOf``).

The checking is done by jsonschema's Draft 2020-12 validator, compiled once per tool and cached,
with two deliberate changes:

- objects are closed by default: an object schema that has ``properties`` and says nothing about
  ``additionalProperties`` gets ``additionalProperties: false`` (or ``unevaluatedProperties:
  false`` when it also uses ``allOf``/``anyOf``/``oneOf``/``if``, so arguments declared in those
  branches still count). A spec that sets ``additionalProperties`` keeps its own rule;
- ``integer`` is strict: ``1.5``, ``3.0`` and ``true`` are rejected (JSON Schema would accept
  ``3.0``; a training example should not teach a model to write it). ``number`` accepts integers
  and rejects booleans; ``boolean`` rejects the string ``"true"``.

String ``format`` (``date``, ``date-time``, ``email``, ``ipv4``, ...) is checked where the
checker needs no extra package.

Each error message reads ``call <i> (<function>): <problem>``, ``<i>`` counting from 0 as the list
does, e.g. ``call 1 (get_weather): argument 'days': 1.5 is not of type 'integer'``.

Tool specs in any dialect of ``dataflow.tools.spec`` are normalised first; an invalid tool spec
raises ``ToolSpecError`` naming the tool (the calls cannot be judged against it).
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterable

from ..core.errors import ToolSpecError
from .spec import normalize_tools

_TOOLSET_CACHE: "OrderedDict[str, ToolSet]" = OrderedDict()
_TOOL_CACHE: "OrderedDict[str, CompiledTool]" = OrderedDict()
_IDENTITY_CACHE: "OrderedDict[tuple, tuple]" = OrderedDict()
_CACHE_SIZE = 4096
_MAX_VALUE_CHARS = 60


@dataclass(frozen=True)
class CompiledTool:
    """A normalised tool spec with its compiled validator."""

    name: str
    spec: dict
    schema: dict
    validator: Any
    fast: Any = None
    #: (root validator with property schemas replaced by ``true``, {name: (fast, validator)}):
    #: an invalid call is re-checked only where it failed, which is several times cheaper
    split: Any = None

    def errors(self, arguments: dict) -> list[str]:
        """Problems of ``arguments`` (no call prefix); empty when valid."""
        if self.fast is not None and self.fast(arguments):
            return []
        messages: list[str] = []
        if self.split is None:
            errors = ((error, ()) for error in self.validator.iter_errors(arguments))
        else:
            errors = self._split_errors(arguments)
        for error, prefix in errors:
            for message in _describe(error, prefix):
                if message not in messages:
                    messages.append(message)
        return messages

    def _split_errors(self, arguments: Any) -> Any:
        root, props = self.split
        if isinstance(arguments, dict):
            for name, (fast, validator) in props.items():
                if name in arguments and not fast(arguments[name]):
                    for error in validator.iter_errors(arguments[name]):
                        yield error, (name,)
        for error in root.iter_errors(arguments):
            yield error, ()


class ToolSet:
    """Compiled tools of one tool list, by name. Build with ``compile_tools``."""

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


def validate_calls(calls: Any, tools: Any, *, allow_dots: bool = False) -> list[str]:
    """Check ``calls`` against ``tools``; an empty list means every call is valid.

    ``calls``: a list of ``{"name", "arguments"}`` (``arguments`` a dict or a JSON string), of
    OpenAI tool calls ``{"function": {"name", "arguments"}}``, or of ``{"function_name",
    "arguments"}``; or a JSON string of such a list. ``[]`` (no call) is valid.
    ``tools``: tool specs in any supported dialect (see ``dataflow.tools.spec``), a JSON string of
    them, or a ``ToolSet``. Raises ``ToolSpecError`` when a tool spec itself is invalid.
    """
    toolset = tools if isinstance(tools, ToolSet) else compile_tools(tools, allow_dots=allow_dots)
    return toolset.validate(calls)


def compile_tools(tools: Any, *, allow_dots: bool = False) -> ToolSet:
    """Normalise and compile a tool list (cached by content). A list/dict object is also
    remembered by identity, so a loop validating against the same list pays no hashing; after
    changing a tool list *in place*, pass a new list (or call ``clear_cache()``)."""
    ident = None
    if not isinstance(tools, str):
        ident = (id(tools), allow_dots)
        hit = _IDENTITY_CACHE.get(ident)
        if hit is not None and hit[0] is tools and hit[1] == _shallow_ids(tools):
            return hit[2]
    key = _content_key(tools, allow_dots)
    toolset = _TOOLSET_CACHE.get(key)
    if toolset is not None:
        _TOOLSET_CACHE.move_to_end(key)
    else:
        compiled: dict[str, CompiledTool] = {}
        for spec in normalize_tools(tools, allow_dots=allow_dots):
            tool = compile_tool(spec)
            compiled[tool.name] = tool
        toolset = ToolSet(compiled)
        _remember(_TOOLSET_CACHE, key, toolset)
    if ident is not None:
        _remember(_IDENTITY_CACHE, ident, (tools, _shallow_ids(tools), toolset), size=256)
    return toolset


def clear_cache() -> None:
    """Forget every compiled tool list."""
    _TOOLSET_CACHE.clear()
    _TOOL_CACHE.clear()
    _IDENTITY_CACHE.clear()


def _shallow_ids(tools: Any) -> tuple:
    if isinstance(tools, (list, tuple)):
        return tuple(map(id, tools))
    if isinstance(tools, dict):
        return tuple(map(id, tools.values()))
    return ()


def compile_tool(spec: dict) -> CompiledTool:
    """Compile one *normalised* OpenAI tool spec (cached by content)."""
    key = hashlib.sha1(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()
    cached = _TOOL_CACHE.get(key)
    if cached is not None:
        return cached
    name = spec["function"]["name"]
    schema = close_objects(spec["function"]["parameters"])
    validator_cls = _validator_class()
    try:
        validator = validator_cls(schema, format_checker=validator_cls.FORMAT_CHECKER)
    except Exception as exc:  # pragma: no cover - normalize_tool already checked the schema
        raise ToolSpecError(name, f"cannot compile parameters: {exc}") from None
    from ._fastcheck import compile_fast

    fmt = validator_cls.FORMAT_CHECKER
    fast = compile_fast(schema, fmt)
    split = None
    props = schema.get("properties")
    if fast is not None and isinstance(props, dict) and "$ref" not in json.dumps(schema):
        parts = {k: (compile_fast(v, fmt), validator_cls(v, format_checker=fmt)) for k, v in props.items()}
        if all(f is not None for f, _ in parts.values()):
            root = validator_cls({**schema, "properties": {k: True for k in props}}, format_checker=fmt)
            split = (root, parts)
    tool = CompiledTool(name, spec, schema, validator, fast, split)
    _remember(_TOOL_CACHE, key, tool)
    return tool


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


def parse_call(call: Any) -> tuple[str | None, dict | None, str | None]:
    """``(name, arguments, problem)`` of one call in any accepted shape."""
    if isinstance(call, str):
        try:
            call = json.loads(call)
        except json.JSONDecodeError:
            return None, None, "not a call object (a string that is not JSON)"
    if not isinstance(call, dict):
        return None, None, f"not a call object (got {type(call).__name__})"
    body = call["function"] if isinstance(call.get("function"), dict) else call
    name = body.get("name", body.get("function_name"))
    if not isinstance(name, str) or not name:
        return None, None, "has no function name"
    arguments = body.get("arguments", body.get("parameters", {}))
    if arguments is None:
        arguments = {}
    if isinstance(arguments, str):
        text = arguments.strip()
        if not text:
            arguments = {}
        else:
            try:
                arguments = json.loads(text)
            except json.JSONDecodeError as exc:
                return name, None, f"arguments are not valid JSON ({exc.msg} at position {exc.pos})"
    if not isinstance(arguments, dict):
        return name, None, f"arguments must be a JSON object, got {_json_type(arguments)}"
    return name, arguments, None


# -- internals ----------------------------------------------------------------------------------
_VALIDATOR_CLASS: Any = None


def _validator_class() -> Any:
    """Draft 2020-12 with a strict ``integer`` (no bools, no floats)."""
    global _VALIDATOR_CLASS
    if _VALIDATOR_CLASS is None:
        from jsonschema import Draft202012Validator, validators

        def is_integer(checker: Any, instance: Any) -> bool:
            return isinstance(instance, int) and not isinstance(instance, bool)

        def is_number(checker: Any, instance: Any) -> bool:
            return isinstance(instance, (int, float)) and not isinstance(instance, bool)

        type_checker = Draft202012Validator.TYPE_CHECKER.redefine_many(
            {"integer": is_integer, "number": is_number}
        )
        _VALIDATOR_CLASS = validators.extend(Draft202012Validator, type_checker=type_checker)
    return _VALIDATOR_CLASS


def _content_key(tools: Any, allow_dots: bool) -> Any:
    if isinstance(tools, str):
        return (allow_dots, tools)  # str hashing is fast and cached on the object
    text = json.dumps(tools, sort_keys=True, default=str, separators=(",", ":"))
    return (allow_dots, hashlib.sha1(text.encode()).hexdigest())


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
            calls = json.loads(text) if text else []
        except json.JSONDecodeError as exc:
            return [], f"calls: not valid JSON ({exc.msg} at position {exc.pos})"
    if isinstance(calls, dict):
        return [calls], None
    if not isinstance(calls, (list, tuple)):
        return [], f"calls: expected a list of calls, got {_json_type(calls)}"
    return list(calls), None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


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
    """Human messages for one jsonschema error: argument path + the rule broken."""
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
        return [f"missing required argument {_join(path, str(m))!r}{_condition(error)}" for m in missing]
    if keyword in ("additionalProperties", "unevaluatedProperties") and value is False:
        extras = _unexpected(error)
        return [f"unknown argument {_join(path, str(k))!r}" for k in extras] or [f"{_where(path)}{error.message}"]
    if keyword == "dependentRequired":
        out = []
        for prop, needs in value.items():
            if prop in instance:
                for need in needs:
                    if need not in instance:
                        out.append(
                            f"argument {_join(path, prop)!r} requires argument {_join(path, need)!r} (dependentRequired)"
                        )
        return out
    if keyword == "type":
        types = value if isinstance(value, list) else [value]
        wanted = " or ".join(repr(t) for t in types)
        return [f"{_where(path)}{_short(instance)} is not of type {wanted}"]
    if keyword == "enum":
        return [f"{_where(path)}{_short(instance)} is not one of {_short(value)}"]
    if keyword == "const":
        return [f"{_where(path)}{_short(instance)} must equal {_short(value)}"]
    if keyword in ("oneOf", "anyOf"):
        if keyword == "oneOf" and not error.context:
            return [f"{_where(path)}matches more than one of the oneOf alternatives (exactly one must match)"]
        detail = _closest(error, prefix)
        return [f"{_where(path)}matches none of the {keyword} alternatives{detail}"]
    if keyword == "not":
        return [f"{_where(path)}matches a schema it must not match ('not')"]
    if keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"):
        words = {
            "minimum": "is less than the minimum of", "maximum": "is greater than the maximum of",
            "exclusiveMinimum": "must be greater than", "exclusiveMaximum": "must be less than",
            "multipleOf": "is not a multiple of",
        }
        return [f"{_where(path)}{_short(instance)} {words[keyword]} {value} ({keyword})"]
    if keyword in ("minLength", "maxLength"):
        rel = "shorter than" if keyword == "minLength" else "longer than"
        return [f"{_where(path)}{_short(instance)} is {rel} {value} characters ({keyword})"]
    if keyword in ("minItems", "maxItems"):
        rel = "fewer than" if keyword == "minItems" else "more than"
        return [f"{_where(path)}has {rel} {value} items ({keyword}; got {len(instance)})"]
    if keyword == "pattern":
        return [f"{_where(path)}{_short(instance)} does not match the pattern {value!r}"]
    if keyword == "format":
        return [f"{_where(path)}{_short(instance)} is not a valid {value!r} (format)"]
    if keyword == "uniqueItems":
        return [f"{_where(path)}has repeated items (uniqueItems)"]
    message = error.message
    if len(message) > 200:
        message = message[:197] + "..."
    return [f"{_where(path)}{message} ({keyword})"]


def _unexpected(error: Any) -> list[str]:
    instance = error.instance
    if not isinstance(instance, dict):
        return []
    if error.validator == "additionalProperties":
        schema = error.schema
        props = schema.get("properties", {})
        patterns = [re.compile(p) for p in schema.get("patternProperties", {})]
        return [k for k in instance if k not in props and not any(p.search(k) for p in patterns)]
    match = _QUOTED_LIST.search(error.message)
    if match:
        try:
            names = ast.literal_eval(f"({match.group(1)},)")
            return [str(n) for n in names]
        except (ValueError, SyntaxError):
            pass
    return []


def _closest(error: Any, prefix: tuple = ()) -> str:
    from jsonschema.exceptions import best_match

    if not error.context:
        return ""
    best = best_match(error.context)
    if best is None:  # pragma: no cover
        return ""
    messages = _describe(best, prefix)
    return f" (closest: {messages[0]})" if messages else ""
