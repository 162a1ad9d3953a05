"""Two operators of your own, one of each kind: copy one when you write yours.

- ``MaxCallsFilter`` (no LLM): keeps an APIGen row whose answer makes at most ``max_calls`` calls
  and drops the others with a reason; counts the calls it saw.
- ``QueryRewriter`` (LLM): rewrites a row's query in another register ("casual", "terse") and
  keeps the rewrite only when every argument value of the row's answer is still in it; a rewrite
  that loses one is asked again, once, with feedback.

Use them like the library's operators, one step each (here after the APIGen steps)::

    MaxCallsFilter(max_calls=2).run(storage.step(), input_answers_key="answers")
    QueryRewriter(llm_serving=llm, style="casual").run(
        storage.step(), input_query_key="query", input_answers_key="answers", output_key="casual_query")

What every operator follows is in docs/CONTRACTS.md ("Operators", "LLM operators", "Counters"),
and ``tests/test_custom_operators.py`` runs both on real files, the LLM one on a fake backend.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from dataflow.core import ConfigError, Reask, RowOutcome, RunReport, Text, merge_row, text_value
from dataflow.core.operator import OperatorABC
from dataflow.operators.llm import StructuredLLMOperator
from dataflow.quality import ungrounded_arguments
from dataflow.tools import CallError, read_call_list, read_calls


class MaxCallsFilter(OperatorABC):
    """Keep a row whose answer (a list of ``{"name", "arguments"}`` calls, in any form
    ``dataflow.tools.read_calls`` reads) makes at most ``max_calls`` calls.

    A row with more is filtered as ``too_many_calls: 3 calls, at most 2``; a row whose answer
    cannot be read fails as ``unreadable_answer: ...``. Counts ``calls_seen`` (every call of
    every readable answer). Raises ``ConfigError`` for ``max_calls`` below 1.

    Each row is judged alone, so a runner may split the step into batches; an operator that
    compares rows (a deduplicator) sets ``rows_independent = False`` to get the whole table."""

    def __init__(self, max_calls: int = 3):
        super().__init__()  # no LLM
        if not isinstance(max_calls, int) or max_calls < 1:
            raise ConfigError(f"max_calls must be a whole number >= 1, got {max_calls!r}")
        self.max_calls = max_calls

    def run(self, storage: Any, input_answers_key: str = "answers") -> RunReport:
        # input_* keys are checked before anything runs; params decide, with the keys, whether a
        # finished step can be reused
        return self._run_keys(storage, {"input_answers_key": input_answers_key},
                              params={"max_calls": self.max_calls})

    def process_batch(self, rows: list[dict], input_answers_key: str = "answers") -> list[RowOutcome]:
        outcomes = []
        for row in rows:
            try:
                calls = read_calls(row.get(input_answers_key))
            except CallError as exc:
                outcomes.append(RowOutcome.fail(f"unreadable_answer: {exc}"))
                continue
            self.stat_update("calls_seen", len(calls))
            if len(calls) > self.max_calls:
                outcomes.append(RowOutcome.drop(f"too_many_calls: {len(calls)} calls, at most {self.max_calls}"))
            else:
                outcomes.append(RowOutcome.keep(row))
        return outcomes


class RewriteReply(BaseModel):
    """What the model must reply: the rewritten query."""

    model_config = ConfigDict(extra="forbid")
    query: Text(400, 5)


#: the default prompt; ``QueryRewriter(prompt_template=...)`` replaces it (text or a file path)
REWRITE_TEMPLATE = """\
{% macro system() -%}
You rewrite a request someone sent to an assistant so that it reads {{ style }}. Keep its meaning
and keep every name, number, date and other value exactly as written. Reply with JSON: {"query": "..."}.
{%- endmacro %}
{% macro user() -%}
Request: {{ query }}
{%- endmacro %}
"""


class QueryRewriter(StructuredLLMOperator):
    """Rewrite each row's query in the register ``style`` into ``output_key``.

    The rewrite is kept only when every argument value of the row's answer is still grounded in
    it (``dataflow.quality.ungrounded_arguments``); otherwise the row is asked again once with the
    lost values named, and then fails as ``lost_value: ...``. A failed LLM call or a reply that
    is not ``RewriteReply`` fails the row with its reason (the shared round does that)."""

    prompt_names = ("query_rewriter",)

    def __init__(self, llm_serving: Any = None, style: str = "casual", prompt_template: Any = None):
        super().__init__(llm_serving, prompt_template if prompt_template is not None else REWRITE_TEMPLATE)
        self.style = style

    def run(self, storage: Any, input_query_key: str = "query", input_answers_key: str = "answers",
            output_key: str = "rewritten_query") -> RunReport:
        return self._run_keys(storage, {"input_query_key": input_query_key, "input_answers_key": input_answers_key,
                                        "output_key": output_key}, params={"style": self.style})

    def process_batch(self, rows: list[dict], input_query_key: str = "query", input_answers_key: str = "answers",
                      output_key: str = "rewritten_query") -> list[RowOutcome]:
        def variables(row: dict) -> dict:
            return {"style": self.style, "query": text_value(row, input_query_key)}  # InvalidInput fails the row

        def finish(row: dict, reply: RewriteReply) -> RowOutcome:
            try:
                calls = read_call_list(row.get(input_answers_key))  # the one reader of calls
            except CallError as exc:
                return RowOutcome.fail(f"unreadable_answer: {exc}")
            lost = [problem.partition(": ")[2]  # "bill=60 is not in the rewrite"
                    for call in calls
                    for problem in ungrounded_arguments(call.arguments, None, [reply.query], missing_from="the rewrite")]
            if lost:
                reason = "lost_value: " + "; ".join(lost)
                raise Reask(f"Your rewrite lost values of the request ({reason}). Keep every value as written.",
                            final=RowOutcome.fail(reason))
            return RowOutcome.keep(merge_row(row, **{output_key: reply.query}))

        return self.structured_round(rows, variables, RewriteReply, finish, max_reasks=1)
