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
    Every call is appended to ``self.calls`` as ``(messages, json_schema)``, and its per-request
    ``options`` (``None`` when none were given) to ``self.call_options``; options do not change the
    reply (a responder that should answer votes differently can count its calls).
    """

    def __init__(self, responder: Responder, model_name: str = "fake-model"):
        super().__init__()
        self.responder = responder
        self.model_name = model_name
        self.calls: list[tuple[Conversation, dict | None]] = []
        self.call_options: list[dict | None] = []

    def _generate_with_options(
        self, conversations: list[Conversation], schemas: list[dict | None], options: list[dict | None]
    ) -> list[LLMResult]:
        start = len(self.call_options)
        results = self._generate(conversations, schemas)
        self.call_options[start:] = options
        return results

    def _generate(self, conversations: list[Conversation], schemas: list[dict | None]) -> list[LLMResult]:
        results = []
        for messages, json_schema in zip(conversations, schemas):
            self.calls.append((messages, json_schema))
            self.call_options.append(None)
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
