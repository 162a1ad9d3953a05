"""Converters between function-calling data formats.

Internal single-turn row: ``{"query": str, "answers": [{"name", "arguments": dict}], "tools":
[OpenAI tool spec]}`` (``id`` kept when present); multi-turn: OpenAI chat ``messages`` + ``tools``.
Calls, arguments and results are read by ``dataflow.tools.calls`` (the one reader: ``""`` is
``{}``, JSON-string arguments decoded, NaN/Infinity refused, results paired with calls by
``tool_call_id``), and every writer refuses NaN/Infinity instead of writing them.

Writers (the formats with conversations, OpenAI / TRL / LLaMA-Factory / Hermes, are written from
one canonical record by ``dataflow.exports.finetune``; ``convert_row`` goes through it too):

- ``single_turn_chat``: one query and its calls as an OpenAI-shaped chat with the declared tool
  names, ``{"messages": [system?, user, assistant with tool_calls (ids, JSON-string arguments)],
  "tools": [...]}``, or, with the calls' results kept, ``[..., tool (the function's own result,
  one per call), assistant (final answer)]``: the input of ``canonical_record``;
- ``to_openai_chat``: ``single_turn_chat`` with OpenAI's naming rules applied. OpenAI
  allows ``a-zA-Z0-9_-`` in a tool name: any other character (BFCL's ``math.factorial``) becomes
  ``_`` (``openai_names``), in the tools and the calls alike, and the mapping is handed back
  (``names=``); a renaming that would make two tools one is refused (``RowError``);
- ``to_chat_message_format``: seed 000's format ``{"messages": [system, user, assistant]}`` whose
  assistant content is a JSON list of ``{"function_name", "arguments"}``;
- ``openai_messages_to_hermes``: ShareGPT/Hermes ``{"conversations": [{"from", "value"}],
  "tools": str}`` with ``<tools>`` in the system turn, ``<tool_call>`` in gpt turns and
  ``<tool_response>`` in tool turns naming the function each result answers (paired by
  ``tool_call_id``; by order only when ids are absent, and then ``notes`` says so);
- ``to_xlam_row``: ``{"id", "query", "tools": JSON string, "answers": JSON string}``; the xLAM
  tool dialect writes nested types whole (``List[List[str]]``) and the defaults.

Readers, each the inverse of a writer or a public dataset's form: ``read_xlam_row``,
``read_glaive_row`` (``system``/``chat`` text with ``<functioncall>`` and ``FUNCTION RESPONSE:``
turns), ``read_sharegpt_row`` (ShareGPT with tools: LLaMA-Factory's ``function_call`` /
``observation`` turns and a ``tools`` string, and the Hermes form this module writes),
``read_openai_row`` and ``read_chat_message_row``. A row a reader finds nothing in, or whose
result answers no call (an orphan), raises ``RowError`` saying what was expected.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any, Callable, Iterable

from ..core.errors import DataFlowError
from ..tools.calls import (
    Call, CallError, OpenAICall, dumps_json, loads_strict, pair_results, parse_call, read_arguments, read_call_list,
    read_calls, call_id_of,
)
from ..tools.spec import NAME_RE, normalize_tools

NO_CALL_REPLY = "None of the available tools can do this, so I cannot complete the request with a function call."

HERMES_SYSTEM = (
    "You are a function calling AI model. You are given function signatures within <tools></tools> "
    "XML tags. You may call one or more functions to assist with the user query. Do not make up "
    "values for function arguments.\n<tools>\n{tools}\n</tools>\nFor each function call, return a "
    "JSON object with the function name and arguments within <tool_call></tool_call> XML tags:\n"
    "<tool_call>\n{{\"name\": <function-name>, \"arguments\": <args-json-object>}}\n</tool_call>"
)
BY_ORDER_NOTE = "results_by_order: tool results without tool_call_id were paired with the calls by order"


class RowError(DataFlowError, ValueError):
    """A row that a reader or writer cannot convert: what was expected, or what is wrong."""


# -- calls --------------------------------------------------------------------------------------
def tools_of(value: Any) -> list[dict]:
    """Tool specs (any dialect, list or JSON string) -> OpenAI tool specs."""
    return normalize_tools(value, allow_dots=True)


def tool_call_ids(prefix: str, count: int, start: int = 0) -> list[str]:
    return [f"{prefix}_{start + i}" for i in range(count)]


def openai_names(names: Iterable[str]) -> dict[str, str]:
    """``{declared name: OpenAI name}`` for the names OpenAI's ``tools`` would refuse: every
    character outside ``a-zA-Z0-9_-`` becomes ``_`` and the name is cut to 64 characters.
    Raises ``RowError`` when two tools would end up with one name."""
    names = list(names)
    renamed = {n: re.sub(r"[^a-zA-Z0-9_-]", "_", n)[:64] or "_" for n in names if not NAME_RE.match(n)}
    taken: dict[str, str] = {n: n for n in names if n not in renamed}
    for old, new in renamed.items():
        if new in taken:
            raise RowError(f"tool {old!r} cannot be renamed to {new!r} for OpenAI: {taken[new]!r} has that name")
        taken[new] = old
    return renamed


def openai_renaming(chat: dict, names: dict | None = None) -> dict[str, str]:
    """``{declared name: OpenAI name}`` for the tools and calls of ``chat`` (``{"messages",
    "tools"}``) whose names OpenAI refuses (``openai_names``); ``names``, when given, receives the
    reverse ``{OpenAI name: declared name}``."""
    mapping = openai_names([t["function"]["name"] for t in chat["tools"]]
                           + [c["function"]["name"] for m in chat["messages"] for c in m.get("tool_calls") or []])
    if names is not None:
        names.update({new: old for old, new in mapping.items()})
    return mapping


def _renamed_tools(specs: list[dict], mapping: dict[str, str]) -> list[dict]:
    if not mapping:
        return specs
    return [{**s, "function": {**s["function"], "name": mapping.get(s["function"]["name"], s["function"]["name"])}}
            for s in specs]


# -- writers ------------------------------------------------------------------------------------
def single_turn_chat(
    query: str,
    answers: Any,
    tools: Any,
    system_prompt: str | None = None,
    results: list | None = None,
    no_call_reply: str = NO_CALL_REPLY,
    final_answer: str | None = None,
) -> dict:
    """One single-turn example as an OpenAI-shaped chat with the tools' declared names: ``user``
    then ``assistant`` with ``tool_calls`` (ids ``call_0``...), the input of ``canonical_record``.
    ``results`` (each call's own return value, one per call, e.g. from ``function_results``) adds a
    ``tool`` message per call, and then needs ``final_answer``, the assistant's closing message: an
    example must end with the assistant, not a tool result. Raises ``ValueError`` for results that
    do not match the calls, ``CallError`` for an unreadable answer."""
    calls = read_call_list(answers)
    if results is not None and calls:
        if len(results) != len(calls):
            raise ValueError(f"{len(results)} results for {len(calls)} calls")
        if not (isinstance(final_answer, str) and final_answer.strip()):
            raise ValueError("an example with tool results needs a final assistant answer after them")
    messages: list[dict] = []
    if system_prompt:
        messages.append({"role": "system", "content": system_prompt})
    messages.append({"role": "user", "content": query})
    if not calls:
        messages.append({"role": "assistant", "content": no_call_reply})
    else:
        ids = tool_call_ids("call", len(calls))
        messages.append({
            "role": "assistant",
            "content": None,  # each entry carries its read call (OpenAICall): nothing after reads it again
            "tool_calls": [c.to_openai(cid) for cid, c in zip(ids, calls)],
        })
        if results is not None:
            for cid, call, result in zip(ids, calls, results):
                messages.append({"role": "tool", "tool_call_id": cid, "name": call.name, "content": _as_text(result)})
            messages.append({"role": "assistant", "content": final_answer.strip()})  # type: ignore[union-attr]
    return {"messages": messages, "tools": tools_of(tools)}


def to_openai_chat(
    query: str,
    answers: Any,
    tools: Any,
    system_prompt: str | None = None,
    results: list | None = None,
    no_call_reply: str = NO_CALL_REPLY,
    final_answer: str | None = None,
    names: dict | None = None,
) -> dict:
    """``single_turn_chat`` with the tool names OpenAI refuses renamed (``openai_names``);
    ``names``, when given, receives ``{OpenAI name: declared name}`` for each renamed tool."""
    chat = single_turn_chat(query, answers, tools, system_prompt, results, no_call_reply, final_answer)
    mapping = openai_renaming(chat, names)
    if not mapping:
        return chat
    return {"messages": [_renamed_message(m, mapping) for m in chat["messages"]],
            "tools": _renamed_tools(chat["tools"], mapping)}


def function_results(entries: Any) -> list:
    """Each call's own return value from ``ExecutionChecker``'s ``execution_results``
    (``[{"name", "ok", "result" | "error", ...}]``): the harness fields stay out of the example.
    A failed call has no result to show, and raises ``ValueError``."""
    out = []
    for index, entry in enumerate(entries or []):
        if isinstance(entry, dict) and "ok" in entry and ("result" in entry or "error" in entry):
            if not entry["ok"]:
                raise ValueError(f"call {index} failed ({entry.get('error', 'no result')}); it has no result to export")
            out.append(entry.get("result"))
        else:
            out.append(entry)
    return out


def to_chat_message_format(query: str, answers: Any, system_prompt: str) -> dict:
    """Seed 000's fine-tuning format: the assistant content is a JSON list of
    ``{"function_name", "arguments"}``."""
    calls = [{"function_name": c["name"], "arguments": c["arguments"]} for c in read_calls(answers)]
    return {"messages": [
        {"role": "system", "content": system_prompt},
        {"role": "user", "content": query},
        {"role": "assistant", "content": dumps_json(calls)},
    ]}


def to_xlam_row(query: str, answers: Any, tools: Any, row_id: Any = None, tool_dialect: str = "json_schema") -> dict:
    """An xLAM row: ``tools`` and ``answers`` are JSON strings. ``tool_dialect="xlam"`` writes
    parameters as xLAM's ``{arg: {type: "str", description, default}}`` (bounds are lost; nested
    types and defaults are kept); the default keeps JSON Schema parameters in bare ``{name,
    description, parameters}``."""
    specs = [t["function"] for t in tools_of(tools)]
    if tool_dialect == "xlam":
        specs = [{**s, "parameters": schema_to_xlam(s["parameters"])} for s in specs]
    elif tool_dialect != "json_schema":
        raise ValueError(f"tool_dialect must be 'json_schema' or 'xlam', got {tool_dialect!r}")
    row: dict[str, Any] = {}
    if row_id is not None:
        row["id"] = row_id
    row.update({
        "query": query,
        "tools": dumps_json([{k: s[k] for k in ("name", "description", "parameters")} for s in specs]),
        "answers": dumps_json(read_calls(answers)),
    })
    return row


_XLAM_NAMES = {"string": "str", "integer": "int", "number": "float", "boolean": "bool", "object": "dict",
               "array": "list", "null": "None"}


def xlam_type(schema: Any) -> str:
    """The xLAM/Python type text of a JSON Schema: ``List[List[str]]``, ``Dict[str, int]``,
    ``Optional[int]``, ``Union[int, str]``, ``Any``; what ``parse_type_string`` reads back."""
    if not isinstance(schema, dict):
        return "Any"
    kind = schema.get("type")
    if isinstance(kind, list):
        parts = [xlam_type({**schema, "type": k}) for k in kind if k != "null"]
        text = parts[0] if len(parts) == 1 else f"Union[{', '.join(parts)}]" if parts else "None"
        return f"Optional[{text}]" if "null" in kind and parts else text
    if kind == "array":
        items = schema.get("items")
        return f"List[{xlam_type(items)}]" if isinstance(items, dict) and items else "list"
    if kind == "object":
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict) and extra and not schema.get("properties"):
            return f"Dict[str, {xlam_type(extra)}]"
        return "dict"
    if isinstance(kind, str):
        return _XLAM_NAMES.get(kind, kind)
    if "anyOf" in schema and isinstance(schema["anyOf"], list):
        return xlam_type({"type": [s.get("type") for s in schema["anyOf"] if isinstance(s, dict) and s.get("type")]})
    return "Any"


def schema_to_xlam(parameters: dict) -> dict:
    """JSON Schema object parameters -> xLAM's argument mapping."""
    required = set(parameters.get("required", []))
    out = {}
    for arg, schema in (parameters.get("properties") or {}).items():
        text = xlam_type(schema)
        if arg not in required:
            text += ", optional"
        entry = {"description": schema["description"]} if "description" in schema else {}
        entry["type"] = text
        if "enum" in schema:
            listed = f"One of: {', '.join(map(str, schema['enum']))}."
            entry["description"] = f"{entry.get('description', '')} {listed}".strip()
        if "default" in schema:
            entry["default"] = schema["default"]
        out[arg] = entry
    return out


def openai_messages_to_hermes(messages: list[dict], tools: Any = None, system_prompt: str | None = None,
                              notes: list | None = None) -> dict:
    """OpenAI chat messages (+ tools) -> ShareGPT/Hermes ``{"conversations", "tools"}``.

    The tools go into the first system turn inside ``<tools>``; a system message of the input is
    appended to it (or ``system_prompt``). Assistant tool calls become ``<tool_call>`` blocks after
    any assistant text; consecutive ``tool`` messages become one ``tool`` turn of
    ``<tool_response>`` blocks naming the function each answers: the call with its
    ``tool_call_id`` (by order only when the ids are absent; ``notes`` then receives
    ``BY_ORDER_NOTE``). A result that answers no call raises ``RowError``."""
    specs = tools_of(tools) if tools else []
    pairing = pair_results(messages)
    if pairing.problems:
        raise RowError(pairing.problems[0])
    if pairing.by_order and notes is not None:
        notes.append(BY_ORDER_NOTE)
    conversations: list[dict] = []
    extra_system = [m.get("content") or "" for m in messages if m.get("role") == "system"]
    head = HERMES_SYSTEM.format(tools="\n".join(dumps_json(t) for t in specs)) if specs else ""
    system_text = "\n\n".join(x for x in [head, system_prompt or "", *extra_system] if x)
    if system_text:
        conversations.append({"from": "system", "value": system_text})
    pending_tool: list[str] = []

    def flush_tool() -> None:
        if pending_tool:
            conversations.append({"from": "tool", "value": "\n".join(pending_tool)})
            pending_tool.clear()

    for index, message in enumerate(messages):
        role = message.get("role")
        if role == "system":
            continue
        if role == "tool":
            _, name = pairing.results[index]
            content = _maybe_json(message.get("content"))
            pending_tool.append(f"<tool_response>\n{dumps_json({'name': name, 'content': content})}\n</tool_response>")
            continue
        flush_tool()
        if role == "user":
            conversations.append({"from": "human", "value": _as_text(message.get("content"))})
        elif role == "assistant":
            parts = [message["content"]] if message.get("content") else []
            for call in message.get("tool_calls") or []:
                name, arguments, problem = parse_call(call)
                if problem:
                    raise RowError(f"assistant tool call: {problem}")
                parts.append(f"<tool_call>\n{dumps_json({'name': name, 'arguments': arguments})}\n</tool_call>")
            conversations.append({"from": "gpt", "value": "\n".join(parts)})
        else:
            raise RowError(f"unsupported message role {role!r}")
    flush_tool()
    return {"conversations": conversations, "tools": dumps_json(specs)}


# -- readers ------------------------------------------------------------------------------------
def read_xlam_row(row: dict) -> dict:
    """An xLAM row (``query``, ``tools``/``answers`` JSON strings or lists, ``id``) -> internal row."""
    if not isinstance(row.get("query"), str):
        raise RowError("expected an xLAM row: a 'query' text with 'tools' and 'answers'")
    out: dict[str, Any] = {}
    if "id" in row:
        out["id"] = row["id"]
    out.update({"query": row["query"], "tools": tools_of(row.get("tools") or []),
                "answers": read_calls(row.get("answers"))})
    return out


_GLAIVE_TURN = re.compile(r"(?:^|\n)\s*(USER|ASSISTANT|FUNCTION RESPONSE)\s*:\s*", re.MULTILINE)
_FUNCTIONCALL = "<functioncall>"


class _Calls:
    """Builds ``tool_calls`` with ids and pairs results (which carry no id) with them in order."""

    def __init__(self) -> None:
        self.counter = 0
        self.pending: list[tuple[str, str]] = []

    def message(self, content: str | None, calls: list[dict]) -> dict:
        """An assistant message of ``calls`` already read (``{"name", "arguments": dict}``): each
        entry carries its call (``OpenAICall``), so the canonical record does not read it again."""
        message: dict[str, Any] = {"role": "assistant", "content": content or None}
        if calls:
            message["tool_calls"] = []
            for call in calls:
                cid = f"call_{self.counter}"
                self.counter += 1
                self.pending.append((cid, call["name"]))
                message["tool_calls"].append(Call(call["name"], call["arguments"]).to_openai(cid))
        return message

    def result(self, content: Any, where: str, name: str | None = None) -> dict:
        if not self.pending:
            raise RowError(f"orphan_result: {where} answers no call (no function call before it)")
        index = next((i for i, (_, n) in enumerate(self.pending) if not name or n == name), None)
        if index is None:
            raise RowError(f"orphan_result: {where} answers {name!r}, which no unanswered call names")
        cid, called = self.pending.pop(index)
        return {"role": "tool", "tool_call_id": cid, "name": called, "content": _as_text(content)}


def read_glaive_row(row: dict) -> dict:
    """A glaive-function-calling row (``system``, ``chat`` texts) -> ``{"messages", "tools"}``
    in OpenAI chat format. Handles several turns, several ``<functioncall>`` per assistant turn,
    single-quoted (JSON-in-a-string) arguments and ``FUNCTION RESPONSE`` turns, each paired with
    the oldest unanswered call (glaive has no ids). A response before any call, or a row with no
    ``USER:``/``ASSISTANT:`` turn, raises ``RowError``."""
    system_text = re.sub(r"^\s*SYSTEM\s*:\s*", "", row.get("system") or "")
    tools, prompt = _glaive_tools(system_text)
    messages: list[dict] = []
    if prompt:
        messages.append({"role": "system", "content": prompt})
    chat = row.get("chat") or ""
    pieces = _GLAIVE_TURN.split(chat)
    if len(pieces) < 3:
        raise RowError("expected a glaive row: 'chat' text with USER:/ASSISTANT: turns (and 'system' with the tools)")
    calls_made = _Calls()
    for turn, (role, text) in enumerate(zip(pieces[1::2], pieces[2::2])):
        text = text.replace("<|endoftext|>", "").strip()
        if role == "USER":
            messages.append({"role": "user", "content": text})
        elif role == "ASSISTANT":
            content, calls = _glaive_calls(text)
            messages.append(calls_made.message(content, calls))
        else:
            messages.append(calls_made.result(text, f"FUNCTION RESPONSE (turn {turn + 1})"))
    return {"messages": messages, "tools": tools}


_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system",
                   "function_call": "function_call", "observation": "tool", "tool": "tool", "function": "tool"}
_TOOL_CALL_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)
_TOOL_RESPONSE_BLOCK = re.compile(r"<tool_response>\s*(.*?)\s*</tool_response>", re.DOTALL)
_TOOLS_BLOCK = re.compile(r"<tools>\s*(.*?)\s*</tools>", re.DOTALL)


def read_sharegpt_row(row: dict) -> dict:
    """A ShareGPT row with tools -> ``{"messages", "tools"}`` in OpenAI chat format.

    Reads LLaMA-Factory's form (``conversations`` of ``human``/``gpt``/``function_call``/
    ``observation`` turns, a ``tools`` JSON string, an optional ``system``) and the Hermes form
    (``<tools>`` in the system turn, ``<tool_call>`` blocks in ``gpt`` turns, ``<tool_response>``
    blocks in ``tool`` turns), which ``openai_messages_to_hermes`` writes. Results are paired with
    the calls in order (these forms carry no ids; a Hermes response's name must match). A row with
    no turn, or a result with no call before it, raises ``RowError``."""
    turns = row.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise RowError("expected a ShareGPT row: 'conversations' as a list of {from, value} turns (and 'tools')")
    tools_value = row.get("tools")
    messages: list[dict] = []
    system_parts = [row["system"]] if isinstance(row.get("system"), str) and row["system"].strip() else []
    calls_made = _Calls()
    for number, turn in enumerate(turns, 1):
        if not isinstance(turn, dict) or "from" not in turn:
            raise RowError(f"turn {number}: expected {{from, value}}, got {str(turn)[:60]!r}")
        role = _SHAREGPT_ROLES.get(str(turn["from"]).lower())
        value = turn.get("value")
        text = value if isinstance(value, str) else _as_text(value)
        if role is None:
            raise RowError(f"turn {number}: unknown speaker {turn['from']!r}")
        if role == "system":
            tools_text, text = _hermes_system(text)
            if tools_text is not None and not tools_value:
                try:
                    tools_value = [loads_strict(line) for line in tools_text.splitlines() if line.strip()]
                except ValueError as exc:
                    raise RowError(f"turn {number} (<tools>): one JSON tool per line expected: {exc}") from None
            if text.strip():
                system_parts.append(text.strip())
        elif role == "user":
            messages.append({"role": "user", "content": text})
        elif role == "function_call":
            try:
                calls = read_calls(text)
            except CallError as exc:
                raise RowError(f"turn {number} (function_call): {exc}") from None
            if not calls:
                raise RowError(f"turn {number} (function_call): no call in {text[:60]!r}")
            _merge_calls(messages, calls_made, calls)
        elif role == "assistant":
            blocks = _TOOL_CALL_BLOCK.findall(text)
            content = _TOOL_CALL_BLOCK.sub("", text).strip()
            try:
                calls = [read_calls(b)[0] for b in blocks]
            except (CallError, IndexError) as exc:
                raise RowError(f"turn {number} (<tool_call>): {exc}") from None
            messages.append(calls_made.message(content, calls))
        else:
            blocks = _TOOL_RESPONSE_BLOCK.findall(text)
            parallel = _maybe_json(text) if not blocks and len(calls_made.pending) > 1 else None
            if isinstance(parallel, list) and len(parallel) == len(calls_made.pending):
                for result in parallel:  # one observation answering a parallel function_call, in order
                    messages.append(calls_made.result(result, f"turn {number} ({turn['from']})"))
            elif not blocks:
                messages.append(calls_made.result(text, f"turn {number} ({turn['from']})"))
            for block in blocks:
                response = _maybe_json(block)
                name = response.get("name") if isinstance(response, dict) else None
                content = response.get("content", response) if isinstance(response, dict) and "name" in response else response
                messages.append(calls_made.result(content, f"turn {number} (<tool_response>)", name))
    if not any(m["role"] == "user" for m in messages):
        raise RowError("expected a ShareGPT row with at least one human turn")
    if system_parts:
        messages.insert(0, {"role": "system", "content": "\n\n".join(system_parts)})
    return {"messages": messages, "tools": tools_of(tools_value) if tools_value else []}


def _merge_calls(messages: list[dict], calls_made: "_Calls", calls: list[dict]) -> None:
    """A ``function_call`` turn after an assistant's text becomes that message's calls."""
    last = messages[-1] if messages else None
    if last is not None and last["role"] == "assistant" and not last.get("tool_calls"):
        messages[-1] = {**calls_made.message(last.get("content"), calls)}
    else:
        messages.append(calls_made.message(None, calls))


_HERMES_HEAD, _HERMES_TAIL = (part.replace("{{", "{").replace("}}", "}") for part in HERMES_SYSTEM.split("{tools}"))


def _hermes_system(text: str) -> tuple[str | None, str]:
    """``(tools text, system prompt)`` of a Hermes system turn: the header this module writes
    is taken off whole; another writer's ``<tools>`` block is cut out of the prompt."""
    if text.startswith(_HERMES_HEAD):
        end = text.find(_HERMES_TAIL, len(_HERMES_HEAD))
        if end >= 0:
            return text[len(_HERMES_HEAD):end], text[end + len(_HERMES_TAIL):].strip()
    for match in _TOOLS_BLOCK.finditer(text):
        if match.group(1).strip():
            return match.group(1), (text[:match.start()] + text[match.end():]).strip()
    return None, text


def read_openai_row(row: dict) -> dict:
    """An OpenAI chat row (``messages`` + ``tools``) -> the same, read by the one reader: tools
    normalised, each call's arguments decoded and re-encoded, every result answering a call (by
    ``tool_call_id``; ``RowError`` for an orphan)."""
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RowError("expected an OpenAI chat row: 'messages' as a list of {role, content} (and 'tools')")
    pairing = pair_results(messages)
    if pairing.problems:
        raise RowError(pairing.problems[0])
    out = []
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant", "tool"):
            raise RowError(f"expected OpenAI chat messages, got {str(message)[:60]!r}")
        message = dict(message)
        if message.get("tool_calls"):
            calls = []
            for call in message["tool_calls"]:
                name, arguments, problem = parse_call(call)  # a call read already (OpenAICall) as it is
                if problem:
                    raise RowError(f"tool call {name or ''}: {problem}")
                calls.append(_read_entry(call, name, arguments))  # type: ignore[arg-type]
            message["tool_calls"] = calls
        out.append(message)
    return {"messages": out, "tools": tools_of(row.get("tools") or [])}


def _read_entry(call: Any, name: str, arguments: dict) -> OpenAICall:
    """The read form of one ``tool_calls`` entry: its other keys kept, ``function`` the name and
    the arguments as JSON text (written again, in one spelling), carrying the read call."""
    entry = {**call, "function": {"name": name, "arguments": dumps_json(arguments)}}
    return OpenAICall(entry, Call(name, arguments, call_id_of(entry)))


def read_chat_message_row(row: dict) -> dict:
    """Seed 000's chat-message row -> internal row (``query``, ``answers``; no tools)."""
    messages = row.get("messages")
    if not isinstance(messages, list):
        raise RowError("expected a chat-message row: 'messages' [system, user, assistant]")
    user = next((m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"), None)
    reply = next((m.get("content") for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "assistant"), None)
    if not isinstance(user, str) or reply is None:
        raise RowError("expected a chat-message row with a user turn and an assistant turn")
    try:
        answers = read_calls(reply)
    except CallError:
        answers = []  # a refusal in words: no call
    return {"query": user, "answers": answers, "tools": []}


def _glaive_tools(system_text: str) -> tuple[list[dict], str]:
    decoder = json.JSONDecoder()
    specs = []
    first = None
    i = 0
    while True:
        start = system_text.find("{", i)
        if start < 0:
            break
        try:
            value, end = decoder.raw_decode(system_text, start)
        except json.JSONDecodeError:
            i = start + 1
            continue
        if isinstance(value, dict) and "name" in value:
            specs.append(value)
            first = start if first is None else first
        i = end
    prompt = system_text[:first].strip() if first is not None else system_text.strip()
    prompt = re.sub(r"\s*-\s*$", "", prompt)
    return (tools_of(specs) if specs else []), prompt


def _glaive_calls(text: str) -> tuple[str, list[dict]]:
    if _FUNCTIONCALL not in text:
        return text, []
    chunks = text.split(_FUNCTIONCALL)
    content = chunks[0].strip()
    calls = [_glaive_call(chunk.strip()) for chunk in chunks[1:]]
    return content, calls


def _glaive_call(payload: str) -> dict:
    decoder = json.JSONDecoder()
    try:  # plain JSON (arguments as an object or a JSON string)
        value, _ = decoder.raw_decode(payload)
        return _call_from_dict(value)
    except (json.JSONDecodeError, ValueError):
        pass
    end = payload.rfind("}")
    candidate = payload[: end + 1] if end >= 0 else payload
    try:  # {"name": "x", "arguments": '{...}'} is a Python literal
        value = ast.literal_eval(candidate)
        if isinstance(value, dict):
            return _call_from_dict(value)
    except (ValueError, SyntaxError):
        pass
    name = re.search(r'"name"\s*:\s*"([^"]+)"', payload)
    args = re.search(r"\"arguments\"\s*:\s*'(.*)'\s*}", payload, re.DOTALL)
    if not name:
        raise RowError(f"cannot read glaive function call {payload[:80]!r}")
    arguments, problem = read_arguments(args.group(1) if args else None)
    if problem:
        raise RowError(f"glaive function call {name.group(1)!r}: {problem}")
    return {"name": name.group(1), "arguments": arguments}


def _call_from_dict(value: Any) -> dict:
    name, arguments, problem = parse_call(value)
    if problem:
        raise RowError(problem)
    return {"name": name, "arguments": arguments}


# -- helpers ------------------------------------------------------------------------------------
def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return dumps_json(value)


def _maybe_json(value: Any) -> Any:
    """JSON text of an object or array decoded (shown as JSON in a Hermes turn); any other text
    stays text, so that reading the turn back gives the same content."""
    if isinstance(value, str) and value.lstrip()[:1] in ("{", "["):
        try:
            return loads_strict(value)
        except ValueError:
            return value
    return value


FORMATS = ("openai", "chat_message", "hermes", "xlam")


def convert_row(row: dict, fmt: str, *, system_prompt: str | None = None, query_key: str = "query",
                answers_key: str = "answers", tools_key: str = "tools", results_key: str | None = None,
                tools: Any = None, final_answer_key: str = "final_answer", names: dict | None = None,
                notes: list | None = None) -> dict:
    """One internal row -> ``fmt`` (one of ``FORMATS``). ``tools`` overrides the row's tools.
    ``results_key`` (openai, hermes) keeps the calls' results (``function_results`` of that
    column) and the row's ``final_answer_key`` answer after them. ``names`` receives OpenAI's
    renamings (``to_openai_chat``); ``notes`` receives notes such as ``BY_ORDER_NOTE``."""
    query = row[query_key]
    answers = row.get(answers_key, row.get("function_calls"))
    row_tools = tools if tools is not None else row.get(tools_key, [])
    if fmt in ("openai", "hermes"):  # the writers of the canonical record (dataflow.exports.finetune)
        from .finetune import canonical_record, to_hermes_record, to_openai_record

        results = function_results(row.get(results_key)) if results_key else None
        final = row.get(final_answer_key) if results_key else None
        record = canonical_record(single_turn_chat(query, answers, row_tools, system_prompt, results, final_answer=final))
        return to_openai_record(record, names) if fmt == "openai" else to_hermes_record(record)
    if fmt == "chat_message":
        return to_chat_message_format(query, answers, system_prompt or "")
    if fmt == "xlam":
        return to_xlam_row(query, answers, row_tools, row.get("id"))
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def convert_rows(rows: Iterable[dict], fmt: str, **options: Any) -> list[dict]:
    return [convert_row(r, fmt, **options) for r in rows]


def _renamed_message(message: dict, mapping: dict[str, str]) -> dict:
    if not mapping:
        return message
    out = dict(message)
    if out.get("tool_calls"):
        out["tool_calls"] = [{**c, "function": {**c["function"], "name": mapping.get(c["function"]["name"], c["function"]["name"])}}
                             for c in out["tool_calls"]]
    if out.get("role") == "tool" and out.get("name") in mapping:
        out["name"] = mapping[out["name"]]
    return out


#: readers by input format: rows of one query (``xlam``, ``chat_message``) give internal rows,
#: conversation formats give ``{"messages", "tools"}``
READERS: dict[str, Callable[[dict], dict]] = {
    "xlam": read_xlam_row, "chat_message": read_chat_message_row, "glaive": read_glaive_row,
    "sharegpt": read_sharegpt_row, "llamafactory": read_sharegpt_row, "hermes": read_sharegpt_row,
    "openai": read_openai_row, "trl": read_openai_row,  # TRL: arguments as objects, results paired by order
}
CONVERSATION_READERS = ("glaive", "sharegpt", "llamafactory", "hermes", "openai", "trl")
