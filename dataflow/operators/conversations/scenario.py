"""Scenario operators: describe the real-world scenario behind a chat, and imagine new ones."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from ...core import RowOutcome, RunReport, merge_row
from ...core.errors import InvalidInput
from ...core.rounds import Text, text_value
from ..llm import StructuredLLMOperator
from .transcript import chat_to_transcript


class ScenarioReply(BaseModel):
    """The scenario in a sentence or two (the reply of ScenarioExtractor and ScenarioExpander)."""

    model_config = ConfigDict(extra="forbid")
    scenario: Text(200, 10)


class ScenarioExtractor(StructuredLLMOperator):
    """Chat data -> a short description of the real-world scenario the user was in.

    ``input_chat_key`` may hold glaive-v2 text, an OpenAI message list or a ShareGPT list; it is
    normalised to a readable transcript. The prompt shows the user's own turns first, then the
    rest of the chat, within ``max_chat_chars`` in all (prompt length dominates a small local
    model's time): a long system text or tool list at the start of a chat can no longer push the
    user's request out of the prompt. A chat with no user turn fails as ``invalid_input``.
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
            transcript = chat_to_transcript(row.get(input_chat_key), max_chars=1_000_000)
            if not transcript:
                raise InvalidInput(f"invalid_input: column {input_chat_key!r} holds no chat")
            return split_prompt_chat(transcript, self.max_chat_chars)

        return self.structured_round(
            rows, variables, ScenarioReply, lambda row, reply: RowOutcome.keep(merge_row(row, **{output_key: reply.scenario}))
        )


def split_prompt_chat(transcript: str, max_chars: int) -> dict:
    """``{"requests": <the USER lines>, "chat": <the whole transcript>}`` within ``max_chars``
    together, the requests first (each part cut with a marker when it does not fit). Raises
    ``InvalidInput`` when the transcript has no user turn."""
    lines = transcript.splitlines()
    requests = "\n".join(line[len("USER:"):].strip() for line in lines if line.startswith("USER:"))
    if not requests:
        raise InvalidInput("invalid_input: the chat has no user turn to describe")
    requests = _clip(requests, max_chars)
    return {"requests": requests, "chat": _clip(transcript, max(0, max_chars - len(requests)))}


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: max(0, n - 16)].rstrip() + " [... cut]"


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
            ScenarioReply,
            lambda row, reply: RowOutcome.keep(merge_row(row, **{output_key: reply.scenario})),
        )
