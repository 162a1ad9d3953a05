"""A deterministic responder for the APIGen operators (test kit, product code).

``apigen_responder(messages, json_schema)`` answers ``APIGenGenerator`` prompts with query/answer
pairs built from the tool specs in the prompt (valid arguments from each schema, except one pair
in seven which gets a wrongly typed argument, so the format stage has work; and, like a small
model, one first reply in four hands back the prompt's first few-shot example, which the
generator's re-ask must catch, and one example in five is copied even when asked again, which
the ``NoveltyFilter`` must drop), and
``SemanticChecker`` prompts with the values its own query states (so the calls agree, except in
one row in eleven, whose best function is "none"). Use it with ``FakeLLMServing`` or, by dotted path
``dataflow.operators.apigen.testing:apigen_responder``, with ``FakeOpenAIServer``.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

_PATTERN_CANDIDATES = ("ABC", "LIS", "abc", "a1", "A", "1", "x")
_FORMAT_VALUES = {"date": "2025-06-01", "date-time": "2025-06-01T09:30:00", "email": "ana@example.com",
                  "time": "09:30:00", "uri": "https://example.com", "ipv4": "192.0.2.1"}


def _digest(*parts: Any) -> int:
    return int(hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12], 16)


def value_for(schema: Any, salt: int = 0) -> Any:
    """A value that satisfies a (simple) JSON schema: enums, consts, bounds, patterns, formats."""
    if not isinstance(schema, dict):
        return None
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][salt % len(schema["enum"])]
    kind = schema.get("type", "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0) + (1 if kind == "integer" else 0.5)
                         if "exclusiveMinimum" in schema else None)
        high = schema.get("maximum", schema.get("exclusiveMaximum", 10**6) - 1 if "exclusiveMaximum" in schema else None)
        low = 1 if low is None else low
        high = max(low, low + 20) if high is None else high
        value = low + salt % (int(high - low) + 1) if high > low else low
        return int(value) if kind == "integer" else float(value) + (0.5 if value + 0.5 <= high else 0.0)
    if kind == "boolean":
        return salt % 2 == 0
    if kind == "array":
        n = max(1, schema.get("minItems", 1))
        return [value_for(schema.get("items", {"type": "string"}), salt + i) for i in range(n)]
    if kind == "object":
        props = schema.get("properties", {})
        return {k: value_for(v, salt + i) for i, (k, v) in enumerate(props.items()) if k in schema.get("required", [])}
    if "format" in schema and schema["format"] in _FORMAT_VALUES:
        return _FORMAT_VALUES[schema["format"]]
    if "pattern" in schema:
        for candidate in _PATTERN_CANDIDATES:
            if re.search(schema["pattern"], candidate):
                return candidate
    words = ["Lisbon", "Paris", "tomato", "quarterly report", "Osaka", "hello world again"]
    text = words[salt % len(words)]
    return text.ljust(schema.get("minLength", 0), "x")[: schema.get("maxLength", 10**6)]


def _tools_in(text: str) -> list[dict]:
    tools = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{") and '"function"' in line:
            try:
                spec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(spec, dict) and isinstance(spec.get("function"), dict):
                tools.append(spec["function"])
    return tools


def _schema_title(json_schema: dict | None) -> str:
    if not json_schema:
        return ""
    inner = json_schema.get("schema", json_schema) if "properties" not in json_schema else json_schema
    return inner.get("title", "")


def _verdict(json_schema: dict | None, passes: bool, thought: str) -> dict:
    """A judge reply shaped by the judge's schema: every boolean field is the verdict and every
    string field the reason (``{"thought", "passes"}`` when there is no schema)."""
    inner = (json_schema or {}).get("schema", json_schema) if json_schema and "properties" not in json_schema else json_schema
    properties = (inner or {}).get("properties") or {"thought": {"type": "string"}, "passes": {"type": "boolean"}}
    reply: dict[str, Any] = {}
    for name, spec in properties.items():
        kind = spec.get("type") if isinstance(spec, dict) else None
        if kind == "boolean":
            reply[name] = passes
        elif kind == "string":
            reply[name] = thought[: spec.get("maxLength", len(thought))]
        elif kind in ("integer", "number"):
            reply[name] = spec.get("minimum", 0)
    return reply


def _semantic_reading(user: str, json_schema: dict) -> dict:
    """The SemanticChecker's reply for a query this responder wrote ("Could you run NAME with
    {args} and ..."): the values read back from the query, so the calls agree with it; one row in
    eleven gets best function "none" (a disagreement)."""
    question = user.split("Question:", 1)[-1].split("\n", 1)[0]
    stated = []
    for match in re.finditer(r"\w+ with (?=\{)", question):
        try:
            stated.append(json.JSONDecoder().raw_decode(question, match.end())[0])
        except ValueError:
            stated.append({})
    called = re.findall(r"^call_\d+: (\w+)\(", user, re.MULTILINE)
    readings = json_schema.get("properties", {}).get("question_values", {}).get("properties", {})
    values = {key: {arg: (stated[i].get(arg) if i < len(stated) and isinstance(stated[i], dict) else None)
                    for arg in (spec.get("properties") or {})}
              for i, (key, spec) in enumerate(readings.items())}
    best = called[0] if called and _digest(user) % 11 else "none"
    return {"asked": "what the query asks", "requests": len(called) or 1, "best_function": best,
            "question_values": values}


def apigen_responder(messages: list[dict], json_schema: dict | None) -> dict:
    user = next((m.get("content") or "" for m in reversed(messages) if m.get("role") == "user"), "")
    title = _schema_title(json_schema)
    if "question_values" in ((json_schema or {}).get("properties") or {}):
        return _semantic_reading(user, json_schema)
    if title == "SemanticVerdict" or ("passes" in json.dumps(json_schema or {}) and "thought" in json.dumps(json_schema or {})):
        results = user.split("Execution results:")[-1] if "Execution results:" in user else user
        if '"ok": false' in user or re.search(r"\w+Error\b", results):
            return _verdict(json_schema, False, "An execution result shows an error.")
        if _digest(user) % 11 == 0:
            return _verdict(json_schema, False, "The arguments do not match the query.")
        return _verdict(json_schema, True, "The calls match the query.")
    tools = _tools_in(user)
    match = re.search(r"write (\d+) different", user)
    n = int(match.group(1)) if match else 1
    irrelevant = "NONE of these functions" in user
    parallel = "several times" in user or "several requests" in user
    pairs = []
    seed = _digest(user)
    for k in range(n):
        if irrelevant or not tools:
            pairs.append({"query": f"Please translate a poem into Klingon (#{seed % 9973}-{k}).", "answers": []})
            continue
        picks = [tools[(seed + k) % len(tools)]]
        if parallel and len(tools) > 1:
            picks.append(tools[(seed + k + 1) % len(tools)])
        answers = []
        for j, tool in enumerate(picks):
            params = tool.get("parameters", {})
            args = {name: value_for(schema, seed + k + j + i)
                    for i, (name, schema) in enumerate(params.get("properties", {}).items())
                    if name in params.get("required", [])}
            if "if" in params and "then" in params:  # satisfy a conditional requirement by leaving its trigger out
                pass
            answers.append({"name": tool["name"], "arguments": args})
        if (seed + k) % 7 == 0 and answers and answers[0]["arguments"]:
            first = next(iter(answers[0]["arguments"]))
            answers[0]["arguments"][first] = {"oops": True}  # wrong type: the format checker must catch it
        described = " and ".join(f"{a['name']} with {json.dumps(a['arguments'])}" for a in answers)
        pairs.append({"query": f"Could you run {described}? (request {seed % 9973}-{k})", "answers": answers})
    example = re.search(r"^- query: (.+)$", user, re.MULTILINE)
    if example and pairs:
        stubborn = _digest(example.group(1)) % 5 == 0  # copies again when asked again
        if stubborn or ((seed >> 4) % 4 == 0 and "Your previous answer was rejected" not in user):
            pairs[0] = {"query": example.group(1).strip(), "answers": pairs[0]["answers"]}
    return {"pairs": pairs}
