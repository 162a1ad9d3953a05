"""Fine-tuning files from one canonical record, and readers that give that record back.

The canonical record is OpenAI chat with everything spelled out, as the one reader
(``dataflow.tools.calls``) reads it::

    {"messages": [
        {"role": "system" | "user", "content": str},
        {"role": "assistant", "content": str | None,
         "tool_calls": [{"id": "call_0", "type": "function",
                         "function": {"name": str, "arguments": JSON text}}]},   # only with calls
        {"role": "tool", "tool_call_id": "call_0", "name": str, "content": str},
     ],
     "tools": [OpenAI tool spec, normalised]}

Call ids are ``call_0, call_1, ...`` in the order the calls are made, a tool result names the
call it answers, the results of one turn follow the order of its calls (formats without ids pair
them by that order), and a result that is a JSON object or array is written in one spelling. So
a record written in any format and read back is equal to the record written.

Formats (``EXPORT_FORMATS``):

- ``openai``: OpenAI fine-tuning JSONL. ``messages`` + ``tools``; assistant ``tool_calls`` with
  ids and ``arguments`` as JSON text; ``tool`` messages with ``tool_call_id``;
  ``parallel_tool_calls: true`` on every row of a file where some turn makes several calls.
  Tool names OpenAI refuses are renamed (``openai_names``).
- ``trl``: TRL / axolotl ``chat_template``. ``messages`` + ``tools`` (JSON-schema tools);
  assistant ``tool_calls`` with ``arguments`` as an object; ``tool`` messages with ``name``.
- ``llamafactory``: LLaMA-Factory ``sharegpt``. ``conversations`` of ``human`` / ``gpt`` /
  ``function_call`` / ``observation`` turns (human and observation at odd positions, gpt and
  function_call at even ones), a ``function_call`` value is ``{"name", "arguments"}`` or a list of
  them for parallel calls, the results of parallel calls are one observation holding a JSON list,
  ``tools`` is JSON text, ``system`` is on every row of a file when some row has one.
  ``llamafactory_dataset_info`` is the matching ``dataset_info.json`` entry.
- ``hermes``: ShareGPT/Hermes (``<tools>``, ``<tool_call>``, ``<tool_response>``).
- ``xlam``: xLAM rows ``{"id", "query", "tools", "answers"}`` (JSON text); single-turn records
  only (a system prompt, user, assistant with calls or a no-call reply).

A record a format cannot hold raises ``RowError`` saying why. ``write_records`` writes the
chosen formats of the records every one of them can hold (so each file has the same rows) and
counts the others by reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from ..tools.calls import (Call, OpenAICall, dumps_json, loads_strict, pair_results, read_call, read_call_list,
                           read_calls)
from .convert import (
    NO_CALL_REPLY, RowError, _renamed_message, _renamed_tools, openai_messages_to_hermes, openai_renaming,
    read_openai_row, read_sharegpt_row, read_xlam_row, single_turn_chat, to_xlam_row,
)

__all__ = [
    "EXPORT_FORMATS", "FILE_SUFFIX", "canonical_record", "write_record", "read_record", "to_openai_record",
    "to_trl_record", "to_llamafactory_record", "to_hermes_record", "to_xlam_record", "llamafactory_problems",
    "llamafactory_dataset_info", "WrittenFiles", "write_records", "parse_formats",
]

EXPORT_FORMATS = ("openai", "trl", "llamafactory", "hermes", "xlam")
#: file name ending of each format: ``<stem>.<suffix>``
FILE_SUFFIX = {fmt: f"{fmt}.jsonl" for fmt in EXPORT_FORMATS}


# -- the canonical record -------------------------------------------------------------------------
def canonical_record(record: dict) -> dict:
    """Any OpenAI-like chat record (``messages`` + ``tools``; arguments as text or objects, ids
    present or not) -> the canonical record (see the module doc). System prompts and assistant
    texts lose edge white space (readers of Hermes and ShareGPT strip it) and a blank system
    prompt is dropped. Raises ``RowError`` for a message that is not OpenAI chat, an unreadable
    call, a result that answers no call, or a turn that answers some of its calls but not all
    (``unanswered_call``: formats without ids would pair its results with the wrong calls)."""
    chat = read_openai_row(record)
    pairing = pair_results(chat["messages"])
    open_calls: list[list] = []  # [given id, name, canonical id] of the latest assistant turn
    answered = 0  # results of the latest assistant turn
    counter = 0
    messages: list[dict] = []
    for index, message in enumerate([*chat["messages"], None]):
        role = message["role"] if message is not None else None
        if role != "tool" and open_calls and answered:
            raise RowError(f"unanswered_call: {', '.join(repr(c[1]) for c in open_calls)} of message {index - answered - 1}"
                           " got no result while the other calls of that turn did")
        if message is None:
            break
        if role == "system":  # a blank system prompt is none
            if _text(message.get("content")).strip():
                messages.append({"role": role, "content": _text(message.get("content")).strip()})
        elif role == "user":
            messages.append({"role": role, "content": _text(message.get("content"))})
        elif role == "assistant":
            out: dict[str, Any] = {"role": "assistant", "content": _text(message.get("content")).strip() or None}
            open_calls, answered = [], 0
            if message.get("tool_calls"):
                out["tool_calls"] = []
                for call in message["tool_calls"]:  # each read once by read_openai_row, carried on (OpenAICall)
                    given = call.get("id") if isinstance(call.get("id"), str) and call.get("id") else None
                    new_id = f"call_{counter}"
                    counter += 1
                    open_calls.append([given, call["function"]["name"], new_id])
                    read = read_call(call)
                    out["tool_calls"].append(OpenAICall({"id": new_id, "type": "function", "function": {
                        "name": call["function"]["name"], "arguments": call["function"]["arguments"]}},
                        Call(read.name, read.arguments, new_id)))
            messages.append(out)
        else:  # tool: pair_results has said which call it answers
            given, name = pairing.results[index]
            match = next(c for c in open_calls if c[0] == given and c[1] == name)
            open_calls.remove(match)
            answered += 1
            messages.append({"role": "tool", "tool_call_id": match[2], "name": name,
                             "content": _result_text(message.get("content"))})
    return {"messages": _results_in_call_order(messages), "tools": chat["tools"]}


def _results_in_call_order(messages: list[dict]) -> list[dict]:
    """Each run of consecutive ``tool`` messages sorted by the number of the call it answers."""
    out: list[dict] = []
    run: list[dict] = []
    for message in [*messages, None]:
        if message is not None and message["role"] == "tool":
            run.append(message)
            continue
        out.extend(sorted(run, key=lambda m: int(m["tool_call_id"].rsplit("_", 1)[1])))
        run = []
        if message is not None:
            out.append(message)
    return out


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # OpenAI content parts
        return "".join(p.get("text", "") for p in value if isinstance(p, dict))
    return dumps_json(value)


def _result_text(value: Any) -> str:
    """A tool result as text; JSON objects and arrays in one spelling (``dumps_json``)."""
    if isinstance(value, str):
        if value.lstrip()[:1] in ("{", "["):
            try:
                return dumps_json(loads_strict(value))
            except ValueError:
                return value
        return value
    return _text(value)


def _calls(message: dict) -> list[Call]:
    """The calls of a canonical assistant message (carried by its ``OpenAICall`` entries, so not
    read again; an entry changed since, or a record built by hand, is read)."""
    return read_call_list(message.get("tool_calls") or [])


def _has_parallel_turn(record: dict) -> bool:
    return any(len(m.get("tool_calls") or []) > 1 for m in record["messages"])


# -- writers --------------------------------------------------------------------------------------
def to_openai_record(record: dict, names: dict | None = None) -> dict:
    """Canonical -> OpenAI fine-tuning row. ``names`` receives ``{OpenAI name: declared name}``
    for every renamed tool; raises ``RowError`` when a renaming would merge two tools."""
    mapping = openai_renaming(record, names)
    messages = []
    for message in record["messages"]:
        message = _renamed_message(message, mapping)
        if message["role"] == "assistant":
            out = {"role": "assistant"}
            if message.get("content") is not None or not message.get("tool_calls"):
                out["content"] = message.get("content") or ""
            if message.get("tool_calls"):
                out["tool_calls"] = message["tool_calls"]
            messages.append(out)
        elif message["role"] == "tool":
            messages.append({"role": "tool", "tool_call_id": message["tool_call_id"], "content": message["content"]})
        else:
            messages.append(dict(message))
    row: dict[str, Any] = {"messages": messages, "tools": _renamed_tools(record["tools"], mapping)}
    if _has_parallel_turn(record):
        row["parallel_tool_calls"] = True
    return row


def to_trl_record(record: dict) -> dict:
    """Canonical -> TRL / axolotl chat_template row: arguments as objects, results with ``name``."""
    messages = []
    for message in record["messages"]:
        if message["role"] == "assistant":  # no content key beside calls without text (as OpenAI's)
            out: dict[str, Any] = {"role": "assistant"}
            if message.get("content") or not message.get("tool_calls"):
                out["content"] = message.get("content") or ""
            if message.get("tool_calls"):
                out["tool_calls"] = [{"type": "function", "function": c.as_dict()} for c in _calls(message)]
            messages.append(out)
        elif message["role"] == "tool":
            messages.append({"role": "tool", "name": message["name"], "content": message["content"]})
        else:
            messages.append(dict(message))
    return {"messages": messages, "tools": record["tools"]}


def to_llamafactory_record(record: dict) -> dict:
    """Canonical -> LLaMA-Factory sharegpt row (``conversations``, ``tools``, ``system``).

    Raises ``RowError`` for what the format cannot hold: a system message after the first
    message, assistant text beside tool calls, an empty assistant turn, or turns out of the
    human / gpt-or-function_call / observation order."""
    messages = record["messages"]
    system = None
    if messages and messages[0]["role"] == "system":
        system, messages = messages[0]["content"], messages[1:]
    turns: list[dict] = []
    results: list[str] = []

    def flush() -> None:
        if results:
            value = results[0] if len(results) == 1 else dumps_json([_json_or_text(r) for r in results])
            turns.append({"from": "observation", "value": value})
            results.clear()

    for number, message in enumerate(messages, 1):
        role = message["role"]
        if role == "tool":
            results.append(message["content"])
            continue
        flush()
        if role == "user":
            turns.append({"from": "human", "value": message["content"]})
        elif role == "assistant" and message.get("tool_calls"):
            if message.get("content"):
                raise RowError(f"message {number}: LLaMA-Factory has no place for assistant text beside tool calls")
            calls = [c.as_dict() for c in _calls(message)]
            turns.append({"from": "function_call", "value": dumps_json(calls[0] if len(calls) == 1 else calls)})
        elif role == "assistant":
            if not message.get("content"):
                raise RowError(f"message {number}: an empty assistant turn")
            turns.append({"from": "gpt", "value": message["content"]})
        else:
            raise RowError(f"message {number}: LLaMA-Factory holds one system prompt, first; got a {role} message here")
    flush()
    row: dict[str, Any] = {"conversations": turns, "tools": dumps_json([t["function"] for t in record["tools"]])}
    if system is not None:
        row["system"] = system
    problems = llamafactory_problems(row, check_calls=False)  # its function_call values were written from read calls
    if problems:
        raise RowError(problems[0])
    return row


def _json_or_text(text: str) -> Any:
    if text.lstrip()[:1] in ("{", "["):
        try:
            return loads_strict(text)
        except ValueError:
            pass
    return text


def llamafactory_problems(row: dict, *, check_calls: bool = True) -> list[str]:
    """What breaks LLaMA-Factory's sharegpt rules in ``row`` (``[]`` when none): ``human`` and
    ``observation`` at odd positions (1st, 3rd, ...), ``gpt`` and ``function_call`` at even ones,
    an even number of turns, ``function_call`` values that are calls, ``tools`` a JSON text of a
    list, ``system`` text. ``check_calls=False`` leaves the ``function_call`` values unread (the
    writer made them from calls it had read)."""
    problems = []
    turns = row.get("conversations")
    if not isinstance(turns, list) or not turns:
        return ["conversations: expected a non-empty list of {from, value} turns"]
    for position, turn in enumerate(turns, 1):
        speaker = turn.get("from") if isinstance(turn, dict) else None
        wanted = ("human", "observation") if position % 2 else ("gpt", "function_call")
        if speaker not in wanted:
            problems.append(f"turn {position}: {speaker!r} where {' or '.join(wanted)} must be")
        elif not isinstance(turn.get("value"), str):
            problems.append(f"turn {position}: value must be text")
        elif speaker == "function_call" and check_calls:
            try:
                if not read_calls(turn["value"]):
                    problems.append(f"turn {position}: function_call holds no call")
            except ValueError as exc:
                problems.append(f"turn {position}: function_call: {exc}")
    if len(turns) % 2:
        problems.append(f"{len(turns)} turns: a conversation must end with gpt or function_call")
    tools = row.get("tools", "[]")
    try:
        if not isinstance(tools, str) or not isinstance(loads_strict(tools), list):
            problems.append("tools: expected JSON text of a list of functions")
    except ValueError as exc:
        problems.append(f"tools: {exc}")
    if "system" in row and not isinstance(row["system"], str):
        problems.append("system: expected text")
    return problems


def llamafactory_dataset_info(name: str, file_name: str) -> dict:
    """``{name: entry}`` for LLaMA-Factory's ``dataset_info.json``: the file, ``sharegpt``
    formatting, its columns and role tags."""
    return {name: {
        "file_name": file_name,
        "formatting": "sharegpt",
        "columns": {"messages": "conversations", "system": "system", "tools": "tools"},
        "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                 "observation_tag": "observation", "function_tag": "function_call", "system_tag": "system"},
    }}


def to_hermes_record(record: dict) -> dict:
    """Canonical -> ShareGPT/Hermes row (``openai_messages_to_hermes``). Raises ``RowError`` for a
    system message after the first message (Hermes has one system turn, first)."""
    if any(m["role"] == "system" for m in record["messages"][1:]):
        raise RowError("Hermes holds one system prompt, first; this record has a system message later")
    return openai_messages_to_hermes(record["messages"], record["tools"])


def to_xlam_record(record: dict, row_id: Any = None) -> dict:
    """Canonical single-turn record -> xLAM row. Raises ``RowError`` for a record of several
    turns, with tool results, with a system prompt (xLAM has none), or whose reply without calls
    is other than ``NO_CALL_REPLY`` (xLAM keeps calls, not text)."""
    messages = record["messages"]
    if [m["role"] for m in messages] != ["user", "assistant"]:
        raise RowError("xLAM holds single-turn rows: one user query, then the assistant's calls")
    reply = messages[1]
    if not reply.get("tool_calls") and reply.get("content") != NO_CALL_REPLY:
        raise RowError("xLAM keeps calls, not text: an assistant reply without calls has no place")
    if reply.get("tool_calls") and reply.get("content"):
        raise RowError("xLAM keeps calls, not text: assistant text beside the calls has no place")
    return to_xlam_row(messages[0]["content"], _calls(reply), record["tools"], row_id)


#: writers by format: canonical record -> row
WRITERS: dict[str, Callable[[dict], dict]] = {
    "openai": to_openai_record, "trl": to_trl_record, "llamafactory": to_llamafactory_record,
    "hermes": to_hermes_record, "xlam": to_xlam_record,
}


def write_record(record: dict, fmt: str) -> dict:
    """One canonical record as a row of ``fmt`` (one of ``EXPORT_FORMATS``); ``RowError`` when
    the format cannot hold it, ``ValueError`` for an unknown format."""
    if fmt not in WRITERS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    return WRITERS[fmt](record)


# -- readers --------------------------------------------------------------------------------------
def read_record(row: dict, fmt: str) -> dict:
    """A row of ``fmt`` (one of ``EXPORT_FORMATS``) -> the canonical record. Raises ``RowError``
    when the row is not of that format or cannot be read."""
    if fmt in ("openai", "trl"):
        return canonical_record(row)
    if fmt in ("llamafactory", "hermes"):
        return canonical_record(read_sharegpt_row(row))
    if fmt == "xlam":
        single = read_xlam_row(row)
        calls = [Call(c["name"], c["arguments"]) for c in single["answers"]]  # read just now: not again
        return canonical_record(single_turn_chat(single["query"], calls, single["tools"]))
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")


# -- files ----------------------------------------------------------------------------------------
@dataclass
class WrittenFiles:
    """What ``write_records`` wrote: ``paths`` by format, the rows in each file, the records no
    format could leave out (``skipped`` by reason code) and the tool renamings OpenAI needed."""

    paths: dict[str, str] = field(default_factory=dict)
    rows: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    renamed_tools: dict[str, str] = field(default_factory=dict)


def write_records(records: Iterable[dict], out_dir: str | Path, stem: str,
                  formats: Iterable[str] = ("openai", "trl", "llamafactory", "hermes"),
                  dataset_name: str | None = None) -> WrittenFiles:
    """Write ``<out_dir>/<stem>.<fmt>.jsonl`` for each format from canonical ``records``
    (atomically). A record that one of the formats cannot hold is left out of every file and
    counted as ``unsupported_<fmt>``. With ``llamafactory``, ``dataset_info.json`` beside the file
    gets (or updates) the entry ``dataset_name`` (default ``stem``). Raises ``ValueError`` for an
    unknown format."""
    from ..storage.atomic import atomic_write_text, atomic_writer

    formats = list(dict.fromkeys(formats))
    for fmt in formats:
        if fmt not in WRITERS:
            raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = WrittenFiles()
    rows_by_format: dict[str, list[dict]] = {fmt: [] for fmt in formats}
    for record in records:
        written = {}
        for fmt in formats:
            try:
                written[fmt] = (to_openai_record(record, result.renamed_tools) if fmt == "openai"
                                else to_xlam_record(record, result.rows) if fmt == "xlam" else WRITERS[fmt](record))
            except RowError:
                code = f"unsupported_{fmt}"
                result.skipped[code] = result.skipped.get(code, 0) + 1
                break
        else:
            for fmt, row in written.items():
                rows_by_format[fmt].append(row)
            result.rows += 1
    _same_keys(rows_by_format.get("openai", []), "parallel_tool_calls", True)
    _same_keys(rows_by_format.get("llamafactory", []), "system", "")
    for fmt, rows in rows_by_format.items():
        path = out / f"{stem}.{FILE_SUFFIX[fmt]}"
        with atomic_writer(path) as fh:
            for row in rows:
                fh.write((dumps_json(row) + "\n").encode("utf-8"))
        result.paths[fmt] = str(path)
    if "llamafactory" in formats:
        info_path = out / "dataset_info.json"
        info = {}
        if info_path.is_file():
            try:
                info = loads_strict(info_path.read_text(encoding="utf-8"))
            except ValueError:
                info = {}
        info.update(llamafactory_dataset_info(dataset_name or stem, Path(result.paths["llamafactory"]).name))
        atomic_write_text(info_path, dumps_json(info, indent=2) + "\n")
        result.paths["dataset_info"] = str(info_path)
    return result


def _same_keys(rows: list[dict], key: str, value: Any) -> None:
    """A top-level key some rows have goes on every row (Arrow would fill the others with null):
    ``parallel_tool_calls: true`` is OpenAI's default, an empty ``system`` is no system prompt."""
    if any(key in row for row in rows):
        for row in rows:
            row.setdefault(key, value)


def parse_formats(text: str, allowed: Iterable[str]) -> tuple[str, ...]:
    """``"openai,trl"`` -> ``("openai", "trl")`` (a pipeline's ``--formats`` option); raises
    ``ValueError`` for an empty choice or a format not in ``allowed``."""
    allowed = tuple(allowed)
    chosen = tuple(dict.fromkeys(f.strip() for f in text.split(",") if f.strip()))
    unknown = [f for f in chosen if f not in allowed]
    if unknown or not chosen:
        raise ValueError(f"choose from {','.join(allowed)} (comma-separated), got {text!r}")
    return chosen
