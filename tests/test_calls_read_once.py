"""A call is read once and validated once per step, from the model's reply to the export.

Both example pipelines run in-process on the fake backend, with ``read_arguments`` (every reading
of a call's arguments goes through it) and ``ToolSet.validate`` (every ``validate_calls``) counted
per step. A step that reads its rows from a file reads each call once, however many checks,
votes, conversions and formats follow; ``validate_calls`` runs once per row in the checker that
owns it (APIGen's ``FormatChecker``), once per assistant turn in the multi-turn generator (not
again in its final check), and once per row in the exporter (a file anyone may have written).
Before this change the same APIGen run read each call 2-9 times per step, and the multi-turn
export decoded each argument string 18 times."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path

import pytest

import dataflow.tools.calls as calls_module
import dataflow.tools.validation as validation_module

ROOT = Path(__file__).resolve().parents[1]


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"_once_{name}", ROOT / "api_pipelines" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Counts:
    """``read_arguments`` and ``ToolSet.validate`` calls, by the phase the test says it is in."""

    def __init__(self, monkeypatch):
        self.phase = "setup"
        self.reads: Counter[str] = Counter()
        self.text_reads: Counter[str] = Counter()  # arguments given as JSON text, decoded
        self.validated: Counter[str] = Counter()
        read, validate = calls_module.read_arguments, validation_module.ToolSet.validate

        def counting_read(raw):
            self.reads[self.phase] += 1
            if isinstance(raw, str) and raw.strip():
                self.text_reads[self.phase] += 1
            return read(raw)

        def counting_validate(toolset, calls):
            self.validated[self.phase] += 1
            return validate(toolset, calls)

        monkeypatch.setattr(calls_module, "read_arguments", counting_read)
        monkeypatch.setattr(validation_module.ToolSet, "validate", counting_validate)

    def during(self, name: str, function):
        def run(*args, **kwargs):
            before, self.phase = self.phase, name
            try:
                return function(*args, **kwargs)
            finally:
                self.phase = before
        return run


def calls_in(rows: list[dict], key: str = "answers") -> int:
    return sum(len(row[key]) for row in rows)


def step_rows(cache: Path, step: int) -> list[dict]:
    path = cache / f"dataflow_cache_step{step}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.timeout(300)
def test_apigen_reads_each_call_once_per_step_and_validates_each_row_once(tmp_path, monkeypatch):
    from dataflow.operators.apigen import SemanticChecker
    from dataflow.operators.apigen.testing import apigen_responder
    from dataflow.serving import FakeLLMServing

    counts = Counts(monkeypatch)
    apigen = load_script("apigen_synthesis")
    monkeypatch.setattr(apigen, "serving_from_env", lambda: FakeLLMServing(apigen_responder))
    head = apigen.first_rows(apigen.DATA / "function_definitions.json", 12, tmp_path / "cache")
    pipeline = apigen.APIGenPipeline(cache_path=tmp_path / "cache", input_file=head, out_dir=tmp_path / "out")
    # three votes per row: the calls are still read once per row, not once per vote
    pipeline.semantic_checker = SemanticChecker(llm_serving=pipeline.llm_serving, n_votes=3)
    for name in ("generator", "format_checker", "execution_checker", "semantic_checker"):
        operator = getattr(pipeline, name)
        monkeypatch.setattr(operator, "process_batch", counts.during(name, operator.process_batch))
    pipeline.export = counts.during("export", pipeline.export)
    pipeline.run()

    cache = tmp_path / "cache"
    generated, novel, formatted, executed, judged = (step_rows(cache, k) for k in (2, 3, 4, 5, 6))
    assert calls_in(judged) > 10  # the run exported calls to count
    # the generator: each call of each reply read once (by the reply model), never again by its checks
    assert counts.reads["generator"] >= calls_in(generated)
    assert counts.text_reads["generator"] == 0
    # each checker reads its input file's calls once
    assert counts.reads["format_checker"] == calls_in(novel)
    assert counts.reads["execution_checker"] == calls_in(formatted)
    assert counts.reads["semantic_checker"] == calls_in(executed)
    # the export reads each call once, then every format and the split take it as read; the report
    # reads the written OpenAI files back (files: read again, once)
    exported = [json.loads(line) for path in sorted((tmp_path / "out").glob("*.openai.jsonl"))
                for line in path.read_text(encoding="utf-8").splitlines()]
    written = sum(len(m.get("tool_calls") or []) for row in exported for m in row["messages"])
    assert written == calls_in(judged)
    assert counts.reads["export"] == calls_in(judged) + written
    # validate_calls: once per row, in FormatChecker, nowhere else
    assert dict(counts.validated) == {"format_checker": len(novel)}


@pytest.mark.timeout(300)
def test_multi_turn_validates_each_call_once_and_its_export_reads_each_call_once(tmp_path, monkeypatch):
    from dataflow.operators.conversations import structure
    from dataflow.serving import FakeLLMServing
    from dataflow.serving.fake_responders import button_responder

    counts = Counts(monkeypatch)
    structure_checks = Counter()
    check = structure.validate_calls

    def counting_check(calls, tools, **kwargs):
        structure_checks[counts.phase] += 1
        return check(calls, tools, **kwargs)

    monkeypatch.setattr(structure, "validate_calls", counting_check)
    func_call = load_script("func_call_synthesis")
    head = func_call.first_rows_file(func_call.DEFAULT_INPUT, 4, tmp_path / "cache")
    pipeline = func_call.FuncCallPipeline(str(head), str(tmp_path / "cache"), FakeLLMServing(button_responder),
                                          evaluate=True, expand=True, parallel=True)
    generator = pipeline.multi_turn_conversations_generator
    monkeypatch.setattr(generator, "process_batch", counts.during("multi_turn", generator.process_batch))
    pipeline.run()
    rows = pipeline.final_rows()
    turns = [m for row in rows for m in row["conversations"] if m.get("tool_calls")]
    calls = sum(len(m["tool_calls"]) for m in turns)
    assert len(rows) >= 3 and calls >= 8

    # the generator validates each assistant turn's calls once, when they are made; its final
    # structure check does not validate them again, and nothing decodes an arguments text
    assert counts.validated["multi_turn"] == len(turns)
    assert structure_checks["multi_turn"] == 0
    assert counts.text_reads["multi_turn"] == 0

    export = counts.during("export", func_call.print_summary)
    export(pipeline, rows, tmp_path / "out")
    written = [json.loads(line) for line in (tmp_path / "out" / "func_call_conversations.openai.jsonl")
               .read_text(encoding="utf-8").splitlines()]
    assert len(written) == len(rows)
    # the exporter validates each row once (check_conversation: the file may come from anyone) and
    # reads each call once for the checks, the canonical record and four formats; the report reads
    # the written OpenAI file back
    assert counts.validated["export"] == structure_checks["export"] == len(rows)
    assert counts.text_reads["export"] == 2 * calls


def test_a_call_read_once_is_taken_as_read_and_an_entry_changed_in_place_is_read_again():
    from dataflow.tools import Call, parse_call, read_call_list, validate_calls
    from dataflow.tools.calls import OpenAICall, read_chat_calls

    entry = Call("get_weather", {"city": "Oslo"}).to_openai("call_0")
    assert type(entry) is OpenAICall and json.loads(json.dumps(entry)) == entry
    assert entry == {"id": "call_0", "type": "function",
                     "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
    assert read_call_list([entry]) == [Call("get_weather", {"city": "Oslo"}, "call_0")]
    entry["function"]["arguments"] = '{"city": "Rome"}'  # changed in place: the carried call no longer holds
    assert parse_call(entry) == ("get_weather", {"city": "Rome"}, None)

    raw = [{"role": "assistant", "tool_calls": [
        {"id": "a", "type": "function", "function": {"name": "f", "arguments": '{"n": 1}'}},
        {"id": "b", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}]
    read = read_chat_calls(raw)
    assert read == raw and read[0] is not raw[0] and raw[0]["tool_calls"][0].__class__ is dict
    assert type(read[0]["tool_calls"][0]) is OpenAICall and type(read[0]["tool_calls"][1]) is dict  # unreadable: as it was
    tools = [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}}}]
    assert validate_calls(read[0]["tool_calls"], tools) == validate_calls(raw[0]["tool_calls"], tools)
    assert validate_calls([Call("f", {"n": "x"})], tools) == validate_calls([{"name": "f", "arguments": {"n": "x"}}], tools)


@pytest.mark.parametrize("fmt", ["openai", "trl", "llamafactory", "hermes", "xlam"])
def test_reading_a_written_row_back_reads_each_call_once(fmt, monkeypatch):
    """``read_record`` (``dataflow convert``, the HTML report) reads each call of a row once: the
    format's reader reads it, and the canonical record takes it as read."""
    from dataflow.exports.finetune import canonical_record, read_record, write_record

    tools = [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"n": {"type": "integer"}}}}}]
    record = canonical_record({"messages": [{"role": "user", "content": "n of 1 and 2"}, {"role": "assistant", "tool_calls": [
        {"id": "a", "type": "function", "function": {"name": "f", "arguments": '{"n": 1}'}},
        {"id": "b", "type": "function", "function": {"name": "f", "arguments": '{"n": 2}'}}]}], "tools": tools})
    row = json.loads(json.dumps(write_record(record, fmt)))  # as a file holds it
    counts = Counts(monkeypatch)
    assert read_record(row, fmt) == record
    assert counts.reads["setup"] == 2
