"""Export generated conversations to the fine-tuning formats people train with.

- OpenAI fine-tuning JSONL: one ``{"messages": [...], "tools": [...]}`` per line;
- ShareGPT/Hermes JSONL: ``{"conversations": [{"from", "value"}], "tools": str}`` with
  ``<tool_call>`` / ``<tool_response>`` blocks (the formats area's ``openai_messages_to_hermes``).

Rows that are not a structurally valid conversation (``check_conversation``), or that a
deterministic quality check flags (``dataflow.quality.conversation_problems``: ungrounded
arguments, echoed or degenerate results, answers that ignore the results ...), are skipped and
counted by reason code, so a fine-tuning file never holds an example the library knows is wrong.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .functions import openai_tools
from .structure import check_conversation


@dataclass
class ExportResult:
    """Where the files went and how many rows each holds."""

    paths: dict[str, str] = field(default_factory=dict)
    written: int = 0
    skipped: dict[str, int] = field(default_factory=dict)


def openai_records(rows: Iterable[dict], messages_key: str = "conversations", tools_key: str = "tools") -> tuple[list[dict], dict[str, int]]:
    """``{"messages", "tools"}`` records of the valid rows, and the count of skipped rows by
    reason code (``invalid_conversation``, ``non_json_number`` or a quality check's code). Calls
    are written as the one reader reads them (``read_openai_row``: JSON-string arguments, ``""``
    as ``{}``); a row holding NaN/Infinity is skipped, never written."""
    from ...quality import conversation_problems
    from ...tools.calls import dumps_json
    from ..formats.convert import read_openai_row

    records: list[dict] = []
    skipped: dict[str, int] = {}
    for row in rows:
        messages, tools = _load(row.get(messages_key)), openai_tools(_load(row.get(tools_key)) or [])
        code = "invalid_conversation" if check_conversation(messages, tools) else None
        if code is None:
            problems = conversation_problems(messages, tools)
            code = problems[0].split(":", 1)[0] if problems else None
        record = None
        if code is None:
            try:
                record = {"messages": read_openai_row({"messages": messages})["messages"], "tools": tools}
                dumps_json(record)
            except ValueError:
                code = "non_json_number"
        if code is not None:
            skipped[code] = skipped.get(code, 0) + 1
            continue
        records.append(record)
    return records, skipped


def hermes_record(record: dict) -> dict:
    """One OpenAI ``{"messages", "tools"}`` record in ShareGPT/Hermes form."""
    from ..formats.convert import openai_messages_to_hermes

    return openai_messages_to_hermes(record["messages"], record["tools"])


def export_conversations(
    rows: Iterable[dict],
    out_dir: str | Path,
    stem: str = "func_call_conversations",
    messages_key: str = "conversations",
    tools_key: str = "tools",
) -> ExportResult:
    """Write ``<stem>.openai.jsonl`` and ``<stem>.hermes.jsonl`` into ``out_dir`` (atomically)."""
    from ...storage.atomic import atomic_writer
    from ...tools.calls import dumps_json

    records, skipped = openai_records(rows, messages_key, tools_key)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = ExportResult(written=len(records), skipped=skipped)
    for fmt, convert in (("openai", lambda r: r), ("hermes", hermes_record)):
        path = out / f"{stem}.{fmt}.jsonl"
        with atomic_writer(path) as fh:
            for record in records:
                fh.write((dumps_json(convert(record)) + "\n").encode("utf-8"))
        result.paths[fmt] = str(path)
    return result


def _load(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return None
    return value
