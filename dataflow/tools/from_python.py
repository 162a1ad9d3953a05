"""Derive OpenAI tool specs from Python functions: type hints + Google-style docstrings.

Like transformers' ``get_json_schema`` (without depending on transformers)::

    def get_weather(city: str, days: Annotated[int, {"minimum": 1}] = 1,
                    unit: Literal["celsius", "fahrenheit"] = "celsius") -> dict:
        \"\"\"Get the forecast for a city.

        Args:
            city: The city name.
            days: How many days to forecast.
            unit: Temperature unit.
        \"\"\"

- the first docstring paragraph is the description; ``Args:`` gives each argument's description;
- ``str``/``int``/``float``/``bool``/``list[T]``/``tuple[...]``/``dict[str, T]``/``None``;
  ``Literal[...]`` -> ``enum``; ``Optional[T]`` / ``T | None`` and arguments with a default are
  not required;
- ``Annotated[T, {...}]`` merges the dict into the argument's schema (bounds, patterns, formats),
  and ``annotated_types``-style metadata (``Ge``, ``Le``, ``Gt``, ``Lt``, ``MinLen``, ``MaxLen``)
  is understood too;
- a function attribute ``tool_schema_extra`` (a dict) is merged into ``parameters`` for rules
  that span arguments (``dependentRequired``, ``if``/``then``).

``load_module(path)`` imports a module file, or every ``*.py`` of a folder, and
``tools_from_module(path)`` returns ``{name: function}`` of its public functions (those listed in
``__all__`` when it exists, else every function defined in the file whose name has no leading
underscore).
"""

from __future__ import annotations

import importlib.util
import inspect
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, Callable

from ..core.errors import ToolSpecError

_ARGS_HEADER = re.compile(r"^\s*(Args|Arguments|Parameters)\s*:\s*$", re.IGNORECASE)
_SECTION = re.compile(r"^\s*(Returns?|Raises|Yields|Examples?|Notes?|Attributes)\s*:\s*$", re.IGNORECASE)
_ARG_LINE = re.compile(r"^(\s*)(\*{0,2}\w+)\s*(?:\(([^)]*)\))?\s*:\s*(.*)$")


def function_to_tool(fn: Callable) -> dict:
    """The OpenAI tool spec of ``fn``. Raises ``ToolSpecError`` for an argument without a type
    hint or with a type that has no JSON equivalent."""
    name = fn.__name__
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as exc:
        raise ToolSpecError(name, f"cannot read type hints: {exc}") from None
    description, arg_docs = parse_google_docstring(inspect.getdoc(fn) or "")
    properties: dict[str, Any] = {}
    required: list[str] = []
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if param.name not in hints:
            raise ToolSpecError(name, f"argument {param.name!r} has no type hint")
        schema, optional = type_to_schema(name, param.name, hints[param.name])
        if param.name in arg_docs:
            schema["description"] = arg_docs[param.name]
        if param.default is not inspect.Parameter.empty:
            optional = True
            if _json_native(param.default) and param.default is not None:
                schema["default"] = param.default
        properties[param.name] = schema
        if not optional:
            required.append(param.name)
    parameters: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        parameters["required"] = required
    extra = getattr(fn, "tool_schema_extra", None)
    if isinstance(extra, dict):
        parameters.update(extra)
    from .spec import check_json_schema

    check_json_schema(name, parameters)
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


def parse_google_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """``(description, {arg: description})`` of a Google-style docstring."""
    lines = doc.expandtabs().splitlines()
    desc_lines: list[str] = []
    args: dict[str, str] = {}
    i = 0
    while i < len(lines) and not _ARGS_HEADER.match(lines[i]) and not _SECTION.match(lines[i]):
        desc_lines.append(lines[i])
        i += 1
    description = " ".join(" ".join(desc_lines).split())
    current: str | None = None
    base_indent: int | None = None
    if i < len(lines) and _ARGS_HEADER.match(lines[i]):
        i += 1
        while i < len(lines):
            line = lines[i]
            if _SECTION.match(line) or _ARGS_HEADER.match(line):
                break
            if not line.strip():
                i += 1
                continue
            indent = len(line) - len(line.lstrip())
            match = _ARG_LINE.match(line)
            if match and (base_indent is None or indent <= base_indent):
                base_indent = indent
                current = match.group(2).lstrip("*")
                args[current] = match.group(4).strip()
            elif current is not None:
                args[current] = (args[current] + " " + line.strip()).strip()
            i += 1
    return description, args


def type_to_schema(tool: str, arg: str, hint: Any) -> tuple[dict, bool]:
    """``(schema, optional)`` for one type hint."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Annotated:
        schema, optional = type_to_schema(tool, arg, args[0])
        for meta in args[1:]:
            schema.update(_metadata_schema(meta))
        return schema, optional
    if hint is Any or hint is inspect.Parameter.empty:
        return {}, False
    if hint is type(None) or hint is None:
        return {"type": "null"}, True
    if origin in (typing.Union, getattr(types, "UnionType", typing.Union)):
        members = [a for a in args if a is not type(None)]
        optional = len(members) < len(args)
        if len(members) == 1:
            schema, _ = type_to_schema(tool, arg, members[0])
            return schema, optional
        subs = [type_to_schema(tool, arg, m)[0] for m in members]
        if all(set(s) == {"type"} for s in subs):
            return {"type": [s["type"] for s in subs]}, optional
        return {"anyOf": subs}, optional
    if origin is typing.Literal:
        values = list(args)
        schema: dict[str, Any] = {"enum": values}
        kinds = {_json_kind(v) for v in values}
        if len(kinds) == 1 and None not in kinds:
            schema = {"type": kinds.pop(), "enum": values}
        return schema, False
    simple = {str: "string", int: "integer", float: "number", bool: "boolean", dict: "object", list: "array", tuple: "array"}
    if hint in simple:
        return {"type": simple[hint]}, False
    if origin in (list, set, frozenset, typing.List, typing.Set) or origin is getattr(typing, "Sequence", None):
        schema = {"type": "array"}
        if args:
            schema["items"] = type_to_schema(tool, arg, args[0])[0]
        return schema, False
    if origin is tuple:
        schema = {"type": "array"}
        if args and not (len(args) == 2 and args[1] is Ellipsis):
            schema["prefixItems"] = [type_to_schema(tool, arg, a)[0] for a in args]
            schema["minItems"] = schema["maxItems"] = len(args)
        elif args:
            schema["items"] = type_to_schema(tool, arg, args[0])[0]
        return schema, False
    if origin is dict:
        schema = {"type": "object"}
        if len(args) == 2 and args[1] is not Any:
            schema["additionalProperties"] = type_to_schema(tool, arg, args[1])[0]
        return schema, False
    raise ToolSpecError(tool, f"argument {arg!r}: type {hint!r} has no JSON Schema equivalent")


def _metadata_schema(meta: Any) -> dict:
    if isinstance(meta, dict):
        return dict(meta)
    if isinstance(meta, str):
        return {"description": meta}
    out: dict[str, Any] = {}
    mapping = {"ge": "minimum", "le": "maximum", "gt": "exclusiveMinimum", "lt": "exclusiveMaximum",
               "min_length": "minLength", "max_length": "maxLength", "pattern": "pattern"}
    for attr, key in mapping.items():
        value = getattr(meta, attr, None)
        if value is not None:
            out[key] = value
    return out


def _json_kind(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return "string"


def _json_native(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool, type(None), list, dict))


# -- loading user modules -----------------------------------------------------------------------
def module_files(path: str | Path) -> list[Path]:
    """The ``.py`` files of a module file or folder (sorted; ``_*.py`` skipped in a folder)."""
    p = Path(path)
    if p.is_file():
        return [p]
    if p.is_dir():
        return sorted(f for f in p.glob("*.py") if not f.name.startswith("_"))
    raise ToolSpecError(str(path), "the tools module is neither a .py file nor a folder")


def load_module(path: str | Path) -> types.ModuleType:
    """Import one ``.py`` file under a private module name."""
    p = Path(path).resolve()
    mod_name = f"_dataflow_tools_{abs(hash(str(p)))}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    spec = importlib.util.spec_from_file_location(mod_name, p)
    if spec is None or spec.loader is None:
        raise ToolSpecError(str(p), "cannot import this file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    previous = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # leave no __pycache__ in the user's folder
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(mod_name, None)
        raise ToolSpecError(str(p), f"importing the tools module failed: {type(exc).__name__}: {exc}") from None
    finally:
        sys.dont_write_bytecode = previous
    return module


def functions_of(module: types.ModuleType) -> dict[str, Callable]:
    names = getattr(module, "__all__", None)
    out: dict[str, Callable] = {}
    for name, obj in vars(module).items():
        if not inspect.isfunction(obj):
            continue
        if names is not None:
            if name not in names:
                continue
        elif name.startswith("_") or obj.__module__ != module.__name__:
            continue
        out[name] = obj
    return out


def tools_from_module(path: str | Path) -> dict[str, Callable]:
    """``{name: function}`` of a module file or folder of modules."""
    out: dict[str, Callable] = {}
    for file in module_files(path):
        for name, fn in functions_of(load_module(file)).items():
            if name in out:
                raise ToolSpecError(name, f"defined twice in {path}")
            out[name] = fn
    return out


def tool_specs_from_module(path: str | Path) -> list[dict]:
    """OpenAI tool specs of every public function of a module file or folder."""
    return [function_to_tool(fn) for fn in tools_from_module(path).values()]
