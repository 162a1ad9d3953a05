"""Deterministic quality checks of generated tool-use data (no LLM): near-duplicates, grounding of
arguments, degenerate or leaking text, results that echo their calls, answers that ignore results."""

from .grounding import result_echoes_arguments, ungrounded_arguments
from .similarity import NEAR_DUPLICATE, near_duplicate_of, near_duplicate_pairs, normalize_text, similarity

__all__ = [
    "NEAR_DUPLICATE", "near_duplicate_of", "near_duplicate_pairs", "normalize_text", "similarity",
    "result_echoes_arguments", "ungrounded_arguments",
]
