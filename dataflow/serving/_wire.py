"""What crosses the wire to an OpenAI-compatible server: the request body's encoding, and the
reading of a reply (its content, token counts and finish reason, or why it cannot be used)."""

from __future__ import annotations

import email.utils
import json
import time
from dataclasses import dataclass
from typing import Any

from ..core.llm import LLMResult


@dataclass
class Attempt:
    """What one HTTP attempt came to: a final result, or a retryable failure."""

    result: LLMResult | None = None
    reason: str = ""
    status: int | None = None
    retry_after: float | None = None
    connect_failure: bool = False


try:  # pragma: no cover - optional speed-up
    import orjson as _orjson  # type: ignore[import-not-found]

    def dumps(obj: Any) -> bytes:
        return _orjson.dumps(obj)

    _loads = _orjson.loads
except ImportError:
    def dumps(obj: Any) -> bytes:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    _loads = json.loads


def schema_name(schema: dict) -> str:
    title = schema.get("title") if isinstance(schema, dict) else None
    name = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in str(title or "response"))
    return name[:64] or "response"


def parse_reply(raw: bytes) -> Attempt:
    try:
        data = _loads(raw)
        if "error" in data and "choices" not in data:
            return Attempt(reason=f"malformed response: error in body: {short_body(raw)}", status=200)
        choice = data["choices"][0]
        message = choice["message"]
        content = message.get("content")
        if isinstance(content, list):  # content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        usage = data.get("usage") or {}
        prompt_tokens = int(usage.get("prompt_tokens") or 0)
        completion_tokens = int(usage.get("completion_tokens") or 0)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        return Attempt(reason=f"malformed response: {type(exc).__name__}: {clip(str(exc), 120)}; "
                               f"body: {short_body(raw, 80)}", status=200)
    finish = choice.get("finish_reason") if isinstance(choice, dict) else None
    if not content:  # an empty reply is a failure, never "" as data
        native = " with native tool_calls, which no operator reads: ask for structured output" \
            if isinstance(message, dict) and message.get("tool_calls") else ""
        return Attempt(result=LLMResult.failure(f"empty reply{native} (finish_reason={finish})", status=200,
                                                 finish_reason=finish))
    return Attempt(result=LLMResult.success(content, prompt_tokens=prompt_tokens,
                                             completion_tokens=completion_tokens, status=200,
                                             finish_reason=finish))


def retry_after_of(headers) -> float | None:
    """Seconds from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000.0)
        except ValueError:
            pass
    return parse_retry_after(headers.get("Retry-After"))


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """A ``Retry-After`` header value in seconds (``None`` when absent or unreadable)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def short_body(raw: bytes, limit: int = 200) -> str:
    text = raw.decode("utf-8", "replace")
    try:
        data = json.loads(text)
        if isinstance(data, dict) and isinstance(data.get("error"), dict) and data["error"].get("message"):
            text = str(data["error"]["message"])
        elif isinstance(data, dict) and isinstance(data.get("error"), str):
            text = data["error"]
    except ValueError:
        pass
    return clip(" ".join(text.split()) or "(empty body)", limit)


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def os_reason(exc: Exception) -> str:
    os_error = getattr(exc, "os_error", None)
    if os_error is not None and getattr(os_error, "strerror", None):
        return os_error.strerror
    return str(exc) or type(exc).__name__
