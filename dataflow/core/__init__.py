"""Core contracts: operators, the LLM serving interface, structured output, errors."""

from .errors import (
    ConfigError,
    DataFlowError,
    InputFileError,
    MissingColumnError,
    PromptRenderError,
    ServingError,
    ToolSpecError,
    UserInputError,
)
from .llm import LLMResult, LLMServingABC, ServingStats
from .operator import OperatorABC, RowOutcome, RunReport, merge_row
from .structured import Parsed, extract_json, parse_reply, schema_for

__all__ = [
    "ConfigError", "DataFlowError", "InputFileError", "MissingColumnError", "PromptRenderError",
    "ServingError", "ToolSpecError", "UserInputError", "LLMResult", "LLMServingABC", "ServingStats",
    "OperatorABC", "RowOutcome", "RunReport", "merge_row", "Parsed", "extract_json", "parse_reply",
    "schema_for",
]
