"""Turn the chat formats people bring into one readable transcript for a prompt.

Accepted: glaive-v2 ``chat`` text (``USER:`` / ``ASSISTANT: <functioncall> {"name": ...,
"arguments": '{...}'}`` / ``FUNCTION RESPONSE:``), OpenAI message lists (``role``/``content``/
``tool_calls``), ShareGPT lists (``from``/``value``), a dict holding ``messages`` or
``conversations``, and any of these as a JSON string.
"""

from __future__ import annotations

import json
import re
from typing import Any

_END = re.compile(r"<\|endoftext\|>")
_SHAREGPT_ROLES = {
    "human": "USER", "user": "USER", "gpt": "ASSISTANT", "assistant": "ASSISTANT", "system": "SYSTEM",
    "function_call": "ASSISTANT CALLS", "tool_call": "ASSISTANT CALLS", "observation": "TOOL RESULT",
    "function_response": "TOOL RESULT", "tool": "TOOL RESULT", "function": "TOOL RESULT",
}


def chat_to_transcript(chat: Any, max_chars: int = 4000) -> str:
    """A plain ``ROLE: text`` transcript of ``chat``; empty string when there is nothing in it."""
    text = _transcript(chat).strip()
    if len(text) > max_chars:
        text = text[: max_chars - 20].rstrip() + "\n[... truncated]"
    return text


def _transcript(chat: Any) -> str:
    if chat is None:
        return ""
    if isinstance(chat, str):
        stripped = chat.strip()
        if stripped[:1] in "[{":
            try:
                return _transcript(json.loads(stripped))
            except json.JSONDecodeError:
                pass
        return glaive_to_transcript(stripped)
    if isinstance(chat, dict):
        for key in ("messages", "conversations", "conversation", "chat"):
            if key in chat:
                return _transcript(chat[key])
        return _message_line(chat)
    if isinstance(chat, (list, tuple)):
        names: dict[str, str] = {}
        return "\n".join(line for line in (_message_line(m, names) for m in chat) if line)
    return str(chat)


def _message_line(message: Any, names: dict[str, str] | None = None) -> str:
    """One message as text; ``names`` maps tool_call ids seen so far to function names."""
    names = {} if names is None else names
    if not isinstance(message, dict):
        return str(message)
    if "from" in message:  # ShareGPT
        role = _SHAREGPT_ROLES.get(str(message["from"]).lower(), str(message["from"]).upper())
        return f"{role}: {_clean(message.get('value'))}"
    role = str(message.get("role", "unknown")).upper()
    if role == "TOOL":
        known = message.get("name") or names.get(str(message.get("tool_call_id")))
        name = f" of {known}" if known else ""
        return f"TOOL RESULT{name}: {_clean(message.get('content'))}"
    parts = []
    if message.get("content"):
        parts.append(f"{role}: {_clean(message['content'])}")
    for call in message.get("tool_calls") or []:
        function = call.get("function", call)
        if call.get("id"):
            names[str(call["id"])] = function.get("name")
        parts.append(f"ASSISTANT CALLS: {function.get('name')}({_args_text(function.get('arguments'))})")
    return "\n".join(parts)


def glaive_to_transcript(text: str) -> str:
    """Transcript of glaive-v2 chat text, read by the formats area's glaive reader; text without
    glaive turn markers is returned as it is (whitespace collapsed)."""
    from ...exports.convert import read_glaive_row

    try:
        messages = read_glaive_row({"chat": text})["messages"]
    except ValueError:  # an unreadable <functioncall> payload: keep the raw text readable
        messages = []
    return _transcript(messages) if messages else _clean(text)


def _args_text(arguments: Any) -> str:
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return arguments
    return json.dumps(arguments, ensure_ascii=False)


def _clean(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        value = json.dumps(value, ensure_ascii=False)
    return " ".join(_END.sub("", value).split())
