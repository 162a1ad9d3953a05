"""Exceptions raised by dataflow.

Hierarchy::

    DataFlowError                 base of everything the library raises on purpose
    ├── UserInputError            bad input a user can fix: the message says what, where and what to do
    │   ├── InputFileError        a data file cannot be read (file, line)
    │   ├── MissingColumnError    an operator's declared input column is absent (operator, key, columns)
    │   ├── ToolSpecError         a tool specification is not valid (tool name, rule)
    │   └── ConfigError           a bad parameter, cache type, template or model file
    ├── ServingError              the LLM backend cannot serve at all (unreachable, refused)
    ├── PromptRenderError         a prompt template failed to render (or tried to escape the sandbox)
    ├── InvalidInput              one row's input cannot be prompted; that row fails, the step goes on
    ├── Reask                     a well-formed reply is unusable; the row is asked again with feedback
    ├── CallError                 a call cannot be read (dataflow.tools.calls; also a ValueError)
    └── RowError                  a reader or writer cannot convert a row (dataflow.exports; also a ValueError)

A single failed LLM request is *not* an exception: it is an ``LLMResult`` with ``ok=False`` and a
reason, and the operator records the row as failed. ``InvalidInput`` and ``Reask`` never leave an
operator: the structured round (``dataflow.core.rounds``) turns them into the row's outcome.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .operator import RowOutcome


class DataFlowError(Exception):
    """Base class of the errors dataflow raises on purpose."""


class UserInputError(DataFlowError):
    """Input a user can fix. ``str(err)`` is one line: what is wrong, where, and what to do,
    shaped ``<what> (<where>) — <what to do>`` (command lines print it as ``error: ...``)."""


class InputFileError(UserInputError):
    """A data file cannot be read: names the file and, where known, the line."""

    def __init__(self, path: str, problem: str, line: int | None = None, hint: str = ""):
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}:{line}" if line is not None else self.path
        message = f"{where}: {problem}"
        if hint:
            message += f" — {hint}"
        super().__init__(message)


class MissingColumnError(UserInputError):
    """An operator's declared input column does not exist in the table it reads."""

    def __init__(self, operator: str, key: str, column: str, existing: list[str], source: str = ""):
        self.operator = operator
        self.key = key
        self.column = column
        self.existing = list(existing)
        where = f" in {source}" if source else ""
        cols = ", ".join(self.existing) if self.existing else "(none)"
        super().__init__(
            f"{operator}: {key}={column!r} names a column that does not exist{where} "
            f"(columns are: {cols}) — pass {key}= one of them"
        )


class ToolSpecError(UserInputError):
    """A tool (function) specification is itself invalid."""

    def __init__(self, tool: str, problem: str, where: str = "", hint: str = ""):
        self.tool = tool
        self.problem = problem
        self.where = where
        message = f"tool {tool!r}: {problem}"
        if where:
            message += f" ({where})"
        if hint:
            message += f" — {hint}"
        super().__init__(message)


class ConfigError(UserInputError):
    """A parameter, cache type, template or model file is wrong."""


class ServingError(DataFlowError):
    """The LLM backend cannot serve at all (e.g. nothing listens at the URL)."""


class PromptRenderError(DataFlowError):
    """A prompt template failed to render."""


class InvalidInput(DataFlowError, ValueError):
    """A row's input cannot be prompted (an empty or missing value). ``str(err)`` is the row's
    failure reason, ``"invalid_input: ..."``; the other rows of the step go on."""


class Reask(DataFlowError):
    """Raised by a structured round's ``finish`` callback: the reply is well-formed but unusable.
    The row is asked again with ``feedback`` appended to its prompt (so the new request is a new
    cache entry); after the last re-ask the row ends as ``final``."""

    def __init__(self, feedback: str, final: "RowOutcome"):
        super().__init__(feedback)
        self.feedback = feedback
        self.final = final
