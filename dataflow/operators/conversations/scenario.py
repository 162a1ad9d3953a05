"""Scenario operators: describe the real-world scenario behind a chat, and imagine new ones."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from ...core import RowOutcome, RunReport, merge_row
from ._base import InvalidInput, StructuredLLMOperator, Text, text_value
from .transcript import chat_to_transcript


class ScenarioReply(BaseModel):
    """The scenario in a sentence or two."""

    model_config = ConfigDict(extra="forbid")
    scenario: Text(200, 10)


class ExpandedScenarioReply(BaseModel):
    """A new scenario, different from but related to the given one."""

    model_config = ConfigDict(extra="forbid")
    scenario: Text(200, 10)


class ScenarioExtractor(StructuredLLMOperator):
    """Chat data -> a short description of the real-world scenario the user was in.

    ``input_chat_key`` may hold glaive-v2 text, an OpenAI message list or a ShareGPT list; it is
    normalised to a readable transcript before prompting, cut to ``max_chat_chars`` (the
    scenario shows in the first few turns, and prompt length dominates a small local model's time).
    """

    prompt_names = ("scenario_extractor",)

    def __init__(self, llm_serving: Any = None, max_chat_chars: int = 600, prompt_template: Any = None):
        super().__init__(llm_serving, prompt_template)
        self.max_chat_chars = max_chat_chars

    def run(self, storage: Any, input_chat_key: str = "chat", output_key: str = "scenario") -> RunReport:
        return self._run_keys(
            storage,
            dict(input_chat_key=input_chat_key, output_key=output_key),
            params={"max_chat_chars": self.max_chat_chars},
        )

    def process_batch(self, rows: list[dict], input_chat_key: str = "chat", output_key: str = "scenario") -> list[RowOutcome]:
        def variables(row: dict) -> dict:
            transcript = chat_to_transcript(row.get(input_chat_key), self.max_chat_chars)
            if not transcript:
                raise InvalidInput(f"invalid_input: column {input_chat_key!r} holds no chat")
            return {"chat": transcript}

        return self.structured_round(
            rows, variables, ScenarioReply, lambda row, reply: RowOutcome.keep(merge_row(row, **{output_key: reply.scenario}))
        )


class ScenarioExpander(StructuredLLMOperator):
    """A scenario -> a new, related scenario (more variety for the tasks generated from it)."""

    prompt_names = ("scenario_expander",)

    def run(self, storage: Any, input_scenario_key: str = "scenario", output_key: str = "modified_scenario") -> RunReport:
        return self._run_keys(storage, dict(input_scenario_key=input_scenario_key, output_key=output_key))

    def process_batch(
        self, rows: list[dict], input_scenario_key: str = "scenario", output_key: str = "modified_scenario"
    ) -> list[RowOutcome]:
        return self.structured_round(
            rows,
            lambda row: {"scenario": text_value(row, input_scenario_key)},
            ExpandedScenarioReply,
            lambda row, reply: RowOutcome.keep(merge_row(row, **{output_key: reply.scenario})),
        )
