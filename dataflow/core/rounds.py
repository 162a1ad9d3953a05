"""The structured LLM round every LLM operator runs: one batch call per round.

For each row: build the prompt (``prompt(row) -> (system, user)``, or ``InvalidInput``: the row
fails with that reason), send every row's prompt in ONE ``generate_from_conversations`` call with
the reply model's JSON schema (or one schema per row), validate each reply with ``parse_reply``,
and let ``finish(row, reply)`` turn it into the row's ``RowOutcome``. ``finish`` (or ``check``)
may find a well-formed reply unusable: ``Reask`` sends that row again, with feedback, in the next
batch, at most ``max_reasks`` times. A failed request or an invalid reply is
``RowOutcome.fail(reason)``, never a value.

``dataflow.operators.llm.StructuredLLMOperator`` wraps this for operators (template rendering and
the instruction-echo check); a reply model, a template and a ``finish`` function make an operator.
"""

from __future__ import annotations

from typing import Annotated, Any, Callable, Sequence

from pydantic import BaseModel, StringConstraints

from .errors import InvalidInput, Reask
from .llm import prompt_messages
from .operator import RowOutcome
from .structured import Parsed, parse_reply, schema_for

__all__ = ["Text", "text_value", "ask_structured", "structured_round"]

#: one row's prompt: ``(system, user)``
Prompt = tuple[str, str]


def Text(max_length: int, min_length: int = 3) -> Any:
    """A stripped string field with length bounds (the bounds go into the JSON schema, which keeps
    small models under constrained decoding from rambling)."""
    return Annotated[str, StringConstraints(strip_whitespace=True, min_length=min_length, max_length=max_length)]


def text_value(row: dict, column: str) -> str:
    """The non-empty text in ``row[column]`` (a list is joined by lines); raises ``InvalidInput``
    when it is missing or blank."""
    value = row.get(column)
    if isinstance(value, list):
        value = "\n".join(str(v) for v in value if v not in (None, ""))
    if value is None or not str(value).strip():
        raise InvalidInput(f"invalid_input: column {column!r} is empty")
    return str(value).strip()


def ask_structured(
    serving: Any,
    prompts: Sequence[Prompt],
    model: type[BaseModel],
    json_schema: dict | Sequence[dict] | None = None,
    options: Sequence[dict | None] | None = None,
) -> list[Parsed]:
    """Send every ``(system, user)`` prompt in one batch with ``model``'s schema (or
    ``json_schema``: one schema, or one per prompt, e.g. narrowed to that row's tools) and
    validate each reply against ``model``. ``options``: request fields per prompt (``None`` for
    none), e.g. ``{"temperature": 0.7, "seed": 2}`` for an independent sample; sent only when
    some prompt has them."""
    if not prompts:
        return []
    extra = {"options": list(options)} if options is not None and any(o is not None for o in options) else {}
    results = serving.generate_from_conversations(
        [prompt_messages(s, u) for s, u in prompts], json_schema=json_schema or schema_for(model), **extra
    )
    return [parse_reply(result, model) for result in results]


def structured_round(
    serving: Any,
    rows: list[dict],
    prompt: Callable[[dict], Prompt],
    reply_model: type[BaseModel],
    finish: Callable[[dict, Any], RowOutcome],
    *,
    row_schema: Callable[[dict], dict] | None = None,
    max_reasks: int = 0,
    check: Callable[[Any, str], str | None] | None = None,
    options: Callable[[dict], dict | None] | None = None,
) -> list[RowOutcome]:
    """One ``RowOutcome`` per row, in order.

    ``prompt(row)`` gives the row's ``(system, user)`` prompt or raises ``InvalidInput``;
    ``row_schema(row)``, when given, the JSON schema sent for that row (a narrowed form of
    ``reply_model``'s); ``options(row)``, when given, the request fields of that row's requests
    (``None``: none; an LLM judge's votes are rows asking the same prompt with a different
    seed); ``check(reply, system)``, when given, a reason to re-ask a valid reply
    (feedback ``"<reason>. Write it in your own words."``, final outcome ``fail(reason)``) before
    ``finish(row, reply)`` makes the outcome. ``finish`` may raise ``Reask``; the rows to re-ask go
    together in one batch per attempt, at most ``max_reasks`` times."""
    outcomes: list[RowOutcome | None] = [None] * len(rows)
    rendered: dict[int, Prompt] = {}
    schemas: dict[int, dict | None] = {}
    fields: dict[int, dict | None] = {}
    for i, row in enumerate(rows):
        try:
            rendered[i] = prompt(row)
            schemas[i] = row_schema(row) if row_schema is not None else None
            fields[i] = options(row) if options is not None else None
        except InvalidInput as exc:
            outcomes[i] = RowOutcome.fail(str(exc))
    pending = list(rendered)
    feedback: dict[int, str] = {}
    for attempt in range(max_reasks + 1):
        prompts = []
        for i in pending:
            system, user = rendered[i]
            if i in feedback:
                user = f"{user}\n\nYour previous answer was rejected: {feedback[i]} Answer again."
            prompts.append((system, user))
        replies = ask_structured(
            serving, prompts, reply_model, [schemas[i] for i in pending] if row_schema is not None else None,
            [fields[i] for i in pending],
        )
        again: list[int] = []
        for i, parsed in zip(pending, replies):
            try:
                if not parsed.ok:
                    outcomes[i] = RowOutcome.fail(parsed.reason)
                    continue
                problem = check(parsed.value, rendered[i][0]) if check is not None else None
                if problem:
                    raise Reask(f"{problem}. Write it in your own words.", RowOutcome.fail(problem))
                outcomes[i] = finish(rows[i], parsed.value)
            except InvalidInput as exc:
                outcomes[i] = RowOutcome.fail(str(exc))
            except Reask as reask:
                if attempt < max_reasks:
                    feedback[i] = reask.feedback
                    again.append(i)
                else:
                    outcomes[i] = reask.final
        pending = again
        if not pending:
            break
    return outcomes  # type: ignore[return-value]
