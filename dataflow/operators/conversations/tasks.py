"""Task operators: an atomic task from a scenario, then compositions of atomic tasks.

- ``AtomTaskGenerator``: scenario -> one atomic task (one tool call's worth of work).
- ``SequentialTaskGenerator``: task A -> a subsequent task B that needs A's output, and the
  composed task "A then B" as a user would ask it.
- ``ParaSeqTaskGenerator``: task A -> a parallel task P independent of A, and a final task B that
  needs the outputs of both; the composed task asks for all three. Given an existing subsequent
  task (``input_subsequent_task_key``), it keeps B's intent and rewrites it to use P too, which
  turns a sequential composition into a parallel-then-sequential one.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict

from ...core import RowOutcome, RunReport, merge_row
from ...core.errors import Reask
from ...core.rounds import Text, text_value
from ..llm import StructuredLLMOperator


class AtomTaskReply(BaseModel):
    """One atomic task."""

    model_config = ConfigDict(extra="forbid")
    task: Text(200, 10)


class SequentialTaskReply(BaseModel):
    """What task A's result is, a follow-up task that needs it, and the two composed. The
    result comes first so that the follow-up is written with the data flow in view (BUTTON's
    sequential composition: B consumes A's output)."""

    model_config = ConfigDict(extra="forbid")
    a_result: Text(80, 3)
    subsequent_task: Text(150, 10)
    composition_task: Text(300, 10)


class ParaSeqTaskReply(BaseModel):
    """A parallel task, a final task using both results, and the three composed."""

    model_config = ConfigDict(extra="forbid")
    parallel_task: Text(150, 10)
    subsequent_task: Text(150, 10)
    composition_task: Text(350, 10)


class AtomTaskGenerator(StructuredLLMOperator):
    """Scenario -> one atomic task a single function call can do."""

    prompt_names = ("atom_task_generator",)

    def run(self, storage: Any, input_scenario_key: str = "scenario", output_key: str = "atom_task") -> RunReport:
        return self._run_keys(storage, dict(input_scenario_key=input_scenario_key, output_key=output_key))

    def process_batch(self, rows: list[dict], input_scenario_key: str = "scenario", output_key: str = "atom_task") -> list[RowOutcome]:
        return self.structured_round(
            rows,
            lambda row: {"scenario": text_value(row, input_scenario_key)},
            AtomTaskReply,
            lambda row, reply: RowOutcome.keep(merge_row(row, **{output_key: reply.task})),
        )


class SequentialTaskGenerator(StructuredLLMOperator):
    """Atomic task -> a subsequent task that consumes its output, plus the composed task.

    A follow-up that restates task A (``dataflow.quality.similarity``, near-duplicate) or carries
    the prompt's own words is asked again once with the reason, then the row fails with
    ``restated_task`` / ``instruction_leak``: no judge is spent on it."""

    prompt_names = ("sequential_task_generator",)

    def __init__(self, llm_serving: Any = None, max_reasks: int = 1, prompt_template: Any = None):
        super().__init__(llm_serving=llm_serving, prompt_template=prompt_template)
        self.max_reasks = max_reasks

    def run(
        self,
        storage: Any,
        input_task_key: str = "atom_task",
        output_subsequent_task_key: str = "subsequent_task",
        output_composition_task_key: str = "composition_task",
    ) -> RunReport:
        keys = dict(
            input_task_key=input_task_key,
            output_subsequent_task_key=output_subsequent_task_key,
            output_composition_task_key=output_composition_task_key,
        )
        return self._run_keys(storage, keys, params={"max_reasks": self.max_reasks})

    def process_batch(
        self,
        rows: list[dict],
        input_task_key: str = "atom_task",
        output_subsequent_task_key: str = "subsequent_task",
        output_composition_task_key: str = "composition_task",
    ) -> list[RowOutcome]:
        def finish(row: dict, reply: SequentialTaskReply) -> RowOutcome:
            problem = composition_problem(
                [("task A", text_value(row, input_task_key)), ("subsequent_task", reply.subsequent_task)],
                reply.composition_task,
            ) or unused_result(reply.subsequent_task, reply.a_result)
            if problem:
                raise Reask(
                    f"{problem}. Task B must be a different action that uses A's result ({reply.a_result}).",
                    RowOutcome.fail(problem),
                )
            return RowOutcome.keep(
                merge_row(
                    row,
                    **{
                        output_subsequent_task_key: reply.subsequent_task,
                        output_composition_task_key: reply.composition_task,
                    },
                )
            )

        return self.structured_round(
            rows,
            lambda row: {"task": text_value(row, input_task_key)},
            SequentialTaskReply,
            finish,
            max_reasks=self.max_reasks,
        )


_REFERENCE = re.compile(r"\b(it|its|that|this|those|these|them|they|result|results|answer|above)\b", re.IGNORECASE)


def unused_result(subsequent_task: str, a_result: str) -> str | None:
    """``unused_result: ...`` when the follow-up neither refers back ("it", "that", "the
    result") nor names a word of A's result: then it does not need A's output and the
    composition is two unrelated requests, not a sequence."""
    from ...quality import normalize_text

    if _REFERENCE.search(subsequent_task):
        return None
    result_words = {w for w in normalize_text(a_result).split() if len(w) > 3}
    if result_words & set(normalize_text(subsequent_task).split()):
        return None
    return f"unused_result: the follow-up ({subsequent_task!r}) does not use A's result ({a_result!r})"


def composition_problem(tasks: list[tuple[str, str]], composition: str) -> str | None:
    """Why a composition is unusable, or ``None``: a task that restates an earlier one (a
    near-duplicate by ``dataflow.quality.similarity``), or instruction words in any text
    (``instruction_leak``). ``tasks`` are ``(label, text)`` in order; the first is given, the
    others were generated."""
    from ...quality import instruction_leak, near_duplicate_of

    for k, (label, text) in enumerate(tasks[1:], start=1):
        earlier = tasks[:k]
        hit = near_duplicate_of(text, [t for _, t in earlier])
        if hit is not None:
            return f"restated_task: {label} restates {earlier[hit[0]][0]} ({text!r})"
    for label, text in tasks[1:] + [("composition_task", composition)]:
        leak = instruction_leak(text)
        if leak:
            return f"{leak} (in {label})"
    return None


class ParaSeqTaskGenerator(StructuredLLMOperator):
    """Atomic task -> a parallel atomic task and a final task fed by both, plus the composed task."""

    prompt_names = ("para_seq_task_generator",)

    def __init__(self, llm_serving: Any = None, max_reasks: int = 1, prompt_template: Any = None):
        super().__init__(llm_serving=llm_serving, prompt_template=prompt_template)
        self.max_reasks = max_reasks

    def run(
        self,
        storage: Any,
        input_task_key: str = "atom_task",
        input_subsequent_task_key: str | None = None,
        output_parallel_task_key: str = "parallel_task",
        output_subsequent_task_key: str = "subsequent_task",
        output_composition_task_key: str = "composition_task",
    ) -> RunReport:
        keys = dict(
            input_task_key=input_task_key,
            input_subsequent_task_key=input_subsequent_task_key,
            output_parallel_task_key=output_parallel_task_key,
            output_subsequent_task_key=output_subsequent_task_key,
            output_composition_task_key=output_composition_task_key,
        )
        return self._run_keys(
            storage,
            keys,
            params={"max_reasks": self.max_reasks},
        )

    def process_batch(
        self,
        rows: list[dict],
        input_task_key: str = "atom_task",
        input_subsequent_task_key: str | None = None,
        output_parallel_task_key: str = "parallel_task",
        output_subsequent_task_key: str = "subsequent_task",
        output_composition_task_key: str = "composition_task",
    ) -> list[RowOutcome]:
        def variables(row: dict) -> dict:
            followup = text_value(row, input_subsequent_task_key) if input_subsequent_task_key else ""
            return {"task": text_value(row, input_task_key), "subsequent_task": followup}

        def finish(row: dict, reply: ParaSeqTaskReply) -> RowOutcome:
            kept = RowOutcome.keep(
                merge_row(
                    row,
                    **{
                        output_parallel_task_key: reply.parallel_task,
                        output_subsequent_task_key: reply.subsequent_task,
                        output_composition_task_key: reply.composition_task,
                    },
                )
            )
            problem = composition_problem(
                [
                    ("task A", text_value(row, input_task_key)),
                    ("parallel_task", reply.parallel_task),
                    ("subsequent_task", reply.subsequent_task),
                ],
                reply.composition_task,
            )
            if problem:
                # small models often copy a task; ask again, then fail the row with the reason
                raise Reask(
                    f"{problem}. Write three different tasks: A, a new parallel task P, and a final task B.",
                    RowOutcome.fail(problem),
                )
            return kept

        return self.structured_round(rows, variables, ParaSeqTaskReply, finish, max_reasks=self.max_reasks)
