"""ConversationQualityEvaluator: an LLM judge scores each conversation 1-5 with an explanation.

With ``min_score`` set, rows scoring below it are dropped with reason ``low_quality: ...``
(counted in the run summary); by default every scored row is kept.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ...core import RowOutcome, RunReport, merge_row
from ._base import InvalidInput, StructuredLLMOperator, Text
from .functions import tools_text
from .transcript import chat_to_transcript


class QualityReply(BaseModel):
    """A short explanation, then an integer score from 1 (unusable) to 5 (excellent)."""

    model_config = ConfigDict(extra="forbid")
    explanation: Text(300, 5)
    score: int = Field(ge=1, le=5)


class ConversationQualityEvaluator(StructuredLLMOperator):
    """Conversation (+ tools) -> ``quality_score`` (1-5) and ``quality_explanation``."""

    prompt_names = ("conversation_quality_evaluator",)

    def __init__(self, llm_serving: Any = None, min_score: int | None = None, max_chars: int = 6000, prompt_template: Any = None):
        super().__init__(llm_serving, prompt_template)
        self.min_score = min_score
        self.max_chars = max_chars

    def run(
        self,
        storage: Any,
        input_conversations_key: str = "conversations",
        input_tools_key: str | None = "tools",
        output_score_key: str = "quality_score",
        output_explanation_key: str = "quality_explanation",
    ) -> RunReport:
        keys = dict(
            input_conversations_key=input_conversations_key,
            input_tools_key=input_tools_key,
            output_score_key=output_score_key,
            output_explanation_key=output_explanation_key,
        )
        return self._run_keys(
            storage,
            keys,
            params={"min_score": self.min_score, "max_chars": self.max_chars},
        )

    def process_batch(
        self,
        rows: list[dict],
        input_conversations_key: str = "conversations",
        input_tools_key: str | None = "tools",
        output_score_key: str = "quality_score",
        output_explanation_key: str = "quality_explanation",
    ) -> list[RowOutcome]:
        def variables(row: dict) -> dict:
            transcript = chat_to_transcript(row.get(input_conversations_key), self.max_chars)
            if not transcript:
                raise InvalidInput(f"invalid_input: column {input_conversations_key!r} holds no conversation")
            tools = row.get(input_tools_key) if input_tools_key else None
            if isinstance(tools, str):
                try:
                    tools = json.loads(tools) if tools.strip() else None
                except json.JSONDecodeError:
                    raise InvalidInput(f"invalid_input: column {input_tools_key!r} is not JSON") from None
            return {"conversation": transcript, "tools_text": tools_text(tools) if tools else ""}

        def finish(row: dict, reply: QualityReply) -> RowOutcome:
            if self.min_score is not None and reply.score < self.min_score:
                return RowOutcome.drop(f"low_quality: score {reply.score} < {self.min_score}: {reply.explanation}")
            return RowOutcome.keep(
                merge_row(row, **{output_score_key: reply.score, output_explanation_key: reply.explanation})
            )

        return self.structured_round(rows, variables, QualityReply, finish)
