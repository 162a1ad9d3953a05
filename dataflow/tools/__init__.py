"""Tool specifications and calls: normalise the dialects people bring, read calls one way, and
check calls against specs.

``normalize_tool(s)`` turn OpenAI / bare / BFCL / xLAM / MCP specs into OpenAI tool specs;
``dataflow.tools.calls`` is the one reader of calls, arguments and results (``parse_call``,
``read_calls``, ``read_call_list``, ``read_arguments``, ``pair_results``); ``Call`` is a call once
read (name, arguments, id), taken as it is by every reader and checker here; ``call_key`` and ``tools_key`` are the
canonical keys of a call and of a tool list (equal for two that read the same), and
``repeated_calls`` names the calls of one answer that share a key;
``validate_calls(calls, tools) -> list[str]`` checks every call (empty list: all valid).
jsonschema(-rs) is imported only when a tool is first checked.
"""

from __future__ import annotations

from ..core.errors import ToolSpecError
from .calls import (Call, CallError, call_key, pair_results, parse_call, read_arguments, read_call_list, read_calls,
                    repeated_calls)
from .spec import normalize_tool, normalize_tools, tools_key
from .validation import ToolSet, compile_tools, validate_calls

__all__ = [
    "ToolSpecError", "normalize_tool", "normalize_tools", "validate_calls", "compile_tools",
    "ToolSet", "parse_call", "read_calls", "read_arguments", "pair_results", "CallError", "call_key", "tools_key",
    "repeated_calls", "Call", "read_call_list",
]
