"""Converters between function-calling data formats.

Internal single-turn row: ``{"query": str, "answers": [{"name", "arguments": dict}], "tools":
[OpenAI tool spec]}``; multi-turn: OpenAI chat ``messages`` + ``tools``.

Writers (fine-tuning formats):

- ``to_openai_chat``: ``{"messages": [system?, user, assistant with tool_calls (ids, JSON-string
  arguments)], "tools": [...]}`` (xLAM/APIGen style), or, with the calls' results kept,
  ``[..., tool (the function's own result, one per call), assistant (final answer)]``;
- ``to_chat_message_format``: seed 000's format ``{"messages": [system, user, assistant]}`` whose
  assistant content is a JSON list of ``{"function_name", "arguments"}``;
- ``openai_messages_to_hermes``: ShareGPT/Hermes ``{"conversations": [{"from", "value"}],
  "tools": str}`` with ``<tools>`` in the system turn, ``<tool_call>`` in gpt turns and
  ``<tool_response>`` in tool turns (multi-turn, several calls per turn);
- ``to_xlam_row``: ``{"id", "query", "tools": JSON string, "answers": JSON string}``.

Readers: ``read_xlam_row`` and ``read_glaive_row`` (``system``/``chat`` text with
``<functioncall> {"name": ..., "arguments": '{...}'}`` and ``FUNCTION RESPONSE:`` turns).
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any, Callable, Iterable

from ...tools.spec import normalize_tools
from ...tools.validation import parse_call

NO_CALL_REPLY = "None of the available tools can do this, so I cannot complete the request with a function call."

HERMES_SYSTEM = (
    "You are a function calling AI model. You are given function signatures within <tools></tools> "
    "XML tags. You may call one or more functions to assist with the user query. Do not make up "
    "values for function arguments.\n<tools>\n{tools}\n</tools>\nFor each function call, return a "
    "JSON object with the function name and arguments within <tool_call></tool_call> XML tags:\n"
    "<tool_call>\n{{\"name\": <function-name>, \"arguments\": <args-json-object>}}\n</tool_call>"
)


# -- calls --------------------------------------------------------------------------------------
def calls_of(value: Any) -> list[dict]:
    """Normalise answers/function calls (JSON string or list, any call shape) to
    ``[{"name", "arguments": dict}]``. Raises ``ValueError`` for an unreadable call."""
    if value is None:
        return []
    if isinstance(value, str):
        value = json.loads(value) if value.strip() else []
    if isinstance(value, dict):
        value = [value]
    out = []
    for index, call in enumerate(value):
        name, arguments, problem = parse_call(call)
        if problem:
            raise ValueError(f"call {index}: {problem}")
        out.append({"name": name, "arguments": arguments})
    return out


def tools_of(value: Any) -> list[dict]:
    """Tool specs (any dialect, list or JSON string) -> OpenAI tool specs."""
    return normalize_tools(value, allow_dots=True)


def tool_call_ids(prefix: str, count: int, start: int = 0) -> list[str]:
    return [f"{prefix}_{start + i}" for i in range(count)]


# -- writers ------------------------------------------------------------------------------------
def to_openai_chat(
    query: str,
    answers: Any,
    tools: Any,
    system_prompt: str | None = None,
    results: list | None = None,
    no_call_reply: str = NO_CALL_REPLY,
    final_answer: str | None = None,
) -> dict:
    """One single-turn example in OpenAI chat format: ``user`` then ``assistant`` with
    ``tool_calls``. ``results`` (each call's own return value, one per call, e.g. from
    ``function_results``) adds a ``tool`` message per call, and then needs ``final_answer``, the
    assistant's closing message: an example must end with the assistant, not a tool result."""
    calls = calls_of(answers)
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
            "content": None,
            "tool_calls": [
                {"id": cid, "type": "function",
                 "function": {"name": c["name"], "arguments": json.dumps(c["arguments"], ensure_ascii=False)}}
                for cid, c in zip(ids, calls)
            ],
        })
        if results is not None:
            for cid, call, result in zip(ids, calls, results):
                messages.append({"role": "tool", "tool_call_id": cid, "name": call["name"], "content": _as_text(result)})
            messages.append({"role": "assistant", "content": final_answer.strip()})  # type: ignore[union-attr]
    return {"messages": messages, "tools": tools_of(tools)}


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
    calls = [{"function_name": c["name"], "arguments": c["arguments"]} for c in calls_of(answers)]
    return {"messages": [
        {"role": "system", "content": system_prompt},
        {"role": "user", "content": query},
        {"role": "assistant", "content": json.dumps(calls, ensure_ascii=False)},
    ]}


def to_xlam_row(query: str, answers: Any, tools: Any, row_id: Any = None, tool_dialect: str = "json_schema") -> dict:
    """An xLAM row: ``tools`` and ``answers`` are JSON strings. ``tool_dialect="xlam"`` writes
    parameters as xLAM's ``{arg: {type: "str", description, default}}`` (bounds are lost);
    the default keeps JSON Schema parameters in bare ``{name, description, parameters}``."""
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
        "tools": json.dumps([{k: s[k] for k in ("name", "description", "parameters")} for s in specs], ensure_ascii=False),
        "answers": json.dumps(calls_of(answers), ensure_ascii=False),
    })
    return row


def schema_to_xlam(parameters: dict) -> dict:
    """JSON Schema object parameters -> xLAM's argument mapping."""
    names = {"string": "str", "integer": "int", "number": "float", "boolean": "bool", "object": "dict", "array": "list", "null": "None"}
    required = set(parameters.get("required", []))
    out = {}
    for arg, schema in (parameters.get("properties") or {}).items():
        kind = schema.get("type", "any")
        text = " | ".join(names.get(k, k) for k in kind) if isinstance(kind, list) else names.get(kind, kind)
        if kind == "array" and isinstance(schema.get("items"), dict) and "type" in schema["items"]:
            text = f"List[{names.get(schema['items']['type'], schema['items']['type'])}]"
        if arg not in required:
            text += ", optional"
        entry = {"description": schema.get("description", ""), "type": text}
        if "enum" in schema:
            entry["description"] = (entry["description"] + f" One of: {', '.join(map(str, schema['enum']))}.").strip()
        if "default" in schema:
            entry["default"] = schema["default"]
        out[arg] = entry
    return out


def openai_messages_to_hermes(messages: list[dict], tools: Any = None, system_prompt: str | None = None) -> dict:
    """OpenAI chat messages (+ tools) -> ShareGPT/Hermes ``{"conversations", "tools"}``.

    The tools go into the first system turn inside ``<tools>``; a system message of the input is
    appended to it (or ``system_prompt``). Assistant tool calls become ``<tool_call>`` blocks after
    any assistant text; consecutive ``tool`` messages become one ``tool`` turn of
    ``<tool_response>`` blocks naming the function answered."""
    specs = tools_of(tools) if tools else []
    conversations: list[dict] = []
    extra_system = [m.get("content") or "" for m in messages if m.get("role") == "system"]
    head = HERMES_SYSTEM.format(tools="\n".join(json.dumps(t, ensure_ascii=False) for t in specs)) if specs else ""
    system_text = "\n\n".join(x for x in [head, system_prompt or "", *extra_system] if x)
    if system_text:
        conversations.append({"from": "system", "value": system_text})
    names_by_id: dict[str, str] = {}
    pending_tool: list[str] = []

    def flush_tool() -> None:
        if pending_tool:
            conversations.append({"from": "tool", "value": "\n".join(pending_tool)})
            pending_tool.clear()

    for message in messages:
        role = message.get("role")
        if role == "system":
            continue
        if role == "tool":
            name = message.get("name") or names_by_id.get(message.get("tool_call_id", ""), "")
            content = _maybe_json(message.get("content"))
            pending_tool.append(f"<tool_response>\n{json.dumps({'name': name, 'content': content}, ensure_ascii=False)}\n</tool_response>")
            continue
        flush_tool()
        if role == "user":
            conversations.append({"from": "human", "value": _as_text(message.get("content"))})
        elif role == "assistant":
            parts = [message["content"]] if message.get("content") else []
            for call in message.get("tool_calls") or []:
                name, arguments, problem = parse_call(call)
                if problem:
                    raise ValueError(f"assistant tool call: {problem}")
                if call.get("id"):
                    names_by_id[call["id"]] = name  # type: ignore[assignment]
                parts.append(f"<tool_call>\n{json.dumps({'name': name, 'arguments': arguments}, ensure_ascii=False)}\n</tool_call>")
            conversations.append({"from": "gpt", "value": "\n".join(parts)})
        else:
            raise ValueError(f"unsupported message role {role!r}")
    flush_tool()
    return {"conversations": conversations, "tools": json.dumps(specs, ensure_ascii=False)}


# -- readers ------------------------------------------------------------------------------------
def read_xlam_row(row: dict) -> dict:
    """An xLAM row (``query``, ``tools``/``answers`` JSON strings or lists) -> internal row."""
    return {"query": row["query"], "tools": tools_of(row.get("tools") or []), "answers": calls_of(row.get("answers"))}


_GLAIVE_TURN = re.compile(r"(?:^|\n)\s*(USER|ASSISTANT|FUNCTION RESPONSE)\s*:\s*", re.MULTILINE)
_FUNCTIONCALL = "<functioncall>"


def read_glaive_row(row: dict) -> dict:
    """A glaive-function-calling row (``system``, ``chat`` texts) -> ``{"messages", "tools"}``
    in OpenAI chat format. Handles several turns, several ``<functioncall>`` per assistant turn,
    single-quoted (JSON-in-a-string) arguments and ``FUNCTION RESPONSE`` turns."""
    system_text = re.sub(r"^\s*SYSTEM\s*:\s*", "", row.get("system") or "")
    tools, prompt = _glaive_tools(system_text)
    messages: list[dict] = []
    if prompt:
        messages.append({"role": "system", "content": prompt})
    chat = row.get("chat") or ""
    pieces = _GLAIVE_TURN.split(chat)
    pending: list[tuple[str, str]] = []  # (id, name) of calls without a response yet
    counter = 0
    for role, text in zip(pieces[1::2], pieces[2::2]):
        text = text.replace("<|endoftext|>", "").strip()
        if role == "USER":
            messages.append({"role": "user", "content": text})
        elif role == "ASSISTANT":
            content, calls = _glaive_calls(text)
            message: dict[str, Any] = {"role": "assistant", "content": content or None}
            if calls:
                message["tool_calls"] = []
                for call in calls:
                    cid = f"call_{counter}"
                    counter += 1
                    pending.append((cid, call["name"]))
                    message["tool_calls"].append({"id": cid, "type": "function", "function": {
                        "name": call["name"], "arguments": json.dumps(call["arguments"], ensure_ascii=False)}})
            messages.append(message)
        else:
            cid, name = pending.pop(0) if pending else (f"call_{counter}", "")
            tool_msg = {"role": "tool", "tool_call_id": cid, "content": text}
            if name:
                tool_msg["name"] = name
            messages.append(tool_msg)
    return {"messages": messages, "tools": tools}


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
        raise ValueError(f"cannot read glaive function call {payload[:80]!r}")
    arguments = json.loads(args.group(1)) if args else {}
    return {"name": name.group(1), "arguments": arguments}


def _call_from_dict(value: Any) -> dict:
    name, arguments, problem = parse_call(value)
    if problem:
        raise ValueError(problem)
    return {"name": name, "arguments": arguments}


# -- helpers ------------------------------------------------------------------------------------
def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _maybe_json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


FORMATS = ("openai", "chat_message", "hermes", "xlam")


def convert_row(row: dict, fmt: str, *, system_prompt: str | None = None, query_key: str = "query",
                answers_key: str = "answers", tools_key: str = "tools", results_key: str | None = None,
                tools: Any = None, final_answer_key: str = "final_answer") -> dict:
    """One internal row -> ``fmt`` (one of ``FORMATS``). ``tools`` overrides the row's tools.
    ``results_key`` (openai, hermes) keeps the calls' results (``function_results`` of that
    column) and the row's ``final_answer_key`` answer after them."""
    query = row[query_key]
    answers = row.get(answers_key, row.get("function_calls"))
    row_tools = tools if tools is not None else row.get(tools_key, [])
    if fmt in ("openai", "hermes"):
        results = function_results(row.get(results_key)) if results_key else None
        final = row.get(final_answer_key) if results_key else None
        chat = to_openai_chat(query, answers, row_tools, system_prompt if fmt == "openai" else None, results,
                              final_answer=final)
        return chat if fmt == "openai" else openai_messages_to_hermes(chat["messages"], chat["tools"], system_prompt)
    if fmt == "chat_message":
        return to_chat_message_format(query, answers, system_prompt or "")
    if fmt == "xlam":
        return to_xlam_row(query, answers, row_tools, row.get("id"))
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def convert_rows(rows: Iterable[dict], fmt: str, **options: Any) -> list[dict]:
    return [convert_row(r, fmt, **options) for r in rows]


READERS: dict[str, Callable[[dict], dict]] = {"xlam": read_xlam_row, "glaive": read_glaive_row}
