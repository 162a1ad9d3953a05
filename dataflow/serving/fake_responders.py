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
    if "The user asked:" not in user:  # ScenarioExpander's prompt: a new scenario from a given one
        return _expanded(system, user, schema)
    first_user = _first_line(_after(user, "The user asked:"))
    return {"scenario": f"A person needs help with this request: {first_user[:150] or 'a general question'}."}


def _expanded(system: str, user: str, schema: dict) -> dict:
    scenario = _first_line(_after(user, "Scenario:"))
    return {"scenario": f"{scenario[:160]} This time it is for a colleague."}


def _atom(system: str, user: str, schema: dict) -> dict:
    scenario = _first_line(_after(user, "Scenario:"))
    topic = _words(scenario.partition(":")[2] or scenario, 6)
    return {"task": f"Look up the key facts about {topic} (ref {_digest(scenario)})."}


def _sequential(system: str, user: str, schema: dict) -> dict:
    task = _first_line(_after(user, "Request:"))
    follow = "Write a short summary based on the result of the lookup."
    return {"a_result": "the key facts", "subsequent_task": follow, "composition_task": f"{task[:200]} Then {follow[0].lower()}{follow[1:]}"}


def _paraseq(system: str, user: str, schema: dict) -> dict:
    task = _first_line(_after(user, "Request A:"))
    parallel = f"Check the current status of {_words(task.partition(' about ')[2] or task, 4)[:80]} independently."
    final = "Combine the lookup result and the status check into one summary."
    return {
        "parallel_task": parallel,
        "subsequent_task": final,
        "composition_task": f"{task[:180]} At the same time, {parallel[0].lower()}{parallel[1:]} Then {final[0].lower()}{final[1:]}",
    }


def _verdict(system: str, user: str, schema: dict) -> dict:
    return {"checks": "Each sub-task is a distinct function call; the later ones use earlier results.",
            "reason": "The sub-tasks, done in order, complete the composed task.", "problem": "none"}


_VERBS = ("find", "check", "summarize", "compare", "book", "list", "rate", "plan")


def _functions(system: str, user: str, schema: dict) -> dict:
    """One function per sub-task: the last (of two or more) takes the earlier result's
    ``ref_id`` (a chained parameter), the others take a ``query`` the user gives."""
    sub_tasks = re.findall(r"^\d+\.\s+(.+)$", _after(user, "Sub-tasks:"), re.MULTILINE) or ["task"]
    functions = []
    for i, task in enumerate(sub_tasks, start=1):
        word = (re.findall(r"[a-z]+", task.lower()) or ["run"])[0][:20]
        chained = i == len(sub_tasks) and i > 1
        parameters = (
            [
                {"name": "ref_id", "type": "string", "description": "Reference returned by the lookup", "required": True, "enum": []},
                {"name": "limit", "type": "integer", "description": "Maximum items", "required": False, "enum": []},
            ]
            if chained
            else [
                {"name": "query", "type": "string", "description": "What to look up", "required": True, "enum": []},
                {"name": "mode", "type": "string", "description": "Level of detail", "required": False, "enum": ["brief", "full"]},
            ]
        )
        functions.append(
            {
                "name": f"{_VERBS[(i - 1) % len(_VERBS)]}_{word}",
                "description": f"Looks up facts for: {task[:110]}",
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
    """Chooses a value for every parameter the schema asks for and states each in the message."""
    wanted = re.findall(r"^- (.+)$", user.split("Details you give")[0], re.MULTILINE)
    asked = ((schema.get("properties") or {}).get("values") or {}).get("properties") or {}
    values: dict[str, dict] = {}
    said = []
    for function, shape in asked.items():
        values[function] = {}
        for name, prop in (shape.get("properties") or {}).items():
            value = _sample(prop, f"{name}-{_digest(' '.join(wanted))}")
            values[function][name] = value
            said.append(f"the {name.replace('_', ' ')} is {value}")
    request = " and ".join(w.rstrip(".") for w in wanted[-2:]) or "help me"
    opening = "Now you also want" not in user
    message = f"{'Hi! Please' if opening else 'Next, please'} {request[0].lower()}{request[1:]}"
    if said:
        message += "; " + ", ".join(said)
    return {"values": values, "message": message + "."}


def _assistant_turn(system: str, user: str, schema: dict) -> dict:
    """Calls exactly the tools the schema allows, taking each argument from the last user message
    (``the <name> is <value>``) or from the latest tool result that has a field of that name;
    answers with the values of the last results when no call is asked for."""
    calls_schema = (schema.get("properties") or {}).get("tool_calls") or {}
    transcript = _after(user, "Conversation so far:").split("\n\n")[0]
    lines = [ln for ln in transcript.splitlines() if ln.strip()]
    results, earlier = [], []  # results of the current user turn, of the turns before
    for ln in lines:
        if ln.startswith("USER:"):
            earlier, results = earlier + results, []
        elif ln.startswith("TOOL RESULT"):
            try:
                results.append(json.loads(ln.split(": ", 1)[1]))
            except (IndexError, json.JSONDecodeError):
                pass
    n_calls = calls_schema.get("minItems", 0)
    if not n_calls:
        facts = "; ".join(", ".join(f"{k} {v}" for k, v in r.items()) for r in results) or "nothing new"
        return {"tool_calls": [], "content": f"Here is what I found: {facts}."}
    last_user = next((ln for ln in reversed(lines) if ln.startswith("USER:")), "")
    stated = dict(re.findall(r"the ([a-z ]+?) is ([^,;.]+)", last_user))
    previous = {k: v for r in earlier + results for k, v in r.items()}
    calls = []
    for tool in _tools_from_schema(schema)[:n_calls]:
        params = tool["function"].get("parameters") or {}
        args = {}
        for name in params.get("required") or []:
            prop = params["properties"][name]
            spoken = stated.get(name.replace("_", " "))
            if name in previous:
                args[name] = previous[name]
            elif spoken is not None:
                args[name] = int(spoken) if prop.get("type") == "integer" else spoken.strip()
            else:
                args[name] = _sample(prop, name)
        calls.append({"name": tool["function"]["name"], "arguments": args})
    return {"tool_calls": calls, "content": ""}


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
    shape = json.loads(_first_line(_after(user, "Result fields:")) or "{}")
    arguments = _first_line(_after(user, "Arguments:"))
    value = {k: _sample(v, f"{k}-{_digest(arguments)}") for k, v in (shape.get("properties") or {}).items()}
    return {"result": value}


def _quality(system: str, user: str, schema: dict) -> dict:
    calls = user.count("ASSISTANT CALLS:")
    return {"explanation": f"The assistant made {calls} valid tool call(s) and answered.", "calls_fit": bool(calls),
            "values_from_conversation": True, "answer_matches_results": True, "score": 4 if calls else 2}


_HANDLERS: dict[str, Callable[[str, str, dict], dict]] = {
    "ScenarioReply": _scenario,
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
