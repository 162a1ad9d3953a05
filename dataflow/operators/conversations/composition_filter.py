"""CompositionTaskFilter: keep a composed task only when its sub-tasks can complete it.

First, without an LLM call, a row is rejected as ``rejected_duplicate_steps`` when two sub-tasks
are near-duplicates (``dataflow.quality.similarity``: the same words give or take a few) that do
not name different things (Paris / Rome is a parallel step, not a repeat), or one restates the
whole composed task. Then the judge answers through a schema:
``checks`` (each sub-task in a few words: what it does, whether another sub-task already asks
it, whether the task already holds its answer), a short ``reason``, and last the problem from a
fixed list (``none`` when there is none). The verdict follows from the problem, so a reply cannot
be self-contradictory. With ``n_votes`` > 1 the row is kept only when a strict majority of votes
name no problem (``dataflow.operators.judges``).

Kept rows carry the verdict (``accept``) and reason columns; rejected rows are dropped with reason
``rejected_<problem>: <reason>``, so the run summary counts rejections by problem. A judge not
calibrated on the model (``judge_mode="auto"``) only advises: the row is kept with verdict
``reject`` and reason ``advisory: rejected_<problem>: ...``, counted in the run report. The
duplicate check is always enforced.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Literal, Sequence

from pydantic import BaseModel, ConfigDict

from ...core import RowOutcome, RunReport, merge_row
from ..judges import LLMJudge, Tally, with_tally
from ...core.errors import InvalidInput
from ...core.rounds import Text, text_value
from ..llm import StructuredLLMOperator
from ._base import as_key_list, sub_tasks_of

PROBLEMS = ("none", "duplicate_steps", "already_done", "missing_step", "steps_unrelated", "not_feasible",
            "unclear_task")


class CompositionVerdictReply(BaseModel):
    """Checks of each sub-task, then the reason, then the decomposition's problem (last)."""

    model_config = ConfigDict(extra="forbid")
    checks: Text(300, 5)
    reason: Text(160, 5)
    problem: Literal[PROBLEMS]  # type: ignore[valid-type]


class CompositionTaskFilter(LLMJudge, StructuredLLMOperator):
    """Composed task + sub-tasks -> kept (with verdict/reason columns) or dropped by problem.

    Args:
        n_votes: independent judge samples per row; kept on a strict majority of "none".
        judge_mode: ``"auto"`` (rejections are advisory while the judge is not calibrated on the
            model) or ``"enforce"`` (always dropped).
    """

    prompt_names = ("composition_task_filter",)

    def __init__(self, llm_serving: Any = None, prompt_template: Any = None, *, n_votes: int = 1,
                 judge_mode: str = "auto"):
        super().__init__(llm_serving, prompt_template)
        self._init_judge(n_votes, judge_mode)

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
        self.announce_calibration()
        return self._run_keys(storage, keys, params=self.judge_params())

    def process_batch(
        self,
        rows: list[dict],
        input_composition_task_key: str = "composition_task",
        input_sub_tasks_keys: Sequence[str] = ("atom_task", "subsequent_task"),
        output_verdict_key: str = "composition_verdict",
        output_reason_key: str = "composition_reason",
    ) -> list[RowOutcome]:
        columns = as_key_list(input_sub_tasks_keys)

        def variables(row: dict) -> dict:
            return {"composition_task": text_value(row, input_composition_task_key),
                    "sub_tasks": sub_tasks_of(row, columns)}

        def on_accept(row: dict, counted: Tally, yes: list) -> RowOutcome:
            reason = with_tally(yes[0].reason, counted)
            return RowOutcome.keep(merge_row(row, **{output_verdict_key: "accept", output_reason_key: reason}))

        def on_reject(row: dict, counted: Tally, no: list, enforced: bool) -> RowOutcome:
            problem = Counter(reply.problem for reply in no).most_common(1)[0][0]
            first = next(reply for reply in no if reply.problem == problem)
            reason = f"rejected_{problem}: {with_tally(first.reason, counted)}"
            kept = merge_row(row, **{output_verdict_key: "reject", output_reason_key: f"advisory: {reason}"})
            return self.reject(kept, reason, enforced)

        outcomes: list[RowOutcome | None] = [None] * len(rows)
        asked: list[int] = []
        for i, row in enumerate(rows):
            repeated = repeated_sub_task(row, input_composition_task_key, columns)
            if repeated:  # deterministic: always enforced, no LLM call
                outcomes[i] = RowOutcome.drop(f"rejected_duplicate_steps: {repeated}")
            else:
                asked.append(i)
        judged = self.judge_round([rows[i] for i in asked], variables, CompositionVerdictReply,
                                  lambda row, reply: reply.problem == "none", on_accept, on_reject)
        for i, outcome in zip(asked, judged):
            outcomes[i] = outcome
        return outcomes  # type: ignore[return-value]


#: a sub-task this close to the whole composed task restates it (stricter than NEAR_DUPLICATE: the
#: composed task rightly holds most of each sub-task's words, e.g. "find X and create event Y" vs
#: "create event Y" scores 88)
RESTATES_TASK = 95.0


def repeated_sub_task(row: dict, task_column: str, columns: list[str]) -> str | None:
    """Why the row's sub-tasks repeat, or ``None``: two sub-tasks that are near-duplicates
    (``dataflow.quality.similarity``: the same words give or take a few, case, punctuation and
    word order ignored) and do not name different things, or a sub-task that restates the
    whole composed task (score >= ``RESTATES_TASK``)."""
    from ...quality.similarity import near_duplicate_of, near_duplicate_pairs

    try:
        sub_tasks = sub_tasks_of(row, columns)
    except InvalidInput:
        return None  # the judge round reports the bad input
    for i, j, score in near_duplicate_pairs(sub_tasks):
        if not names_different_things(sub_tasks[i], sub_tasks[j]):
            return f"sub-task {j + 1} repeats sub-task {i + 1} (similarity {score:.0f}): {sub_tasks[j]!r}"
    composed = row.get(task_column)
    if len(sub_tasks) > 1 and isinstance(composed, str) and composed.strip():
        hit = near_duplicate_of(composed, sub_tasks, threshold=RESTATES_TASK)
        if hit is not None:
            index, score = hit
            return (f"sub-task {index + 1} restates the whole composed task (similarity {score:.0f}): "
                    f"{sub_tasks[index]!r}")
    return None


def names_different_things(a: str, b: str) -> bool:
    """Whether each text names a value the other lacks (a capitalised name or a number: "forecast
    for Paris" / "forecast for Rome", "price of AAPL" / "price of MSFT"): then two near-identical
    sub-tasks are parallel steps, not a repeat. Rewording ("next train on Friday" / "next Friday
    train") or one side's extra detail does not count."""
    words_a, words_b = _words(a), _words(b)
    return bool(_values(a) - words_b) and bool(_values(b) - words_a)


def _words(text: str) -> set[str]:
    return set(re.findall(r"[^\W_]+", text.lower()))


def _values(text: str) -> set[str]:
    """Capitalised words after the first, and words with a digit, lower-cased."""
    tokens = re.findall(r"[^\W_]+", text)
    return {t.lower() for k, t in enumerate(tokens) if (k > 0 and t[0].isupper()) or any(c.isdigit() for c in t)}
