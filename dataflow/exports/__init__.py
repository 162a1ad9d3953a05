"""The files a run leaves: fine-tuning formats written from one canonical record (``finetune``) and
read back, converters and readers of other function-calling formats (``convert``, built on
``dataflow.tools.calls``, the one reader of calls and results), the stratified split, the dataset
card and the HTML report."""

from .convert import (
    CONVERSATION_READERS, FORMATS, READERS, RowError, convert_row, convert_rows,
    function_results, openai_messages_to_hermes, openai_names, read_chat_message_row, read_glaive_row,
    read_openai_row, read_sharegpt_row, read_xlam_row, single_turn_chat, to_chat_message_format, to_openai_chat,
    to_xlam_row,
)
from .split import SplitResult, call_signature, stratified_split

__all__ = [
    "FORMATS", "READERS", "CONVERSATION_READERS", "RowError", "convert_row",
    "convert_rows", "function_results", "openai_messages_to_hermes", "openai_names", "read_chat_message_row",
    "read_glaive_row", "read_openai_row", "read_sharegpt_row", "read_xlam_row", "single_turn_chat", "to_chat_message_format",
    "to_openai_chat", "to_xlam_row", "SplitResult", "call_signature", "stratified_split",
]
