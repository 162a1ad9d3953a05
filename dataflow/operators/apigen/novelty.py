"""``NoveltyFilter``: drop generated queries that copy a few-shot example, a seed row, or an
earlier generated query.

A small model shown "Query: ... Answers: ..." examples tends to hand them back verbatim, and a
verbatim copy teaches nothing new. A query that is a near-duplicate (``dataflow.quality.similarity``,
rapidfuzz ``token_sort_ratio`` at or above ``threshold``) of an example shown in its own prompt
(the row's ``examples`` column) or of any seed row is filtered as ``copied_example: ...``; one that
repeats an earlier kept query of the table is filtered as ``duplicate_query: ...``. Both land in the
step's rejected file and run report.
"""

from __future__ import annotations

from typing import Any, Sequence

from ...core import OperatorABC, RowOutcome, RunReport
from ...quality.similarity import NEAR_DUPLICATE


def copied_example(query: str, examples: Sequence[str], seeds: Sequence[str] = (),
                   threshold: float = NEAR_DUPLICATE) -> str | None:
    """Why ``query`` is a copy (``"copied_example: ..."``), or ``None`` when it is new.
    ``examples`` are the few-shot queries its prompt showed; ``seeds`` every seed query."""
    from ...quality.similarity import near_duplicate_of

    for label, candidates in (("few-shot example", list(examples)), ("seed row", list(seeds))):
        hit = near_duplicate_of(query, candidates, threshold)
        if hit is not None:
            index, score = hit
            return f"copied_example: the query copies {label} {candidates[index]!r} (similarity {score:.0f})"
    return None


def example_queries(examples: Any) -> list[str]:
    """The queries of a row's ``examples`` column (``[{"query", ...}]``); anything else is none."""
    if not isinstance(examples, list):
        return []
    return [e["query"] for e in examples if isinstance(e, dict) and isinstance(e.get("query"), str)]


class NoveltyFilter(OperatorABC):
    """Filters copied and repeated queries (see the module docstring). ``seed_examples`` is the
    seed file (or list of rows) the sampler drew from; every one of its queries counts as seen."""

    rows_independent = False  # a repeat is judged against the earlier rows of the whole table

    def __init__(self, seed_examples: Any = None, threshold: float = NEAR_DUPLICATE):
        super().__init__()
        from .sampler import load_seed_examples

        self.seed_source = str(seed_examples) if seed_examples is not None and not isinstance(seed_examples, list) else None
        self.seeds = [e["query"] for e in load_seed_examples(seed_examples)] if seed_examples is not None else []
        self.threshold = threshold

    def run(self, storage: Any, input_query_key: str = "query", input_examples_key: str | None = "examples") -> RunReport:
        if input_examples_key == "examples" and input_examples_key not in storage.read_columns():
            input_examples_key = None  # the default column is optional
        return self._run_step(
            storage, inputs={"input_query_key": input_query_key, "input_examples_key": input_examples_key},
            outputs={}, params={"seeds": self.seeds, "threshold": self.threshold},
            batch_fn=lambda rows: self.process_batch(rows, input_query_key, input_examples_key),
        )

    def process_batch(self, rows: list[dict], input_query_key: str = "query",
                      input_examples_key: str | None = "examples") -> list[RowOutcome]:
        from ...quality.similarity import near_duplicate_of

        kept: list[str] = []
        outcomes = []
        for row in rows:
            query = str(row.get(input_query_key) or "")
            shown = example_queries(row.get(input_examples_key)) if input_examples_key else []
            problem = copied_example(query, shown, self.seeds, self.threshold)
            if problem is None:
                hit = near_duplicate_of(query, kept, self.threshold)
                if hit is not None:
                    problem = f"duplicate_query: repeats the earlier query {kept[hit[0]]!r} (similarity {hit[1]:.0f})"
            if problem is not None:
                outcomes.append(RowOutcome.drop(problem))
                continue
            kept.append(query)
            outcomes.append(RowOutcome.keep(row))
        return outcomes
