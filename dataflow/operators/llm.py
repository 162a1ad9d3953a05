"""The base class of every LLM operator, whichever family it belongs to.

An LLM operator is a reply model (pydantic), a prompt template and a ``finish(row, reply)``
function on the shared structured round (``dataflow.core.rounds.structured_round``)::

    from pydantic import BaseModel, ConfigDict
    from dataflow.core import RowOutcome, Text, merge_row, text_value
    from dataflow.operators.llm import StructuredLLMOperator

    class SummaryReply(BaseModel):
        model_config = ConfigDict(extra="forbid")
        summary: Text(200)

    class Summarizer(StructuredLLMOperator):
        prompt_names = ("summarizer",)                     # dataflow/prompts/templates/summarizer.j2

        def run(self, storage, input_text_key="text", output_key="summary"):
            return self._run_keys(storage, {"input_text_key": input_text_key, "output_key": output_key})

        def process_batch(self, rows, input_text_key="text", output_key="summary"):
            return self.structured_round(
                rows, lambda row: {"text": text_value(row, input_text_key)}, SummaryReply,
                lambda row, reply: RowOutcome.keep(merge_row(row, **{output_key: reply.summary})))

``ScenarioExtractor`` (``conversations/scenario.py``) is a real one of this size.
Here the round also re-asks a reply whose text copies a run of words from the system prompt that
asked for it (``dataflow.quality.prompt_echo``), unless ``echo_check = False``.
"""

from __future__ import annotations

from typing import Any, Callable

from pydantic import BaseModel

from ..core.operator import OperatorABC, RowOutcome
from ..core.rounds import structured_round

__all__ = ["StructuredLLMOperator", "echoed_instructions"]


def echoed_instructions(reply: BaseModel, system: str) -> str | None:
    """The ``instruction_leak`` reason when a text field of ``reply`` copies a run of words from
    the ``system`` prompt that asked for it (``dataflow.quality.prompt_echo``), else None."""
    from ..quality import prompt_echo

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
        options: Callable[[dict], dict | None] | None = None,
    ) -> list[RowOutcome]:
        """``dataflow.core.rounds.structured_round`` with this operator's template:
        ``variables(row)`` gives the template variables (or raises ``InvalidInput``);
        ``options(row)`` the request fields of that row's request (e.g. a judge vote's seed)."""
        return structured_round(
            self.require_llm(), rows, lambda row: self.render(**variables(row)), reply_model, finish,
            row_schema=row_schema, max_reasks=max_reasks,
            check=echoed_instructions if self.echo_check else None, options=options,
        )
