"""Dataset formats: stratified split and converters to fine-tuning formats."""

from .convert import (
    FORMATS, calls_of, convert_row, convert_rows, function_results, openai_messages_to_hermes, read_glaive_row,
    read_xlam_row, to_chat_message_format, to_openai_chat, to_xlam_row,
)
from .split import SplitResult, call_signature, stratified_split

__all__ = [
    "FORMATS", "calls_of", "convert_row", "convert_rows", "function_results", "openai_messages_to_hermes", "read_glaive_row",
    "read_xlam_row", "to_chat_message_format", "to_openai_chat", "to_xlam_row", "SplitResult",
    "call_signature", "stratified_split",
]
