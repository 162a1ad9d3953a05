"""``DataSampler``: give each row of tools its tool list and a few seed examples to imitate.

Seed examples come from a JSONL/JSON file or a list of rows in either shape:

- seed 000's QA set: ``{"query", "function_calls": [{"function_name" | "name", "arguments"}]}``;
- xLAM rows: ``{"query", "tools", "answers"}`` (``tools``/``answers`` JSON strings or lists).

Sampling is seeded and deterministic per row (the same table gives the same examples on a rerun).
By default (``example_tools="other"``) a row is shown only examples that call none of the tools in
its prompt: an example for the very function being asked about is the easiest thing for a small
model to hand back verbatim, while one for another function shows the shape of a good pair (a
concrete request, every value stated) without an answer to copy. ``example_tools="any"`` lifts
that rule. Among the allowed examples, those whose functions resemble the row's tools (token
overlap of names and descriptions) are preferred: an example's similarity is the share of its function-name tokens found in the names and
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
from ...core.errors import ConfigError, InputFileError, ToolSpecError
from ...tools.calls import read_calls
from ...tools.spec import normalize_tools

_TOKEN = re.compile(r"[a-z0-9]+")
_STOP = frozenset("a an the of to for and or in on by with from get set is are be this that given".split())


def tokens(text: str) -> set[str]:
    """Lower-case word tokens, splitting snake_case and camelCase."""
    text = re.sub(r"([a-z])([A-Z])", r"\1 \2", text or "")
    return {t for t in _TOKEN.findall(text.lower().replace("_", " ")) if t not in _STOP and len(t) > 1}


def load_seed_examples(source: Any) -> list[dict]:
    """Seed examples -> ``[{"query", "answers": [{"name", "arguments"}], "tokens": set}]``.

    A file that cannot be read, or an example without a ``query`` or with unreadable calls, is an
    ``InputFileError`` naming the file and line (the examples are the user's input)."""
    if isinstance(source, (str, Path)):
        located = _read_rows(source)
        file_name = str(source)
    else:
        located = [(None, row) for row in (source or [])]
        file_name = "<seed examples>"
    out = []
    for index, (line, row) in enumerate(located):
        where = {"line": line} if line is not None else {}
        label = "" if line is not None else f"example {index}: "
        hint = "each seed example needs a non-empty 'query' and its 'function_calls' (or 'answers')"
        if not isinstance(row, dict):
            raise InputFileError(file_name, f"{label}a seed example must be a JSON object", hint=hint, **where)
        query = row.get("query")
        if not isinstance(query, str) or not query.strip():
            problem = "has no 'query'" if "query" not in row else "'query' is empty or not a string"
            raise InputFileError(file_name, f"{label}seed example {problem}", hint=hint, **where)
        answers = row.get("answers", row.get("function_calls", []))
        try:
            calls = read_calls(answers)
        except (ValueError, json.JSONDecodeError) as exc:
            raise InputFileError(file_name, f"{label}seed example has unreadable calls ({exc})", hint=hint,
                                 **where) from None
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
        out.append({"query": query, "answers": calls, "tokens": toks})
    return out


def _read_rows(path: str | Path) -> list[tuple[int | None, Any]]:
    """``(line number or None, row)`` of a JSONL file (or a .json array / object)."""
    from ...storage.formats import _decode_text

    p = Path(path)
    if not p.is_file():
        raise InputFileError(str(p), "seed example file not found", hint="check the seed_examples path")
    text = _decode_text(p, p.read_bytes())
    if p.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputFileError(str(p), f"invalid JSON: {exc.msg} (column {exc.colno})", line=exc.lineno,
                                 hint="a .json seed file holds one array of examples") from None
        return [(None, row) for row in (data if isinstance(data, list) else [data])]
    rows = []
    for line_no, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append((line_no, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise InputFileError(str(p), f"invalid JSON: {exc.msg} (column {exc.colno})", line=line_no,
                                     hint="each line must be one complete JSON object") from None
    return rows


class DataSampler(OperatorABC):
    """Adds ``tools`` (the row's tools plus ``extra_tools`` others from the table, for the
    multiple / parallel-multiple styles) and ``examples`` (few-shot seed examples).

    The tools table is the user's tool definitions: an invalid spec (bad name, parameters that are
    not a valid JSON Schema) raises ``ToolSpecError`` naming the tool and row, before any LLM
    call, unless ``skip_invalid_tools=True`` (then the row is filtered as ``invalid_tool``)."""

    rows_independent = False  # draws extra tools from the whole table; one RNG over all rows

    def __init__(self, seed_examples: Any, num_examples: int = 3, extra_tools: int = 1,
                 replacement: bool = False, prefer_similar: bool = True, similarity_weight: float = 4.0,
                 seed: int = 0, skip_invalid_tools: bool = False, example_tools: str = "other"):
        super().__init__()
        if example_tools not in ("other", "any"):
            raise ConfigError(f"example_tools must be 'other' or 'any', got {example_tools!r}")
        self.example_tools = example_tools
        self.skip_invalid_tools = skip_invalid_tools
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
                    "seed": self.seed, "seed_examples": fingerprint, "skip_invalid_tools": self.skip_invalid_tools,
                    "example_tools": self.example_tools},
            batch_fn=lambda rows: self.process_batch(rows, input_tools_key, output_tools_key, output_examples_key,
                                                     source=storage.input_path()),
        )

    def process_batch(self, rows: list[dict], input_tools_key: str = "function", output_tools_key: str = "tools",
                      output_examples_key: str = "examples", source: str = "") -> list[RowOutcome]:
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
                if not self.skip_invalid_tools:
                    where = f"{source}, row {len(row_tools) + 1}" if source else f"row {len(row_tools) + 1}"
                    raise ToolSpecError(
                        getattr(exc, "tool", "<tool>"), getattr(exc, "problem", str(exc)), where=where,
                        hint="fix the tool definition (or pass skip_invalid_tools=True to DataSampler to skip it)",
                    ) from None
                row_tools.append(None)
                reasons.append(f"invalid_tool: {exc}")
        pool = [t for ts in row_tools if ts for t in ts]
        unused: list[int] = []
        outcomes = []
        for index, (row, tools, reason) in enumerate(zip(rows, row_tools, reasons)):
            if reason or not tools:
                outcomes.append(RowOutcome.drop(reason or "no_tools: the row has no tool"))
                continue
            extra = self._extra(tools, pool, rng)
            examples = self._sample(tools, {t["function"]["name"] for t in tools + extra}, rng, unused)
            tools = tools + extra
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

    def _sample(self, tools: list[dict], shown: set[str], rng: random.Random, unused: list[int]) -> list[dict]:
        """Examples resembling ``tools`` (the row's own), calling none of ``shown`` (every tool
        in the prompt) unless ``example_tools="any"``."""
        if not self.examples or self.num_examples <= 0:
            return []
        names = shown
        indices = [i for i, e in enumerate(self.examples)
                   if self.example_tools == "any" or not names & {c["name"] for c in e["answers"]}]
        if not indices:
            return []
        k = min(self.num_examples, len(indices))
        mine = set().union(*(tokens(t["function"]["name"]) | tokens(t["function"]["description"]) for t in tools))
        weights = [math.exp(self.similarity_weight * _coverage(e["tokens"], mine)) if self.prefer_similar else 1.0
                   for e in self.examples]
        if self.replacement:
            chosen = rng.choices(indices, weights=[weights[i] for i in indices], k=k)
        else:
            allowed = set(indices)
            if sum(1 for i in unused if i in allowed) < k:  # every allowed example used: start a new round
                unused[:] = [i for i in range(len(self.examples)) if i not in unused] + unused
            candidates = [i for i in unused if i in allowed]
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
