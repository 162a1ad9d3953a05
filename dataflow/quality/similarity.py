"""Fuzzy text similarity for near-duplicate checks (sub-tasks, tools, copied few-shot examples).

One reading of "the same text, give or take a few words" for the whole library, on rapidfuzz
(a kept C++ library) rather than a hand-written edit distance. Texts are compared after
``normalize_text`` (lower case, words and numbers only), with ``token_sort_ratio``, so word order
and punctuation do not hide a copy, while a text that extends another with new words scores
below the threshold.
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

NEAR_DUPLICATE = 85.0  # score (0-100) at or above which two texts are near-duplicates
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def normalize_text(text: str) -> str:
    """``text`` as lower-case words and numbers separated by single spaces."""
    return " ".join(_WORD.findall(str(text).lower()))


def similarity(a: str, b: str) -> float:
    """How alike two texts are, 0 (nothing shared) to 100 (the same words)."""
    from rapidfuzz import fuzz

    na, nb = normalize_text(a), normalize_text(b)
    if not na or not nb:
        return 100.0 if na == nb else 0.0
    return float(fuzz.token_sort_ratio(na, nb))


def near_duplicate_of(
    text: str, candidates: Iterable[str], threshold: float = NEAR_DUPLICATE
) -> tuple[int, float] | None:
    """``(index, score)`` of the candidate most like ``text`` when its score is at least
    ``threshold``; ``None`` when no candidate is that close."""
    from rapidfuzz import fuzz, process

    choices = [normalize_text(c) for c in candidates]
    query = normalize_text(text)
    if not choices or not query:
        return None
    best = process.extractOne(query, choices, scorer=fuzz.token_sort_ratio, score_cutoff=threshold)
    if best is None:
        return None
    _, score, index = best
    return int(index), float(score)


def near_duplicate_pairs(texts: Sequence[str], threshold: float = NEAR_DUPLICATE) -> list[tuple[int, int, float]]:
    """Every pair ``(i, j, score)`` with ``i < j`` whose texts are near-duplicates."""
    pairs = []
    for j in range(1, len(texts)):
        for i in range(j):
            score = similarity(texts[i], texts[j])
            if score >= threshold:
                pairs.append((i, j, score))
    return pairs
