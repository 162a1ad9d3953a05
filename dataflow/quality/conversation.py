"""Checks of a whole tool-use conversation: its final answers, its tool list, and every per-turn
check of this package run in order over the messages.

``conversation_problems(messages, tools)`` is what the generators and the exporter call: ``[]``
means no deterministic check found a problem. Problem codes (``"<code>: <where>: <detail>"`` in a
conversation, ``"<code>: <detail>"`` from the single checks):

- ``ungrounded_argument``, ``result_echoes_arguments`` (``grounding``);
- ``degenerate_text``, ``instruction_leak``, ``user_asks_own_facts``, ``user_role_reversal``,
  ``repeated_user_turn`` (``text``);
- ``missing_final_answer``: a turn whose tool results are not followed by an assistant answer, or a
  conversation that does not end with one;
- ``answer_ignores_results``: the answer shares no value with the tool results of its turn (a
  number, rounding allowed; a string value of 3+ characters, or a content word of a longer one;
  a date or time however written; the name of a boolean field, "available" for
  ``{"available": true}``). Results with an ``error`` key are left out (the answer reports the
  failure in its own words);
- ``answer_copies_result``: the answer is one of several results of its turn copied verbatim, the
  others ignored. A bare copy of the turn's only result is accepted (terse, not wrong);
- ``user_states_answer``: a tool result carries a distinctive number (with decimals, or 4+ digits
  and not a year) that the user already wrote and that is neither an argument of the call nor in
  an earlier result: the user gave the answer they asked for;
- ``near_duplicate_tools``: tools declared twice, or whose names differ only by a number suffix
  or a plural (``search_recipes``, ``search_recipes_2``), or whose name and description are near-duplicates
  (``similarity.NEAR_DUPLICATE``; names that are the same words reordered, like
  ``celsius_to_fahrenheit`` and ``fahrenheit_to_celsius``, are distinct tools);
- ``unused_tool``: a declared tool that no call uses. The tools of a generated conversation are
  the task's own (one per sub-task), so an unused one is a skipped step; data whose tool lists
  carry distractors should drop this code;
- ``repeated_call``: one assistant turn makes the same call twice (``dataflow.tools.repeated_calls``:
  same name, same arguments); across turns a call may be repeated (a state may have changed);
- ``invalid_call``: a call whose arguments cannot be read (``dataflow.tools.parse_call``); the
  structural checks report it in full.

Only user turns, tool results and the system message before a call count as its context.
"""

from __future__ import annotations

import json
import re
from typing import Any, Sequence

from ..tools.calls import repeated_calls
from ..tools.validation import parse_call
from ._values import (
    STOPWORDS, Evidence, as_date_time, dates_in, is_number, leaves, maybe_json, number_key, numbers_in, times_in,
    value_leaves, words,
)
from .grounding import grounding_problems, result_echoes_arguments
from .similarity import NEAR_DUPLICATE, normalize_text, similarity
from .text import degenerate_text, spec_leak, user_turn_problems

_NAME_SUFFIX = re.compile(r"(?:[\s_\-]*v?\d+)+$")
_MIN_STRING = 3
_MIN_WORD = 4
_SHOW_CHARS = 80


def answer_problems(answer: str, results: Sequence[Any]) -> str | None:
    """``"missing_final_answer: ..."`` when ``answer`` is empty; ``"answer_ignores_results:
    ..."`` when it shares no value with ``results`` (the tool results of its turn, JSON texts or
    parsed values); ``"answer_copies_result: ..."`` when it is one of two or more results copied
    verbatim. None when the answer draws on the results (or there are none)."""
    if not isinstance(answer, str) or not answer.strip():
        return "missing_final_answer: the assistant gives no answer"
    parsed = [maybe_json(r) for r in results]
    if not parsed:
        return None
    facts = _AnswerFacts(answer)
    comparable = False
    for result in parsed:
        if isinstance(result, dict) and "error" in result:
            continue  # an error result: the answer says it failed, in its own words
        for key, value in _keyed_leaves(result):
            shared = facts.shares(key, value)
            if shared is not None:
                comparable = True
                if shared:
                    return _copied(answer, parsed)
    if not comparable:
        return None
    shown = "; ".join(_show(r) for r in parsed)
    return f"answer_ignores_results: the answer shares no value with the results ({shown})"


def near_duplicate_tools(tools: list[dict]) -> list[str]:
    """``"near_duplicate_tools: a, b, c"`` for every group of tools that are near-duplicates of
    each other (see the module docstring); ``[]`` when all tools are distinct. ``tools``: OpenAI
    tool specs (or bare ``{"name", "description"}``)."""
    named = [(_body(t)["name"], str(_body(t).get("description") or "")) for t in tools or []
             if isinstance(_body(t).get("name"), str)]
    parent = list(range(len(named)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    bases = [_base_name(name) for name, _ in named]
    for j in range(1, len(named)):
        for i in range(j):
            if bases[i] == bases[j] or _same_purpose(named[i], named[j]):
                parent[root(j)] = root(i)
    groups: dict[int, list[str]] = {}
    for index, (name, _) in enumerate(named):
        groups.setdefault(root(index), []).append(name)
    return [f"near_duplicate_tools: {', '.join(g)}" for g in groups.values() if len(g) > 1]


def conversation_problems(messages: list[dict], tools: list[dict]) -> list[str]:
    """Every deterministic problem of one OpenAI-format conversation; ``[]`` when none.

    ``messages``: ``[system?, user, assistant {"tool_calls": [{"id", "type": "function",
    "function": {"name", "arguments": JSON string}}]}, tool {"tool_call_id", "content"}, ...,
    assistant {"content"}]``, possibly several user turns. ``tools``: the OpenAI tool specs
    declared for it. Problems read ``"<code>: message <i> ...: <detail>"``.
    """
    by_name = {_body(t)["name"]: t for t in tools or [] if isinstance(_body(t).get("name"), str)}
    json_tools = any("json" in f"{name} {_body(t).get('description')}".lower() for name, t in by_name.items())
    problems: list[str] = []
    context = Evidence()
    user_numbers: set[float] = set()
    result_numbers: set[float] = set()
    user_texts: list[str] = []
    pending: dict[Any, tuple[str, dict]] = {}
    called: set[str] = set()
    turn_results: list[Any] = []
    for index, message in enumerate(messages or []):
        if not isinstance(message, dict):
            continue
        role, text = message.get("role"), _content(message.get("content"))
        where = f"message {index} ({role})"
        if role == "system":
            context.add(text)
        elif role == "user":
            if turn_results:
                problems.append(f"missing_final_answer: {where}: the tool results before it get no answer")
            for problem in user_turn_problems(text, user_texts):
                if not (json_tools and problem == "instruction_leak: 'JSON'"):
                    problems.append(_at(problem, where))
            user_texts.append(text)
            user_numbers |= context.add(text)
            turn_results = []
        elif role == "assistant" and message.get("tool_calls"):
            for repeat in repeated_calls(message["tool_calls"]):
                problems.append(f"repeated_call: {where}: {repeat}")
            for call in message["tool_calls"]:
                name, arguments, problem = parse_call(call)
                call_where = f"message {index} call {_call_id(call)} ({name})"
                if problem:
                    problems.append(f"invalid_call: {call_where}: {problem}")
                    continue
                called.add(name)  # type: ignore[arg-type]
                for found in grounding_problems(arguments, by_name.get(name), context):  # type: ignore[arg-type]
                    problems.append(_at(found, call_where))
                pending[_call_id(call)] = (name, arguments)  # type: ignore[assignment]
        elif role == "assistant":
            degenerate = degenerate_text(text)
            if degenerate:
                problems.append(_at(degenerate, where))
            if turn_results or not text.strip():
                found = answer_problems(text, turn_results)
                if found:
                    problems.append(_at(found, where))
            turn_results = []
        elif role == "tool":
            name, arguments = pending.get(message.get("tool_call_id"), (None, None))
            call_where = f"{where} result of {name}" if name else where
            for found in (
                result_echoes_arguments(arguments, text) if arguments is not None else None,
                degenerate_text(text),
                _stated_by_user(text, arguments or {}, user_numbers, result_numbers),
            ):
                if found:
                    problems.append(_at(found, call_where))
            result_numbers |= context.add(text)
            turn_results.append(text)
    last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
    if last.get("role") != "assistant" or last.get("tool_calls"):
        problems.append("missing_final_answer: the conversation does not end with an assistant answer")
    for name in by_name:
        if name not in called:
            problems.append(f"unused_tool: {name} is declared but never called")
    problems.extend(near_duplicate_tools(tools))
    for name, tool in by_name.items():
        for where, text in _spec_texts(tool):
            leak = spec_leak(text)
            if leak:
                problems.append(_at(leak, f"tool {name}{where}"))
    return problems


# -- answers ------------------------------------------------------------------------------------


class _AnswerFacts:
    """The values written in an answer, read once."""

    def __init__(self, answer: str) -> None:
        self.text = answer
        self.numbers = numbers_in(answer)
        self.folded = words(answer)
        self.phrase = " " + " ".join(self.folded) + " "
        self.word_set = set(self.folded)
        self._dates: Any = None
        self._times: Any = None

    def shares(self, key: str, value: Any) -> bool | None:
        """Whether the answer states ``value`` (``None``: nothing to compare, e.g. null)."""
        if isinstance(value, bool):
            names = [w for w in words(key) if w not in STOPWORDS and len(w) >= _MIN_WORD]
            if not names:
                return None
            return any(w in self.word_set or any(a.startswith(w) for a in self.word_set) for w in names)
        if is_number(value):
            return self._has_number(float(value))
        if not isinstance(value, str) or len(value.strip()) < _MIN_STRING:
            return None
        folded = words(value)
        if folded and f" {' '.join(folded)} " in self.phrase:
            return True
        moment = as_date_time(value)
        if moment is not None:
            dates, time = moment
            if self._dates is None:
                self._dates, self._times = dates_in(self.text), times_in(self.text)
            if any(d[1:] == seen[1:] for d in dates for seen in self._dates) or time in self._times:
                return True
        if any(self._has_number(n) for n in numbers_in(value)):
            return True
        if len(folded) >= 2:
            distinctive = (w for w in folded if len(w) >= _MIN_WORD and w not in STOPWORDS and not w.isdigit())
            return any(w in self.word_set for w in distinctive)
        return False

    def _has_number(self, value: float) -> bool:
        """The answer states ``value``, or rounds it keeping two significant digits or more
        (``$13`` for 12.956, ``1,104.5`` for 1104.53; not ``1`` for 0.6)."""
        for stated in self.numbers:
            if number_key(stated) == number_key(value):
                return True
            decimals = len(repr(stated).split(".")[1]) if stated != int(stated) else 0
            rounds = abs(stated - value) <= 0.5 * 10 ** -decimals
            if rounds and value != int(value) and abs(value) >= 10 ** (1 - decimals):
                return True
        return False


def _keyed_leaves(value: Any):
    for path, leaf in leaves(value):
        yield path.rsplit(".", 1)[-1].split("[", 1)[0], leaf


def _copied(answer: str, results: list[Any]) -> str | None:
    if len(results) < 2:
        return None
    said = normalize_text(answer)
    for index, result in enumerate(results):
        texts = [leaf for _, leaf in leaves(result) if isinstance(leaf, str)]
        texts.append(result if isinstance(result, str) else json.dumps(result))
        if any(normalize_text(t) == said for t in texts):
            return (f"answer_copies_result: the answer is result {index} copied verbatim; "
                    f"the other {len(results) - 1} results are ignored")
    return None


# -- results ------------------------------------------------------------------------------------


def _stated_by_user(result: str, arguments: dict, user_numbers: set, earlier_results: set) -> str | None:
    argument_numbers = set()
    for _, leaf in leaves(arguments):
        if is_number(leaf):
            argument_numbers.add(number_key(leaf))
        elif isinstance(leaf, str):
            argument_numbers.update(number_key(n) for n in numbers_in(leaf))
    for _, leaf in value_leaves(result):
        values = [float(leaf)] if is_number(leaf) else numbers_in(leaf) if isinstance(leaf, str) else []
        for value in values:
            key = number_key(value)
            if (_distinctive(value) and key in user_numbers and key not in argument_numbers
                    and key not in earlier_results):
                return f"user_states_answer: the result value {value:g} was already written by the user"
    return None


def _distinctive(value: float) -> bool:
    if value != int(value):
        return True
    return abs(value) >= 1000 and not 1900 <= value <= 2100


# -- tools --------------------------------------------------------------------------------------


def _base_name(name: str) -> str:
    return " ".join(words(_NAME_SUFFIX.sub("", name) or name))


def _same_purpose(a: tuple[str, str], b: tuple[str, str]) -> bool:
    name_a, name_b = normalize_text(a[0]).split(), normalize_text(b[0]).split()
    if sorted(name_a) == sorted(name_b):
        return False  # the same words reordered: celsius_to_fahrenheit / fahrenheit_to_celsius
    return similarity(f"{a[0]} {a[1]}", f"{b[0]} {b[1]}") >= NEAR_DUPLICATE


def _body(tool: Any) -> dict:
    """The ``{"name", "description", "parameters"}`` part of an OpenAI (or bare) tool spec."""
    body = tool.get("function", tool) if isinstance(tool, dict) else None
    return body if isinstance(body, dict) else {}


def _spec_texts(tool: dict):
    """``(where, text)`` for the description of ``tool`` and of each of its parameters."""
    body = _body(tool)
    yield "", str(body.get("description") or "")
    yield from _parameter_descriptions(body.get("parameters"), "")


def _parameter_descriptions(schema: Any, path: str):
    if not isinstance(schema, dict):
        return
    properties = schema.get("properties")
    if isinstance(properties, dict):
        for name, sub in properties.items():
            where = f"{path}.{name}" if path else str(name)
            if isinstance(sub, dict) and isinstance(sub.get("description"), str):
                yield f" parameter {where}", sub["description"]
            yield from _parameter_descriptions(sub, where)
    if isinstance(schema.get("items"), dict):
        yield from _parameter_descriptions(schema["items"], f"{path}[]")


# -- helpers ------------------------------------------------------------------------------------


def _content(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # content parts [{"type": "text", "text": ...}]
        return " ".join(str(p.get("text", "")) if isinstance(p, dict) else str(p) for p in value)
    return json.dumps(value, ensure_ascii=False, default=str)


def _call_id(call: Any) -> Any:
    return call.get("id") if isinstance(call, dict) else None


def _at(problem: str, where: str) -> str:
    code, _, detail = problem.partition(": ")
    return f"{code}: {where}: {detail}"


def _show(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= _SHOW_CHARS else text[: _SHOW_CHARS - 3] + "..."
