"""The multi-turn (BUTTON) operators against FakeLLMServing: happy path, malformed and missing
replies (row failed with a reason, other rows unaffected), one batch per round, and the
conversation structure checker."""

from __future__ import annotations

import copy
import json

import pytest

from dataflow.core import LLMResult, MissingColumnError
from dataflow.operators.conversations import (
    AtomTaskGenerator,
    CompositionTaskFilter,
    ConversationQualityEvaluator,
    FunctionGenerator,
    MultiTurnConversationGenerator,
    ParaSeqTaskGenerator,
    ScenarioExpander,
    ScenarioExtractor,
    SequentialTaskGenerator,
    chat_to_transcript,
    check_conversation,
    openai_tools,
)
from dataflow.operators.conversations.export import export_conversations, openai_records
from dataflow.serving.fake import FakeLLMServing
from dataflow.serving.fake_responders import button_responder
from dataflow.tools import normalize_tools

GLAIVE_CHAT = (
    "USER: What's 100 USD in EUR?\n\n\nASSISTANT: <functioncall> {\"name\": \"convert_currency\", "
    "\"arguments\": '{\"amount\": 100, \"from\": \"USD\", \"to\": \"EUR\"}'} <|endoftext|>\n\n\n"
    "FUNCTION RESPONSE: {\"converted\": 92.1}\n\n\nASSISTANT: About 92.10 EUR. <|endoftext|>\n\n\n"
)


class CountingFake(FakeLLMServing):
    """FakeLLMServing that records the size of every batch it is sent."""

    def __init__(self, responder):
        super().__init__(responder)
        self.batches: list[int] = []

    def _generate(self, conversations, json_schema):
        self.batches.append(len(conversations))
        return super()._generate(conversations, json_schema)


def faulty(responder=button_responder):
    """Malformed reply for prompts containing MALFORMED, a failed request for MISSING."""

    def respond(messages, schema):
        text = " ".join(m.get("content") or "" for m in messages)
        if "MALFORMED" in text:
            return "I think the answer is probably fine"  # no JSON at all
        if "MISSING" in text:
            return LLMResult.failure("HTTP 500: boom")
        return responder(messages, schema)

    return respond


def _functions(n: int = 2) -> list[dict]:
    reply = button_responder(
        [{"role": "user", "content": "Sub-tasks:\n" + "\n".join(f"{i}. do thing {i}" for i in range(1, n + 1))}],
        {"title": "FunctionSetReply"},
    )
    from dataflow.operators.conversations.functions import FunctionSetReply, build_specs

    return build_specs(FunctionSetReply.model_validate(reply), n)


def base_row(tag: str = "") -> dict:
    messages = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": f"Please help {tag}"},
        {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function",
                                              "function": {"name": "step1_do", "arguments": "{\"query\": \"x\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"ref_id\": \"r1\"}"},
        {"role": "assistant", "content": "Done."},
    ]
    return {
        "chat": GLAIVE_CHAT.replace("EUR?", f"EUR? {tag}"),
        "scenario": f"A traveller converts money {tag}",
        "modified_scenario": f"A student budgets a trip {tag}",
        "atom_task": f"Convert 100 USD to EUR {tag}",
        "subsequent_task": f"Summarise the conversion {tag}",
        "parallel_task": f"Check the weather {tag}",
        "composition_task": f"Convert 100 USD to EUR and summarise it {tag}",
        "functions": _functions(2),
        "conversations": messages,
        "tools": openai_tools(_functions(2)),
    }


# (operator factory, process_batch kwargs, output columns of a kept row)
SINGLE_ROUND = [
    (ScenarioExtractor, {"input_chat_key": "chat", "output_key": "scn"}, ["scn"]),
    (ScenarioExpander, {"output_key": "new_scn"}, ["new_scn"]),
    (AtomTaskGenerator, {"input_scenario_key": "modified_scenario", "output_key": "task_a"}, ["task_a"]),
    (SequentialTaskGenerator, {"output_subsequent_task_key": "b", "output_composition_task_key": "ab"}, ["b", "ab"]),
    (ParaSeqTaskGenerator, {"output_parallel_task_key": "p", "output_subsequent_task_key": "b",
                            "output_composition_task_key": "apb"}, ["p", "b", "apb"]),
    (CompositionTaskFilter, {"output_verdict_key": "v", "output_reason_key": "why"}, ["v", "why"]),
    (FunctionGenerator, {"output_key": "fns"}, ["fns"]),
    (ConversationQualityEvaluator, {"output_score_key": "q", "output_explanation_key": "qe"}, ["q", "qe"]),
]


@pytest.mark.parametrize("factory,kwargs,outputs", SINGLE_ROUND, ids=[c[0].__name__ for c in SINGLE_ROUND])
def test_single_round_operator_ok_malformed_missing(factory, kwargs, outputs):
    serving = CountingFake(faulty())
    rows = [base_row("first"), base_row("MALFORMED"), base_row("MISSING"), base_row("last")]
    outcomes = factory(llm_serving=serving).process_batch(rows, **kwargs)
    assert [o.status for o in outcomes] == ["ok", "failed", "failed", "ok"]
    assert outcomes[1].reason.startswith("invalid_reply:")
    assert outcomes[2].reason.startswith("llm_error:") and "HTTP 500" in outcomes[2].reason
    assert serving.batches == [4]  # every row of the round in ONE batch
    for outcome in (outcomes[0], outcomes[3]):
        (row,) = outcome.rows
        for column in outputs:
            assert row[column] not in (None, "", [])


def test_empty_input_column_fails_row_without_llm_call():
    serving = CountingFake(button_responder)
    rows = [base_row("a"), {**base_row("b"), "atom_task": "  "}]
    outcomes = SequentialTaskGenerator(llm_serving=serving).process_batch(rows)
    assert [o.status for o in outcomes] == ["ok", "failed"]
    assert outcomes[1].reason.startswith("invalid_input:")
    assert serving.batches == [1]


def test_reply_missing_a_field_is_invalid_reply():
    serving = FakeLLMServing(lambda m, s: {"subsequent_task": "Only half of the reply here"})
    (outcome,) = SequentialTaskGenerator(llm_serving=serving).process_batch([base_row()])
    assert outcome.status == "failed" and outcome.reason.startswith("invalid_reply: composition_task")


def test_schema_is_sent_with_every_request():
    serving = FakeLLMServing(button_responder)
    AtomTaskGenerator(llm_serving=serving).process_batch([base_row()])
    (_, schema), = serving.calls
    assert schema["title"] == "AtomTaskReply" and schema["properties"]["task"]["maxLength"] == 200


def test_composition_filter_drops_rejected_rows_by_problem():
    def judge(messages, schema):
        if "REJECT" in messages[-1]["content"]:
            return {"reason": "Step 2 does not use step 1.", "problem": "steps_unrelated"}
        return button_responder(messages, schema)

    outcomes = CompositionTaskFilter(llm_serving=FakeLLMServing(judge)).process_batch(
        [base_row("ok"), base_row("REJECT")], input_sub_tasks_keys=["atom_task", "parallel_task", "subsequent_task"]
    )
    assert outcomes[0].status == "ok" and outcomes[0].rows[0]["composition_verdict"] == "accept"
    assert outcomes[1].status == "filtered"
    assert outcomes[1].reason == "rejected_steps_unrelated: Step 2 does not use step 1."


def test_function_generator_builds_valid_specs_with_response_shapes():
    serving = FakeLLMServing(button_responder)
    (outcome,) = FunctionGenerator(llm_serving=serving).process_batch(
        [base_row()], input_sub_tasks_keys=["atom_task", "parallel_task", "subsequent_task"]
    )
    specs = outcome.rows[0]["functions"]
    assert len(specs) == 3
    assert normalize_tools(openai_tools(specs))  # legal names, valid JSON Schema
    for spec in specs:
        assert spec["x-response"]["type"] == "object" and spec["x-response"]["required"]
    # the second function takes the first one's return field (output feeds the next input)
    assert "ref_id" in specs[0]["x-response"]["properties"]
    assert "ref_id" in specs[1]["function"]["parameters"]["required"]


def _two_functions() -> list[dict]:
    reply = button_responder(
        [{"role": "user", "content": "Sub-tasks:\n1. a thing\n2. another thing"}], {"title": "FunctionSetReply"}
    )
    return reply["functions"]


@pytest.mark.parametrize(
    "reply,reason",
    [
        ({"functions": _two_functions()[:1]}, "invalid_functions: 1 function(s) for 2 sub-tasks"),
        ({"functions": [dict(f, sub_task=3) for f in _two_functions()]}, "invalid_reply: functions.0.sub_task"),
        ({"functions": [dict(f, parameters=[]) for f in _two_functions()]}, "invalid_reply: functions.0.parameters"),
    ],
    ids=["uncovered-sub-task", "unknown-field", "no-parameters"],
)
def test_function_generator_rejects_bad_function_sets(reply, reason):
    serving = FakeLLMServing(lambda m, s: reply)
    (outcome,) = FunctionGenerator(llm_serving=serving).process_batch([base_row()])
    assert outcome.status == "failed" and outcome.reason.startswith(reason), outcome.reason


def test_function_generator_repairs_names_instead_of_failing():
    one, two = _two_functions()
    same_again = copy.deepcopy(one)
    different = dict(copy.deepcopy(two), name="Bad Name!")
    other = dict(copy.deepcopy(two), name="badName")
    other["parameters"] = [dict(other["parameters"][0], name="Ref ID"), dict(other["parameters"][0], name="ref-id")]
    reply = {"functions": [one, same_again, different, other]}
    serving = FakeLLMServing(lambda m, s: reply)
    row = base_row()
    row["extra_task"], row["more_task"] = "one more", "and another"
    (outcome,) = FunctionGenerator(llm_serving=serving).process_batch(
        [row], input_sub_tasks_keys=["atom_task", "subsequent_task", "extra_task", "more_task"]
    )
    assert outcome.status == "ok", outcome.reason
    specs = outcome.rows[0]["functions"]
    # the same function twice is one tool; "Bad Name!" and "badName" both become bad_name -> bad_name_2
    assert [s["function"]["name"] for s in specs] == ["step1_a", "bad_name", "bad_name_2"]
    assert list(specs[2]["function"]["parameters"]["properties"]) == ["ref_id"]  # "Ref ID"/"ref-id" -> one
    assert normalize_tools(openai_tools(specs))
    # the schema sent asks for exactly one function per sub-task
    (_, schema), = serving.calls
    assert schema["properties"]["functions"]["minItems"] == schema["properties"]["functions"]["maxItems"] == 4


def test_snake_name():
    from dataflow.operators.conversations.functions import snake_name

    assert snake_name("getWeatherForecast") == "get_weather_forecast"
    assert snake_name("  Get Weather! ") == "get_weather"
    assert snake_name("3d-view") == "n_3d_view"
    assert snake_name("!!!", fallback="do_it") == "do_it"
    assert len(snake_name("x" * 100, 48)) == 48


def test_function_generator_enum_only_kept_for_strings():
    reply = button_responder([{"role": "user", "content": "Sub-tasks:\n1. x\n2. y"}], {"title": "FunctionSetReply"})
    reply["functions"][1]["parameters"][1]["enum"] = ["1", "2"]  # an integer parameter
    (outcome,) = FunctionGenerator(llm_serving=FakeLLMServing(lambda m, s: reply)).process_batch([base_row()])
    props = outcome.rows[0]["functions"][1]["function"]["parameters"]["properties"]
    assert "enum" not in props["limit"]
    assert outcome.rows[0]["functions"][0]["function"]["parameters"]["properties"]["mode"]["enum"] == ["brief", "full"]


# -- multi-turn -------------------------------------------------------------------------------
def mt_rows(n: int = 3, sub_tasks: int = 3) -> list[dict]:
    rows = []
    for i in range(n):
        row = base_row(f"row{i}")
        row["functions"] = _functions(sub_tasks)
        rows.append(row)
    return rows


MT_KEYS = {"input_sub_tasks_keys": ["atom_task", "parallel_task", "subsequent_task"]}


def test_multi_turn_valid_flow_batches_each_round():
    serving = CountingFake(button_responder)
    rows = mt_rows(3)
    outcomes = MultiTurnConversationGenerator(llm_serving=serving, max_follow_ups=1).process_batch(rows, **MT_KEYS)
    assert [o.status for o in outcomes] == ["ok"] * 3
    for outcome in outcomes:
        row = outcome.rows[0]
        messages, tools = row["conversations"], row["tools"]
        assert check_conversation(messages, tools) == []
        assert all(not k.startswith("x-") for t in tools for k in t)
        assert [m["role"] for m in messages[:2]] == ["system", "user"]
        first_call = messages[2]
        assert len(first_call["tool_calls"]) == 2  # parallel calls
        assert all(isinstance(c["function"]["arguments"], str) for c in first_call["tool_calls"])
        assert messages[-1]["role"] == "assistant" and messages[-1]["content"]
        assert sum(m["role"] == "user" for m in messages) == 2  # opening + one follow-up
    # every agent round is one batch over all rows still in that phase
    assert all(size == 3 or size == 6 for size in serving.batches), serving.batches


def test_multi_turn_invalid_call_is_reasked_then_accepted():
    state = {"bad": 0}

    def responder(messages, schema):
        if schema["title"] == "AssistantTurnReply" and "ASSISTANT CALLS" not in messages[-1]["content"]:
            if state["bad"] == 0:
                state["bad"] += 1
                return {"tool_calls": [{"name": "step1_do", "arguments": {"query": 5}}], "content": ""}
            assert "rejected: invalid_call" in messages[-1]["content"]  # the re-ask carries the errors
        return button_responder(messages, schema)

    (outcome,) = MultiTurnConversationGenerator(llm_serving=FakeLLMServing(responder)).process_batch(mt_rows(1), **MT_KEYS)
    assert state["bad"] == 1
    assert outcome.status == "ok", outcome.reason
    assert check_conversation(outcome.rows[0]["conversations"], outcome.rows[0]["tools"]) == []


def test_multi_turn_invalid_call_fails_after_bounded_reasks():
    def responder(messages, schema):
        if schema["title"] == "AssistantTurnReply" and "BAD" in messages[-1]["content"]:
            return {"tool_calls": [{"name": "no_such_tool", "arguments": {}}], "content": ""}
        return button_responder(messages, schema)

    rows = mt_rows(2)
    rows[0]["composition_task"] += " BAD"
    serving = CountingFake(responder)
    outcomes = MultiTurnConversationGenerator(llm_serving=serving, max_reasks=2).process_batch(rows, **MT_KEYS)
    assert outcomes[0].status == "failed"
    assert outcomes[0].reason.startswith("invalid_call:") and "no_such_tool" in outcomes[0].reason
    assert outcomes[1].status == "ok"
    bad_asks = [m for m, s in serving.calls if s["title"] == "AssistantTurnReply" and "BAD" in m[-1]["content"]]
    assert len(bad_asks) == 3  # first ask + 2 re-asks


def test_assistant_schema_is_built_from_the_row_tools():
    from dataflow.operators.conversations.multi_turn import assistant_reply_schema

    serving = FakeLLMServing(button_responder)
    rows = mt_rows(1, sub_tasks=2)
    MultiTurnConversationGenerator(llm_serving=serving).process_batch(rows, **MT_KEYS | {
        "input_sub_tasks_keys": ["atom_task", "subsequent_task"]})
    schemas = [s for _, s in serving.calls if s["title"] == "AssistantTurnReply"]
    assert schemas[0] == assistant_reply_schema(rows[0]["tools"], must_call=True)  # no call made yet
    assert schemas[0]["properties"]["tool_calls"]["minItems"] == 1
    assert all(s == assistant_reply_schema(rows[0]["tools"]) for s in schemas[1:])
    variants = schemas[0]["properties"]["tool_calls"]["items"]["anyOf"]
    assert [v["properties"]["name"]["const"] for v in variants] == [t["function"]["name"] for t in rows[0]["tools"]]
    args = variants[0]["properties"]["arguments"]
    assert args["required"] == rows[0]["tools"][0]["function"]["parameters"]["required"]
    assert args["properties"]["query"]["maxLength"] == 100  # bounded for decoding only
    assert "maxLength" not in rows[0]["tools"][0]["function"]["parameters"]["properties"]["query"]


def test_multi_turn_repeated_call_is_reasked():
    def responder(messages, schema):
        if schema["title"] == "AssistantTurnReply":
            return {"tool_calls": [{"name": "step1_do", "arguments": {"query": "same"}}], "content": ""}
        return button_responder(messages, schema)

    serving = CountingFake(responder)
    (outcome,) = MultiTurnConversationGenerator(llm_serving=serving, max_reasks=1).process_batch(mt_rows(1), **MT_KEYS)
    assert outcome.status == "failed" and outcome.reason.startswith("repeated_call: step1_do"), outcome.reason


def test_multi_turn_no_final_answer_fails_at_turn_limit():
    def responder(messages, schema):
        if schema["title"] == "AssistantTurnReply":  # keeps calling, never answers
            return {"tool_calls": [{"name": "step1_do", "arguments": {"query": "again"}}], "content": ""}
        return button_responder(messages, schema)

    (outcome,) = MultiTurnConversationGenerator(llm_serving=FakeLLMServing(responder), max_turns=3).process_batch(
        mt_rows(1), **MT_KEYS
    )
    assert outcome.status == "failed"
    assert outcome.reason.startswith("no_final_answer:") and "3 assistant turns" in outcome.reason


def test_multi_turn_answer_without_tool_call_is_not_kept():
    def responder(messages, schema):
        if schema["title"] == "AssistantTurnReply":
            return {"tool_calls": [], "content": "I just know the answer."}
        return button_responder(messages, schema)

    (outcome,) = MultiTurnConversationGenerator(llm_serving=FakeLLMServing(responder), max_reasks=1).process_batch(
        mt_rows(1), **MT_KEYS
    )
    assert outcome.status == "failed" and outcome.reason.startswith("no_tool_call:")


def test_multi_turn_tool_result_checked_against_declared_shape():
    def responder(messages, schema):
        if schema["title"] == "ToolResultReply":
            return {"result": {"unexpected": 1}}
        return button_responder(messages, schema)

    (outcome,) = MultiTurnConversationGenerator(llm_serving=FakeLLMServing(responder), max_reasks=1).process_batch(
        mt_rows(1), **MT_KEYS
    )
    assert outcome.status == "failed" and outcome.reason.startswith("invalid_tool_result:")


def test_multi_turn_tool_schema_is_built_from_response_shape():
    serving = FakeLLMServing(button_responder)
    MultiTurnConversationGenerator(llm_serving=serving).process_batch(mt_rows(1, sub_tasks=2), **MT_KEYS | {
        "input_sub_tasks_keys": ["atom_task", "subsequent_task"]})
    tool_schemas = [s for _, s in serving.calls if s["title"] == "ToolResultReply"]
    assert tool_schemas
    result = tool_schemas[0]["properties"]["result"]
    assert result["required"] == ["ref_id", "summary", "count"] and result["additionalProperties"] is False


def test_tool_round_sends_each_call_its_own_function_schema():
    """Two rows with different tools in one batch: each tool-agent request carries exactly its
    function's declared response shape, so a cache key never depends on the other rows."""
    serving = FakeLLMServing(button_responder)
    rows = mt_rows(2, sub_tasks=2)
    MultiTurnConversationGenerator(llm_serving=serving).process_batch(rows, **MT_KEYS | {
        "input_sub_tasks_keys": ["atom_task", "subsequent_task"]})
    shapes = {}
    for row in rows:
        for fn in row["functions"]:
            shapes[fn["function"]["name"]] = fn["x-response"]
    tool_calls = [(m, s) for m, s in serving.calls if s["title"] == "ToolResultReply"]
    assert tool_calls
    for messages, schema in tool_calls:
        text = json.dumps(messages)
        named = [name for name in shapes if name in text]
        assert named, "tool prompt names its function"
        assert schema["properties"]["result"] in [shapes[n] for n in named]
        assert "anyOf" not in schema["properties"]["result"]


@pytest.mark.parametrize("agent", ["UserTurnReply", "AssistantTurnReply", "ToolResultReply"])
def test_multi_turn_missing_and_malformed_agent_replies(agent):
    def responder(messages, schema):
        if schema["title"] == agent and "row0" in json.dumps(messages):
            return LLMResult.failure("HTTP 503: unavailable")
        if schema["title"] == agent and "row1" in json.dumps(messages):
            return "not json"
        return button_responder(messages, schema)

    outcomes = MultiTurnConversationGenerator(llm_serving=FakeLLMServing(responder), max_reasks=1).process_batch(
        mt_rows(3), **MT_KEYS
    )
    assert outcomes[0].status == "failed" and outcomes[0].reason.startswith("llm_error:")
    assert outcomes[1].status == "failed" and "invalid" in outcomes[1].reason.split(":")[0]
    assert outcomes[2].status == "ok"


def test_multi_turn_bad_functions_column_fails_row():
    rows = mt_rows(2)
    rows[0]["functions"] = [{"type": "function", "function": {"name": "bad name", "parameters": {}}}]
    outcomes = MultiTurnConversationGenerator(llm_serving=FakeLLMServing(button_responder)).process_batch(rows, **MT_KEYS)
    assert outcomes[0].status == "failed" and outcomes[0].reason.startswith("invalid_input:")
    assert outcomes[1].status == "ok"


def test_multi_turn_is_deterministic():
    a = MultiTurnConversationGenerator(llm_serving=FakeLLMServing(button_responder)).process_batch(mt_rows(2), **MT_KEYS)
    b = MultiTurnConversationGenerator(llm_serving=FakeLLMServing(button_responder)).process_batch(mt_rows(2), **MT_KEYS)
    assert [o.rows for o in a] == [o.rows for o in b]


# -- structure checker --------------------------------------------------------------------------
def _valid_conversation():
    row = MultiTurnConversationGenerator(llm_serving=FakeLLMServing(button_responder)).process_batch(
        mt_rows(1), **MT_KEYS
    )[0].rows[0]
    return row["conversations"], row["tools"]


def test_structure_checker_accepts_generated_conversation():
    messages, tools = _valid_conversation()
    assert check_conversation(messages, tools) == []


@pytest.mark.parametrize(
    "mutate,problem",
    [
        (lambda m: m.__setitem__(3, {**m[3], "tool_call_id": "call_99"}), "unknown or already answered"),
        (lambda m: m.pop(), "final assistant answer"),
        (lambda m: m.insert(3, {"role": "user", "content": "hey"}), "unanswered"),
        (lambda m: m.insert(1, {"role": "assistant", "content": "early"}), "assistant message where"),
        (lambda m: m[2]["tool_calls"][0]["function"].__setitem__("arguments", "{\"query\": 3}"), "query"),
        (lambda m: m[2]["tool_calls"][0]["function"].__setitem__("arguments", "{not json"), "not valid JSON"),
        (lambda m: m.append({"role": "robot", "content": "x"}), "illegal role"),
    ],
    ids=["unknown-id", "no-final", "user-while-open", "assistant-first", "bad-arg-type", "bad-json", "bad-role"],
)
def test_structure_checker_finds_problems(mutate, problem):
    messages, tools = _valid_conversation()
    messages = copy.deepcopy(messages)
    mutate(messages)
    problems = check_conversation(messages, tools)
    assert any(problem in p for p in problems), problems


# -- transcript, run() on FileStorage, export -----------------------------------------------------
def test_transcript_reads_glaive_openai_and_sharegpt():
    glaive = chat_to_transcript(GLAIVE_CHAT)
    assert "USER: What's 100 USD in EUR?" in glaive
    assert 'ASSISTANT CALLS: convert_currency({"amount": 100' in glaive
    assert "TOOL RESULT of convert_currency" in glaive and "<|endoftext|>" not in glaive
    messages, _ = _valid_conversation()
    openai = chat_to_transcript(messages)
    assert "ASSISTANT CALLS: step1_" in openai and "TOOL RESULT of step1_" in openai
    sharegpt = chat_to_transcript({"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]})
    assert sharegpt == "USER: hi\nASSISTANT: hello"
    assert chat_to_transcript(json.dumps(messages)) == openai
    assert chat_to_transcript(None) == "" and chat_to_transcript([]) == ""


def _storage(tmp_path, rows):
    from dataflow.utils.storage import FileStorage

    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return FileStorage(str(source), cache_path=str(tmp_path / "cache"))


def test_run_renames_outputs_and_counts_failures(tmp_path):
    storage = _storage(tmp_path, [{"chat": GLAIVE_CHAT}, {"chat": GLAIVE_CHAT.replace("EUR?", "EUR? MALFORMED")}, {"chat": ""}])
    report = ScenarioExtractor(llm_serving=FakeLLMServing(faulty())).run(storage.step(), input_chat_key="chat", output_key="where")
    assert (report.rows_in, report.rows_out, report.failed) == (3, 1, 2)
    assert report.failed_by_reason == {"invalid_reply": 1, "invalid_input": 1}
    rows = storage.step().read(output_type="dict")
    assert rows[0]["where"].startswith("A person needs help")


def test_run_missing_column_errors_before_any_llm_call(tmp_path):
    storage = _storage(tmp_path, [{"chat": GLAIVE_CHAT}])
    serving = FakeLLMServing(button_responder)
    with pytest.raises(MissingColumnError, match="input_task_key"):
        SequentialTaskGenerator(llm_serving=serving).run(storage.step(), input_task_key="atom_task")
    assert serving.calls == []


def test_filter_run_counts_rejections_by_problem(tmp_path):
    def judge(messages, schema):
        if "REJECT" in messages[-1]["content"]:
            return {"reason": "Missing a step.", "problem": "missing_step"}
        return button_responder(messages, schema)

    rows = [{k: v for k, v in base_row(tag).items() if k in ("composition_task", "atom_task", "subsequent_task")}
            for tag in ("a", "REJECT", "REJECT")]
    storage = _storage(tmp_path, rows)
    report = CompositionTaskFilter(llm_serving=FakeLLMServing(judge)).run(storage.step())
    assert report.filtered_by_reason == {"rejected_missing_step": 2} and report.rows_out == 1


def test_export_writes_openai_and_hermes(tmp_path):
    messages, tools = _valid_conversation()
    broken = {"conversations": messages[:-1], "tools": tools}
    result = export_conversations([{"conversations": messages, "tools": tools}, broken], tmp_path)
    assert result.written == 1 and sum(result.skipped.values()) == 1
    (record,) = [json.loads(line) for line in open(result.paths["openai"])]
    assert record == {"messages": messages, "tools": tools}
    (hermes,) = [json.loads(line) for line in open(result.paths["hermes"])]
    text = json.dumps(hermes)
    assert "<tool_call>" in text and "<tool_response>" in text
    records, _ = openai_records([{"conversations": json.dumps(messages), "tools": json.dumps(tools)}])
    assert records[0]["messages"] == messages


def test_para_seq_reasks_a_copied_task_once_then_keeps_the_row_for_the_filter():
    """A reply whose parallel task copies task A is asked again with feedback (a new request);
    a second copy keeps the row as is, for CompositionTaskFilter to reject."""
    from dataflow.operators.conversations import ParaSeqTaskGenerator

    def responder(messages, schema):
        user = messages[-1]["content"]
        copy = "stubborn" in user or "rejected" not in user
        task = user.split("Task A:", 1)[1].split("\n", 1)[0].strip()
        return {"parallel_task": task if copy else f"Look up the weather for {task}",
                "subsequent_task": "Combine both results into one short report",
                "composition_task": "Do both, then write one short report"}

    serving = FakeLLMServing(responder)
    rows = [{"atom_task": "Convert 100 USD to EUR today"}, {"atom_task": "stubborn: book a table for two"}]
    outcomes = ParaSeqTaskGenerator(llm_serving=serving).process_batch(rows)
    assert [o.status for o in outcomes] == ["ok", "ok"]
    assert outcomes[0].rows[0]["parallel_task"].startswith("Look up the weather")
    assert outcomes[1].rows[0]["parallel_task"] == "stubborn: book a table for two"
    assert len(serving.calls) == 4  # two first asks, two re-asks (batched), no third round
    reasks = [m for m, _ in serving.calls[2:]]
    assert all("previous answer was rejected" in m[-1]["content"] for m in reasks)

    no_reask = FakeLLMServing(responder)
    ParaSeqTaskGenerator(llm_serving=no_reask, max_reasks=0).process_batch(rows)
    assert len(no_reask.calls) == 2
