"""Export generated conversations to the fine-tuning formats people train with.

The formats are written by ``dataflow.exports.finetune`` from one canonical record per
conversation: OpenAI fine-tuning, TRL / axolotl chat_template, LLaMA-Factory sharegpt (with its
``dataset_info.json`` entry) and ShareGPT/Hermes by default, ``<stem>.<format>.jsonl`` each.

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
    #: rows flagged by each quality check code (a row counts once per code), over ``considered`` rows
    flags: dict[str, int] = field(default_factory=dict)
    considered: int = 0


def openai_records(rows: Iterable[dict], messages_key: str = "conversations", tools_key: str = "tools",
                   flags: dict[str, int] | None = None,
                   ignored_codes: Iterable[str] = ()) -> tuple[list[dict], dict[str, int]]:
    """``{"messages", "tools"}`` records of the valid rows, and the count of skipped rows by
    reason code (``invalid_conversation``, ``non_json_number`` or a quality check's code). Calls
    are written as the one reader reads them (``read_openai_row``: JSON-string arguments, ``""``
    as ``{}``); a row holding NaN/Infinity is skipped, never written. ``flags``, when given,
    receives the rows flagged by each quality check code (every code of a row, not only the
    first). ``ignored_codes``: quality codes that are no defect in this data (``unused_tool`` for
    an environment's conversations, whose tool list is the whole environment)."""
    from ...quality import conversation_problems
    from ...tools.calls import dumps_json, read_chat_calls
    from ...exports.convert import read_openai_row

    records: list[dict] = []
    skipped: dict[str, int] = {}
    ignored = tuple(ignored_codes)
    for row in rows:
        # each call read once here (a file anyone may have written), then validated once by check_conversation
        messages = read_chat_calls(_load(row.get(messages_key)))
        tools = openai_tools(_load(row.get(tools_key)) or [])
        code = "invalid_conversation" if check_conversation(messages, tools) else None
        if code is None:
            problems = [p for p in conversation_problems(messages, tools) if p.split(":", 1)[0] not in ignored]
            code = problems[0].split(":", 1)[0] if problems else None
            if flags is not None:
                for flagged in {p.split(":", 1)[0] for p in problems}:
                    flags[flagged] = flags.get(flagged, 0) + 1
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
    from ...exports.convert import openai_messages_to_hermes

    return openai_messages_to_hermes(record["messages"], record["tools"])


def export_conversations(
    rows: Iterable[dict],
    out_dir: str | Path,
    stem: str = "func_call_conversations",
    messages_key: str = "conversations",
    tools_key: str = "tools",
    formats: Iterable[str] = ("openai", "trl", "llamafactory", "hermes"),
    ignored_codes: Iterable[str] = (),
) -> ExportResult:
    """Write ``<stem>.<format>.jsonl`` for each of ``formats`` (``EXPORT_FORMATS`` of
    ``dataflow.exports.finetune``) into ``out_dir`` atomically, from the rows that pass
    the checks; with ``llamafactory`` also ``dataset_info.json``. Raises ``ValueError`` for an
    unknown format. ``ignored_codes``: quality codes not counted as defects (see ``openai_records``)."""
    from ...exports.finetune import canonical_record, write_records

    rows = list(rows)
    flags: dict[str, int] = {}
    records, skipped = openai_records(rows, messages_key, tools_key, flags, ignored_codes)
    written = write_records((canonical_record(r) for r in records), out_dir, stem, formats)
    for code, count in written.skipped.items():
        skipped[code] = skipped.get(code, 0) + count
    return ExportResult(paths=written.paths, written=written.rows, skipped=skipped, flags=flags, considered=len(rows))


def _load(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return None
    return value
