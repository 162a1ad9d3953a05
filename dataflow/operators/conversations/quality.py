"""ConversationQualityEvaluator: an LLM judge checks each conversation, then scores it 1-5.

The reply (schema order = writing order) is an explanation (each call with the values it used and
where they came from, and what the final answer says), three checks (every call fits what the user
asked; every argument value was said before the call; the final answer states what the results
say), and last the score. A failed check caps the score at 2, so a reply cannot praise a
conversation its own checks fail. With ``n_votes`` > 1 each conversation is scored by that many
independent samples and gets the median score of the majority side.

With ``min_score`` set, rows scoring below it are dropped with reason ``low_quality: ...``
(counted in the run summary) when the judge is calibrated on the model or
``judge_mode="enforce"``; otherwise (``"auto"``) they are kept with their score and an
``advisory:`` explanation, and counted in the run report. By default every scored row is kept.
"""

from __future__ import annotations

import json
from statistics import median_low
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from ...core import RowOutcome, RunReport, merge_row
from ..judges import LLMJudge, Tally, with_tally
from ...core.errors import InvalidInput
from ...core.rounds import Text
from ..llm import StructuredLLMOperator
from .functions import tools_text
from .transcript import chat_to_transcript

CHECKS = ("calls_fit", "values_from_conversation", "answer_matches_results")


class QualityReply(BaseModel):
    """Evidence, three checks, then an integer score from 1 (unusable) to 5 (excellent)."""

    model_config = ConfigDict(extra="forbid")
    explanation: Text(300, 5)
    calls_fit: StrictBool
    values_from_conversation: StrictBool
    answer_matches_results: StrictBool
    score: int = Field(ge=1, le=5)

    @property
    def failed_checks(self) -> list[str]:
        return [name for name in CHECKS if not getattr(self, name)]

    @property
    def effective_score(self) -> int:
        """The score, at most 2 when a check failed."""
        return min(self.score, 2) if self.failed_checks else self.score

    def summary(self) -> str:
        failed = self.failed_checks
        return f"{self.explanation} (fails {', '.join(failed)})" if failed else self.explanation


class ConversationQualityEvaluator(LLMJudge, StructuredLLMOperator):
    """Conversation (+ tools) -> ``quality_score`` (1-5) and ``quality_explanation``.

    Args:
        min_score: drop (or, while the judge is advisory, mark) rows scoring below it.
        max_chars: the transcript shown to the judge is cut to this many characters.
        n_votes: independent judge samples per row (median score of the majority side).
        judge_mode: ``"auto"`` or ``"enforce"`` (see ``dataflow.operators.judges``).
    """

    prompt_names = ("conversation_quality_evaluator",)

    def __init__(self, llm_serving: Any = None, min_score: int | None = None, max_chars: int = 6000,
                 prompt_template: Any = None, *, n_votes: int = 1, judge_mode: str = "auto"):
        super().__init__(llm_serving, prompt_template)
        self.min_score = min_score
        self.max_chars = max_chars
        self._init_judge(n_votes, judge_mode)

    def calibration_settings(self) -> dict[str, Any]:
        return {"min_score": self.min_score, "n_votes": self.n_votes}

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
        if self.min_score is not None:  # only a threshold makes the judge drop rows
            self.announce_calibration()
        return self._run_keys(
            storage,
            keys,
            params={"min_score": self.min_score, "max_chars": self.max_chars, **self.judge_params()},
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

        def scored(row: dict, counted: Tally, side: list) -> dict:
            """The row with the median score of ``side`` and the explanation of a vote with it."""
            score = median_low(reply.effective_score for reply in side)
            chosen = next(reply for reply in side if reply.effective_score == score)
            return merge_row(row, **{output_score_key: score,
                                     output_explanation_key: with_tally(chosen.summary(), counted)})

        def on_accept(row: dict, counted: Tally, yes: list) -> RowOutcome:
            return RowOutcome.keep(scored(row, counted, yes))

        def on_reject(row: dict, counted: Tally, no: list, enforced: bool) -> RowOutcome:
            kept = scored(row, counted, no)
            score, why = kept[output_score_key], kept[output_explanation_key]
            kept[output_explanation_key] = f"advisory: {why}"
            return self.reject(kept, f"low_quality: score {score} < {self.min_score}: {why}", enforced)

        def accepts(row: dict, reply: QualityReply) -> bool:
            return self.min_score is None or reply.effective_score >= self.min_score

        return self.judge_round(rows, variables, QualityReply, accepts, on_accept, on_reject)
