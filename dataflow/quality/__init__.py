"""Deterministic quality checks of generated tool-use data (no LLM): grounding of arguments,
results that echo their calls, degenerate or leaking text, user turns that do not read like a
user, answers that ignore results, near-duplicate or unused tools, and fuzzy near-duplicates.

Every problem is a string ``"<code>: <detail>"``; the codes are listed in the docstrings of
``grounding``, ``text`` and ``conversation``. ``conversation_problems(messages, tools)`` runs all of
them over one OpenAI-format conversation.
"""

from .conversation import answer_problems, conversation_problems, near_duplicate_tools
from .grounding import result_echoes_arguments, ungrounded_arguments
from .similarity import NEAR_DUPLICATE, near_duplicate_of, near_duplicate_pairs, normalize_text, similarity
from .text import INSTRUCTION_PHRASES, degenerate_text, instruction_leak, prompt_echo, spec_leak, user_turn_problems

__all__ = [
    "NEAR_DUPLICATE", "near_duplicate_of", "near_duplicate_pairs", "normalize_text", "similarity",
    "ungrounded_arguments", "result_echoes_arguments",
    "INSTRUCTION_PHRASES", "degenerate_text", "instruction_leak", "prompt_echo", "spec_leak", "user_turn_problems",
    "answer_problems", "near_duplicate_tools", "conversation_problems",
]
