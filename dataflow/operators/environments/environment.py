"""Stateful tool environments: the world a multi-turn conversation acts on, run for real.

An environment is plain Python, as in tau-bench and APIGen-MT: a class whose constructor takes
its data (a dict loaded from a JSON file) and whose public methods, with type hints and
docstrings, are the tools (``PythonEnvironment``), or a module whose public functions are the
tools and whose JSON globals are the data. A second source is an MCP server started over stdio
(``environments.mcp.McpEnvironment``). Both give the same thing: the tool specs, and
``open()`` -> an ``EnvironmentSession`` with fresh state, on which calls run and whose final
state can be read and compared (``state_difference``).

A Python environment runs in the execution sandbox of ``ExecutionChecker`` (``Sandbox``: its own
process under a supervisor, allow-listed environment, memory limit, per-call timeout, Landlock):
the module is never imported into the pipeline. Each session starts from a fresh tool process,
built from the data file again, so two conversations never see each other's state. A tool that
raises is an error result the conversation goes on with; a tool that hangs past ``timeout`` or
kills its process loses the session's state, and the session says so (``EnvironmentSession.lost``):
only that conversation fails.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ...core.errors import ConfigError

STATE_DIFFERENCES_SHOWN = 6


@dataclass
class ToolOutcome:
    """What one call returned: ``ok`` with ``result`` (JSON), or ``error`` text (the tool raised,
    or the call could not run). ``lost``: the environment's state is gone (the worker timed out
    or died), so the conversation cannot be checked any more."""

    ok: bool
    result: Any = None
    error: str = ""
    lost: bool = False

    def content(self) -> str:
        """The tool message's content: the result as JSON, or ``{"error": ...}``."""
        value = self.result if self.ok else {"error": self.error}
        return json.dumps(value, ensure_ascii=False)


class EnvironmentSession(Protocol):
    """One conversation's copy of an environment."""

    lost: str
    """Why the state is gone ('' while it is intact)."""

    def call(self, name: str, arguments: dict) -> ToolOutcome:
        """Run one tool call on this copy."""

    def state(self) -> dict:
        """The data now (raises ``EnvironmentError`` when it cannot be read)."""

    def close(self) -> None:
        """Release the copy (its process)."""


class StateUnavailable(RuntimeError):
    """An environment's state cannot be read (its worker died, or it offers no state)."""


class PythonEnvironment:
    """A stateful environment written in Python, run in the execution sandbox.

    ``module_path``: the ``.py`` file (or folder) holding it. ``class_name``: the class whose
    instance is the environment (``None``: the module's public functions are the tools and its
    JSON globals the data). ``data_path``: a JSON file given to the class's constructor (a fresh
    copy for every session). ``name``: shown in outputs and the run report (default: the class or
    module name). ``timeout`` (seconds per call), ``memory_mb`` (address space of the tool
    process), ``max_result_chars`` (a longer result is cut): the sandbox's limits. Raises
    ``ConfigError`` when a file is missing.
    """

    def __init__(self, module_path: str | os.PathLike, class_name: str | None = None,
                 data_path: str | os.PathLike | None = None, name: str | None = None, timeout: float = 5.0,
                 memory_mb: int = 512, max_result_chars: int = 4000, description: str = ""):
        self.module_path = str(Path(module_path).resolve())
        if not Path(self.module_path).exists():
            raise ConfigError(f"environment module not found ({module_path}): pass a .py file")
        self.data_path = str(Path(data_path).resolve()) if data_path else None
        if self.data_path and not Path(self.data_path).is_file():
            raise ConfigError(f"environment data file not found ({data_path}): pass a JSON file")
        self.class_name = class_name
        self.name = name or class_name or Path(self.module_path).stem
        self.timeout = timeout
        self.memory_mb = memory_mb
        self.max_result_chars = max_result_chars
        self.description = description
        self._specs: list[dict] | None = None
        self._idle: list[Any] = []  # sandboxes whose worker may be reset and reused

    def __getstate__(self) -> dict:  # shipped to Ray actors without live workers
        state = dict(self.__dict__)
        state["_idle"] = []
        return state

    def fingerprint(self) -> dict:
        """What identifies this environment in a step's manifest: its name, class, and the
        hashes of its source and data (an edited tool or data file invalidates reused steps)."""
        from ..apigen.execution import _module_fingerprint

        data = hashlib.sha256(Path(self.data_path).read_bytes()).hexdigest()[:16] if self.data_path else None
        return {"name": self.name, "class": self.class_name, "module": _module_fingerprint(self.module_path),
                "data": data, "timeout": self.timeout, "memory_mb": self.memory_mb,
                "max_result_chars": self.max_result_chars}

    def _sandbox(self) -> Any:
        from ..apigen.execution import Sandbox

        environment = {"class": self.class_name, "data": self.data_path} if self.class_name else None
        return Sandbox(self.module_path, timeout=self.timeout, memory_mb=self.memory_mb,
                       max_result_chars=self.max_result_chars, environment=environment)

    def tool_specs(self) -> list[dict]:
        """OpenAI tool specs of the environment's tools (type hints and docstrings, derived in
        the sandbox). Raises ``ToolSpecError``."""
        if self._specs is None:
            with self._sandbox() as sandbox:
                self._specs = sandbox.specs()
        return [json.loads(json.dumps(s)) for s in self._specs]

    def open(self) -> "PythonSession":
        """A session on a fresh copy of the environment (a reused worker is reset first)."""
        sandbox = self._idle.pop() if self._idle else self._sandbox()
        sandbox.reset()
        return PythonSession(self, sandbox)

    def close(self) -> None:
        """Stop the idle workers."""
        while self._idle:
            self._idle.pop().close()

    def _release(self, sandbox: Any) -> None:
        if sandbox.alive and len(self._idle) < 8:
            self._idle.append(sandbox)
        else:
            sandbox.close()


class PythonSession:
    """One conversation's copy of a ``PythonEnvironment``: a sandbox worker of its own."""

    def __init__(self, environment: PythonEnvironment, sandbox: Any):
        self.environment = environment
        self.sandbox = sandbox
        self.lost = ""

    def call(self, name: str, arguments: dict) -> ToolOutcome:
        """Run ``name(**arguments)``; after a timeout or a dead worker the session is ``lost``
        and every later call fails without running."""
        if self.lost:
            return ToolOutcome(False, error=f"StateLost: {self.lost}", lost=True)
        answer = self.sandbox.call(name, arguments)
        if not self.sandbox.alive:  # timed out, crashed, or ran out of memory: its state is gone
            self.lost = f"call {name} ended the environment's worker ({answer.get('error', 'unknown error')})"
            return ToolOutcome(False, error=answer.get("error", "WorkerDied"), lost=True)
        if answer.get("ok"):
            return ToolOutcome(True, result=answer.get("result"))
        return ToolOutcome(False, error=answer.get("error") or "Error: (no error text)")

    def state(self) -> dict:
        """The environment's data now. Raises ``StateUnavailable`` when it is lost."""
        from ...core.errors import ToolSpecError

        if self.lost:
            raise StateUnavailable(self.lost)
        try:
            return self.sandbox.state()
        except ToolSpecError as exc:
            self.lost = str(exc)
            raise StateUnavailable(self.lost) from None

    def close(self) -> None:
        sandbox, self.sandbox = self.sandbox, None
        if sandbox is not None:
            self.environment._release(sandbox)


def run_calls(environment: Any, calls: list[dict]) -> tuple[list[ToolOutcome], dict | None, str]:
    """Run ``calls`` (``{"name", "arguments"}``) in order on a fresh copy of ``environment``:
    ``(outcomes, final state, problem)``; the state is None and ``problem`` says why when the
    copy was lost (a hang or a crash)."""
    session = environment.open()
    try:
        outcomes = []
        for call in calls:
            outcome = session.call(call["name"], call.get("arguments") or {})
            outcomes.append(outcome)
            if outcome.lost:
                return outcomes, None, session.lost
        try:
            return outcomes, session.state(), ""
        except StateUnavailable as exc:
            return outcomes, None, str(exc)
    finally:
        session.close()


def state_difference(expected: Any, actual: Any, path: str = "", limit: int = STATE_DIFFERENCES_SHOWN) -> list[str]:
    """Where ``actual`` differs from ``expected`` (two JSON values), as
    ``orders[O1003].status "delivered" != expected "cancelled"``; at most ``limit`` entries, ``[]``
    when they are equal. List items are shown by index; numbers compare by
    value (``1 == 1.0``). Keys of a dict of records (every value an object) are shown in brackets,
    other keys after a dot."""
    out: list[str] = []
    _diff(expected, actual, path, out, limit)
    return out


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."


def _diff(expected: Any, actual: Any, path: str, out: list[str], limit: int) -> None:
    if len(out) >= limit:
        return
    where = path or "(state)"
    if isinstance(expected, dict) and isinstance(actual, dict):
        records = all(isinstance(v, dict) for v in expected.values()) and bool(expected)
        for key in list(expected) + [k for k in actual if k not in expected]:
            sub = str(key) if not path else f"{path}[{key}]" if records else f"{path}.{key}"
            if key not in actual:
                out.append(f"{sub} missing, expected {_show(expected[key])}")
            elif key not in expected:
                out.append(f"{sub} {_show(actual[key])} is not expected")
            else:
                _diff(expected[key], actual[key], sub, out, limit)
            if len(out) >= limit:
                return
        return
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            out.append(f"{where} has {len(actual)} items, expected {len(expected)}")
            return
        for i, (e, a) in enumerate(zip(expected, actual)):
            _diff(e, a, f"{path}[{i}]", out, limit)
        return
    same_number = (isinstance(expected, (int, float)) and isinstance(actual, (int, float))
                   and not isinstance(expected, bool) and not isinstance(actual, bool) and expected == actual)
    if not same_number and (type(expected) is not type(actual) or expected != actual):
        out.append(f"{where} {_show(actual)} != expected {_show(expected)}")
