"""CompositionTaskFilter: keep a composed task only when its sub-tasks can complete it.

The judge answers through a schema: a short reason, then the decomposition's problem from a
fixed list (``none`` when there is none). The verdict follows from the problem, so a reply cannot
be self-contradictory (a "reject" naming no problem, which small models often wrote when the
verdict was a separate field). Before asking, sub-tasks that repeat one another are rejected
without an LLM call (``rejected_duplicate_steps``). Kept rows carry the verdict (``accept``) and
reason columns; rejected rows are dropped with reason ``rejected_<problem>: <reason>``, so the
run summary counts rejections by problem.
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

from pydantic import BaseModel, ConfigDict

from ...core import RowOutcome, RunReport, merge_row
from ._base import InvalidInput, StructuredLLMOperator, Text, as_key_list, sub_tasks_of, task_key, text_value

PROBLEMS = ("none", "missing_step", "steps_unrelated", "not_feasible", "unclear_task")


class CompositionVerdictReply(BaseModel):
    """Can the sub-tasks, done in order, complete the composed task?"""

    model_config = ConfigDict(extra="forbid")
    reason: Text(160, 5)
    problem: Literal[PROBLEMS]  # type: ignore[valid-type]


class CompositionTaskFilter(StructuredLLMOperator):
    """Composed task + sub-tasks -> kept (with verdict/reason columns) or dropped by problem."""

    prompt_names = ("composition_task_filter",)

    def run(
        self,
        storage: Any,
        input_composition_task_key: str = "composition_task",
        input_sub_tasks_keys: Sequence[str] = ("atom_task", "subsequent_task"),
        output_verdict_key: str = "composition_verdict",
        output_reason_key: str = "composition_reason",
    ) -> RunReport:
        keys = dict(
            input_composition_task_key=input_composition_task_key,
            input_sub_tasks_keys=as_key_list(input_sub_tasks_keys),
            output_verdict_key=output_verdict_key,
            output_reason_key=output_reason_key,
        )
        return self._run_keys(storage, keys)

    def process_batch(
        self,
        rows: list[dict],
        input_composition_task_key: str = "composition_task",
        input_sub_tasks_keys: Sequence[str] = ("atom_task", "subsequent_task"),
        output_verdict_key: str = "composition_verdict",
        output_reason_key: str = "composition_reason",
    ) -> list[RowOutcome]:
        columns = as_key_list(input_sub_tasks_keys)

        def finish(row: dict, reply: CompositionVerdictReply) -> RowOutcome:
            if reply.problem != "none":
                return RowOutcome.drop(f"rejected_{reply.problem}: {reply.reason}")
            return RowOutcome.keep(merge_row(row, **{output_verdict_key: "accept", output_reason_key: reply.reason}))

        outcomes: list[RowOutcome | None] = [None] * len(rows)
        asked: list[int] = []
        for i, row in enumerate(rows):
            repeated = _repeated_sub_task(row, columns)
            if repeated:  # a rejection (dropped), decided without the judge
                outcomes[i] = RowOutcome.drop(f"rejected_duplicate_steps: sub-task repeated: {repeated}")
            else:
                asked.append(i)
        judged = self.structured_round(
            [rows[i] for i in asked],
            lambda row: {
                "composition_task": text_value(row, input_composition_task_key),
                "sub_tasks": sub_tasks_of(row, columns),
            },
            CompositionVerdictReply,
            finish,
        )
        for i, outcome in zip(asked, judged):
            outcomes[i] = outcome
        return outcomes  # type: ignore[return-value]


def _repeated_sub_task(row: dict, columns: list[str]) -> str | None:
    """The first sub-task that repeats an earlier one (ignoring case and punctuation), if any."""
    try:
        sub_tasks = sub_tasks_of(row, columns)
    except InvalidInput:
        return None  # structured_round reports the bad input
    seen: set[str] = set()
    for task in sub_tasks:
        key = task_key(task)
        if key in seen:
            return task
        seen.add(key)
    return None
