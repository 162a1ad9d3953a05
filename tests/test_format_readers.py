"""Converters, exporters and the command line read calls and results one way (``dataflow.tools.calls``):
results paired by id, orphans as row errors, a reader per format written (round trips), lossless
xLAM, OpenAI's naming rules, NaN never written, a row's own tools in ``apigen verify``."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dataflow.operators.conversations import check_conversation
from dataflow.tools import read_arguments
from dataflow.operators.conversations.export import export_conversations, openai_records
from dataflow.exports.finetune import canonical_record, write_record
from dataflow.exports import (
    RowError, convert_row, openai_messages_to_hermes, openai_names, read_chat_message_row,
    read_glaive_row, read_openai_row, read_sharegpt_row, read_xlam_row, to_chat_message_format, to_openai_chat,
    to_xlam_row,
)

ROOT = Path(__file__).resolve().parents[1]
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather.", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
TIME = {"type": "function", "function": {"name": "get_time", "description": "Clock.", "parameters": {
    "type": "object", "properties": {}}}}


def _call(cid, name, arguments):
    return {"id": cid, "type": "function", "function": {"name": name, "arguments": arguments}}


def conversation(results_order=("a", "b"), ids=True):
    calls = [_call("a" if ids else None, "get_weather", '{"city": "Oslo"}'), _call("b" if ids else None, "get_time", "")]
    contents = {"a": '{"temp": 3}', "b": '"12:00"'}
    tools = []
    for cid in results_order:
        message = {"role": "tool", "content": contents[cid]}
        if ids:
            message["tool_call_id"] = cid
        tools.append(message)
    return [{"role": "user", "content": "Weather in Oslo and the time?"},
            {"role": "assistant", "content": None, "tool_calls": calls}, *tools,
            {"role": "assistant", "content": "3 degrees at 12:00."}]


# -- kind 6: results paired by tool_call_id, never "name": "" ----------------------------------
def test_hermes_names_each_result_by_its_id_not_its_position():
    out = openai_messages_to_hermes(conversation(("b", "a")), [WEATHER, TIME])
    tool_turn = next(t["value"] for t in out["conversations"] if t["from"] == "tool")
    responses = [json.loads(b) for b in re.findall(r"<tool_response>\n(.*?)\n</tool_response>", tool_turn)]
    assert [r["name"] for r in responses] == ["get_time", "get_weather"]
    assert '"name": ""' not in json.dumps(out)


def test_results_without_ids_are_paired_by_order_and_noted():
    notes: list[str] = []
    out = openai_messages_to_hermes(conversation(ids=False), [WEATHER, TIME], notes=notes)
    assert notes and notes[0].startswith("results_by_order")
    tool_turn = next(t["value"] for t in out["conversations"] if t["from"] == "tool")
    assert '"name": "get_weather"' in tool_turn and '"name": "get_time"' in tool_turn and '"name": ""' not in tool_turn


# -- kind 14: orphan results are row errors ------------------------------------------------------
def test_orphan_result_is_a_row_error_in_every_converter():
    orphan = [{"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "x", "content": "1"},
              {"role": "assistant", "content": "ok"}]
    with pytest.raises(RowError, match="orphan_result"):
        openai_messages_to_hermes(orphan, [WEATHER])
    with pytest.raises(RowError, match="orphan_result"):
        read_openai_row({"messages": orphan, "tools": [WEATHER]})
    with pytest.raises(RowError, match="orphan_result"):
        read_glaive_row({"system": "", "chat": "USER: hi\n\nFUNCTION RESPONSE: {\"t\": 1}\n\nASSISTANT: ok"})
    with pytest.raises(RowError, match="orphan_result"):
        read_sharegpt_row({"conversations": [{"from": "human", "value": "hi"}, {"from": "observation", "value": "1"}]})
    hermes = openai_messages_to_hermes(conversation(), [WEATHER, TIME])
    hermes["conversations"][3]["value"] = hermes["conversations"][3]["value"].replace('"get_time"', '"get_news"')
    with pytest.raises(RowError, match="orphan_result: .*'get_news'"):
        read_sharegpt_row(hermes)
    assert any("unknown or already answered" in p for p in check_conversation(orphan, [WEATHER]))


# -- kind 12: LLaMA-Factory / Hermes readers; a reader that finds nothing says so ----------------
LLAMA_FACTORY = {
    "conversations": [
        {"from": "human", "value": "Weather in Oslo?"},
        {"from": "function_call", "value": json.dumps({"name": "get_weather", "arguments": {"city": "Oslo"}})},
        {"from": "observation", "value": json.dumps({"temp": 3})},
        {"from": "gpt", "value": "It is 3 degrees."},
    ],
    "tools": json.dumps([WEATHER["function"]]),
    "system": "Be brief.",
}


def test_llama_factory_sharegpt_row():
    chat = read_sharegpt_row(LLAMA_FACTORY)
    assert [m["role"] for m in chat["messages"]] == ["system", "user", "assistant", "tool", "assistant"]
    call = chat["messages"][2]["tool_calls"][0]
    assert json.loads(call["function"]["arguments"]) == {"city": "Oslo"}
    assert chat["messages"][3]["tool_call_id"] == call["id"] and chat["messages"][3]["name"] == "get_weather"
    assert chat["tools"] == [WEATHER]
    assert check_conversation(chat["messages"], chat["tools"]) == []


def test_llama_factory_parallel_calls_answered_by_one_observation():
    row = {"conversations": [
        {"from": "human", "value": "Weather in Oslo and the time?"},
        {"from": "function_call", "value": json.dumps([{"name": "get_weather", "arguments": {"city": "Oslo"}},
                                                        {"name": "get_time", "arguments": {}}])},
        {"from": "observation", "value": json.dumps([{"temp": 3}, "12:00"])},
        {"from": "gpt", "value": "3 degrees at 12:00."}], "tools": json.dumps([WEATHER, TIME])}
    chat = read_sharegpt_row(row)
    assert [m.get("name") for m in chat["messages"] if m["role"] == "tool"] == ["get_weather", "get_time"]
    assert check_conversation(chat["messages"], chat["tools"]) == []


@pytest.mark.parametrize("reader, row", [
    (read_glaive_row, LLAMA_FACTORY),
    (read_sharegpt_row, {"system": "x", "chat": "USER: hi"}),
    (read_xlam_row, LLAMA_FACTORY),
    (read_openai_row, LLAMA_FACTORY),
    (read_chat_message_row, {"query": "x"}),
])
def test_a_reader_that_finds_nothing_raises_a_row_error(reader, row):
    with pytest.raises(RowError, match="expected"):
        reader(row)


def _canonical(messages):
    """Messages with call ids renumbered (formats without ids get new ones)."""
    ids, out = {}, []
    for m in messages:
        m = json.loads(json.dumps(m))
        for call in m.get("tool_calls") or []:
            call["id"] = ids.setdefault(call["id"], f"id{len(ids)}")
            call["function"]["arguments"] = read_arguments(call["function"]["arguments"])[0]
        if m.get("role") == "tool":
            m["tool_call_id"] = ids.get(m["tool_call_id"], m["tool_call_id"])
            m.pop("name", None)
        out.append(m)
    return out


def test_round_trip_openai():
    chat = {"messages": conversation(("b", "a")), "tools": [WEATHER, TIME]}
    written = write_record(canonical_record(read_openai_row(chat)), "openai")

    def without_empty_content(messages):  # OpenAI's writer leaves out "content": null beside tool calls
        return [{k: v for k, v in m.items() if not (k == "content" and v is None)} for m in messages]

    # the canonical record puts each turn's results in call order (formats without ids need it)
    in_call_order = conversation(("a", "b"))
    assert without_empty_content(_canonical(read_openai_row(written)["messages"])) == \
        without_empty_content(_canonical(in_call_order))
    assert read_openai_row(written)["tools"] == [WEATHER, TIME]


def test_round_trip_hermes():
    chat = {"messages": [{"role": "system", "content": "Be brief."}, *conversation()], "tools": [WEATHER, TIME]}
    written = openai_messages_to_hermes(chat["messages"], chat["tools"])
    back = read_sharegpt_row(json.loads(json.dumps(written)))
    assert back["tools"] == [WEATHER, TIME]
    assert _canonical(back["messages"]) == _canonical(read_openai_row(chat)["messages"])


def test_round_trip_xlam_keeps_the_id_and_nested_types():
    tool = {"type": "function", "function": {"name": "grid", "description": "d", "parameters": {
        "type": "object", "properties": {"cells": {"type": "array", "items": {"type": "array", "items": {"type": "string"}}},
                                         "lang": {"type": "string", "default": "en"}}, "required": ["cells"]}}}
    row = {"id": "r-17", "query": "Fill it", "answers": [{"name": "grid", "arguments": {"cells": [["a"]]}}], "tools": [tool]}
    for dialect in ("json_schema", "xlam"):
        written = to_xlam_row(row["query"], row["answers"], row["tools"], row["id"], tool_dialect=dialect)
        back = read_xlam_row(json.loads(json.dumps(written)))
        assert back["id"] == "r-17" and back["answers"] == row["answers"] and back["query"] == row["query"]
        assert back["tools"] == [tool], dialect
    again = convert_row(read_xlam_row(to_xlam_row(row["query"], row["answers"], row["tools"], row["id"])), "xlam")
    assert again["id"] == "r-17"


def test_round_trip_chat_message():
    answers = [{"name": "get_weather", "arguments": {"city": "Oslo"}}]
    written = to_chat_message_format("Weather?", answers, "sys")
    back = read_chat_message_row(json.loads(json.dumps(written)))
    assert back["query"] == "Weather?" and back["answers"] == answers


# -- kind 7: names a target format rejects --------------------------------------------------------
def test_openai_writer_renames_dotted_names_and_keeps_the_mapping():
    tool = {"name": "math.factorial", "description": "n!", "parameters": {"type": "dict", "properties": {"n": {"type": "integer"}}}}
    names: dict = {}
    out = to_openai_chat("5!", [{"name": "math.factorial", "arguments": {"n": 5}}], [tool], names=names)
    assert names == {"math_factorial": "math.factorial"}
    assert out["tools"][0]["function"]["name"] == "math_factorial"
    assert out["messages"][-1]["tool_calls"][0]["function"]["name"] == "math_factorial"
    hermes = convert_row({"query": "5!", "answers": [{"name": "math.factorial", "arguments": {"n": 5}}], "tools": [tool]}, "hermes")
    assert "math.factorial" in json.dumps(hermes)  # Hermes text keeps names as declared
    with pytest.raises(RowError, match="cannot be renamed"):
        openai_names(["a.b", "a_b"])


# -- kind 2: no writer emits NaN ------------------------------------------------------------------
def test_converters_refuse_nan_and_exporter_skips_it(tmp_path):
    with pytest.raises(ValueError):
        to_openai_chat("x", [{"name": "get_weather", "arguments": {"city": math.nan}}], [WEATHER])
    with pytest.raises(ValueError):
        to_xlam_row("x", [{"name": "get_weather", "arguments": {"city": math.inf}}], [WEATHER])
    messages = conversation()
    messages[1]["tool_calls"][0]["function"]["arguments"] = '{"city": NaN}'
    records, skipped = openai_records([{"conversations": messages, "tools": [WEATHER, TIME]}])
    assert records == [] and sum(skipped.values()) == 1


# -- kind 5: empty arguments, one verdict everywhere -------------------------------------------------
def test_empty_arguments_are_an_empty_object_in_check_conversation_and_the_exporter(tmp_path):
    messages = conversation()
    assert messages[1]["tool_calls"][1]["function"]["arguments"] == ""
    assert check_conversation(messages, [WEATHER, TIME]) == []
    result = export_conversations([{"conversations": messages, "tools": [WEATHER, TIME]}], tmp_path)
    assert result.written == 1 and result.skipped == {}
    [record] = [json.loads(line) for line in Path(result.paths["openai"]).read_text().splitlines()]
    assert record["messages"][1]["tool_calls"][1]["function"]["arguments"] == "{}"
    [hermes] = [json.loads(line) for line in Path(result.paths["hermes"]).read_text().splitlines()]
    tool_turn = next(t["value"] for t in hermes["conversations"] if t["from"] == "tool")
    assert '"name": "get_time"' in tool_turn and '"name": ""' not in tool_turn


def test_arguments_as_an_object_are_read_by_check_conversation_and_written_as_a_string():
    messages = conversation()
    messages[1]["tool_calls"][0]["function"]["arguments"] = {"city": "Oslo"}
    assert check_conversation(messages, [WEATHER, TIME]) == []
    records, _ = openai_records([{"conversations": messages, "tools": [WEATHER, TIME]}])
    assert records[0]["messages"][1]["tool_calls"][0]["function"]["arguments"] == '{"city": "Oslo"}'


# -- kind 4: arguments as a JSON string in a generator reply ------------------------------------------
def test_generator_reads_arguments_given_as_a_json_string():
    from dataflow.operators.apigen.generator import GeneratedPairs

    reply = {"pairs": [{"query": "Weather in Oslo?", "answers": [{"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}]}]}
    assert GeneratedPairs.model_validate(reply).pairs[0].answers[0].arguments == {"city": "Oslo"}
    from dataflow.operators.conversations.multi_turn import AssistantTurnReply

    turn = AssistantTurnReply.model_validate({"tool_calls": [{"name": "get_time", "arguments": ""}], "content": ""})
    assert turn.tool_calls[0].arguments == {}


# -- the command line -------------------------------------------------------------------------------
def cli(*args):
    return subprocess.run([sys.executable, "-m", "dataflow.cli.main", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def test_convert_sharegpt_input_and_row_errors_with_file_and_line(tmp_path):
    source = tmp_path / "lf.jsonl"
    source.write_text(json.dumps(LLAMA_FACTORY) + "\n\n" + json.dumps({"conversations": []}) + "\n")
    out = tmp_path / "out.jsonl"
    r = cli("convert", "--input-path", str(source), "--output-path", str(out), "--format", "hermes",
            "--input-format", "sharegpt")
    assert r.returncode == 0, r.stderr
    assert f"{source}:3: row error: expected a ShareGPT row" in r.stderr
    [written] = [json.loads(line) for line in out.read_text().splitlines()]
    assert [t["from"] for t in written["conversations"]] == ["system", "human", "gpt", "tool", "gpt"]
    [rejected] = [json.loads(line) for line in (tmp_path / "out.rejected.jsonl").read_text().splitlines()]
    assert rejected["_line"] == 3
    glaive = cli("convert", "--input-path", str(source), "--output-path", str(tmp_path / "g.jsonl"), "--format",
                 "openai", "--input-format", "glaive")
    assert glaive.returncode == 2 and "no row could be converted" in glaive.stderr and "expected a glaive row" in glaive.stderr


def test_convert_xlam_with_a_bad_row_writes_the_others(tmp_path):
    good = {"id": 1, "query": "Translate hi", "answers": json.dumps([{"name": "translate", "arguments": {"text": "hi"}}]),
            "tools": json.dumps([{"name": "translate", "description": "t", "parameters": {
                "text": {"type": "str"}, "lang": {"type": "str, optional, default 'en'"}}}])}
    twice = {**good, "id": 2, "tools": json.dumps([json.loads(good["tools"])[0]] * 2)}
    broken_type = {**good, "id": 3, "tools": json.dumps([{"name": "t", "parameters": {"x": {"type": "strang"}}}])}
    source = tmp_path / "x.jsonl"
    source.write_text("\n".join(json.dumps(r) for r in (good, twice, broken_type)) + "\n")
    out = tmp_path / "o.jsonl"
    r = cli("convert", "--input-path", str(source), "--output-path", str(out), "--format", "xlam", "--input-format", "xlam")
    assert r.returncode == 0, r.stderr
    [row] = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["id"] == 1 and json.loads(row["tools"])[0]["parameters"]["properties"]["lang"]["default"] == "en"
    assert f"{source}:2: row error:" in r.stderr and "twice" in r.stderr and f"{source}:3: row error:" in r.stderr
    assert "2 row errors" in r.stdout


def test_convert_openai_renames_and_writes_the_mapping(tmp_path):
    source = tmp_path / "bfcl.jsonl"
    source.write_text(json.dumps({"query": "5!", "answers": [{"name": "math.factorial", "arguments": {"n": 5}}],
                                  "tools": [{"name": "math.factorial", "parameters": {"type": "dict", "properties": {"n": {"type": "integer"}}}}]}) + "\n")
    out = tmp_path / "o.jsonl"
    r = cli("convert", "--input-path", str(source), "--output-path", str(out), "--format", "openai")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "o.tool_names.json").read_text()) == {"math_factorial": "math.factorial"}
    assert json.loads(out.read_text())["tools"][0]["function"]["name"] == "math_factorial"


# -- kind 13: a row's own tools win in apigen verify ------------------------------------------------
def test_verify_format_stage_uses_the_rows_own_tools(tmp_path):
    file_tools = [{"name": "get_movie", "description": "Movie by id.", "parameters": {
        "type": "object", "properties": {"movie_id": {"type": "string"}}, "required": ["movie_id"]}}]
    row_tools = [{"name": "get_movie", "description": "Movie by id.", "parameters": {
        "type": "object", "properties": {"movie_id": {"type": "integer"}}, "required": ["movie_id"]}}]
    (tmp_path / "tools.json").write_text(json.dumps(file_tools))
    (tmp_path / "gen.jsonl").write_text(json.dumps({"query": "Show movie 12345", "tools": row_tools,
                                                    "answers": [{"name": "get_movie", "arguments": {"movie_id": 12345}}]}) + "\n")
    out = tmp_path / "ok.jsonl"
    r = cli("apigen", "verify", "--generated-query-answer-path", str(tmp_path / "gen.jsonl"),
            "--function-definitions-path", str(tmp_path / "tools.json"), "--verified-query-answer-path", str(out),
            "--no-semantic")
    assert r.returncode == 0, r.stderr
    assert len(out.read_text().splitlines()) == 1, (tmp_path / "ok.rejected.jsonl").read_text()


# -- the checkers read calls the same way (kinds 2, 4, 7) -------------------------------------------
def test_format_checker_reads_calls_like_validate_calls():
    from dataflow.operators.apigen import FormatChecker

    tool = {"name": "math.factorial", "description": "n!", "parameters": {
        "type": "dict", "properties": {"n": {"type": "integer"}}, "required": ["n"]}}
    rows = [{"query": "What is the factorial of 5?", "tools": [tool], "answers": [{"name": "math.factorial", "arguments": "{\"n\": 5}"}]},
            {"query": "What is the factorial of 5?", "tools": [tool], "answers": [{"name": "math.factorial", "arguments": {"n": math.nan}}]}]
    good, bad = FormatChecker().process_batch(rows)
    assert good.status == "ok", good.reason
    assert bad.status != "ok" and "not a JSON number" in bad.reason


def test_format_checker_prefers_the_rows_own_tools_to_fixed_ones():
    from dataflow.operators.apigen import FormatChecker

    fixed = [{"name": "get_movie", "description": "d", "parameters": {"type": "object", "properties": {
        "movie_id": {"type": "string"}}, "required": ["movie_id"]}}]
    own = [{"name": "get_movie", "description": "d", "parameters": {"type": "object", "properties": {
        "movie_id": {"type": "integer"}}, "required": ["movie_id"]}}]
    call = [{"name": "get_movie", "arguments": {"movie_id": 12345}}]
    with_own, without = FormatChecker(tools=fixed).process_batch([
        {"query": "Show movie 12345", "tools": own, "answers": call}, {"query": "Show movie 12345", "answers": call}])
    assert with_own.status == "ok", with_own.reason
    assert without.status != "ok" and "not of type 'string'" in without.reason


def test_storage_jsonl_writers_never_emit_nan(tmp_path):
    from dataflow.storage.atomic import atomic_write_jsonl
    from dataflow.storage.formats import write_table

    rows = [{"arguments": {"celsius": math.nan, "limit": math.inf}, "score": -math.inf}]
    atomic_write_jsonl(tmp_path / "a.jsonl", rows)
    with open(tmp_path / "b.jsonl", "wb") as fh:
        write_table(fh, rows, list(rows[0]), "jsonl")
    for name in ("a.jsonl", "b.jsonl"):
        text = (tmp_path / name).read_text()
        assert "NaN" not in text and "Infinity" not in text
        json.loads(text.splitlines()[0], parse_constant=lambda c: pytest.fail(f"{name} holds {c}"))
