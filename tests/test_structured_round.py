"""The structured LLM round every LLM operator shares (``dataflow.core.rounds``), and a new
operator written the way ``dataflow.operators.llm`` shows, run end to end on a FileStorage."""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict

from dataflow.core import InvalidInput, Reask, RowOutcome, Text, merge_row, structured_round, text_value
from dataflow.operators.llm import StructuredLLMOperator
from dataflow.serving import FakeLLMServing
from dataflow.utils.storage import FileStorage

TEMPLATE = ("{% macro system() %}Summarize the text in one short line.{% endmacro %}"
            "{% macro user() %}Text: {{ text }}{% endmacro %}")


class SummaryReply(BaseModel):
    model_config = ConfigDict(extra="forbid")
    summary: Text(200)


class Summarizer(StructuredLLMOperator):
    prompt_names = ("summarizer",)

    def run(self, storage, input_text_key="text", output_key="summary"):
        return self._run_keys(storage, {"input_text_key": input_text_key, "output_key": output_key})

    def process_batch(self, rows, input_text_key="text", output_key="summary"):
        return self.structured_round(
            rows, lambda row: {"text": text_value(row, input_text_key)}, SummaryReply,
            lambda row, reply: RowOutcome.keep(merge_row(row, **{output_key: reply.summary})))


def _summary(messages, schema):
    text = messages[-1]["content"].removeprefix("Text: ")
    return {"summary": f"About {text.split()[0].lower()}."}


def test_a_new_operator_is_a_reply_model_a_template_and_a_finish_function(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in ["Weather in Oslo today", "  ", "Trains to Bergen"]))
    serving = FakeLLMServing(_summary)
    storage = FileStorage(str(source), cache_path=str(tmp_path / "cache"))
    report = Summarizer(serving, prompt_template=TEMPLATE).run(storage.step())
    assert (report.rows_out, report.failed, report.failed_by_reason) == (2, 1, {"invalid_input": 1})
    assert storage.read_output("dict") == [{"text": "Weather in Oslo today", "summary": "About weather."},
                                           {"text": "Trains to Bergen", "summary": "About trains."}]
    assert len(serving.calls) == 2  # the blank row was never sent
    messages, schema = serving.calls[0]
    assert messages == [{"role": "system", "content": "Summarize the text in one short line."},
                        {"role": "user", "content": "Text: Weather in Oslo today"}]
    assert schema["title"] == "SummaryReply" and schema["properties"]["summary"]["maxLength"] == 200


def test_one_batch_per_attempt_reasks_with_feedback_then_the_final_outcome():
    batches = []

    class Counting(FakeLLMServing):
        def _generate(self, conversations, schemas):
            batches.append([c[-1]["content"] for c in conversations])
            return super()._generate(conversations, schemas)

    serving = Counting(lambda m, s: {"summary": "the same words again"})
    rows = [{"t": "a"}, {"t": "b"}, {"t": "c"}]

    def finish(row, reply):
        if row["t"] == "a":
            return RowOutcome.keep(dict(row, s=reply.summary))
        raise Reask(f"too vague for {row['t']}.", RowOutcome.drop(f"vague: {row['t']}"))

    outcomes = structured_round(serving, rows, lambda row: ("sys", f"do {row['t']}"), SummaryReply, finish,
                                max_reasks=2)
    assert outcomes == [RowOutcome.keep({"t": "a", "s": "the same words again"}),
                        RowOutcome.drop("vague: b"), RowOutcome.drop("vague: c")]
    assert batches == [["do a", "do b", "do c"],
                       ["do b\n\nYour previous answer was rejected: too vague for b. Answer again.",
                        "do c\n\nYour previous answer was rejected: too vague for c. Answer again."]] + [batches[1]]


def test_invalid_input_failed_requests_invalid_replies_and_row_schemas():
    replies = iter([{"summary": "fine summary"}, "not json at all"])
    serving = FakeLLMServing(lambda m, s: next(replies))

    def prompt(row):
        if row.get("empty"):
            raise InvalidInput("invalid_input: column 'text' is empty")
        return "", f"text {row['n']}"

    schemas = []
    outcomes = structured_round(
        serving, [{"n": 1}, {"empty": True}, {"n": 2}], prompt, SummaryReply,
        lambda row, reply: RowOutcome.keep(dict(row, s=reply.summary)),
        row_schema=lambda row: schemas.append(row) or {"title": "SummaryReply", "type": "object",
                                                       "properties": {"summary": {"type": "string"}}})
    assert outcomes[0] == RowOutcome.keep({"n": 1, "s": "fine summary"})
    assert outcomes[1] == RowOutcome.fail("invalid_input: column 'text' is empty")
    assert outcomes[2].status == "failed" and outcomes[2].reason.startswith("invalid_reply")
    assert [m for m, _ in serving.calls] == [[{"role": "user", "content": "text 1"}], [{"role": "user", "content": "text 2"}]]
    assert [s["title"] for _, s in serving.calls] == ["SummaryReply", "SummaryReply"] and len(schemas) == 2


def test_a_check_reasks_a_reply_and_ends_it_failed():
    serving = FakeLLMServing(lambda m, s: {"summary": "copied words"})
    outcomes = structured_round(serving, [{"x": 1}], lambda row: ("sys", "u"), SummaryReply,
                                lambda row, reply: RowOutcome.keep(row), max_reasks=1,
                                check=lambda reply, system: "instruction_leak: copies" if system == "sys" else None)
    assert outcomes == [RowOutcome.fail("instruction_leak: copies")]
    assert serving.calls[1][0][-1]["content"] == \
        "u\n\nYour previous answer was rejected: instruction_leak: copies. Write it in your own words. Answer again."


def test_the_operator_reasks_a_reply_that_copies_its_instructions(tmp_path):
    serving = FakeLLMServing(lambda m, s: {"summary": "Summarize the text in one short line."})
    outcome = Summarizer(serving, prompt_template=TEMPLATE).process_batch([{"text": "Oslo"}])[0]
    assert outcome.status == "failed" and outcome.reason.startswith("instruction_leak: copies the instructions")
    assert len(serving.calls) == 1  # max_reasks=0: no second ask

    class Trusting(Summarizer):
        echo_check = False

    assert Trusting(serving, prompt_template=TEMPLATE).process_batch([{"text": "Oslo"}])[0].status == "ok"


def test_text_value():
    assert text_value({"a": "  x "}, "a") == "x" and text_value({"a": ["p", None, "", "q"]}, "a") == "p\nq"
    assert text_value({"a": 5}, "a") == "5"
    for row in ({}, {"a": None}, {"a": " "}, {"a": []}):
        try:
            text_value(row, "a")
        except InvalidInput as exc:
            assert str(exc) == "invalid_input: column 'a' is empty"
        else:
            raise AssertionError(row)
