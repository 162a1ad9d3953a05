"""APIGen operators with FakeLLMServing: sampler, generator, checkers, stage table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dataflow.core import LLMResult
from dataflow.operators.apigen import (
    APIGenGenerator, DataSampler, FormatChecker, SemanticChecker, format_stage_table, stage_table,
)
from dataflow.operators.apigen.testing import apigen_responder
from dataflow.serving import FakeLLMServing

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "example_data" / "APIGen"
TOOLS = json.loads((DATA / "function_definitions.json").read_text())
BY_NAME = {t["function"]["name"]: t for t in TOOLS}


def rows_of_tools(*names):
    return [{"tools": [BY_NAME[n]], "examples": []} for n in names]


# -- DataSampler -------------------------------------------------------------------------------
def test_sampler_is_seeded_and_prefers_similar_examples():
    rows = [{"type": "function", "function": t["function"]} for t in TOOLS]
    a = DataSampler(DATA / "seed_qa.jsonl", num_examples=2, seed=3).process_batch(rows)
    b = DataSampler(DATA / "seed_qa.jsonl", num_examples=2, seed=3).process_batch(rows)
    assert [o.rows for o in a] == [o.rows for o in b]
    out = [o.rows[0] for o in a]
    assert all(len(r["examples"]) == 2 and len(r["tools"]) == 2 for r in out)
    # example_tools="any" and a strong similarity weight: the examples mostly call the row's own function
    strong = DataSampler(DATA / "seed_qa.jsonl", num_examples=1, similarity_weight=20, replacement=True, seed=0,
                         example_tools="any").process_batch(rows)
    hits = sum(any(c["name"] == r.rows[0]["function"]["name"] for c in r.rows[0]["examples"][0]["answers"]) for r in strong)
    assert hits >= 8


@pytest.mark.parametrize("replacement", [False, True])
def test_sampler_shows_no_example_for_a_tool_in_the_prompt(replacement):
    """The few-shot examples of a row call none of the tools in its prompt (its own or the extra
    ones), so the easiest answer is not to hand an example back."""
    rows = [{"type": "function", "function": t["function"]} for t in TOOLS] * 3
    outcomes = DataSampler(DATA / "seed_qa.jsonl", num_examples=3, extra_tools=2, replacement=replacement,
                           similarity_weight=20).process_batch(rows)
    for outcome in outcomes:
        row = outcome.rows[0]
        shown = {t["function"]["name"] for t in row["tools"]}
        assert len(row["examples"]) == 3 and len(shown) == 3
        assert not shown & {c["name"] for e in row["examples"] for c in e["answers"]}
    from dataflow.core.errors import ConfigError

    with pytest.raises(ConfigError):
        DataSampler(DATA / "seed_qa.jsonl", example_tools="mine")


def test_sampler_without_replacement_uses_every_example_before_reuse():
    examples = [{"query": f"q{i}", "function_calls": [{"function_name": "f", "arguments": {}}]} for i in range(6)]
    rows = [{"tools": [TOOLS[0]]} for _ in range(3)]
    out = DataSampler(examples, num_examples=2, replacement=False, prefer_similar=False).process_batch(rows, input_tools_key="tools")
    queries = [e["query"] for o in out for e in o.rows[0]["examples"]]
    assert sorted(queries) == [f"q{i}" for i in range(6)]
    with_repl = DataSampler(examples, num_examples=4, replacement=True).process_batch(rows, input_tools_key="tools")
    assert all(len(o.rows[0]["examples"]) == 4 for o in with_repl)


def test_sampler_reads_xlam_rows(tmp_path):
    path = tmp_path / "xlam.jsonl"
    path.write_text(json.dumps({"query": "q", "tools": json.dumps([{"name": "f", "description": "d", "parameters": {"a": {"type": "int"}}}]),
                                "answers": json.dumps([{"name": "f", "arguments": {"a": 1}}])}) + "\n")
    out = DataSampler(path, num_examples=1).process_batch([{"tools": [TOOLS[0]]}], input_tools_key="tools")
    assert out[0].rows[0]["examples"] == [{"query": "q", "answers": [{"name": "f", "arguments": {"a": 1}}]}]


# -- APIGenGenerator ----------------------------------------------------------------------------
def test_generator_one_row_per_pair_native_types_and_personas():
    serving = FakeLLMServing(apigen_responder)
    gen = APIGenGenerator(serving, num_pairs=2, personas={"tones": ["formal"], "user_roles": ["student"]})
    outcomes = gen.process_batch(rows_of_tools("convert_currency", "prime_factors"))
    rows = [r for o in outcomes for r in o.rows]
    assert len(rows) == 4
    assert all(isinstance(r["answers"], list) for r in rows)
    assert any(isinstance(v, (int, float)) and not isinstance(v, bool) for r in rows for c in r["answers"] for v in c["arguments"].values())
    assert rows[0]["persona"] == {"tone": "formal", "role": "student"}
    messages, schema = serving.calls[0]
    assert schema["title"] == "GeneratedPairs"
    assert "formal tone" in messages[-1]["content"] and "convert_currency" in messages[-1]["content"]
    assert len(serving.calls) == 2


def test_generator_schema_holds_the_reply_to_the_rows_tools_pair_count_and_style():
    serving = FakeLLMServing(apigen_responder)
    gen = APIGenGenerator(serving, num_pairs=2, styles={"parallel": 1}, irrelevance_rate=0.0)
    gen.process_batch([{"tools": [BY_NAME["convert_currency"], BY_NAME["prime_factors"]], "examples": []}])
    schema = serving.calls[0][1]
    pairs = schema["properties"]["pairs"]
    assert (pairs["minItems"], pairs["maxItems"]) == (2, 2)
    answers = pairs["items"]["properties"]["answers"]
    assert (answers["minItems"], answers["maxItems"]) == (2, 4)
    variants = answers["items"]["anyOf"]
    assert [v["properties"]["name"]["const"] for v in variants] == ["convert_currency", "prime_factors"]
    assert variants[1]["properties"]["arguments"]["required"] == ["n"]
    from dataflow.operators.apigen.generator import pairs_schema

    none = pairs_schema([BY_NAME["prime_factors"]], 1, "irrelevance")["properties"]["pairs"]["items"]["properties"]["answers"]
    assert none["maxItems"] == 0
    numbers = pairs_schema([BY_NAME["describe_numbers"]], 1, "simple")["properties"]["pairs"]["items"]["properties"]
    assert numbers["answers"]["items"]["anyOf"][0]["properties"]["arguments"]["properties"]["numbers"]["maxItems"] == 10
    assert BY_NAME["describe_numbers"]["function"]["parameters"]["properties"]["numbers"]["maxItems"] == 100  # tool untouched


def test_generator_malformed_missing_and_failed_replies_fail_the_row_with_reason():
    replies = iter(["not json at all", {"pairs": []}, {"wrong": 1}, LLMResult.failure("HTTP 500: boom"),
                    {"pairs": [{"query": "Factorise 12?", "answers": [{"name": "prime_factors", "arguments": {"n": 12}}]}]}])
    gen = APIGenGenerator(FakeLLMServing(lambda m, s: next(replies)))
    outcomes = gen.process_batch(rows_of_tools(*["prime_factors"] * 5))
    assert [o.status for o in outcomes] == ["failed", "failed", "failed", "failed", "ok"]
    assert outcomes[0].reason.startswith("invalid_reply:")
    assert "no query/answer pair" in outcomes[1].reason
    assert outcomes[2].reason.startswith("invalid_reply: pairs")
    assert outcomes[3].reason == "llm_error: HTTP 500: boom"


def test_generator_drops_and_counts_duplicate_queries():
    reply = {"pairs": [{"query": "Same question", "answers": []}, {"query": "Same question", "answers": []},
                       {"query": "Other", "answers": []}]}
    gen = APIGenGenerator(FakeLLMServing(lambda m, s: reply), num_pairs=3)
    outcomes = gen.process_batch(rows_of_tools("prime_factors", "calculate_bmi"))
    assert [len(o.rows) for o in outcomes] == [2, 0] or outcomes[1].status == "filtered"
    assert outcomes[1].status == "filtered" and outcomes[1].reason.startswith("duplicate_query")
    assert gen.take_counters() == {"duplicates_dropped": 4}


EXAMPLE = {"query": "How many yen is 250 euros?",
           "answers": [{"name": "convert_currency", "arguments": {"amount": 250, "from_currency": "EUR", "to_currency": "JPY"}}]}
BMI_CALL = {"name": "calculate_bmi", "arguments": {"weight_kg": 82, "height_m": 1.9}}


def _reasked(messages) -> bool:
    return "Your previous answer was rejected" in messages[-1]["content"]


def test_generator_reasks_once_when_a_query_copies_an_example_in_its_prompt():
    """A reply that hands back a few-shot example is asked again with the reason; the new reply is kept."""
    def responder(messages, schema):
        if _reasked(messages):
            return {"pairs": [{"query": "I weigh 82 kg and I'm 1.9 m tall; what's my BMI?", "answers": [BMI_CALL]}]}
        return {"pairs": [{"query": "How many yen is 250 euros?", "answers": [BMI_CALL]}]}

    serving = FakeLLMServing(responder)
    gen = APIGenGenerator(serving, num_pairs=1)
    outcomes = gen.process_batch([{"tools": [BY_NAME["calculate_bmi"]], "examples": [EXAMPLE]}])
    assert len(serving.calls) == 2 and gen.take_counters() == {"reasked": 1}
    feedback = serving.calls[1][0][-1]["content"]
    assert "copies an example" in feedback and "How many yen is 250 euros?" in feedback
    assert [r["query"] for r in outcomes[0].rows] == ["I weigh 82 kg and I'm 1.9 m tall; what's my BMI?"]


def test_generator_reasks_ungrounded_calls_and_keeps_the_first_replys_good_pairs():
    good = {"query": "Is 1.9 m and 82 kg a healthy BMI?", "answers": [BMI_CALL]}
    invented = {"query": "Calculate my BMI please.", "answers": [BMI_CALL]}

    def responder(messages, schema):
        if _reasked(messages):
            return {"pairs": [{"query": "BMI for 70 kg at 1.65 m?",
                               "answers": [{"name": "calculate_bmi", "arguments": {"weight_kg": 70, "height_m": 1.65}}]}]}
        return {"pairs": [good, invented]}

    serving = FakeLLMServing(responder)
    gen = APIGenGenerator(serving, num_pairs=2)
    outcomes = gen.process_batch([{"tools": [BY_NAME["calculate_bmi"]], "examples": []}])
    assert len(serving.calls) == 2
    feedback = serving.calls[1][0][-1]["content"]
    assert "weight_kg=82" in feedback and "Calculate my BMI please." in feedback
    assert [r["query"] for r in outcomes[0].rows] == ["Is 1.9 m and 82 kg a healthy BMI?", "BMI for 70 kg at 1.65 m?"]


def test_generator_reasks_a_pair_that_makes_the_same_call_twice():
    twice = {"query": "Factorise 120 into its prime factors.",
             "answers": [{"name": "prime_factors", "arguments": {"n": 120}}, {"name": "prime_factors", "arguments": '{"n": 120}'}]}

    def responder(messages, schema):
        if _reasked(messages):
            return {"pairs": [{"query": "Factorise 120 and 84.", "answers": [
                {"name": "prime_factors", "arguments": {"n": 120}}, {"name": "prime_factors", "arguments": {"n": 84}}]}]}
        return {"pairs": [twice]}

    serving = FakeLLMServing(responder)
    outcomes = APIGenGenerator(serving, num_pairs=1, styles=["parallel"]).process_batch(
        [{"tools": [BY_NAME["prime_factors"]], "examples": []}])
    assert len(serving.calls) == 2
    assert "call 1 repeats call 0 (prime_factors with the same arguments)" in serving.calls[1][0][-1]["content"]
    assert [r["query"] for r in outcomes[0].rows] == ["Factorise 120 and 84."]


def test_generator_passes_on_a_copy_that_survives_the_reask_and_the_filter_drops_it(tmp_path):
    """The second reply is kept as is (a re-ask is asked once): the NoveltyFilter then rejects
    the copy with a counted reason, so nothing is silently lost or silently exported."""
    from dataflow.operators.apigen import NoveltyFilter

    serving = FakeLLMServing(lambda m, s: {"pairs": [{"query": "How many yen is 250 euros??", "answers": []}]})
    gen = APIGenGenerator(serving, num_pairs=1)
    rows = gen.process_batch([{"tools": [BY_NAME["calculate_bmi"]], "examples": [EXAMPLE]}])[0].rows
    assert len(serving.calls) == 2 and len(rows) == 1
    outcome = NoveltyFilter().process_batch(rows)[0]
    assert outcome.status == "filtered" and outcome.reason.startswith("copied_example: the query copies few-shot example")
    # without re-asks the first reply is final
    serving = FakeLLMServing(lambda m, s: {"pairs": [{"query": "How many yen is 250 euros?", "answers": []}]})
    APIGenGenerator(serving, num_pairs=1, max_reasks=0).process_batch([{"tools": [BY_NAME["calculate_bmi"]], "examples": [EXAMPLE]}])
    assert len(serving.calls) == 1


def test_generator_checks_copies_of_seed_rows_not_shown_in_the_prompt():
    serving = FakeLLMServing(lambda m, s: {"pairs": [{"query": "What are the prime factors of 360?",
                                                      "answers": [{"name": "prime_factors", "arguments": {"n": 360}}]}]})
    gen = APIGenGenerator(serving, num_pairs=1, seed_examples=DATA / "seed_qa.jsonl")
    gen.process_batch(rows_of_tools("prime_factors"))
    assert len(serving.calls) == 2 and "copies an example" in serving.calls[1][0][-1]["content"]


def test_generator_keeps_the_first_good_pairs_when_the_reask_fails():
    replies = iter([{"pairs": [{"query": "Factorise 84.", "answers": [{"name": "prime_factors", "arguments": {"n": 84}}]},
                               {"query": "Factorise it.", "answers": [{"name": "prime_factors", "arguments": {"n": 91}}]}]},
                    "not json"])
    gen = APIGenGenerator(FakeLLMServing(lambda m, s: next(replies)), num_pairs=2)
    outcome = gen.process_batch(rows_of_tools("prime_factors"))[0]
    assert outcome.status == "ok" and [r["query"] for r in outcome.rows] == ["Factorise 84."]


# -- NoveltyFilter -------------------------------------------------------------------------------
def test_novelty_filter_drops_copies_of_examples_seed_rows_and_earlier_queries(tmp_path):
    from dataflow.operators.apigen import NoveltyFilter
    from dataflow.utils.storage import FileStorage

    rows = [
        {"query": "How many yen is 250 euros", "examples": [EXAMPLE], "answers": []},          # copies its example
        {"query": "What are the prime factors of 360?", "examples": [], "answers": []},        # copies a seed row
        {"query": "Convert 90 Swiss francs to Indian rupees for my trip.", "examples": [EXAMPLE], "answers": []},
        {"query": "Convert 90 Swiss francs to Indian rupees for my trip!", "examples": [], "answers": []},  # repeat
        {"query": "Plan a loan of 12000 at 3% over 4 years.", "examples": [EXAMPLE], "answers": []},
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    storage = FileStorage(str(source), cache_path=str(tmp_path / "cache"))
    report = NoveltyFilter(seed_examples=DATA / "seed_qa.jsonl").run(storage.step())
    assert report.filtered_by_reason == {"copied_example": 2, "duplicate_query": 1} and report.rows_out == 2
    rejected = [json.loads(l) for l in (tmp_path / "cache" / "dataflow_cache_step1.rejected.jsonl").read_text().splitlines()]
    assert [r["_reason"].split(":")[0] for r in rejected] == ["copied_example", "copied_example", "duplicate_query"]
    assert "few-shot example 'How many yen is 250 euros?'" in rejected[0]["_reason"]
    assert "seed row 'What are the prime factors of 360?'" in rejected[1]["_reason"]
    # the same filter without seeds does not know the seed row
    assert NoveltyFilter().process_batch(rows[1:2])[0].status == "ok"


def test_generator_num_pairs_distribution_and_styles_and_irrelevance():
    serving = FakeLLMServing(apigen_responder)
    gen = APIGenGenerator(serving, num_pairs={"distribution": {1: 1, 3: 1}}, styles={"parallel": 1},
                          irrelevance_rate=0.5, seed=1)
    outcomes = gen.process_batch(rows_of_tools(*BY_NAME) * 2)
    counts = {len(o.rows) for o in outcomes if o.status == "ok"}
    assert counts <= {1, 3} and len(counts) == 2
    styles = {r["style"] for o in outcomes for r in o.rows}
    assert styles == {"parallel", "irrelevance"}
    assert all(r["answers"] == [] for o in outcomes for r in o.rows if r["style"] == "irrelevance")


def test_generator_config_file(tmp_path):
    gen = APIGenGenerator(FakeLLMServing(apigen_responder), config=DATA / "generator_config.yaml")
    assert gen.irrelevance_rate == 0.1 and "student" in gen.roles and gen.num_pairs == {"distribution": {1: 0.4, 2: 0.4, 3: 0.2}}
    from dataflow.core.errors import ConfigError

    with pytest.raises(ConfigError):
        APIGenGenerator(FakeLLMServing(apigen_responder), styles=["weird"])


# -- checkers ------------------------------------------------------------------------------------
def test_format_checker_columns_and_drops():
    rows = [{"query": "factorise 12", "tools": TOOLS, "answers": [{"name": "prime_factors", "arguments": {"n": 12}}]},
            {"query": "b", "tools": TOOLS, "answers": [{"name": "prime_factors", "arguments": {"n": 1.5}}]},
            {"query": "c", "tools": [{"name": "bad name"}], "answers": []}]
    outcomes = FormatChecker().process_batch(rows)
    assert outcomes[0].rows[0]["format_valid"] is True and outcomes[0].rows[0]["format_reason"] == ""
    assert outcomes[1].status == "filtered" and "failed_format: call 0 (prime_factors): argument 'n'" in outcomes[1].reason
    assert outcomes[2].status == "filtered" and "invalid tool spec" in outcomes[2].reason
    kept = FormatChecker(keep_failed=True).process_batch(rows[1:2])[0].rows[0]
    assert kept["format_valid"] is False and "1.5" in kept["format_reason"]


def test_format_checker_with_fixed_tools_file():
    rows = [{"query": "Prime factors of 12?", "function_calls": [{"function_name": "prime_factors", "arguments": {"n": 12}}]}]
    assert FormatChecker(tools=str(DATA / "function_definitions.json")).process_batch(rows)[0].status == "ok"
    assert FormatChecker(tools=str(DATA / "tools.py")).process_batch(rows)[0].status == "ok"


def test_format_checker_drops_invented_argument_values_as_failed_grounding():
    """The two wrong pairs of the issue: a BMI for a user who gave no weight or height, and
    "count the words in the given text" with no text. Spec values (enum, default, boolean) are fine."""
    rows = [
        {"query": "Can you calculate my BMI?", "tools": TOOLS, "answers": [BMI_CALL]},
        {"query": "Count the words in the given text.", "tools": TOOLS,
         "answers": [{"name": "count_words", "arguments": {"text": "The quick brown fox"}}]},
        {"query": "I'm 1.9 m tall and weigh 82 kg. BMI?", "tools": TOOLS, "answers": [BMI_CALL]},
        {"query": "Count the words in 'the quick brown fox', case-sensitive.", "tools": TOOLS,
         "answers": [{"name": "count_words", "arguments": {"text": "the quick brown fox", "ignore_case": False, "top_n": 5}}]},
        {"query": "Porto weather for 1,000 hours? no: 3 days, in fahrenheit", "tools": TOOLS,
         "answers": [{"name": "get_weather_forecast", "arguments": {"city": "Porto", "days": 3, "unit": "fahrenheit"}}]},
    ]
    outcomes = FormatChecker().process_batch(rows)
    assert [o.status for o in outcomes] == ["filtered", "filtered", "ok", "ok", "ok"]
    assert outcomes[0].reason.startswith("failed_grounding: call 0 (calculate_bmi): ungrounded_argument: weight_kg=82")
    assert "height_m=1.9" in outcomes[0].reason
    assert outcomes[1].reason.startswith("failed_grounding: call 0 (count_words): ungrounded_argument: text=")
    assert [o.status for o in FormatChecker(check_grounding=False).process_batch(rows)] == ["ok"] * 5
    kept = FormatChecker(keep_failed=True).process_batch(rows[:1])[0].rows[0]
    assert kept["format_valid"] is False and kept["format_reason"].startswith("failed_grounding:")


def test_format_checker_drops_a_no_call_pair_that_a_listed_tool_serves():
    """An irrelevance pair ("none of these functions can do it") is wrong when a listed tool does it."""
    tools = [BY_NAME["get_weather_forecast"], BY_NAME["convert_currency"]]
    rows = [{"query": q, "tools": tools, "answers": []} for q in (
        "Convert 1000 USD to EUR at today's rate.", "Will it rain in Oslo tomorrow? Give me the forecast.",
        "Find the average of the numbers 1, 2 and 3.", "Order me a pizza with extra cheese.")]
    rows.append({"query": "How much is 1000 usd in euros?", "tools": tools, "answers": "[]"})
    outcomes = FormatChecker().process_batch(rows)
    assert [o.status for o in outcomes] == ["filtered", "filtered", "ok", "ok", "filtered"]
    assert outcomes[0].reason == "failed_irrelevance: a listed tool serves it: the query names convert, eur, usd of convert_currency"
    assert "weather" in outcomes[1].reason and "forecast" in outcomes[1].reason
    assert [o.status for o in FormatChecker(check_grounding=False).process_batch(rows)] == ["ok"] * 5


def test_format_checker_drops_a_pair_that_makes_the_same_call_twice():
    """APIGen on the 0.5B wrote 'Factorise 120 into its prime factors.' with four identical calls."""
    call = {"name": "prime_factors", "arguments": {"n": 120}}
    rows = [{"query": "Factorise 120 into its prime factors.", "tools": TOOLS, "answers": [call, call, call, call]},
            {"query": "Factorise 120 and 84.", "tools": TOOLS,
             "answers": [call, {"name": "prime_factors", "arguments": {"n": 84}}]}]
    for checker in (FormatChecker(), FormatChecker(check_grounding=False)):
        outcomes = checker.process_batch(rows)
        assert [o.status for o in outcomes] == ["filtered", "ok"]
        assert outcomes[0].reason == ("failed_repeated_call: call 1 repeats call 0 (prime_factors with the same arguments); "
                                      "call 2 repeats call 0 (prime_factors with the same arguments); "
                                      "call 3 repeats call 0 (prime_factors with the same arguments)")


def test_semantic_checker_compares_the_judges_reading_with_the_calls():
    base = {"tools": TOOLS, "answers": [{"name": "prime_factors", "arguments": {"n": 12}}], "execution_results": [{"ok": True, "result": [2, 2, 3]}]}
    reading = {"asked": "factors of 12", "requests": 1, "best_function": "prime_factors"}
    replies = iter([{**reading, "question_values": {"call_1": {"n": 12}}},
                    {**reading, "question_values": {"call_1": {"n": 21}}},
                    {**reading, "requests": "one", "question_values": {"call_1": {"n": 12}}}, "garbage"])
    serving = FakeLLMServing(lambda m, s: next(replies))
    rows = [dict(base, query=f"q{i}") for i in range(4)] + [dict(base, query="skip", execution_ok=False, execution_reason="boom")]
    outcomes = SemanticChecker(serving, judge_mode="enforce").process_batch(rows)
    assert outcomes[0].rows[0]["semantic_valid"] is True
    assert outcomes[1].status == "filtered" and outcomes[1].reason.startswith("failed_semantic: asked: factors of 12")
    assert outcomes[1].reason.endswith("fails: call 1 prime_factors: n=12 is not what the query gives")
    assert outcomes[2].status == "failed" and outcomes[2].reason.startswith("invalid_reply")
    assert outcomes[3].status == "failed"
    assert outcomes[4].status == "filtered" and outcomes[4].reason.startswith("failed_execution")
    assert len(serving.calls) == 4  # the failed-execution row was not sent
    messages, schema = serving.calls[0]
    assert "prime_factors" in schema["properties"]["best_function"]["enum"]
    assert schema["properties"]["question_values"]["properties"]["call_1"]["required"] == ["n"]
    assert "n=?" in messages[-1]["content"] and "12" not in messages[-1]["content"].split("Calls made")[1]


def test_semantic_verdict_schema_offers_a_parameters_enum_members_and_null():
    from dataflow.operators.apigen.checkers import verdict_schema

    tool = {"type": "function", "function": {"name": "convert", "description": "Convert units.", "parameters": {
        "type": "object", "properties": {"unit": {"type": "string", "enum": ["km", "mi"]}, "value": {"type": "number"},
                                         "path": {"type": "array", "items": {"type": "string"}}},
        "required": ["unit", "value"]}}}
    schema = verdict_schema([tool], [{"name": "convert", "arguments": {"unit": "km", "value": 3, "path": ["a"]}}])
    call = schema["properties"]["question_values"]["properties"]["call_1"]
    assert call["properties"]["unit"] == {"enum": ["km", "mi", None]}
    assert call["properties"]["value"] == {"type": ["string", "number", "boolean", "null"]}
    assert call["properties"]["path"] == {}
    assert call["required"] == ["unit", "value", "path"] and call["additionalProperties"] is False


def test_stage_table_from_reports():
    from dataflow.core.operator import RunReport

    reports = [RunReport("APIGenGenerator", 2, "", rows_in=5, rows_out=10, failed=1,
                         counters={"duplicates_dropped": 3}),
               RunReport("FormatChecker", 3, "", rows_in=10, rows_out=8, filtered=2, filtered_by_reason={"failed_format": 2}),
               RunReport("ExecutionChecker", 4, "", rows_in=8, rows_out=7, filtered=1, filtered_by_reason={"failed_execution": 1}),
               RunReport("SemanticChecker", 5, "", rows_in=7, rows_out=6, filtered=1, failed=0, filtered_by_reason={"failed_semantic": 1})]
    table = stage_table(reports)
    assert table["duplicates_dropped"] == 3
    assert table["generated"] == 10 and table["failed_format"] == 2 and table["failed_execution"] == 1
    assert table["failed_semantic"] == 1 and table["verified"] == 6 and table["pass_rate"] == 0.6
    text = format_stage_table(table)
    assert "pass rate" in text and "60.0%" in text
    reports = [RunReport("APIGenGenerator", 2, "", rows_in=5, rows_out=10, counters={"reasked": 4}),
               RunReport("NoveltyFilter", 3, "", rows_in=10, rows_out=7, filtered=3,
                         filtered_by_reason={"copied_example": 2, "duplicate_query": 1}),
               RunReport("FormatChecker", 4, "", rows_in=7, rows_out=4, filtered=3,
                         filtered_by_reason={"failed_format": 1, "failed_grounding": 2})]
    table = stage_table(reports)
    assert (table["copied_example"], table["duplicate_query"], table["failed_grounding"]) == (2, 1, 2)
    assert table["failed_format"] == 1 and table["verified"] == 4 and table["reasked"] == 4
    assert table["failed_irrelevance"] == 0
    assert "copied example" in format_stage_table(table) and "failed grounding" in format_stage_table(table)
    judged = RunReport("SemanticChecker", 5, "", rows_in=4, rows_out=4, kept=4, advisory_by_reason={"failed_semantic": 3})
    assert stage_table(reports + [judged])["judge_advisory"] == 3
