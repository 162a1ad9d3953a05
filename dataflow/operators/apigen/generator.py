"""``APIGenGenerator``: ask the LLM for query/answer pairs for each row's tools.

Per row it draws (seeded, from the row's content, so reruns are identical) the number of pairs
``N`` (fixed, or from a distribution), a style (simple, multiple, parallel, parallel_multiple;
optionally irrelevance, whose answer is ``[]``) and a persona (tone x user role). The reply is
structured output (``{"pairs": [{"query", "answers": [{"name", "arguments"}]}]}``) whose
arguments stay native JSON values. Each pair becomes one output row; a query that repeats an
earlier one exactly (after trimming whitespace) is dropped and counted (``RunReport.counters``:
``duplicates_dropped``; a re-asked reply counts in ``reasked``).
A reply with a pair that copies an example or calls with values its query does not state is
asked again once, with that feedback (``StructuredLLMOperator.structured_round``'s ``Reask``).

A generator config (YAML or JSON, like seed 000's ``generator_config.yaml``)::

    num_pairs: 2                      # or {distribution: {1: 0.5, 2: 0.3, 3: 0.2}}
    styles: {simple: 0.4, multiple: 0.2, parallel: 0.2, parallel_multiple: 0.2}
    irrelevance_rate: 0.1
    personas: {tones: [casual, formal], user_roles: [student, travel agent]}
    examples_per_prompt: 3
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator

from ...core import RowOutcome, RunReport, merge_row
from ...core.errors import ConfigError
from ...core.errors import Reask
from ..llm import StructuredLLMOperator

STYLES = ("simple", "multiple", "parallel", "parallel_multiple")
STYLE_INSTRUCTIONS = {
    "simple": "Each query asks for one thing and is answered by exactly one call.",
    "multiple": "Each query asks for one thing; choose the one right function among several. Answer with exactly one call.",
    "parallel": "Each query asks for the same function several times with different values (e.g. two cities). Answer with one call per request, all to the same function.",
    "parallel_multiple": "Each query combines several requests that need different functions. Answer with one call per request.",
    "irrelevance": "Each query asks for something NONE of these functions can do. The answers list must be empty: [].",
}


class Call(BaseModel):
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)

    @field_validator("arguments", mode="before")
    @classmethod
    def _one_reading(cls, value: Any) -> dict:  # a JSON string, "" or null read as everywhere else
        from ...tools.calls import arguments_or_raise

        return arguments_or_raise(value)

    def read(self) -> Any:
        """This call as ``dataflow.tools.Call``: its arguments were read by the validator above,
        so nothing reads them again."""
        from ...tools.calls import Call as ReadCall

        return ReadCall(self.name, self.arguments)


class Pair(BaseModel):
    query: str
    answers: list[Call]


class GeneratedPairs(BaseModel):
    pairs: list[Pair]


def load_generator_config(path: str | Path | None) -> dict:
    """Read a generator config (``.yaml``/``.yml`` needs PyYAML; ``.json`` does not)."""
    if path is None:
        return {}
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"generator config {p} not found")
    text = p.read_text(encoding="utf-8")
    if p.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ConfigError(f"{p}: reading YAML needs PyYAML (pip install pyyaml), or use a .json config") from None
        data = yaml.safe_load(text) or {}
    else:
        data = json.loads(text)
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a generator config must be a mapping")
    return data


class APIGenGenerator(StructuredLLMOperator):
    """Generates ``query`` + ``answers`` rows (one per pair) from ``tools`` and ``examples``.

    A pair whose query copies an example shown in its prompt (or one of ``seed_examples``), or
    whose calls use a value the query does not state (``dataflow.quality.grounding``), makes the
    row be asked once more (``max_reasks``) with that feedback. The good pairs of the first reply
    are kept; the new reply's pairs are all passed on, so that a copy or an ungrounded call that
    survives the re-ask is rejected, with its reason, by ``NoveltyFilter`` / ``FormatChecker``."""

    prompt_names = ("apigen_generator",)
    rows_independent = False  # plans use the row index; duplicate queries are dropped table-wide
    version = 2  # 2: a pair that makes the same call twice is re-asked
    extra_output_columns = ("style", "persona")  # beside the query and answers columns

    def __init__(self, llm_serving: Any = None, num_pairs: Any = None, styles: Any = None,
                 irrelevance_rate: float | None = None, personas: Any = None, config: Any = None,
                 seed: int = 0, prompt_template: Any = None, seed_examples: Any = None, max_reasks: int = 1):
        super().__init__(llm_serving, prompt_template)
        cfg = config if isinstance(config, dict) else load_generator_config(config)
        self.config_source = None if isinstance(config, dict) or config is None else str(config)
        self.num_pairs = num_pairs if num_pairs is not None else cfg.get("num_pairs", 1)
        self.styles = _style_weights(styles if styles is not None else cfg.get("styles", list(STYLES)))
        self.irrelevance_rate = float(irrelevance_rate if irrelevance_rate is not None else cfg.get("irrelevance_rate", 0.0))
        personas = personas if personas is not None else cfg.get("personas")
        self.tones, self.roles = _persona_lists(personas)
        self.seed = seed
        self.max_reasks = max_reasks
        if seed_examples is not None:
            from .sampler import load_seed_examples

            seed_examples = [e["query"] for e in load_seed_examples(seed_examples)]
        self.seed_queries: list[str] = list(seed_examples or [])
        _draw_num_pairs(self.num_pairs, random.Random(0))  # validate now

    def run(self, storage: Any, input_tools_key: str = "tools", input_examples_key: str | None = "examples",
            output_query_key: str = "query", output_answers_key: str = "answers") -> RunReport:
        columns = storage.read_columns()
        if input_examples_key is not None and input_examples_key not in columns and input_examples_key == "examples":
            input_examples_key = None  # the default column is optional
        return self._run_step(
            storage, inputs={"input_tools_key": input_tools_key, "input_examples_key": input_examples_key},
            outputs={"output_query_key": output_query_key, "output_answers_key": output_answers_key},
            params=self._params(),
            batch_fn=lambda rows: self.process_batch(rows, input_tools_key, input_examples_key,
                                                     output_query_key, output_answers_key),
        )

    def _params(self) -> dict:
        return {"num_pairs": self.num_pairs, "styles": self.styles, "irrelevance_rate": self.irrelevance_rate,
                "tones": self.tones, "roles": self.roles, "seed": self.seed, "max_reasks": self.max_reasks,
                "seed_queries": self.seed_queries}

    def process_batch(self, rows: list[dict], input_tools_key: str = "tools", input_examples_key: str | None = "examples",
                      output_query_key: str = "query", output_answers_key: str = "answers") -> list[RowOutcome]:
        from ...tools.spec import normalize_tools

        outcomes: list[RowOutcome | None] = [None] * len(rows)
        plans: dict[int, dict] = {}
        for index, row in enumerate(rows):
            try:
                tools = normalize_tools(row.get(input_tools_key))
            except Exception as exc:
                outcomes[index] = RowOutcome.fail(f"invalid_tool: {exc}")
                continue
            if not tools:
                outcomes[index] = RowOutcome.drop("no_tools: the row has no tool")
                continue
            examples = (row.get(input_examples_key) if input_examples_key else None) or []
            plans[index] = {**self._plan(row, tools, index), "tools": tools, "examples": examples}
        # structured_round sees one ticket per row to ask (a row object may appear twice in a table)
        tickets = [{"index": i} for i in sorted(plans)]
        first_good: dict[int, list[dict]] = {}  # row index -> good pairs of the first reply

        def variables(ticket: dict) -> dict:
            plan = plans[ticket["index"]]
            return {"tools": plan["tools"], "examples": plan["examples"], "num_pairs": plan["num_pairs"],
                    "style": plan["style"], "style_instruction": STYLE_INSTRUCTIONS[plan["style"]],
                    "persona": plan["persona"]}

        def finish(ticket: dict, reply: GeneratedPairs) -> RowOutcome:
            index = ticket["index"]
            row, plan = rows[index], plans[index]
            pairs = [p for p in reply.pairs if p.query.strip()][: plan["num_pairs"]]
            if not pairs:
                return RowOutcome.fail("invalid_reply: the reply has no query/answer pair")
            out, problems = [], []
            for number, pair in enumerate(pairs, 1):
                calls = [c.read() for c in pair.answers]
                out_row = merge_row(row, **{input_tools_key: plan["tools"], output_query_key: pair.query.strip(),
                                            output_answers_key: [c.as_dict() for c in calls], "style": plan["style"],
                                            "persona": plan["persona"]})
                problem = self._pair_problem(out_row[output_query_key], calls, plan)
                out.append((out_row, problem))
                if problem:
                    problems.append(f"pair {number}: {problem}.")
            earlier = first_good.pop(index, None)
            rows_out = (earlier or []) + [r for r, _ in out]
            if problems and earlier is None and self.max_reasks > 0:
                first_good[index] = [r for r, problem in out if not problem]
                self.stat_update("reasked")
                raise Reask(" ".join(problems) + " Write new queries in your own words, with new values, and"
                            " state in each query every value its calls use.", RowOutcome.keep_many(rows_out))
            return RowOutcome.keep_many(rows_out)

        def row_schema(ticket: dict) -> dict:
            plan = plans[ticket["index"]]
            return pairs_schema(plan["tools"], plan["num_pairs"], plan["style"])

        results = self.structured_round(tickets, variables, GeneratedPairs, finish, row_schema=row_schema,
                                        max_reasks=self.max_reasks) if tickets else []
        for ticket, outcome in zip(tickets, results):
            kept_before = first_good.get(ticket["index"])
            if outcome.status == "failed" and kept_before:  # the re-ask failed: keep the first reply's good pairs
                outcome = RowOutcome.keep_many(kept_before)
            outcomes[ticket["index"]] = outcome
        return self._drop_repeats(outcomes, output_query_key)  # type: ignore[arg-type]

    def _pair_problem(self, query: str, answers: list, plan: dict) -> str | None:
        """Why a pair is worth re-asking: a copied example, the same call twice, or a call value the
        query lacks."""
        from .checkers import ungrounded_calls
        from ...tools.calls import repeated_calls
        from .novelty import copied_example, example_queries

        copied = copied_example(query, example_queries(plan["examples"]), self.seed_queries)
        if copied:
            return f"the query {query!r} copies an example; do not reuse example queries"
        repeats = repeated_calls(answers)
        if repeats:
            return (f"the calls for the query {query!r} repeat themselves (" + "; ".join(repeats) + "); write a query "
                    "whose requests differ (other values), one call per request")
        ungrounded = ungrounded_calls(query, answers, plan["tools"])
        if ungrounded:
            return f"the calls use values that the query {query!r} does not state (" + "; ".join(ungrounded) + ")"
        return None

    def _drop_repeats(self, outcomes: list[RowOutcome], query_key: str) -> list[RowOutcome]:
        """Drop a query that repeats an earlier one of the table exactly (after trimming)."""
        seen: set[str] = set()
        final = []
        for outcome in outcomes:
            if outcome.status != "ok":
                final.append(outcome)
                continue
            kept = []
            for row in outcome.rows:
                if row[query_key] in seen:
                    self.stat_update("duplicates_dropped")
                    continue
                seen.add(row[query_key])
                kept.append(row)
            final.append(RowOutcome.keep_many(kept) if kept else
                         RowOutcome.drop("duplicate_query: every generated query repeats an earlier one"))
        return final

    def _plan(self, row: dict, tools: list[dict], index: int) -> dict:
        key = json.dumps([self.seed, index, [t["function"]["name"] for t in tools]], sort_keys=True)
        rng = random.Random(int(hashlib.sha256(key.encode()).hexdigest()[:12], 16))
        if self.irrelevance_rate and rng.random() < self.irrelevance_rate:
            style = "irrelevance"
        else:
            allowed = {s: w for s, w in self.styles.items()
                       if len(tools) > 1 or s not in ("multiple", "parallel_multiple")}
            if not allowed:
                allowed = {"simple": 1.0}
            style = rng.choices(list(allowed), weights=list(allowed.values()))[0]
        persona = {"tone": rng.choice(self.tones), "role": rng.choice(self.roles)} if self.tones and self.roles else {}
        return {"style": style, "persona": persona, "num_pairs": _draw_num_pairs(self.num_pairs, rng)}


#: how many calls a pair of each style has (the decoding schema holds the model to it)
CALLS_PER_STYLE = {"simple": (1, 1), "multiple": (1, 1), "parallel": (2, 4), "parallel_multiple": (2, 4),
                   "irrelevance": (0, 0)}
QUERY_CHARS = 400
ARGUMENT_ITEMS = 10  # bound on array arguments in the decoding schema (a small model lists 1..100 otherwise)


def pairs_schema(tools: list[dict], num_pairs: int, style: str) -> dict:
    """The JSON schema sent for one row: exactly ``num_pairs`` pairs, each a query and then as
    many calls as ``style`` asks, every call naming one of ``tools`` with that tool's own
    parameters (as the multi-turn assistant's calls are decoded). ``GeneratedPairs`` still
    validates the reply, and ``FormatChecker`` every call."""
    from ..conversations.multi_turn import assistant_reply_schema

    low, high = CALLS_PER_STYLE[style]
    call = assistant_reply_schema(tools, 1)["properties"]["tool_calls"]["items"]
    _bound_arrays(call, ARGUMENT_ITEMS)
    answers: dict[str, Any] = {"type": "array", "minItems": low, "maxItems": high, "items": call}
    pair = {"type": "object", "properties": {"query": {"type": "string", "minLength": 10, "maxLength": QUERY_CHARS},
                                             "answers": answers},
            "required": ["query", "answers"], "additionalProperties": False}
    return {"title": GeneratedPairs.__name__, "type": "object",
            "properties": {"pairs": {"type": "array", "minItems": num_pairs, "maxItems": num_pairs, "items": pair}},
            "required": ["pairs"], "additionalProperties": False}


def _bound_arrays(node: Any, most: int) -> None:
    """Give every array schema ``maxItems`` of at most ``most`` (decoding schema only)."""
    if isinstance(node, dict):
        if node.get("type") == "array":
            node["maxItems"] = min(int(node.get("maxItems", most)), most)
        for value in node.values():
            _bound_arrays(value, most)
    elif isinstance(node, list):
        for value in node:
            _bound_arrays(value, most)


def _style_weights(styles: Any) -> dict[str, float]:
    if isinstance(styles, str):
        styles = [styles]
    weights = dict(styles) if isinstance(styles, dict) else {s: 1.0 for s in styles}
    unknown = set(weights) - set(STYLES)
    if unknown:
        raise ConfigError(f"unknown APIGen style(s) {sorted(unknown)}; choose from {', '.join(STYLES)}")
    if not weights or sum(float(w) for w in weights.values()) <= 0:
        raise ConfigError("styles needs at least one style with a positive weight")
    return {k: float(v) for k, v in weights.items()}


def _persona_lists(personas: Any) -> tuple[list[str], list[str]]:
    if not personas:
        return [], []
    if not isinstance(personas, dict):
        raise ConfigError("personas must be a mapping with 'tones' and 'user_roles'")
    tones = list(personas.get("tones") or [])
    roles = list(personas.get("user_roles") or personas.get("roles") or [])
    return [str(t) for t in tones], [str(r) for r in roles]


def _draw_num_pairs(spec: Any, rng: random.Random) -> int:
    if isinstance(spec, int) and not isinstance(spec, bool):
        if spec < 1:
            raise ConfigError(f"num_pairs must be at least 1, got {spec}")
        return spec
    if isinstance(spec, dict) and "distribution" in spec:
        spec = spec["distribution"]
    if isinstance(spec, dict) and spec:
        values = [int(k) for k in spec]
        weights = [float(v) for v in spec.values()]
        if min(values) < 1 or sum(weights) <= 0:
            raise ConfigError(f"num_pairs distribution is invalid: {spec}")
        return rng.choices(values, weights=weights)[0]
    if isinstance(spec, (list, tuple)) and spec:
        return int(rng.choice(list(spec)))
    raise ConfigError(f"num_pairs must be an int, a list, or {{distribution: {{n: weight}}}}; got {spec!r}")
