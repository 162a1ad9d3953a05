"""The one interface every LLM backend implements, and the result type it returns.

Every backend answers a batch with one ``LLMResult`` per input, in order. A failed request is an
``LLMResult`` with ``ok == False`` and a ``reason``; its ``text`` is never read as data.
"""

from __future__ import annotations

import abc
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Sequence

Message = dict[str, Any]
Conversation = list[Message]

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."

#: the pipeline step whose rows are being processed (``"step 6 MultiTurnConversationGenerator"``),
#: set by ``OperatorABC._run_step``; backends name their progress bars after it
CURRENT_STEP: ContextVar[str | None] = ContextVar("dataflow_current_step", default=None)


def prompt_messages(system: str, user: str) -> Conversation:
    """The chat messages of one prompt: the system message (when there is one), then the user
    message. Every prompt this library sends is built here."""
    messages: Conversation = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": user})
    return messages


@dataclass(frozen=True)
class LLMResult:
    """Outcome of one LLM request: the reply text, or a failure with its reason."""

    text: str | None = None
    reason: str | None = None
    cached: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    status: int | None = None
    #: why the model stopped, as the server said (``"stop"``, ``"length"`` = cut at max_tokens, ...)
    finish_reason: str | None = field(default=None, compare=False)

    @classmethod
    def success(cls, text: str, **kw: Any) -> "LLMResult":
        return cls(text=text, **kw)

    @classmethod
    def failure(cls, reason: str, status: int | None = None, finish_reason: str | None = None) -> "LLMResult":
        if not reason:
            raise ValueError("a failed LLMResult needs a reason")
        return cls(text=None, reason=reason, status=status, finish_reason=finish_reason)

    @property
    def truncated(self) -> bool:
        """The reply was cut at the token limit (``finish_reason == "length"``)."""
        return self.finish_reason == "length"

    @property
    def ok(self) -> bool:
        return self.reason is None and self.text is not None

    def __str__(self) -> str:  # pragma: no cover - convenience for humans
        return self.text if self.ok else f"<failed: {self.reason}>"


@dataclass
class ServingStats:
    """Counters a backend keeps across batches (shown in run summaries)."""

    requests_sent: int = 0
    succeeded: int = 0
    failed: int = 0
    cached: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, result: LLMResult) -> None:
        if result.cached:
            self.cached += 1
        elif result.ok:
            self.succeeded += 1
        else:
            self.failed += 1
        self.prompt_tokens += result.prompt_tokens
        self.completion_tokens += result.completion_tokens

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class LLMServingABC(abc.ABC):
    """Base of all serving backends.

    Subclasses implement ``_generate(conversations, schemas)``; the two public entry points
    build the conversations and keep the statistics. Backends that send request fields (the
    HTTP client, the embedded model) also override ``_generate_with_options`` so that per-request
    ``options`` (``{"temperature": 0.7, "seed": 2}``) reach the request and its cache key.
    """

    model_name: str = "unknown"

    def __init__(self) -> None:
        self.stats = ServingStats()

    # -- public API -------------------------------------------------------------------------
    def generate_from_input(
        self,
        user_inputs: Sequence[str],
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        json_schema: "dict | Sequence[dict | None] | None" = None,
        *,
        options: "Sequence[dict | None] | None" = None,
    ) -> list[LLMResult]:
        """One plain prompt per input, each with the same system prompt. ``json_schema`` is one
        schema for every input, or a list with one schema (or ``None``) per input; ``options`` as
        for ``generate_from_conversations``."""
        conversations = [prompt_messages(system_prompt, text) for text in user_inputs]
        return self.generate_from_conversations(conversations, json_schema=json_schema, options=options)

    def generate_from_conversations(
        self,
        conversations: Sequence[Conversation],
        json_schema: "dict | Sequence[dict | None] | None" = None,
        *,
        options: "Sequence[dict | None] | None" = None,
    ) -> list[LLMResult]:
        """One reply per conversation (a list of OpenAI chat messages), in order. ``json_schema``
        is one schema for every conversation, or a list with one schema (or ``None``) each.
        ``options``, when given, has one entry per conversation: extra request fields for that
        request only (e.g. ``{"temperature": 0.7, "seed": 2}`` for an independent sample), or
        ``None``; a backend with no such fields (``FakeLLMServing``) records and ignores them."""
        conversations = [list(c) for c in conversations]
        if not conversations:
            return []
        if options is not None:
            options = [dict(o) if o else None for o in options]
            if len(options) != len(conversations):
                raise ValueError(f"options has {len(options)} entries for {len(conversations)} conversations")
        if isinstance(json_schema, (list, tuple)):
            schemas = list(json_schema)
            if len(schemas) != len(conversations):
                raise ValueError(
                    f"json_schema has {len(schemas)} schemas for {len(conversations)} conversations"
                )
        else:
            schemas = [json_schema] * len(conversations)
        if options is not None and any(options):
            results = self._generate_with_options(conversations, schemas, options)
        else:
            results = self._generate(conversations, schemas)
        if len(results) != len(conversations):
            raise RuntimeError(
                f"{type(self).__name__} returned {len(results)} results for {len(conversations)} inputs"
            )
        for r in results:
            self.stats.add(r)
        return results

    def use_cache_dir(self, cache_dir: str) -> None:
        """Called by operators with the storage's cache folder; backends with a response cache
        put it there unless the user chose a location."""

    def close(self) -> None:
        """Release connections, servers or processes held by the backend."""

    # -- to implement -----------------------------------------------------------------------
    @abc.abstractmethod
    def _generate(
        self, conversations: list[Conversation], schemas: list[dict | None]
    ) -> list[LLMResult]:
        """Return one ``LLMResult`` per conversation, in order; ``schemas[i]`` is the JSON schema
        the reply to ``conversations[i]`` must follow (``None``: free text)."""

    def _generate_with_options(
        self, conversations: list[Conversation], schemas: list[dict | None], options: list[dict | None]
    ) -> list[LLMResult]:
        """``_generate`` with per-request fields; by default the fields are ignored."""
        return self._generate(conversations, schemas)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
