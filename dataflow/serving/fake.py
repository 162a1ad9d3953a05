"""A deterministic in-process backend driven by a function of the messages: the test double
for operators (as httpx ships ``MockTransport``)."""

from __future__ import annotations

import json
from typing import Any, Callable

from ..core.llm import Conversation, LLMResult, LLMServingABC

Responder = Callable[[Conversation, "dict | None"], Any]


class FakeLLMServing(LLMServingABC):
    """Answers each conversation with ``responder(messages, json_schema)``.

    The responder returns the reply text, a dict/list (sent as its JSON), an ``LLMResult``
    (e.g. ``LLMResult.failure("HTTP 500")``), or raises an exception (recorded as a failure).
    Every call is appended to ``self.calls`` as ``(messages, json_schema)``.
    """

    def __init__(self, responder: Responder, model_name: str = "fake-model"):
        super().__init__()
        self.responder = responder
        self.model_name = model_name
        self.calls: list[tuple[Conversation, dict | None]] = []

    def _generate(self, conversations: list[Conversation], schemas: list[dict | None]) -> list[LLMResult]:
        results = []
        for messages, json_schema in zip(conversations, schemas):
            self.calls.append((messages, json_schema))
            self.stats.requests_sent += 1
            try:
                reply = self.responder(messages, json_schema)
            except Exception as exc:  # a responder error is a recorded failure, like a server error
                results.append(LLMResult.failure(f"responder raised {type(exc).__name__}: {exc}"))
                continue
            if isinstance(reply, LLMResult):
                results.append(reply)
            elif isinstance(reply, str):
                results.append(LLMResult.success(reply))
            else:
                results.append(LLMResult.success(json.dumps(reply, ensure_ascii=False)))
        return results
