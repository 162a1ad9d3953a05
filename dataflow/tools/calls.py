"""The one reading of function calls, their arguments and their results.

Every module that takes a call from somewhere (a generator's reply, a dataset row, an OpenAI
``tool_calls`` entry, a Hermes ``<tool_call>`` block) reads it here, so they all agree:

- ``read_arguments(raw)``: ``None`` and ``""`` (or whitespace) mean ``{}``; a JSON string is
  decoded (also one that was encoded twice); the result must be an object. ``NaN`` and
  ``Infinity`` are not JSON: as text (``{"t": NaN}``) or as a float they are a problem, at the
  argument path that holds them.
- ``parse_call(call) -> (name, arguments, problem)``: any accepted call shape (``{"name",
  "arguments"}``, OpenAI ``{"function": {...}}``, ``{"function_name", "arguments"}``,
  ``"parameters"`` instead of ``"arguments"``, or a JSON string of one).
- ``read_call_list(value)``: a list (or JSON string) of calls -> ``[Call]``; raises ``CallError``
  naming the call. ``read_calls(value)`` is the same as ``[{"name", "arguments": dict}]`` (the
  shape rows store).
- ``Call(name, arguments, id)``: a call once read. Everything that takes calls (``parse_call``,
  ``call_key``, ``repeated_calls``, ``validate_calls``, ``read_call_list``) takes a ``Call`` as it
  is, without reading its arguments again; ``Call.to_openai()`` is its OpenAI ``tool_calls``
  entry (arguments as JSON text), ``Call.as_dict()`` its row shape.
- ``OpenAICall``: an OpenAI ``tool_calls`` entry (a dict) carrying its ``Call``; ``to_openai()``
  makes one and ``read_chat_calls(messages)`` reads a conversation's calls once into them, so the
  structure check, the quality checks, the converters and every writer after it read nothing
  again.
- ``pair_results(messages)``: which ``tool`` message answers which call. By ``tool_call_id``;
  by order only when the ids are absent (``Pairing.by_order`` says so); a result that answers no
  call is an orphan (a problem, never a result with an empty name).
- ``dumps_json(value)``: JSON text for writers; refuses NaN/Infinity instead of writing them.
- ``call_key(call)``: the canonical key of a call (its name and arguments as read here), equal for
  two calls that read the same (``spec.tools_key`` is the same for a tool list).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import DataFlowError

__all__ = [
    "Call", "OpenAICall", "CallError", "read_call", "read_call_list", "read_chat_calls", "call_name", "call_id_of",
    "read_arguments", "arguments_or_raise", "parse_call", "read_calls", "loads_strict", "nonfinite_path",
    "dumps_json", "dumps_arguments", "call_key", "Pairing", "pair_results",
]


class CallError(DataFlowError, ValueError):
    """A call (or a conversation's calls and results) that cannot be read."""


@dataclass(frozen=True)
class Call:
    """One function call as the one reader read it: ``name``, ``arguments`` (a JSON object,
    decoded, every number finite) and the OpenAI ``tool_calls`` ``id`` it came with (or ``None``).

    Build one with ``read_call_list`` / ``read_call`` (which read and check), or from a reply
    model whose ``arguments`` field was read by ``arguments_or_raise``; the readers and checkers
    of this package take it as it is, so a call is read once from the reply on."""

    name: str
    arguments: dict
    id: str | None = None

    def as_dict(self) -> dict:
        """``{"name", "arguments"}``: the shape of a row's ``answers``."""
        return {"name": self.name, "arguments": self.arguments}

    def to_openai(self, id: str | None = None) -> "OpenAICall":
        """The OpenAI ``tool_calls`` entry: ``{"id", "type": "function", "function": {"name",
        "arguments": JSON text}}`` (``id`` overrides the call's own), carrying this call (see
        ``OpenAICall``). Raises ``ValueError`` for NaN/Infinity (``dumps_json``)."""
        call = self if id is None or id == self.id else Call(self.name, self.arguments, id)
        entry = {"id": call.id, "type": "function",
                 "function": {"name": call.name, "arguments": dumps_arguments(call.arguments)}}
        return OpenAICall(entry, call)


class OpenAICall(dict):
    """An OpenAI ``tool_calls`` entry that carries the ``Call`` read from it (or written into
    it): to every writer and to JSON a plain dict; to the one reader (``parse_call``) the call it
    carries, so its arguments text is not decoded again. The carried call holds only while the
    entry's ``function`` is the very object, with the very ``arguments`` value and the name, it
    was made with; an entry changed in place is read again like any dict.

    Made by ``Call.to_openai()`` (messages a generator writes) and ``read_chat_calls`` (messages
    read from a file: each call read once, then checked, converted and exported as it is)."""

    def __init__(self, entry: dict, call: Call):
        super().__init__(entry)
        function = entry.get("function")
        self.call = call
        self._function = function
        self._arguments = function.get("arguments") if isinstance(function, dict) else None

    def carried(self) -> Call | None:
        """The call this entry carries, or ``None`` when the entry was changed since."""
        function = self.get("function")
        if (function is self._function and isinstance(function, dict) and function.get("arguments") is self._arguments
                and function.get("name") == self.call.name):
            return self.call
        return None


def read_chat_calls(messages: Any) -> Any:
    """OpenAI chat ``messages`` with every assistant ``tool_calls`` entry that reads (``parse_call``)
    replaced by an ``OpenAICall`` carrying what was read: the same JSON, each call read once for
    every check, conversion and writer after it. Messages holding calls are shallow copies; an
    unreadable call stays as it was, for the checkers to report; anything that is not a list of
    messages is returned as it is."""
    if not isinstance(messages, list):
        return messages
    out = []
    for message in messages:
        calls = message.get("tool_calls") if isinstance(message, dict) else None
        if isinstance(calls, list) and calls:
            entries = []
            for call in calls:
                if isinstance(call, dict) and type(call) is not OpenAICall:
                    name, arguments, problem = parse_call(call)
                    if not problem:
                        call = OpenAICall(call, Call(name, arguments, call_id_of(call)))  # type: ignore[arg-type]
                entries.append(call)
            message = {**message, "tool_calls": entries}
        out.append(message)
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (JSON has no NaN or Infinity)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400: JSON text that Python reads as infinity
        raise ValueError(f"{text} is not a JSON number (out of range)")
    return value


def loads_strict(text: str) -> Any:
    """``json.loads`` that refuses ``NaN``/``Infinity``/``-Infinity`` (Python's accepts them),
    and numbers too large for a float (``1e400``, which it reads as infinity)."""
    return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)


def nonfinite_path(value: Any, path: str = "") -> str | None:
    """The path (``a.b[0]``) of the first NaN or infinite float inside ``value``, else ``None``
    (``""`` when ``value`` itself is one)."""
    kind = type(value)
    if kind is float:
        return path if (value != value or value in (math.inf, -math.inf)) else None
    if kind is dict:
        for key, item in value.items():
            t = type(item)
            if t is str or t is int or t is bool or item is None:
                continue
            found = nonfinite_path(item, f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
    elif kind is list or kind is tuple:
        for index, item in enumerate(value):
            found = nonfinite_path(item, f"{path}[{index}]")
            if found is not None:
                return found
    elif isinstance(value, float):  # float subclasses (numpy.float64)
        return path if not math.isfinite(value) else None
    return None


def read_arguments(raw: Any) -> tuple[dict | None, str | None]:
    """``(arguments, problem)``: the one reading of a call's arguments (see the module doc)."""
    if raw is None:
        return {}, None
    if isinstance(raw, str):
        text = raw.strip()
        if not text:
            return {}, None
        try:  # NaN/Infinity are decoded here so that the check below names their argument
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            return None, f"arguments are not valid JSON ({exc.msg} at position {exc.pos})"
        if isinstance(raw, str) and raw.strip().startswith("{"):  # encoded twice
            try:
                raw = json.loads(raw)
            except ValueError:
                pass
    if not isinstance(raw, dict):
        return None, f"arguments must be a JSON object, got {json_type(raw)}"
    where = nonfinite_path(raw)
    if where is not None:
        return None, f"argument {where!r}: {_short_float(raw, where)} is not a JSON number (NaN and Infinity are invalid argument values)"
    return raw, None


def _short_float(arguments: dict, where: str) -> str:
    value: Any = arguments
    for part in _path_parts(where):
        value = value[part]
    return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")


def _path_parts(path: str) -> list:
    parts: list = []
    for piece in path.replace("[", ".[").split("."):
        if piece.startswith("["):
            parts.append(int(piece[1:-1]))
        elif piece:
            parts.append(piece)
    return parts


def arguments_or_raise(raw: Any) -> dict:
    """``read_arguments`` for a pydantic ``field_validator(mode="before")``: the arguments, or
    ``ValueError`` with the problem (so a reply model reads arguments like everything else)."""
    arguments, problem = read_arguments(raw)
    if problem:
        raise ValueError(problem)
    return arguments  # type: ignore[return-value]


def parse_call(call: Any) -> tuple[str | None, dict | None, str | None]:
    """``(name, arguments, problem)`` of one call in any accepted shape (a ``Call`` is read
    already: its name and arguments as they are)."""
    if type(call) is Call:
        return call.name, call.arguments, None
    if type(call) is OpenAICall:
        carried = call.carried()
        if carried is not None:
            return carried.name, carried.arguments, None
    if isinstance(call, str):
        try:
            call = loads_strict(call)
        except ValueError:
            return None, None, "not a call object (a string that is not JSON)"
    if not isinstance(call, dict):
        return None, None, f"not a call object (got {type(call).__name__})"
    function = call.get("function")
    body = function if isinstance(function, dict) else call
    name = body.get("name")
    if name is None:
        name = body.get("function_name")
    if not isinstance(name, str) or not name:
        return None, None, "has no function name"
    if "arguments" in body:
        raw = body["arguments"]
    else:
        raw = body.get("parameters")
    arguments, problem = read_arguments(raw)
    return name, arguments, problem


def read_call(call: Any) -> Call:
    """One call in any accepted shape -> ``Call`` (with its OpenAI ``id`` when it has one);
    raises ``CallError`` with the problem."""
    if type(call) is Call:
        return call
    name, arguments, problem = parse_call(call)
    if problem:
        raise CallError(problem)
    return Call(name, arguments, call_id_of(call))  # type: ignore[arg-type]


def call_id_of(call: Any) -> str | None:
    """The OpenAI ``id`` of a call, or ``None`` when it has none (or an empty or non-text one)."""
    given = call.get("id") if isinstance(call, dict) else None
    return given if isinstance(given, str) and given else None


def call_name(call: Any) -> str | None:
    """The function name of one call in any accepted shape, without reading its arguments
    (``None`` when it has none): what pairing results with calls needs."""
    if type(call) is Call:
        return call.name
    if isinstance(call, str):
        return parse_call(call)[0]
    if not isinstance(call, dict):
        return None
    function = call.get("function")
    body = function if isinstance(function, dict) else call
    name = body.get("name")
    if name is None:
        name = body.get("function_name")
    return name if isinstance(name, str) and name else None


def read_calls(value: Any) -> list[dict]:
    """Calls (a list, one call, or a JSON string of either; ``None``/``""`` is no call) ->
    ``[{"name", "arguments": dict}]``. Raises ``CallError`` for the first unreadable call."""
    return [call.as_dict() for call in read_call_list(value)]


def read_call_list(value: Any) -> list[Call]:
    """``read_calls`` as ``Call`` objects (ids kept): the one reading of a list of calls."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return []
        try:
            value = loads_strict(text)
        except ValueError as exc:
            raise CallError(f"calls are not valid JSON: {exc}") from None
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise CallError(f"calls: expected a list of calls, got {json_type(value)}")
    out = []
    for index, call in enumerate(value):
        name, arguments, problem = parse_call(call)  # a Call or a carrying OpenAICall: as read
        if problem:
            label = f"call {index} ({name})" if name else f"call {index}"
            raise CallError(f"{label}: {problem}")
        out.append(call if type(call) is Call else Call(name, arguments, call_id_of(call)))  # type: ignore[arg-type]
    return out


def dumps_json(value: Any, **kwargs: Any) -> str:
    """JSON text (non-ASCII kept) for any writer; raises ``ValueError`` on NaN/Infinity."""
    kwargs.setdefault("ensure_ascii", False)
    return json.dumps(value, allow_nan=False, **kwargs)


def dumps_arguments(arguments: dict) -> str:
    """A call's arguments as the JSON string OpenAI's ``tool_calls`` carry."""
    return dumps_json(arguments)


def call_key(call: Any) -> str:
    """The canonical key of one call in any accepted shape: ``{"arguments":...,"name":...}`` as
    compact JSON with sorted keys, of the name and arguments ``parse_call`` reads. Two calls that
    read the same (arguments as an object or a JSON string, in any key order, ``""`` or ``{}``,
    ``2`` or ``2.0``) have one key; raises ``CallError`` for a call that cannot be read."""
    read = read_call(call)
    return dumps_json({"name": read.name, "arguments": _whole_numbers(read.arguments)}, sort_keys=True,
                      separators=(",", ":"))


def _whole_numbers(value: Any) -> Any:
    """``value`` with every integral float as an int (``2.0`` -> ``2``): one JSON number however written."""
    if type(value) is float and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _whole_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(item) for item in value]
    return value


def repeated_calls(calls: Any) -> list[str]:
    """Where a list of calls makes the same call twice (one ``call_key``: same name, same
    arguments however written): ``["call 1 repeats call 0 (prime_factors with the same
    arguments)"]``, ``[]`` when every call differs. One request needs one call, so a repeat is
    never right in a single answer; unreadable calls are left to ``validate_calls``."""
    first: dict[str, int] = {}
    problems = []
    for index, call in enumerate(calls if isinstance(calls, (list, tuple)) else []):
        try:
            key = call_key(call)
        except CallError:
            continue
        if key in first:
            name = parse_call(call)[0]
            problems.append(f"call {index} repeats call {first[key]} ({name} with the same arguments)")
        else:
            first[key] = index
    return problems


@dataclass
class Pairing:
    """Which call each ``tool`` message answers.

    ``results``: ``{message index: (call id or None, function name)}``; ``orphans``: indices of
    tool messages that answer no call; ``by_order``: some result had no ``tool_call_id`` and was
    paired with the oldest unanswered call of its turn; ``problems``: one line per orphan."""

    results: dict[int, tuple[str | None, str]] = field(default_factory=dict)
    orphans: list[int] = field(default_factory=list)
    by_order: bool = False
    problems: list[str] = field(default_factory=list)


def pair_results(messages: list[dict]) -> Pairing:
    """Pair each ``tool`` message of OpenAI chat ``messages`` with the call it answers."""
    pairing = Pairing()
    open_calls: list[tuple[str | None, str]] = []  # unanswered calls of the latest assistant turn
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        if role == "assistant":
            open_calls = []
            for call in message.get("tool_calls") or []:
                name = call_name(call)  # pairing needs names only: the arguments are not read here
                open_calls.append((call_id_of(call), name or ""))
        elif role == "user":
            open_calls = []
        elif role == "tool":
            wanted = message.get("tool_call_id")
            match = None
            if isinstance(wanted, str) and wanted:
                match = next((c for c in open_calls if c[0] == wanted), None)
            else:
                named = message.get("name")
                match = next((c for c in open_calls if not named or c[1] == named), None)
                if match is not None:
                    pairing.by_order = True
            if match is None:
                pairing.orphans.append(index)
                detail = f"id {wanted!r}" if wanted else "no tool_call_id"
                pairing.problems.append(f"orphan_result: message {index} (tool, {detail}) answers no earlier call")
                continue
            open_calls.remove(match)
            pairing.results[index] = match
    return pairing


def json_type(value: Any) -> str:
    """The JSON name of a value's type."""
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
