"""``APIGenGenerator``: ask the LLM for query/answer pairs for each row's tools.

Per row it draws (seeded, from the row's content, so reruns are identical) the number of pairs
``N`` (fixed, or from a distribution), a style (simple, multiple, parallel, parallel_multiple;
optionally irrelevance, whose answer is ``[]``) and a persona (tone x user role). The reply is
structured output (``{"pairs": [{"query", "answers": [{"name", "arguments"}]}]}``) whose
arguments stay native JSON values. Each pair becomes one output row; a query that repeats an
earlier one exactly (after trimming whitespace) is dropped and counted in ``duplicates_dropped``.

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

from pydantic import BaseModel, Field

from ...core import OperatorABC, RowOutcome, RunReport, merge_row, parse_reply, schema_for
from ...core.errors import ConfigError

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


class APIGenGenerator(OperatorABC):
    """Generates ``query`` + ``answers`` rows (one per pair) from ``tools`` and ``examples``."""

    prompt_names = ("apigen_generator",)
    rows_independent = False  # plans use the row index; duplicate queries are dropped table-wide

    def __init__(self, llm_serving: Any = None, num_pairs: Any = None, styles: Any = None,
                 irrelevance_rate: float | None = None, personas: Any = None, config: Any = None,
                 seed: int = 0, prompt_template: Any = None):
        super().__init__(llm_serving, prompt_template)
        cfg = config if isinstance(config, dict) else load_generator_config(config)
        self.config_source = None if isinstance(config, dict) or config is None else str(config)
        self.num_pairs = num_pairs if num_pairs is not None else cfg.get("num_pairs", 1)
        self.styles = _style_weights(styles if styles is not None else cfg.get("styles", list(STYLES)))
        self.irrelevance_rate = float(irrelevance_rate if irrelevance_rate is not None else cfg.get("irrelevance_rate", 0.0))
        personas = personas if personas is not None else cfg.get("personas")
        self.tones, self.roles = _persona_lists(personas)
        self.seed = seed
        self.duplicates_dropped = 0
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
                "tones": self.tones, "roles": self.roles, "seed": self.seed}

    def process_batch(self, rows: list[dict], input_tools_key: str = "tools", input_examples_key: str | None = "examples",
                      output_query_key: str = "query", output_answers_key: str = "answers") -> list[RowOutcome]:
        from ...tools.spec import normalize_tools

        serving = self.require_llm()
        plans: list[dict | None] = []
        outcomes: list[RowOutcome | None] = []
        conversations = []
        for index, row in enumerate(rows):
            try:
                tools = normalize_tools(row.get(input_tools_key))
            except Exception as exc:
                plans.append(None)
                outcomes.append(RowOutcome.fail(f"invalid_tool: {exc}"))
                continue
            if not tools:
                plans.append(None)
                outcomes.append(RowOutcome.drop("no_tools: the row has no tool"))
                continue
            plan = self._plan(row, tools, index)
            examples = row.get(input_examples_key) if input_examples_key else None
            system, user = self.render(tools=tools, examples=examples or [], num_pairs=plan["num_pairs"],
                                       style=plan["style"], style_instruction=STYLE_INSTRUCTIONS[plan["style"]],
                                       persona=plan["persona"])
            conv = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
            conversations.append(conv)
            plans.append({**plan, "tools": tools})
            outcomes.append(None)
        results = iter(serving.generate_from_conversations(conversations, json_schema=schema_for(GeneratedPairs))
                       if conversations else [])
        seen: set[str] = set()
        final: list[RowOutcome] = []
        for row, plan, outcome in zip(rows, plans, outcomes):
            if outcome is not None:
                final.append(outcome)
                continue
            assert plan is not None
            parsed = parse_reply(next(results), GeneratedPairs)
            if not parsed.ok:
                final.append(RowOutcome.fail(parsed.reason or "invalid_reply"))
                continue
            out_rows = []
            pairs = [p for p in parsed.value.pairs if p.query.strip()]  # type: ignore[union-attr]
            if not pairs:
                final.append(RowOutcome.fail("invalid_reply: the reply has no query/answer pair"))
                continue
            for pair in pairs[: plan["num_pairs"]]:
                query = pair.query.strip()
                if query in seen:
                    self.duplicates_dropped += 1
                    continue
                seen.add(query)
                answers = [{"name": c.name, "arguments": c.arguments} for c in pair.answers]
                out_rows.append(merge_row(row, **{
                    input_tools_key: plan["tools"], output_query_key: query, output_answers_key: answers,
                    "style": plan["style"], "persona": plan["persona"],
                }))
            if out_rows:
                final.append(RowOutcome.keep_many(out_rows))
            else:
                final.append(RowOutcome.drop("duplicate_query: every generated query repeats an earlier one"))
        if self.duplicates_dropped:
            import sys

            print(f"APIGenGenerator: {self.duplicates_dropped} duplicate queries dropped", file=sys.stderr)
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
