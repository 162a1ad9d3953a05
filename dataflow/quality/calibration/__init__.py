"""Labelled sets for the LLM judges, and how well each judge told them apart on each model.

Files (shipped in the package):

- ``semantic_checker.jsonl``, ``composition_task_filter.jsonl``,
  ``conversation_quality_evaluator.jsonl``: one item per line, ``{"id", "label": "good" | "bad",
  "note", ...the judge's input columns}``; the bad items include near misses (the wrong function
  for the question, an invented argument, sub-tasks that restate each other, an answer that
  contradicts its tool result).
- ``results.json``: written by ``benchmarks/bench_judges.py``, ``{model name: {judge: {settings
  key: entry}}}`` where an entry holds ``accept_good`` and ``reject_bad`` (fractions 0-1),
  ``n_good``, ``n_bad``, ``failed``, ``seconds``, ``prompt_hash``, ``measured`` (date), the ids
  of misjudged items, and ``llm_only`` (the same figures over the items the LLM judged, when a
  deterministic check settled some first).

A judge's verdicts are trusted on a model when the entry for its settings (``n_votes``, and for
the quality evaluator ``min_score``), measured with the same prompt, reaches ``TARGET`` on both
figures (see ``dataflow.operators.judges``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
RESULTS_FILE = HERE / "results.json"
TARGET = 0.9  # both accept-good and reject-bad at least this

#: judge operator name -> labelled set file name (without .jsonl)
SETS = {
    "SemanticChecker": "semantic_checker",
    "CompositionTaskFilter": "composition_task_filter",
    "ConversationQualityEvaluator": "conversation_quality_evaluator",
}


def load_items(judge: str) -> list[dict]:
    """The labelled items for ``judge`` (an operator name from ``SETS``), in file order."""
    if judge not in SETS:
        raise KeyError(f"no calibration set for {judge!r}; known: {', '.join(SETS)}")
    path = HERE / f"{SETS[judge]}.jsonl"
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def settings_key(settings: dict[str, Any]) -> str:
    """``{"n_votes": 3, "min_score": 4}`` -> ``"min_score=4,n_votes=3"`` (the key in results.json)."""
    return ",".join(f"{k}={settings[k]}" for k in sorted(settings))


def load_results(path: str | Path | None = None) -> dict:
    """Everything in ``results.json`` (an empty dict when the file is absent or unreadable)."""
    target = Path(path) if path is not None else RESULTS_FILE
    try:
        data = json.loads(target.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def lookup(judge: str, model: str | None, settings: dict[str, Any], prompt_hash: str,
           results: dict | None = None) -> dict | None:
    """The calibration entry of ``judge`` on ``model`` with these settings and this prompt, or
    ``None`` when none was measured (an entry measured with another prompt does not count)."""
    data = load_results() if results is None else results
    entry = ((data.get(model or "") or {}).get(judge) or {}).get(settings_key(settings))
    if not isinstance(entry, dict) or entry.get("prompt_hash") != prompt_hash:
        return None
    return entry


def figures(entry: dict) -> dict:
    """The accept-good / reject-bad figures that judge the LLM: those of the items it judged
    (``llm_only``) when a deterministic check settled some items first, else the entry's."""
    return entry.get("llm_only") or entry


def meets_target(entry: dict | None) -> bool:
    """Both figures of ``entry`` at least ``TARGET``."""
    if not entry:
        return False
    measured = figures(entry)
    return measured.get("accept_good", 0) >= TARGET and measured.get("reject_bad", 0) >= TARGET
