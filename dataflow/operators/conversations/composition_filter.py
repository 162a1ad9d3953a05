"""CompositionTaskFilter: keep a composed task only when its sub-tasks can complete it.

The judge answers through a schema: a short reason, a verdict (``accept``/``reject``) and, for a
rejection, a problem category from a fixed list. Kept rows carry the verdict and reason columns;
rejected rows are dropped with reason ``rejected_<problem>: <judge's reason>``, so the run
summary counts rejections by problem.
"""

from __future__ import annotations

from typing import Any, Literal, Sequence

from pydantic import BaseModel, ConfigDict

from ...core import RowOutcome, RunReport, merge_row
from ._base import StructuredLLMOperator, Text, as_key_list, sub_tasks_of, text_value

PROBLEMS = ("none", "missing_step", "steps_unrelated", "not_feasible", "unclear_task")


class CompositionVerdictReply(BaseModel):
    """Can the sub-tasks, done in order, complete the composed task?"""

    model_config = ConfigDict(extra="forbid")
    reason: Text(200, 5)
    verdict: Literal["accept", "reject"]
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
        return self._run_step(
            storage,
            inputs={k: v for k, v in keys.items() if k.startswith("input_")},
            outputs={"output_verdict_key": output_verdict_key, "output_reason_key": output_reason_key},
            batch_fn=lambda rows: self.process_batch(rows, **keys),
        )

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
            if reply.verdict == "reject":
                problem = reply.problem if reply.problem != "none" else "unspecified"
                return RowOutcome.drop(f"rejected_{problem}: {reply.reason}")
            return RowOutcome.keep(merge_row(row, **{output_verdict_key: "accept", output_reason_key: reply.reason}))

        return self.structured_round(
            rows,
            lambda row: {
                "composition_task": text_value(row, input_composition_task_key),
                "sub_tasks": sub_tasks_of(row, columns),
            },
            CompositionVerdictReply,
            finish,
        )
