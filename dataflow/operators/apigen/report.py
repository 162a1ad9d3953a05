"""APIGen's stage table: generated, copied / repeated queries, failed format / grounding /
execution / semantic, verified, pass rate.

Built from the ``RunReport``s a ``FileStorage`` collects (``storage.reports``), so a reused step
(0 LLM calls on a rerun) still counts, its generator counters (duplicates dropped, replies
re-asked) included: they come from the step's manifest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

STAGES = {"NoveltyFilter": "copied_example", "FormatChecker": "failed_format",
          "ExecutionChecker": "failed_execution", "SemanticChecker": "failed_semantic"}
#: reason codes with a row of their own (any other code counts in its stage's row)
CODES = ("copied_example", "duplicate_query", "failed_format", "failed_repeated_call", "failed_grounding",
         "failed_irrelevance", "failed_execution", "failed_semantic")


def stage_table(reports: Iterable[Any]) -> dict:
    """Counts per stage from the run reports of one pipeline run (the latest of each operator);
    ``duplicates_dropped`` and ``reasked`` are the generator report's counters."""
    latest: dict[str, Any] = {}
    for report in reports:
        latest[report.operator] = report
    gen = latest.get("APIGenGenerator")
    counters = (getattr(gen, "counters", None) or {}) if gen is not None else {}
    table: dict[str, Any] = {"generated": 0, "duplicates_dropped": counters.get("duplicates_dropped", 0),
                             "reasked": counters.get("reasked", 0),
                             "generation_failed": 0, **dict.fromkeys(CODES, 0), "judge_errors": 0, "judge_advisory": 0,
                             "verified": 0, "pass_rate": 0.0}
    if gen is not None:
        table["generated"] = gen.rows_out
        table["generation_failed"] = gen.failed
    last = None
    for operator, column in STAGES.items():
        report = latest.get(operator)
        if report is None:
            continue
        # a semantic checker drops rows whose execution failed (kept by keep_failed) as failed_execution
        for code, count in report.filtered_by_reason.items():
            key = code if code in CODES else column
            table[key] += count
        if operator == "SemanticChecker":
            table["judge_errors"] = report.failed
            # kept although the judge rejected them: the judge is not calibrated on this model
            table["judge_advisory"] = sum((getattr(report, "advisory_by_reason", None) or {}).values())
        else:
            table[column] += report.failed
        last = report
    if last is not None:
        table["verified"] = last.rows_out
    elif gen is not None:
        table["verified"] = gen.rows_out
    table["pass_rate"] = round(table["verified"] / table["generated"], 4) if table["generated"] else 0.0
    return table


def format_stage_table(table: dict) -> str:
    rows = [
        ("generated", table["generated"]),
        ("  duplicate queries dropped", table.get("duplicates_dropped", 0)),
        ("  replies re-asked (copy / repeat / ungrounded)", table.get("reasked", 0)),
        ("copied example", table.get("copied_example", 0)),
        ("repeated query", table.get("duplicate_query", 0)),
        ("failed format", table["failed_format"]),
        ("same call twice", table.get("failed_repeated_call", 0)),
        ("failed grounding", table.get("failed_grounding", 0)),
        ("no call, but a tool fits", table.get("failed_irrelevance", 0)),
        ("failed execution", table["failed_execution"]),
        ("failed semantic", table["failed_semantic"]),
        ("  judge errors (LLM)", table.get("judge_errors", 0)),
        ("  kept, judge advisory", table.get("judge_advisory", 0)),
        ("verified", table["verified"]),
        ("pass rate", f"{table['pass_rate'] * 100:.1f}%"),
    ]
    width = max(len(name) for name, _ in rows)
    lines = ["APIGen stage table", "-" * (width + 10)]
    lines += [f"{name:<{width}}  {value:>7}" for name, value in rows]
    return "\n".join(lines)


def write_stage_table(table: dict, path: str | Path) -> str:
    from ...storage.atomic import atomic_write_text

    atomic_write_text(path, json.dumps(table, indent=2) + "\n")
    return str(path)
