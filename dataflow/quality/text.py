"""Checks of one piece of text: degenerate output, words leaked from generation instructions, and
user turns that do not read like a person with a need.

Problem codes (``"<code>: <detail>"``):

- ``degenerate_text``: a word repeated 4+ times in a row, a 2- to 4-word phrase 3+ times in a
  row ("Vegan Vegan Vegan ..."), a sentence of 4+ words 3+ times in one text; one word making up
  60% of a 12+ word text; a run of 25+ digits (a 120-digit "train number"); one character 20+
  times in a row. Numbers alone never count as a
  repeat (``0, 0, 0, 0``), and a JSON text is checked value by value, so keys repeated across
  list items are fine;
- ``instruction_leak``: a phrase of the generation prompts (``INSTRUCTION_PHRASES``: "concrete
  value(s)", "sub-task" (also "subtask"), "Task A", "the user's request", "JSON", ...) in a user turn or tool spec;
- ``user_asks_own_facts``: the user asks the assistant for a fact only the user can know ("What is
  your budget?", "what is my budget?"); kept conservative: the question must be about *my/your*
  followed by a personal noun (budget, age, allergies, salary, ...), so "what is the weather in my
  city, Oslo" passes;
- ``user_role_reversal``: the user talks like the assistant ("Is there anything else I can help
  you with?");
- ``repeated_user_turn``: a user turn that is a near-copy of an earlier one (similarity.py).
"""

from __future__ import annotations

import operator
import re
from collections import Counter
from functools import lru_cache
from typing import Sequence

from ._values import STOPWORDS, value_leaves
from .similarity import near_duplicate_of

#: Phrases of this library's generation prompts that must not reach the generated data. Matched
#: case-insensitively as whole words; a single capital letter ("Task A") must be a capital, and
#: spaces/hyphens between words are interchangeable ("sub-task" = "sub task" = "subtask").
INSTRUCTION_PHRASES: tuple[str, ...] = (
    "concrete value", "sub-task", "composed task", "composition task", "atomic task", "parallel task",
    "subsequent task", "task A", "task B", "task P", "A's result", "the user's request",
    "the user's goal", "opening request", "end_conversation", "JSON", "as an AI", "AI language model",
    "training data", "function call", "tool call",
)
#: Phrases of ``INSTRUCTION_PHRASES`` that are ordinary words in a tool spec ("Returns JSON").
_SPEC_WORDS = ("JSON", "function call", "tool call")
_SPEC_PHRASES = tuple(p for p in INSTRUCTION_PHRASES if p not in _SPEC_WORDS)

_DIGIT_RUN = re.compile(r"\d{25,}")
_CHAR_RUN = re.compile(r"([^\s\d\-=_*#~.])\1{19,}")
_WORD = re.compile(r"[^\W_]+")
_WORD_RUN = 4  # a single word this many times in a row
_PHRASE_RUN = 3  # a 2..4-word phrase this many times in a row
_SENTENCE_RUN = 3  # a sentence of 4+ words this many times in one text
_SENTENCE = re.compile(r"[.!?;\n]+")
_DOMINANT_MIN_WORDS = 12
_DOMINANT_SHARE = 0.6

#: facts only the user knows and no tool looks up (a balance, an order or a calendar can be looked up)
_PERSONAL = (
    r"budget|age|date of birth|nationality|salary|income|allerg(?:y|ies)|"
    r"dietary (?:restrictions?|preferences?|needs)|favou?rite \w+"
)
_OWN_FACTS = re.compile(
    r"\b(?:what|which|how much|how many|when|where)(?:'s|\u2019s|\s+(?:is|are|was|were|'s))\s+(?:my|your)\s+"
    r"(?:(?:current|total|monthly|daily|weekly|annual|exact|preferred|usual|own|maximum|max)\s+)?"
    rf"(?P<fact>{_PERSONAL})\b"
    r"|\b(?:tell me|remind me(?: of)?|do you know)\s+(?:what\s+)?(?:my|your)\s+"
    rf"(?:(?:current|total|exact|preferred|usual|own)\s+)?(?P<fact2>{_PERSONAL})\b",
    re.IGNORECASE,
)
_ROLE_REVERSAL = re.compile(
    r"\b(?:anything else (?:i|we) can (?:help|do|assist)|how (?:can|may) i (?:help|assist) you|"
    r"let me know if you need (?:any(?:thing)? )?(?:more |further )?(?:help|assistance)|"
    r"is there anything (?:else )?i can do for you)\b",
    re.IGNORECASE,
)


def degenerate_text(text: str) -> str | None:
    """``"degenerate_text: <what>"`` when ``text`` (prose, or a JSON text checked value by
    value) is degenerate model output; None for normal text."""
    if not isinstance(text, str) or not text:
        return None
    digits = _DIGIT_RUN.search(text)
    if digits:
        return f"degenerate_text: a {len(digits.group(0))}-digit number"
    chars = _CHAR_RUN.search(text)
    if chars:
        return f"degenerate_text: {chars.group(1)!r} repeated {len(chars.group(0))} times"
    pieces = [leaf for _, leaf in value_leaves(text) if isinstance(leaf, str)]
    for piece in pieces:
        problem = _repetition(piece)
        if problem:
            return f"degenerate_text: {problem}"
    return None


def _repetition(text: str) -> str | None:
    sentences = [" ".join(_WORD.findall(s.lower())) for s in _SENTENCE.split(text)]
    repeated = Counter(s for s in sentences if s.count(" ") >= 3).most_common(1)
    if repeated and repeated[0][1] >= _SENTENCE_RUN:
        return f"the sentence {repeated[0][0]!r} repeated {repeated[0][1]} times"
    tokens = _WORD.findall(text.lower())
    for n in range(1, 5):
        need = _WORD_RUN if n == 1 else _PHRASE_RUN
        if len(tokens) < n * need:
            break
        if not any(map(operator.eq, tokens, tokens[n:])):
            continue
        run = 0
        for i in range(len(tokens) - n):
            if tokens[i] == tokens[i + n]:
                run += 1
                repeats = run // n + 1
                if repeats >= need:
                    gram = tokens[i - run + 1: i - run + 1 + n]
                    if any(not t.isdigit() for t in gram):
                        while i + n + 1 < len(tokens) and tokens[i + 1] == tokens[i + n + 1]:
                            i, run = i + 1, run + 1
                        return f"{' '.join(gram)!r} repeated {run // n + 1} times in a row"
            else:
                run = 0
    alpha = [t for t in tokens if not t.isdigit()]
    if len(alpha) >= _DOMINANT_MIN_WORDS and len(set(alpha)) <= (1 - _DOMINANT_SHARE) * len(alpha) + 1:
        word, count = Counter(t for t in alpha if t not in STOPWORDS).most_common(1)[0] if any(
            t not in STOPWORDS for t in alpha) else ("", 0)
        if count / len(alpha) >= _DOMINANT_SHARE:
            return f"{word!r} makes up {count} of {len(alpha)} words"
    return None


def instruction_leak(text: str, extra_phrases: Sequence[str] = ()) -> str | None:
    """``"instruction_leak: 'concrete value', ..."`` naming every phrase of
    ``INSTRUCTION_PHRASES`` (plus ``extra_phrases``) found in ``text``; None when there is none."""
    return _leak(text, (*INSTRUCTION_PHRASES, *extra_phrases))


def spec_leak(text: str) -> str | None:
    """``instruction_leak`` for a tool or parameter description, where "JSON" and "function call"
    are ordinary words."""
    return _leak(text, _SPEC_PHRASES)


@lru_cache(maxsize=4096)
def _leak(text: str, phrases: tuple[str, ...]) -> str | None:
    if not isinstance(text, str) or not text:
        return None
    low = text.lower()
    found = [p for p, anchor, pattern in _phrase_patterns(phrases) if anchor in low and pattern.search(text)]
    return "instruction_leak: " + ", ".join(repr(p) for p in found) if found else None


@lru_cache(maxsize=64)
def _phrase_patterns(phrases: tuple[str, ...]) -> list[tuple[str, str, re.Pattern]]:
    """``(phrase, anchor, pattern)``: the pattern is searched only in texts holding the anchor
    (the phrase's longest word, lower case), which keeps the check cheap on clean text."""
    out = []
    for phrase in phrases:
        anchor = max(re.split(r"[\s\-_]+", phrase.strip()), key=len).lower()
        out.append((phrase, anchor, re.compile(_phrase_pattern(phrase), re.IGNORECASE)))
    return out


def _phrase_pattern(phrase: str) -> str:
    parts = [p for p in re.split(r"[\s\-_]+", phrase.strip()) if p]
    pieces = []
    for part in parts:
        if len(part) == 1 and part.isupper():
            pieces.append(f"(?-i:{part})")
        else:
            pieces.append(re.escape(part))
    joiner = r"[\s\-_]*" if len(parts) > 1 and all(len(p) > 1 for p in parts) else r"[\s\-_]+"
    body = joiner.join(pieces)
    return rf"(?<![^\W_]){body}s?(?![^\W_]|-\w)"


def user_turn_problems(text: str, earlier: Sequence[str] = ()) -> list[str]:
    """Problems of one user turn: ``instruction_leak``, ``degenerate_text``,
    ``user_asks_own_facts``, ``user_role_reversal`` and ``repeated_user_turn`` (a near-copy of one
    of the ``earlier`` user turns of the same conversation). ``[]`` when it reads fine."""
    problems = []
    for problem in (instruction_leak(text), degenerate_text(text)):
        if problem:
            problems.append(problem)
    own = _OWN_FACTS.search(text or "")
    if own:
        problems.append(f"user_asks_own_facts: {own.group(0)!r} asks for something only the user knows")
    reversal = _ROLE_REVERSAL.search(text or "")
    if reversal:
        problems.append(f"user_role_reversal: {reversal.group(0)!r} is the assistant's line")
    if earlier:
        hit = near_duplicate_of(text, earlier)
        if hit is not None:
            problems.append(f"repeated_user_turn: repeats user turn {hit[0]} (similarity {hit[1]:.0f})")
    return problems


PROMPT_ECHO_WORDS = 5  # this many words in a row copied from the instructions is an echo


def prompt_echo(text: str, instructions: str, n: int = PROMPT_ECHO_WORDS) -> str | None:
    """``"instruction_leak: copies the instructions (...)"`` when ``text`` repeats ``n`` or more
    words in a row of ``instructions`` (the system prompt that asked for it); small models copy
    their instructions or a prompt's example list into the answer ("it, compare it, book or buy
    with it"). Words are compared as ``normalize_text`` reads them; None when there is no such run."""
    from .similarity import normalize_text

    words = normalize_text(text).split()
    if len(words) < n:
        return None
    source = normalize_text(instructions).split()
    grams = {tuple(source[i:i + n]) for i in range(len(source) - n + 1)}
    for i in range(len(words) - n + 1):
        if tuple(words[i:i + n]) in grams:
            return f"instruction_leak: copies the instructions ({' '.join(words[i:i + n])!r})"
    return None
