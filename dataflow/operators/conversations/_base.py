"""Helpers of the conversation (BUTTON) operators: reading sub-task columns and comparing tasks.

The structured round they all run is ``dataflow.core.rounds`` (through
``dataflow.operators.llm.StructuredLLMOperator``).
"""

from __future__ import annotations

from typing import Sequence

from ...core.errors import InvalidInput


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
