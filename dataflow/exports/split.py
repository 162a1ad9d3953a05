"""Stratified, seeded train / validation / (test) split by call signature.

A row's class is its *call signature*: each call's function name with its sorted argument keys,
sorted across calls (``book_flight(destination,origin)|get_weather(city)``; ``<no_call>`` for an
irrelevance row). Each class is shuffled with the seed and ``round(n * test_size)`` of its rows are
held out (at least one row always stays in train). With a test split, the held-out rows are divided
between validation and test (validation gets the odd one). Classes too rare to hold anything out
stay in train whole instead of being dropped; the report lists them.
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from ..tools.calls import read_calls


def call_signature(answers: Any) -> str:
    try:
        calls = read_calls(answers)
    except (ValueError, json.JSONDecodeError):
        return "<unreadable>"
    if not calls:
        return "<no_call>"
    return "|".join(sorted(f"{c['name']}({','.join(sorted(c['arguments']))})" for c in calls))


@dataclass
class SplitResult:
    train: list[dict] = field(default_factory=list)
    validation: list[dict] = field(default_factory=list)
    test: list[dict] = field(default_factory=list)
    class_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    kept_in_train: list[str] = field(default_factory=list)

    def report(self) -> dict:
        return {
            "sizes": {"train": len(self.train), "validation": len(self.validation), "test": len(self.test)},
            "classes": len(self.class_counts),
            "rare_classes_kept_in_train": self.kept_in_train,
            "class_counts": self.class_counts,
        }

    def summary(self) -> str:
        sizes = f"train {len(self.train)}, validation {len(self.validation)}"
        if self.test:
            sizes += f", test {len(self.test)}"
        return (f"split: {sizes}; {len(self.class_counts)} call signatures, "
                f"{len(self.kept_in_train)} too rare to split kept in train")


def stratified_split(rows: list[dict], test_size: float = 0.2, *, with_test: bool = False, seed: int = 0,
                     answers_key: str = "answers") -> SplitResult:
    """Split ``rows`` (order kept within each part)."""
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be between 0 and 1, got {test_size}")
    groups: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        answers = row.get(answers_key, row.get("function_calls", row.get("answers")))
        groups[call_signature(answers)].append(i)
    rng = random.Random(seed)
    assignment: dict[int, str] = {}
    result = SplitResult()
    for signature in sorted(groups):
        members = list(groups[signature])
        rng.shuffle(members)
        n = len(members)
        held = min(round(n * test_size), n - 1)
        if held <= 0 or (with_test and n < 3):
            result.kept_in_train.append(signature)
            held = 0
        n_val = (held + 1) // 2 if with_test else held
        for k, index in enumerate(members):
            assignment[index] = "validation" if k < n_val else "test" if k < held else "train"
        counts = Counter(assignment[i] for i in members)
        result.class_counts[signature] = {part: counts.get(part, 0) for part in ("train", "validation", "test")}
    for i, row in enumerate(rows):
        getattr(result, assignment[i]).append(row)
    return result
