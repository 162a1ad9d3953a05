"""Structural checks of a generated tool-use conversation (OpenAI chat messages).

``check_conversation(messages, tools)`` returns the problems found (empty list = valid):
roles in a legal order (optional system, then a user turn, then assistant/tool exchanges, each
user turn answered by a final assistant message), every ``tool`` message answering an earlier,
not yet answered ``tool_call`` id, every call answered before the next assistant or user
message, and every call's arguments valid against ``tools`` (``validate_calls``). Arguments are
read by ``dataflow.tools.calls`` like everywhere else: ``""`` is ``{}``, a JSON string or an
object is read, NaN/Infinity are invalid; a call read already (``OpenAICall``, from
``read_chat_calls`` or ``Call.to_openai``) is taken as read.

The generators validate each call when the assistant makes it (and re-ask on a problem), so their
final check passes ``calls_validated=True``: the structure is checked and the calls are not
validated a second time. The exporter reads a file anyone may have written, and validates.
"""

from __future__ import annotations

from typing import Any, Sequence

from ...core.errors import ToolSpecError
from ...tools import validate_calls
from ...tools.calls import Call, parse_call


def check_conversation(messages: Any, tools: Sequence[dict], *, calls_validated: bool = False) -> list[str]:
    """Problems with one conversation; an empty list means it is structurally valid.
    ``calls_validated=True``: every call was validated against ``tools`` when it was made (by
    the generator that wrote ``messages``), so only the structure and the reading of each call
    are checked here."""
    if not isinstance(messages, list) or not messages:
        return ["conversation is not a non-empty list of messages"]
    problems: list[str] = []
    open_ids: set[str] = set()  # tool_call ids awaiting a tool message
    seen_ids: set[str] = set()
    expect = "system_or_user"
    calls: list[dict] = []
    for i, m in enumerate(messages):
        role = m.get("role") if isinstance(m, dict) else None
        if role == "system":
            if i != 0:
                problems.append(f"message {i}: system message after the start")
            continue
        if role == "user":
            if open_ids:
                problems.append(f"message {i}: user message while tool calls {sorted(open_ids)} are unanswered")
            if expect not in ("system_or_user", "user"):
                problems.append(f"message {i}: user message where {expect} was expected")
            if not _text(m.get("content")):
                problems.append(f"message {i}: empty user message")
            expect = "assistant"
        elif role == "assistant":
            if open_ids:
                problems.append(f"message {i}: assistant message while tool calls {sorted(open_ids)} are unanswered")
            if expect != "assistant":
                problems.append(f"message {i}: assistant message where {expect} was expected")
            tool_calls = m.get("tool_calls") or []
            if tool_calls:
                for call in tool_calls:
                    problems.extend(_check_call(i, call, seen_ids, open_ids, calls))
                expect = "tool"
            elif not _text(m.get("content")):
                problems.append(f"message {i}: assistant message with neither content nor tool calls")
            else:
                expect = "user"
        elif role == "tool":
            call_id = m.get("tool_call_id")
            if call_id not in open_ids:
                problems.append(f"message {i}: tool message answers unknown or already answered id {call_id!r}")
            else:
                open_ids.discard(call_id)
            if not _text(m.get("content")):
                problems.append(f"message {i}: empty tool result")
            expect = "tool" if open_ids else "assistant"
        else:
            problems.append(f"message {i}: illegal role {role!r}")
    if open_ids:
        problems.append(f"tool calls {sorted(open_ids)} are never answered")
    last = messages[-1] if isinstance(messages[-1], dict) else {}
    if last.get("role") != "assistant" or last.get("tool_calls") or not _text(last.get("content")):
        problems.append("conversation does not end with a final assistant answer")
    if calls and not calls_validated:
        try:
            problems.extend(validate_calls(calls, tools))
        except ToolSpecError as exc:
            problems.append(f"invalid tools: {exc}")
    return problems


def _check_call(i: int, call: Any, seen: set[str], open_ids: set[str], calls: list) -> list[str]:
    if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
        return [f"message {i}: malformed tool_call {call!r}"]
    problems = []
    call_id = call.get("id")
    name = call["function"].get("name")
    if not call_id or call_id in seen:
        problems.append(f"message {i}: tool_call id {call_id!r} missing or reused")
    else:
        seen.add(call_id)
        open_ids.add(call_id)
    _, arguments, problem = parse_call(call)
    if problem:
        problems.append(f"message {i}: call to {name}: {problem}")
        return problems
    # read here, validated as read (a name given only as "function_name" stays a problem for validate_calls)
    calls.append(Call(name, arguments) if isinstance(name, str) and name else {"name": name, "arguments": arguments})  # type: ignore[arg-type]
    return problems


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())
