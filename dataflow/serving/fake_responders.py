"""Deterministic responders for ``FakeLLMServing`` / ``FakeOpenAIServer`` (test kit, product code).

``button_responder(messages, json_schema)`` answers every prompt of the multi-turn (BUTTON)
pipeline in ``dataflow.operators.conversations`` with a valid, deterministic reply: it reads the
reply schema's ``title`` (the pydantic model name) to know which step asks, and the packaged
prompts' marker lines (``Sub-tasks:``, the tool JSON lines, ``Result schema:``) for what it
needs. The same input always gives the same reply, so reruns, crash and fault tests can compare
outputs exactly. Use it by dotted path: ``dataflow.serving.fake_responders:button_responder``.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Callable

Messages = list[dict]


def button_responder(messages: Messages, json_schema: dict | None) -> dict:
    """A valid reply for any step of the multi-turn function-calling pipeline."""
    schema = _inner_schema(json_schema)
    title = schema.get("title", "")
    handler = _HANDLERS.get(title)
    if handler is None:
        raise ValueError(f"button_responder: no reply for schema {title or '(untitled)'}")
    system = next((m.get("content") or "" for m in messages if m.get("role") == "system"), "")
    user = next((m.get("content") or "" for m in reversed(messages) if m.get("role") == "user"), "")
    return handler(system, user, schema)


def _inner_schema(json_schema: dict | None) -> dict:
    if not json_schema:
        return {}
    if "schema" in json_schema and "properties" not in json_schema:  # OpenAI response_format wrapper
        return json_schema["schema"]
    return json_schema


def _digest(text: str, n: int = 6) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def _after(text: str, marker: str) -> str:
    _, _, rest = text.partition(marker)
    return rest.strip()


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0].strip() if text.strip() else ""


def _words(text: str, n: int) -> str:
    return " ".join(re.findall(r"[A-Za-z]+", text)[:n]).lower() or "general"


def _scenario(system: str, user: str, schema: dict) -> dict:
    transcript = _after(user, "Chat:")
    first_user = next((ln[5:].strip() for ln in transcript.splitlines() if ln.startswith("USER:")), transcript)
    return {"scenario": f"A person needs help with this request: {first_user[:150] or 'a general question'}."}


def _expanded(system: str, user: str, schema: dict) -> dict:
    scenario = _first_line(_after(user, "Scenario:"))
    return {"scenario": f"{scenario[:160]} This time it is for a colleague."}


def _atom(system: str, user: str, schema: dict) -> dict:
    scenario = _first_line(_after(user, "Scenario:"))
    topic = _words(scenario.partition(":")[2] or scenario, 6)
    return {"task": f"Look up the key facts about {topic} (ref {_digest(scenario)})."}


def _sequential(system: str, user: str, schema: dict) -> dict:
    task = _first_line(_after(user, "Task A:"))
    follow = "Write a short summary based on the result of the lookup."
    return {"subsequent_task": follow, "composition_task": f"{task[:200]} Then {follow[0].lower()}{follow[1:]}"}


def _paraseq(system: str, user: str, schema: dict) -> dict:
    task = _first_line(_after(user, "Task A:"))
    parallel = f"Check the current status of {_words(task.partition(' about ')[2] or task, 4)[:80]} independently."
    final = "Combine the lookup result and the status check into one summary."
    return {
        "parallel_task": parallel,
        "subsequent_task": final,
        "composition_task": f"{task[:180]} At the same time, {parallel[0].lower()}{parallel[1:]} Then {final[0].lower()}{final[1:]}",
    }


def _verdict(system: str, user: str, schema: dict) -> dict:
    return {"reason": "The sub-tasks, done in order, complete the composed task.", "problem": "none"}


def _functions(system: str, user: str, schema: dict) -> dict:
    sub_tasks = re.findall(r"^\d+\.\s+(.+)$", _after(user, "Sub-tasks:"), re.MULTILINE)
    functions = []
    for i, task in enumerate(sub_tasks or ["task"], start=1):
        word = (re.findall(r"[a-z]+", task.lower()) or ["run"])[0][:20]
        first = i == 1
        parameters = (
            [
                {"name": "query", "type": "string", "description": "What to look up", "required": True, "enum": []},
                {"name": "mode", "type": "string", "description": "Level of detail", "required": False, "enum": ["brief", "full"]},
            ]
            if first
            else [
                {"name": "ref_id", "type": "string", "description": "Reference from the previous step", "required": True, "enum": []},
                {"name": "limit", "type": "integer", "description": "Maximum items", "required": False, "enum": []},
            ]
        )
        functions.append(
            {
                "name": f"step{i}_{word}",
                "description": f"Handles sub-task {i}: {task[:120]}",
                "parameters": parameters,
                "returns": [
                    {"name": "ref_id", "type": "string"},
                    {"name": "summary", "type": "string"},
                    {"name": "count", "type": "integer"},
                ],
            }
        )
    return {"functions": functions}


def _user_turn(system: str, user: str, schema: dict) -> dict:
    if "Write your opening request" in user:
        goal = _first_line(_after(user, "Your goal:"))
        return {"end_conversation": False, "message": f"Hi! {goal}"}
    transcript = _after(user, "Conversation so far:")
    if sum(ln.startswith("USER:") for ln in transcript.splitlines()) < 2:
        return {"end_conversation": False, "message": "Thanks! Which of those results matters most?"}
    return {"end_conversation": True, "message": "Thanks, that is all I needed."}


def _assistant_turn(system: str, user: str, schema: dict) -> dict:
    tools = _tools_from_schema(schema) or [
        json.loads(ln) for ln in system.splitlines() if ln.startswith("{") and '"function"' in ln
    ]
    transcript = _after(user, "Conversation so far:").split("\n\n")[0]
    lines = [ln for ln in transcript.splitlines() if ln.strip()]
    called = {m.group(1) for m in (re.match(r"ASSISTANT CALLS: (\w+)\(", ln) for ln in lines) if m}
    todo = [t["function"] for t in tools if t["function"]["name"] not in called]
    if not todo or (lines and lines[-1].startswith("USER:") and called):
        last_results = [ln for ln in lines if ln.startswith("TOOL RESULT of ")]
        detail = last_results[-1].split(": ", 1)[-1] if last_results else "{}"
        return {"tool_calls": [], "content": f"Here is what I found: {detail[:300]}"}
    batch = todo[:2] if not called and len(tools) >= 3 else todo[:1]
    previous = {}
    for ln in reversed(lines):
        if ln.startswith("TOOL RESULT of "):
            try:
                previous = json.loads(ln.split(": ", 1)[1])
            except (IndexError, json.JSONDecodeError):
                previous = {}
            break
    return {"tool_calls": [{"name": f["name"], "arguments": _arguments(f, previous)} for f in batch], "content": ""}


def _tools_from_schema(schema: dict) -> list[dict]:
    """The row's tools as the assistant reply schema carries them (one ``anyOf`` variant per
    tool: ``name`` const + ``arguments`` schema); empty for a generic schema."""
    items = ((schema.get("properties") or {}).get("tool_calls") or {}).get("items") or {}
    tools = []
    for variant in items.get("anyOf") or []:
        props = variant.get("properties") or {}
        name = (props.get("name") or {}).get("const")
        if name:
            tools.append({"type": "function", "function": {"name": name, "parameters": props.get("arguments") or {}}})
    return tools


def _arguments(function: dict, previous: dict) -> dict:
    params = function.get("parameters") or {}
    args = {}
    for name in params.get("required") or []:
        prop = params["properties"][name]
        args[name] = previous.get(name) if name in previous else _sample(prop, name)
    return args


def _sample(prop: dict, seed: str) -> Any:
    if prop.get("enum"):
        return prop["enum"][0]
    kind = prop.get("type")
    if kind == "integer":
        return 3
    if kind == "number":
        return 2.5
    if kind == "boolean":
        return True
    if kind == "object":
        return {k: _sample(v, k) for k, v in (prop.get("properties") or {}).items()}
    if kind == "array":
        return [_sample(prop.get("items") or {"type": "string"}, seed)]
    return f"{seed}-{_digest(seed, 4)}"


def _tool_result(system: str, user: str, schema: dict) -> dict:
    shape = json.loads(_first_line(_after(user, "Result schema:")) or "{}")
    arguments = _first_line(_after(user, "Arguments:"))
    value = {k: _sample(v, f"{k}-{_digest(arguments)}") for k, v in (shape.get("properties") or {}).items()}
    return {"result": value}


def _quality(system: str, user: str, schema: dict) -> dict:
    calls = user.count("ASSISTANT CALLS:")
    return {"explanation": f"The assistant made {calls} valid tool call(s) and answered.", "score": 4 if calls else 2}


_HANDLERS: dict[str, Callable[[str, str, dict], dict]] = {
    "ScenarioReply": _scenario,
    "ExpandedScenarioReply": _expanded,
    "AtomTaskReply": _atom,
    "SequentialTaskReply": _sequential,
    "ParaSeqTaskReply": _paraseq,
    "CompositionVerdictReply": _verdict,
    "FunctionSetReply": _functions,
    "UserTurnReply": _user_turn,
    "AssistantTurnReply": _assistant_turn,
    "ToolResultReply": _tool_result,
    "QualityReply": _quality,
}
