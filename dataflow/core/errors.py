"""Exceptions raised by dataflow.

Hierarchy::

    DataFlowError                 base of everything the library raises on purpose
    ├── UserInputError            bad input a user can fix: the message says what, where and what to do
    │   ├── InputFileError        a data file cannot be read (file, line)
    │   ├── MissingColumnError    an operator's declared input column is absent (operator, key, columns)
    │   ├── ToolSpecError         a tool specification is not valid (tool name, rule)
    │   └── ConfigError           a bad parameter, cache type, template or model file
    ├── ServingError              the LLM backend cannot serve at all (unreachable, refused)
    └── PromptRenderError         a prompt template failed to render (or tried to escape the sandbox)

A single failed LLM request is *not* an exception: it is an ``LLMResult`` with ``ok=False`` and a
reason, and the operator records the row as failed.
"""

from __future__ import annotations


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
