"""One fake server's options, counters and recorded requests, and the responders that answer it."""

from __future__ import annotations

import hashlib
import importlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any, Callable

from ..schema_instance import instance_for
from .faults import DEFAULT_FAULTS, check_faults

Responder = Callable[[list, "dict | None"], Any]


def default_responder(messages: list, json_schema: dict | None) -> Any:
    """Deterministic reply: a schema instance for structured output, else an echo with a digest."""
    if json_schema is not None:
        return instance_for(json_schema)
    digest = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:12]
    last = ""
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            last = content if isinstance(content, str) else json.dumps(content)
            break
    return f"fake reply {digest}: {last[:200]}"


def load_responder(spec: str) -> Responder:
    """Import ``module:function`` (the subprocess server's ``--responder``)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"responder must be 'module:function', got {spec!r}")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj



@dataclass
class ServerState:
    """Configuration and counters of one server (shared by its handlers)."""

    responder: Responder | None = None
    latency: float = 0.0
    fault_rate: float = 0.0
    faults: tuple = DEFAULT_FAULTS
    retry_after: float = 0.1
    seed: int = 0
    hang_seconds: float = 30.0
    record: bool = True
    max_faults_per_request: int | None = None
    model: str = "fake-model"
    token: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    # counters
    requests: int = 0
    completed: int = 0
    abandoned: int = 0
    fault_counts: dict = field(default_factory=dict)
    status_counts: dict = field(default_factory=dict)
    records: list = field(default_factory=list)
    seen: dict = field(default_factory=dict)
    faults_per_body: dict = field(default_factory=dict)

    def reset(self) -> None:
        self.requests = self.completed = self.abandoned = 0
        self.fault_counts = {}
        self.status_counts = {}
        self.records = []
        self.seen = {}
        self.faults_per_body = {}

    def stats(self) -> dict:
        return {
            "requests": self.requests,
            "completed": self.completed,
            "abandoned": self.abandoned,
            "faults": dict(self.fault_counts),
            "statuses": {str(k): v for k, v in self.status_counts.items()},
            "recorded": len(self.records),
        }

    def configure(self, **kw: Any) -> None:
        checked = {}
        for key, value in kw.items():
            if key not in CONFIG_KEYS:
                raise ValueError(f"unknown fake server option {key!r}")
            checked[key] = value if key == "responder" else check_option(key, value)
        for key, value in checked.items():
            setattr(self, key, value)


CONFIG_KEYS = frozenset(
    {"responder", "latency", "fault_rate", "faults", "retry_after", "seed", "hang_seconds",
     "record", "max_faults_per_request", "model"}
)
#: what ``POST /_config`` may change: inert settings only (never the responder, which is code)
HTTP_CONFIG_KEYS = CONFIG_KEYS - {"responder"}


def check_option(key: str, value: Any) -> Any:
    """``value`` checked for option ``key`` (a ``ValueError`` names what is wrong)."""
    if key == "faults":
        return check_faults(value)
    if key == "record":
        if not isinstance(value, bool):
            raise ValueError(f"record must be true or false, got {value!r}")
        return value
    if key == "model":
        if not isinstance(value, str) or not 0 < len(value) <= 200:
            raise ValueError(f"model must be a non-empty string, got {value!r}")
        return value
    if key in ("seed", "max_faults_per_request"):
        if value is None and key == "max_faults_per_request":
            return None
        if isinstance(value, bool) or not isinstance(value, int) or (key != "seed" and value < 0):
            raise ValueError(f"{key} must be a{' non-negative' if key != 'seed' else 'n'} integer, got {value!r}")
        return value
    limits = {"latency": 600.0, "fault_rate": 1.0, "retry_after": 3600.0, "hang_seconds": 3600.0}
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= limits[key]:
        raise ValueError(f"{key} must be a number from 0 to {limits[key]:g}, got {value!r}")
    return float(value)

