"""Shared machinery of the conversation (BUTTON) operators: one structured LLM round per batch.

Most operators here do the same thing: build template variables from each row, render the
operator's prompt, send every row's prompt in ONE ``generate_from_conversations`` call with the
reply model's JSON schema, validate each reply with ``parse_reply`` and turn it into a
``RowOutcome``. ``StructuredLLMOperator.structured_round`` is that loop, written once.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Callable, Sequence

from pydantic import BaseModel, StringConstraints

from ...core import OperatorABC, Parsed, RowOutcome, parse_reply, schema_for


def Text(max_length: int, min_length: int = 3) -> Any:
    """A stripped string field with length bounds (the bounds go into the JSON schema, which keeps
    small models under constrained decoding from rambling)."""
    return Annotated[str, StringConstraints(strip_whitespace=True, min_length=min_length, max_length=max_length)]


class InvalidInput(ValueError):
    """A row's input cannot be prompted (empty/missing value); the row fails with this reason."""


class Reask(Exception):
    """Raised by a ``finish`` callback: the reply is well-formed but unusable. The row is asked
    again with ``feedback`` appended to its prompt (so the new request is a new cache entry);
    after the last re-ask the row ends as ``final``."""

    def __init__(self, feedback: str, final: RowOutcome):
        super().__init__(feedback)
        self.feedback = feedback
        self.final = final


def task_key(text: str) -> str:
    """A task's text reduced to lower-case words, to spot a task that repeats another."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def prompt_messages(system: str, user: str) -> list[dict]:
    """The chat messages for one rendered template."""
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": user})
    return messages


def ask_structured(
    serving: Any,
    prompts: Sequence[tuple[str, str]],
    model: type[BaseModel],
    json_schema: dict | Sequence[dict] | None = None,
) -> list[Parsed]:
    """Send every ``(system, user)`` prompt in one batch with ``model``'s schema (or
    ``json_schema``: one schema, or one per prompt, e.g. narrowed to that row's tools) and
    validate each reply against ``model``."""
    if not prompts:
        return []
    results = serving.generate_from_conversations(
        [prompt_messages(s, u) for s, u in prompts], json_schema=json_schema or schema_for(model)
    )
    return [parse_reply(result, model) for result in results]


def echoed_instructions(reply: BaseModel, system: str) -> str | None:
    """The ``instruction_leak`` reason when a text field of ``reply`` copies a run of words from
    the ``system`` prompt that asked for it (``dataflow.quality.prompt_echo``), else None."""
    from ...quality import prompt_echo

    def texts(value: Any):
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            for item in value.values():
                yield from texts(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                yield from texts(item)

    for text in texts(reply.model_dump()):
        echo = prompt_echo(text, system)
        if echo:
            return echo
    return None


def text_value(row: dict, column: str) -> str:
    """The non-empty text in ``row[column]``; raises ``InvalidInput`` otherwise."""
    value = row.get(column)
    if isinstance(value, list):
        value = "\n".join(str(v) for v in value if v not in (None, ""))
    if value is None or not str(value).strip():
        raise InvalidInput(f"invalid_input: column {column!r} is empty")
    return str(value).strip()


def sub_tasks_of(row: dict, columns: Sequence[str]) -> list[str]:
    """The sub-tasks named by ``columns`` (a column may hold one task or a list of tasks), in order."""
    tasks: list[str] = []
    for column in columns:
        value = row.get(column)
        values = value if isinstance(value, list) else [value]
        for v in values:
            if v is None or not str(v).strip():
                raise InvalidInput(f"invalid_input: sub-task column {column!r} is empty")
            tasks.append(str(v).strip())
    if not tasks:
        raise InvalidInput("invalid_input: no sub-tasks")
    return tasks


def as_key_list(keys: str | Sequence[str]) -> list[str]:
    """``input_sub_tasks_keys`` accepts one column name or a list of them."""
    return [keys] if isinstance(keys, str) else list(keys)


class StructuredLLMOperator(OperatorABC):
    """An operator whose row logic is one structured LLM round.

    ``echo_check``: re-ask a reply whose text copies a run of words from its system prompt
    (``echoed_instructions``); an operator whose prompt shows an example the reply may rightly
    resemble (a weather tool described as "weather forecast for a city") turns it off."""

    echo_check: bool = True

    def structured_round(
        self,
        rows: list[dict],
        variables: Callable[[dict], dict],
        reply_model: type[BaseModel],
        finish: Callable[[dict, Any], RowOutcome],
        row_schema: Callable[[dict], dict] | None = None,
        max_reasks: int = 0,
    ) -> list[RowOutcome]:
        """``variables(row)`` gives the template variables (or raises ``InvalidInput``);
        ``finish(row, reply)`` turns a validated reply into the row's outcome; ``row_schema(row)``,
        when given, is the JSON schema sent for that row (a narrowed form of ``reply_model``'s).
        ``finish`` may raise ``Reask``: the row is asked again, at most ``max_reasks`` times,
        all such rows together in one batch per attempt."""
        serving = self.require_llm()
        outcomes: list[RowOutcome | None] = [None] * len(rows)
        rendered: dict[int, tuple[str, str]] = {}
        schemas: dict[int, dict | None] = {}
        for i, row in enumerate(rows):
            try:
                rendered[i] = self.render(**variables(row))
                schemas[i] = row_schema(row) if row_schema is not None else None
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
            row_schemas = [schemas[i] for i in pending]
            replies = ask_structured(
                serving, prompts, reply_model, row_schemas if row_schema is not None else None
            )
            again: list[int] = []
            for i, parsed in zip(pending, replies):
                try:
                    if not parsed.ok:
                        outcomes[i] = RowOutcome.fail(parsed.reason)
                        continue
                    echo = echoed_instructions(parsed.value, rendered[i][0]) if self.echo_check else None
                    if echo:
                        raise Reask(f"{echo}. Write it in your own words.", RowOutcome.fail(echo))
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
