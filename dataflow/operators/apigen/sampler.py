"""``DataSampler``: give each row of tools its tool list and a few seed examples to imitate.

Seed examples come from a JSONL/JSON file or a list of rows in either shape:

- seed 000's QA set: ``{"query", "function_calls": [{"function_name" | "name", "arguments"}]}``;
- xLAM rows: ``{"query", "tools", "answers"}`` (``tools``/``answers`` JSON strings or lists).

Sampling is seeded and deterministic per row (the same table gives the same examples on a rerun).
Examples whose functions resemble the row's tools (token overlap of names and descriptions) are
preferred: an example's similarity is the share of its function-name tokens found in the names and
descriptions of the row's own tools, and its weight is ``exp(similarity_weight * similarity)``. Without replacement no
example repeats inside a row, and across rows an example is reused only once every example has
been used; with replacement each draw is independent.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from pathlib import Path
from typing import Any

from ...core import OperatorABC, RowOutcome, RunReport, merge_row
from ...core.errors import InputFileError
from ...tools.spec import normalize_tools
from ..formats.convert import calls_of

_TOKEN = re.compile(r"[a-z0-9]+")
_STOP = frozenset("a an the of to for and or in on by with from get set is are be this that given".split())


def tokens(text: str) -> set[str]:
    """Lower-case word tokens, splitting snake_case and camelCase."""
    text = re.sub(r"([a-z])([A-Z])", r"\1 \2", text or "")
    return {t for t in _TOKEN.findall(text.lower().replace("_", " ")) if t not in _STOP and len(t) > 1}


def load_seed_examples(source: Any) -> list[dict]:
    """Seed examples -> ``[{"query", "answers": [{"name", "arguments"}], "tokens": set}]``."""
    rows = _read_rows(source) if isinstance(source, (str, Path)) else list(source or [])
    out = []
    for index, row in enumerate(rows):
        if not isinstance(row, dict) or not row.get("query"):
            continue
        answers = row.get("answers", row.get("function_calls", []))
        try:
            calls = calls_of(answers)
        except (ValueError, json.JSONDecodeError) as exc:
            raise InputFileError(str(source) if isinstance(source, (str, Path)) else "<seed examples>",
                                 f"example {index}: unreadable calls ({exc})") from None
        toks: set[str] = set()
        for call in calls:
            toks |= tokens(call["name"])
        tools = row.get("tools")
        if tools:
            try:
                for spec in normalize_tools(tools, allow_dots=True):
                    toks |= tokens(spec["function"]["name"]) | tokens(spec["function"]["description"])
            except Exception:  # a bad tool list in a seed row only loses similarity hints
                pass
        out.append({"query": row["query"], "answers": calls, "tokens": toks})
    return out


def _read_rows(path: str | Path) -> list[dict]:
    p = Path(path)
    if not p.is_file():
        raise InputFileError(str(p), "seed example file not found")
    text = p.read_text(encoding="utf-8")
    if p.suffix == ".json":
        data = json.loads(text)
        return data if isinstance(data, list) else [data]
    rows = []
    for line_no, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise InputFileError(str(p), f"invalid JSON: {exc.msg}", line=line_no) from None
    return rows


class DataSampler(OperatorABC):
    """Adds ``tools`` (the row's tools plus ``extra_tools`` others from the table, for the
    multiple / parallel-multiple styles) and ``examples`` (few-shot seed examples)."""

    def __init__(self, seed_examples: Any, num_examples: int = 3, extra_tools: int = 1,
                 replacement: bool = False, prefer_similar: bool = True, similarity_weight: float = 4.0,
                 seed: int = 0):
        super().__init__()
        self.seed_source = str(seed_examples) if isinstance(seed_examples, (str, Path)) else None
        self.examples = load_seed_examples(seed_examples)
        self.num_examples = num_examples
        self.extra_tools = extra_tools
        self.replacement = replacement
        self.prefer_similar = prefer_similar
        self.similarity_weight = similarity_weight
        self.seed = seed

    def run(self, storage: Any, input_tools_key: str = "function", output_tools_key: str = "tools",
            output_examples_key: str = "examples") -> RunReport:
        fingerprint = hashlib.sha256(json.dumps(
            [{"q": e["query"], "a": e["answers"]} for e in self.examples], sort_keys=True).encode()).hexdigest()[:16]
        return self._run_step(
            storage, inputs={"input_tools_key": input_tools_key},
            outputs={"output_tools_key": output_tools_key, "output_examples_key": output_examples_key},
            params={"num_examples": self.num_examples, "extra_tools": self.extra_tools, "replacement": self.replacement,
                    "prefer_similar": self.prefer_similar, "similarity_weight": self.similarity_weight,
                    "seed": self.seed, "seed_examples": fingerprint},
            batch_fn=lambda rows: self.process_batch(rows, input_tools_key, output_tools_key, output_examples_key),
        )

    def process_batch(self, rows: list[dict], input_tools_key: str = "function", output_tools_key: str = "tools",
                      output_examples_key: str = "examples") -> list[RowOutcome]:
        rng = random.Random(self.seed)
        row_tools: list[list[dict] | None] = []
        reasons: list[str | None] = []
        for row in rows:
            value = row.get(input_tools_key)
            if isinstance(value, dict) and input_tools_key == "function" and "type" in row:
                value = {"type": row["type"], "function": value}
            try:
                row_tools.append(normalize_tools(value))
                reasons.append(None if row_tools[-1] else "no_tools: the row has no tool")
            except Exception as exc:
                row_tools.append(None)
                reasons.append(f"invalid_tool: {exc}")
        pool = [t for ts in row_tools if ts for t in ts]
        unused: list[int] = []
        outcomes = []
        for index, (row, tools, reason) in enumerate(zip(rows, row_tools, reasons)):
            if reason or not tools:
                outcomes.append(RowOutcome.drop(reason or "no_tools: the row has no tool"))
                continue
            examples = self._sample(tools, rng, unused)
            tools = tools + self._extra(tools, pool, rng)
            outcomes.append(RowOutcome.keep(merge_row(row, **{output_tools_key: tools, output_examples_key: examples})))
        return outcomes

    # -- internals ------------------------------------------------------------------------------
    def _extra(self, tools: list[dict], pool: list[dict], rng: random.Random) -> list[dict]:
        names = {t["function"]["name"] for t in tools}
        others = list({t["function"]["name"]: t for t in pool if t["function"]["name"] not in names}.values())
        if not others or self.extra_tools <= 0:
            return []
        mine = set().union(*(tokens(t["function"]["name"]) | tokens(t["function"]["description"]) for t in tools))
        weights = [1.0 + self.similarity_weight * _jaccard(mine, tokens(o["function"]["name"]) | tokens(o["function"]["description"]))
                   for o in others]
        picks = _weighted_sample(others, weights, min(self.extra_tools, len(others)), rng)
        return picks

    def _sample(self, tools: list[dict], rng: random.Random, unused: list[int]) -> list[dict]:
        if not self.examples or self.num_examples <= 0:
            return []
        k = min(self.num_examples, len(self.examples))
        mine = set().union(*(tokens(t["function"]["name"]) | tokens(t["function"]["description"]) for t in tools))
        weights = [math.exp(self.similarity_weight * _coverage(e["tokens"], mine)) if self.prefer_similar else 1.0
                   for e in self.examples]
        indices = list(range(len(self.examples)))
        if self.replacement:
            chosen = rng.choices(indices, weights=weights, k=k)
        else:
            if len(unused) < k:
                unused[:] = [i for i in indices if i not in unused] + unused
            candidates = list(unused)
            chosen = _weighted_sample(candidates, [weights[i] for i in candidates], k, rng)
            for i in chosen:
                unused.remove(i)
        return [{"query": self.examples[i]["query"], "answers": self.examples[i]["answers"]} for i in chosen]


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def _coverage(example: set, row: set) -> float:
    """Share of the example's tokens that the row's tools mention."""
    return len(example & row) / len(example) if example else 0.0


def _weighted_sample(items: list, weights: list[float], k: int, rng: random.Random) -> list:
    """``k`` distinct items, each drawn with probability proportional to its weight
    (Efraimidis-Spirakis keys)."""
    keyed = sorted(((math.log(rng.random() or 1e-300) / w, i) for i, w in enumerate(weights)), reverse=True)
    return [items[i] for _, i in keyed[:k]]
