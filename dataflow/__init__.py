"""dataflow: synthesize and verify function-calling (tool-use) training data for LLMs."""

from __future__ import annotations

from typing import Any

from .version import __version__

__all__ = ["__version__", "validate_calls"]


def __getattr__(name: str) -> Any:
    if name == "validate_calls":
        from .tools.validation import validate_calls

        return validate_calls
    raise AttributeError(f"module 'dataflow' has no attribute {name!r}")
