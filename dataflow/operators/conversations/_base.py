"""Shared machinery of the conversation (BUTTON) operators: one structured LLM round per batch.

Most operators here do the same thing: build template variables from each row, render the
operator's prompt, send every row's prompt in ONE ``generate_from_conversations`` call with the
reply model's JSON schema, validate each reply with ``parse_reply`` and turn it into a
``RowOutcome``. ``StructuredLLMOperator.structured_round`` is that loop, written once.
"""

from __future__ import annotations

from typing import Annotated, Any, Callable, Sequence

from pydantic import BaseModel, StringConstraints

from ...core import OperatorABC, Parsed, RowOutcome, parse_reply, schema_for


def Text(max_length: int, min_length: int = 3) -> Any:
    """A stripped string field with length bounds (the bounds go into the JSON schema, which keeps
    small models under constrained decoding from rambling)."""
    return Annotated[str, StringConstraints(strip_whitespace=True, min_length=min_length, max_length=max_length)]


class InvalidInput(ValueError):
    """A row's input cannot be prompted (empty/missing value); the row fails with this reason."""


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
    """An operator whose row logic is one structured LLM round."""

    def structured_round(
        self,
        rows: list[dict],
        variables: Callable[[dict], dict],
        reply_model: type[BaseModel],
        finish: Callable[[dict, Any], RowOutcome],
        row_schema: Callable[[dict], dict] | None = None,
    ) -> list[RowOutcome]:
        """``variables(row)`` gives the template variables (or raises ``InvalidInput``);
        ``finish(row, reply)`` turns a validated reply into the row's outcome; ``row_schema(row)``,
        when given, is the JSON schema sent for that row (a narrowed form of ``reply_model``'s)."""
        serving = self.require_llm()
        outcomes: list[RowOutcome | None] = [None] * len(rows)
        prompts: list[tuple[str, str]] = []
        schemas: list[dict] = []
        asked: list[int] = []
        for i, row in enumerate(rows):
            try:
                prompt = self.render(**variables(row))
                schema = row_schema(row) if row_schema is not None else None
            except InvalidInput as exc:
                outcomes[i] = RowOutcome.fail(str(exc))
                continue
            prompts.append(prompt)
            if schema is not None:
                schemas.append(schema)
            asked.append(i)
        for i, parsed in zip(asked, ask_structured(serving, prompts, reply_model, schemas or None)):
            try:
                outcomes[i] = RowOutcome.fail(parsed.reason) if not parsed.ok else finish(rows[i], parsed.value)
            except InvalidInput as exc:
                outcomes[i] = RowOutcome.fail(str(exc))
        return outcomes  # type: ignore[return-value]
