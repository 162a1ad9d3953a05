"""Tool specifications: normalise the dialects people bring, and check calls against them.

``normalize_tool(s)`` turn OpenAI / bare / BFCL / xLAM specs into OpenAI tool specs;
``validate_calls(calls, tools) -> list[str]`` checks every call (empty list: all valid).
jsonschema is imported only when a tool is first compiled.
"""

from __future__ import annotations

from ..core.errors import ToolSpecError
from .spec import normalize_tool, normalize_tools
from .validation import ToolSet, compile_tools, parse_call, validate_calls

__all__ = [
    "ToolSpecError", "normalize_tool", "normalize_tools", "validate_calls", "compile_tools",
    "ToolSet", "parse_call",
]
