"""Entry point for pipeline scripts: a user error ends the run with one ``error: ...`` line.

A pipeline script ends with::

    if __name__ == "__main__":
        sys.exit(run_pipeline_main(main))

``run_pipeline_main(main)`` calls ``main()`` and returns its exit status. A ``UserInputError``
(bad file, column, tool spec, parameter) prints ``error: <what> (<where>) — <what to do>`` on
stderr and returns 2; another deliberate dataflow error (``ServingError``, ``PromptRenderError``)
returns 1; a missing or unreadable file the script itself opens (``OSError`` with a file name)
returns 2; Ctrl-C returns 130. Anything else is a bug and keeps its traceback. ``DF_DEBUG=1``
shows the traceback of every error. The printed line never holds the value of an environment
variable that looks like a secret (``*_API_KEY``, ``*_TOKEN``, ``*_SECRET``).

Imports only the standard library (so ``dataflow --version`` and script start-up stay fast).
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable

__all__ = ["run_pipeline_main", "describe_error", "redact_secrets"]

_SECRET_SUFFIXES = ("API_KEY", "TOKEN", "SECRET", "PASSWORD")


def redact_secrets(text: str) -> str:
    """``text`` with the values of secret-looking environment variables replaced by ``***``."""
    for name, value in os.environ.items():
        if value and len(value) >= 8 and name.upper().endswith(_SECRET_SUFFIXES) and value in text:
            text = text.replace(value, "***")
    return text


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def describe_error(exc: BaseException) -> tuple[str, int] | None:
    """``(one-line message, exit status)`` for an error a user can act on, else ``None``."""
    from ..core.errors import DataFlowError, UserInputError

    if isinstance(exc, UserInputError):
        return redact_secrets(_one_line(exc)), 2
    if isinstance(exc, DataFlowError):
        return redact_secrets(_one_line(exc)), 1
    if isinstance(exc, OSError) and exc.filename and isinstance(
        exc, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
    ):
        what = {FileNotFoundError: "file not found", PermissionError: "permission denied",
                IsADirectoryError: "is a folder, expected a file",
                NotADirectoryError: "a parent of this path is not a folder"}[type(exc)]
        return redact_secrets(f"{what} ({exc.filename}) — check the path"), 2
    return None


def run_pipeline_main(main: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """Run ``main(*args, **kwargs)``; return its status (``None`` -> 0), or print one
    ``error: ...`` line for a user-facing error and return a non-zero status."""
    try:
        status = main(*args, **kwargs)
    except KeyboardInterrupt:
        print("error: interrupted — finished steps and cached LLM replies are kept; rerun to resume",
              file=sys.stderr, flush=True)
        return 130
    except Exception as exc:
        described = describe_error(exc)
        if described is None or os.environ.get("DF_DEBUG"):
            raise
        message, code = described
        print(f"error: {message}", file=sys.stderr, flush=True)
        return code
    if status is None:
        return 0
    return status if isinstance(status, int) else 1
