"""Core contracts: operators, the LLM serving interface, structured output, errors.

Names are resolved lazily so that ``import dataflow.serving`` does not pay for pydantic.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_HOME = {
    **dict.fromkeys(
        ["ConfigError", "DataFlowError", "InputFileError", "MissingColumnError", "PromptRenderError",
         "ServingError", "ToolSpecError", "UserInputError", "InvalidInput", "Reask"], ".errors"),
    **dict.fromkeys(["LLMResult", "LLMServingABC", "ServingStats", "prompt_messages"], ".llm"),
    **dict.fromkeys(["OperatorABC", "RowOutcome", "RunReport", "merge_row"], ".operator"),
    **dict.fromkeys(["Parsed", "extract_json", "parse_reply", "schema_for"], ".structured"),
    **dict.fromkeys(["Text", "text_value", "ask_structured", "structured_round"], ".rounds"),
}

__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'dataflow.core' has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value
