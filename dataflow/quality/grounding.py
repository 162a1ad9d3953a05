"""Are a call's argument values taken from the conversation, and does its result say anything new?

``ungrounded_arguments(arguments, tool, context)`` lists every leaf argument value that neither
stands in the context (earlier user turns and tool results) nor comes from the tool's spec;
``result_echoes_arguments(arguments, result)`` tells a result that only repeats its call.

Problem codes (``"<code>: <detail>"``):

- ``ungrounded_argument``: e.g. ``ungrounded_argument: budget_us=1000 appears in no earlier user
  turn or tool result``;
- ``result_echoes_arguments``: e.g. ``result_echoes_arguments: the result only repeats the
  arguments (budget_us=1000)``.

What grounds a value (see ``_values`` for how numbers, words and dates are compared):

- a number that stands in the context, however written (``$1,200`` grounds ``1200``; ``three``
  grounds ``3``; ``1`` is also grounded by the article ``a``/``an``); a value derived by
  arithmetic or unit conversion is not grounded (a tool should compute it);
- a string whose words stand together, in order, in one context text; a list written as one
  string (``"vegan, gluten-free"``) is grounded part by part; a short string mixing numbers and
  words (``"3 days"``) when its numbers are grounded and its words stand together (``three
  days``); a string of five or more words (a message the assistant composes) when the numbers in
  it are and at least 60% of its content words appear in the context; a place followed by the
  region it is in (``"Chicago, IL"``, ``"Lyon, France"``: ``places.is_region_name``) when the
  place is grounded; a region, currency or unit written in another of its forms (``"IL"`` and
  ``Illinois``, ``"GBP"`` and ``British pounds``: ``places``; ``"km"`` and ``kilometers``:
  ``units``), a month by name or abbreviation (``Feb``, ``"February"``);
- a date or time written differently (``2024-03-15``, ``March 15th``, ``Mar.15,2024``,
  ``03-15-2024``; ``19:00`` and ``7pm``); a date written without a year grounds any year. Relative dates (``tomorrow``) ground
  nothing: the assistant does not know today's date unless a text says it;
- from the spec: a boolean, an enum or ``const`` member, the parameter's ``default`` (in the
  schema, or stated in its description: ``"Default is 'cm'."``), or an empty value (``None``,
  ``""``, ``[]``, ``{}``) of an optional parameter.
"""

from __future__ import annotations

import json
import re
from typing import Any, Sequence

from ._values import (
    MONTH_WORDS, STOPWORDS, Evidence, as_date_time, as_number, is_number, leaves, number_key, numbers_in, value_leaves,
    words,
)
from .places import currency_forms, is_region_name, region_forms
from .units import unit_of

_DIGITS = re.compile(r"\d+(?:[.,]\d+)*")
_LIST_SEPARATOR = re.compile(r"\s*(?:[,;/]|\band\b|\bor\b|&)\s*", re.IGNORECASE)
_LONG_TEXT_WORDS = 5
_LONG_TEXT_COVERAGE = 0.6
_SHOW_CHARS = 60


def ungrounded_arguments(arguments: dict, tool: dict | None, context: Sequence[str],
                         missing_from: str | None = None) -> list[str]:
    """Problems ``"ungrounded_argument: <path>=<value> ..."``, one per leaf value of
    ``arguments`` that is neither in ``context`` nor allowed by ``tool``'s spec; ``[]`` when every
    value is grounded.

    ``arguments``: the call's arguments, e.g. ``{"city": "Oslo", "days": 3}`` (lists and nested
    objects are walked to their leaves). ``tool``: the OpenAI spec of the called function
    ``{"type": "function", "function": {"name", "description", "parameters"}}`` (a bare
    ``{"name", "parameters"}`` works too), or None. ``context``: the texts before the call, each a
    user turn or a tool result (JSON results are read as their values, not their keys).
    ``missing_from`` names the context in the message when it is not a conversation's turns
    (``"the query"``: ``ungrounded_argument: n=5 is not in the query``).
    """
    if isinstance(context, str):
        context = [context]
    evidence = context if isinstance(context, Evidence) else Evidence(context)
    return grounding_problems(arguments, tool, evidence, missing_from)


def grounding_problems(arguments: dict, tool: dict | None, evidence: Evidence,
                       missing_from: str | None = None) -> list[str]:
    """``ungrounded_arguments`` against an ``Evidence`` index that the caller keeps (a
    conversation is indexed once, message by message)."""
    where = f"is not in {missing_from}" if missing_from else "appears in no earlier user turn or tool result"
    if not isinstance(arguments, dict):
        return []
    parameters = _parameters(tool)
    problems = []
    for path, value, schema, optional in _leaves_with_schema(arguments, parameters):
        if _allowed_by_spec(value, schema, optional) or _grounded(value, evidence):
            continue
        problems.append(f"ungrounded_argument: {path}={_show(value)} {where}")
    return problems


def result_echoes_arguments(arguments: dict, result: Any) -> str | None:
    """``"result_echoes_arguments: ..."`` when every leaf value of ``result`` (a JSON text or a
    parsed value; booleans and nulls aside) is one of the call's argument values, e.g. the result
    ``{"budget_us": 1000}`` of a call with ``{"budget_us": 1000}`` (numbers compared by value,
    strings as written but for case). None otherwise, also when the result has no value of its
    own to compare (``{"ok": true}``)."""
    values = [leaf for _, leaf in value_leaves(result) if leaf is not None and not isinstance(leaf, bool)]
    values = [v for v in values if not (isinstance(v, str) and not v.strip())]
    if not values or not isinstance(arguments, dict):
        return None
    argument_keys = {_echo_key(leaf) for _, leaf in leaves(arguments)}
    if all(_echo_key(v) in argument_keys for v in values):
        shown = ", ".join(f"{p}={_show(v)}" for p, v in leaves(arguments))
        return f"result_echoes_arguments: the result only repeats the arguments ({shown})"
    return None


# -- spec ---------------------------------------------------------------------------------------


def _parameters(tool: dict | None) -> dict:
    if not isinstance(tool, dict):
        return {}
    body = tool.get("function") if isinstance(tool.get("function"), dict) else tool
    parameters = body.get("parameters")
    return parameters if isinstance(parameters, dict) else {}


def _leaves_with_schema(value: Any, schema: Any, path: str = "", optional: bool = False):
    """``(path, leaf, leaf schema, optional)`` for every leaf of ``value``."""
    schema = schema if isinstance(schema, dict) else {}
    if isinstance(value, dict):
        properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        required = schema.get("required") if isinstance(schema.get("required"), list) else []
        if not value and path:  # an empty object argument; no arguments at all is nothing to ground
            yield path, value, schema, optional
        for key, item in value.items():
            yield from _leaves_with_schema(
                item, properties.get(key), f"{path}.{key}" if path else str(key), key not in required
            )
    elif isinstance(value, list):
        if not value:
            yield path, value, schema, optional
        for index, item in enumerate(value):
            yield from _leaves_with_schema(item, schema.get("items"), f"{path}[{index}]", False)
    else:
        yield path, value, schema, optional


def _allowed_by_spec(value: Any, schema: dict, optional: bool) -> bool:
    if isinstance(value, bool):
        return True
    if value is None or value == "" or value == [] or value == {}:
        return optional
    for branch in [schema, *_branches(schema)]:
        if "default" in branch and _same(value, branch["default"]):
            return True
        if _is_described_default(value, branch.get("description")):
            return True
        if "const" in branch and _same(value, branch["const"]):
            return True
        enum = branch.get("enum")
        if isinstance(enum, list) and any(_same(value, member) for member in enum):
            return True
    return False


#: a default stated in a parameter's description: "Default is 'cm'.", "defaults to 9.81 m/s^2",
#: "Default factor is 355.48", "default is 8.854e-12"
_DESCRIBED_DEFAULT = re.compile(
    r"\bdefaults?(?:\s+\w+)?(?:\s+(?:is|to|of))?\s*[:=]?\s*(?:['\"`](?P<quoted>[^'\"`]{1,60})['\"`]"
    r"|(?P<bare>[-+]?[\w./^][\w./^+-]*))",
    re.IGNORECASE,
)


def _is_described_default(value: Any, description: Any) -> bool:
    """True when the parameter's description states ``value`` as its default (many real specs,
    BFCL's among them, write the default there instead of in ``default``)."""
    if not isinstance(description, str) or "default" not in description.lower():
        return False
    for match in _DESCRIBED_DEFAULT.finditer(description):
        stated = match.group("quoted") or match.group("bare") or ""
        if is_number(value):
            if any(number_key(n) == number_key(value) for n in numbers_in(stated)):
                return True
        elif isinstance(value, str) and words(value) and words(value) == words(stated.rstrip(".")):
            return True
    return False


def _branches(schema: dict) -> list[dict]:
    out = []
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(key), list):
            out.extend(b for b in schema[key] if isinstance(b, dict))
    return out


def _same(a: Any, b: Any) -> bool:
    return _value_key(a) == _value_key(b)


def _value_key(value: Any) -> Any:
    number = as_number(value)
    if number is not None:
        return ("n", number_key(number))
    if isinstance(value, str):
        return ("s", " ".join(words(value)))
    if isinstance(value, (dict, list)):
        return ("j", json.dumps(value, sort_keys=True, default=str))
    return ("o", value)


def _echo_key(value: Any) -> Any:
    """Numbers by value, strings as written but for case and the ends (a pretty-printed document
    is not an echo of the compact one)."""
    number = as_number(value)
    if number is not None:
        return ("n", number_key(number))
    return ("s", value.strip().casefold()) if isinstance(value, str) else ("o", value)


# -- grounding ----------------------------------------------------------------------------------


def _grounded(value: Any, evidence: Evidence) -> bool:
    if is_number(value):
        return evidence.has_number(value)
    if not isinstance(value, str):
        return False
    text = value.strip().strip("\"'\u201c\u201d\u2018\u2019").strip()
    if not text:
        return False
    folded = words(text)
    if evidence.has_phrase(folded):
        return True
    number = as_number(text)
    if number is not None:
        return evidence.has_number(number)
    moment = as_date_time(text)
    if moment is not None:
        dates, time = moment
        return (not dates or evidence.has_date(dates)) and (time is None or time in evidence.times)
    parts = [p for p in _LIST_SEPARATOR.split(text) if p.strip()]
    if len(parts) > 1 and all(_grounded(p, evidence) for p in parts):
        return True
    for forms in (region_forms(text), currency_forms(text)):  # "IL" and "Illinois", "GBP" and "British pounds"
        if any(evidence.has_phrase(form.split()) for form in forms):
            return True
    unit = unit_of(text) if len(folded) <= 3 else None  # "km" and "kilometers"
    if unit is not None and any(unit_of(word) == unit for word in evidence.plain_words):
        return True
    month = MONTH_WORDS.get(folded[0]) if len(folded) == 1 else None  # "February" and "Feb"
    if month is not None and any(MONTH_WORDS.get(word) == month for word in evidence.plain_words):
        return True
    place, _, qualifiers = text.partition(",")  # "Chicago, IL": the place and the region it is in
    if qualifiers and all(is_region_name(q) for q in qualifiers.split(",")) and _grounded(place, evidence):
        return True
    if len(folded) < _LONG_TEXT_WORDS and _DIGITS.search(text):
        return _numbers_and_words_grounded(text, evidence)
    if len(folded) >= _LONG_TEXT_WORDS:
        return _composed_text_grounded(text, folded, evidence)
    return False


def _numbers_and_words_grounded(text: str, evidence: Evidence) -> bool:
    """A short value mixing a number and words (``"3 days"``, ``"Room 12"``): its numbers are
    grounded however written and its words stand together in the context (``"three days"``)."""
    numbers = numbers_in(text)
    if not numbers or not all(evidence.has_number(n) for n in numbers):
        return False
    rest = [w for w in words(_DIGITS.sub(" ", text)) if w]
    return not rest or evidence.has_phrase(rest)


def _composed_text_grounded(text: str, folded: Sequence[str], evidence: Evidence) -> bool:
    """A longer text the assistant writes (a message, a note): its numbers must be grounded and
    most of its content words must come from the context."""
    if not all(evidence.has_number(n) for n in numbers_in(text)):
        return False
    content = [w for w in folded if w not in STOPWORDS and not w.isdigit()]
    if not content:
        return False
    known = sum(1 for w in content if w in evidence.word_set)
    return known / len(content) >= _LONG_TEXT_COVERAGE


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= _SHOW_CHARS else text[: _SHOW_CHARS - 3] + "..."
