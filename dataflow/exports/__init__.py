"""Dataset formats: stratified split, and converters between function-calling formats (readers and
writers built on ``dataflow.tools.calls``, the one reader of calls and results)."""

from .convert import (
    CONVERSATION_READERS, FORMATS, READERS, RowError, conversation_to, convert_row, convert_rows,
    function_results, openai_messages_to_hermes, openai_names, read_chat_message_row, read_glaive_row,
    read_openai_row, read_sharegpt_row, read_xlam_row, to_chat_message_format, to_openai_chat, to_xlam_row,
)
from .split import SplitResult, call_signature, stratified_split

__all__ = [
    "FORMATS", "READERS", "CONVERSATION_READERS", "RowError", "conversation_to", "convert_row",
    "convert_rows", "function_results", "openai_messages_to_hermes", "openai_names", "read_chat_message_row",
    "read_glaive_row", "read_openai_row", "read_sharegpt_row", "read_xlam_row", "to_chat_message_format",
    "to_openai_chat", "to_xlam_row", "SplitResult", "call_signature", "stratified_split",
]
