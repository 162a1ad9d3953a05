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
from dataflow.serving import FakeLLMServing
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
                                              "function": {"name": "find_do", "arguments": "{\"query\": \"x\"}"}}]},
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
    serving = FakeLLMServing(lambda m, s: {"a_result": "the result", "subsequent_task": "Only half of the reply here"})
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
            return {"checks": "Step 2 is about something else.", "reason": "Step 2 does not use step 1.",
                    "problem": "steps_unrelated"}
        return button_responder(messages, schema)

    outcomes = CompositionTaskFilter(llm_serving=FakeLLMServing(judge), judge_mode="enforce").process_batch(
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
    # the last function takes an earlier one's return field (output feeds the next input)
    assert "ref_id" in specs[0]["x-response"]["properties"]
    assert "ref_id" in specs[2]["function"]["parameters"]["required"]
    assert [s["x-sub-tasks"] for s in specs] == [[0], [1], [2]]  # which sub-task each serves


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


def test_function_generator_repairs_names_and_merges_a_repeated_function():
    one, two = _two_functions()
    same_again = copy.deepcopy(one)
    other = dict(copy.deepcopy(two), name="badName")
    other["parameters"] = [dict(other["parameters"][0], name="Ref ID"), dict(other["parameters"][0], name="ref-id")]
    reply = {"functions": [one, same_again, other]}
    serving = FakeLLMServing(lambda m, s: reply)
    row = base_row()
    row["extra_task"] = "one more"
    (outcome,) = FunctionGenerator(llm_serving=serving).process_batch(
        [row], input_sub_tasks_keys=["atom_task", "subsequent_task", "extra_task"]
    )
    assert outcome.status == "ok", outcome.reason
    specs = outcome.rows[0]["functions"]
    # the same function twice is one tool serving both sub-tasks; "badName" becomes bad_name
    assert [s["function"]["name"] for s in specs] == ["find_a", "bad_name"]
    assert [s["x-sub-tasks"] for s in specs] == [[0, 1], [2]]
    assert list(specs[1]["function"]["parameters"]["properties"]) == ["ref_id"]  # "Ref ID"/"ref-id" -> one
    assert normalize_tools(openai_tools(specs))
    # the schema sent asks for exactly one function per sub-task
    (_, schema), = serving.calls
    assert schema["properties"]["functions"]["minItems"] == schema["properties"]["functions"]["maxItems"] == 3


@pytest.mark.parametrize(
    "rename,reason",
    [
        ({1: "find_a"}, "near_duplicate_tools"),  # same name, different parameters
        ({1: "search_recipe", 0: "search_recipes"}, "near_duplicate_tools"),
        ({1: "keep_concrete_values"}, "instruction_leak"),
    ],
    ids=["same-name", "near-name", "leak"],
)
def test_function_generator_reasks_near_duplicate_or_leaking_tools_then_fails(rename, reason):
    one, two = _two_functions()
    for i, name in rename.items():
        (one, two)[i]["name"] = name
    serving = FakeLLMServing(lambda m, s: {"functions": [one, two]})
    (outcome,) = FunctionGenerator(llm_serving=serving).process_batch([base_row()])
    assert outcome.status == "failed" and outcome.reason.startswith(reason), outcome.reason
    assert len(serving.calls) == 2  # asked once more with the reason
    assert reason in serving.calls[1][0][-1]["content"]


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
TWO_KEYS = {"input_sub_tasks_keys": ["atom_task", "subsequent_task"]}


def calling(schema: dict) -> bool:
    """The assistant reply schema asks for calls (not for the answer)."""
    return schema["title"] == "AssistantTurnReply" and schema["properties"]["tool_calls"]["minItems"] > 0


def answering(schema: dict) -> bool:
    return schema["title"] == "AssistantTurnReply" and schema["properties"]["tool_calls"]["maxItems"] == 0


def test_plan_turns_and_sub_task_functions():
    from dataflow.operators.conversations.multi_turn import plan_turns, sub_task_functions

    assert plan_turns(3, 2) == [[0, 1], [2]]
    assert plan_turns(2, 2) == [[0], [1]]
    assert plan_turns(3, 1) == [[0, 1, 2]]
    assert plan_turns(2, 5) == [[0], [1]]
    fns = _functions(3)
    assert sub_task_functions(fns, 3) == [0, 1, 2]
    shared = [dict(fns[0], **{"x-sub-tasks": [0, 1]}), dict(fns[2], **{"x-sub-tasks": [2]})]
    assert sub_task_functions(shared, 3) == [0, 0, 1]
    from dataflow.core import InvalidInput

    with pytest.raises(InvalidInput, match="sub-task"):
        sub_task_functions([dict(fns[0], **{"x-sub-tasks": [0]})], 2)


def test_multi_turn_follows_the_plan_two_user_turns_parallel_then_chained():
    from dataflow.quality import conversation_problems

    serving = CountingFake(button_responder)
    rows = mt_rows(3)
    outcomes = MultiTurnConversationGenerator(llm_serving=serving, max_follow_ups=1).process_batch(rows, **MT_KEYS)
    assert [o.status for o in outcomes] == ["ok"] * 3, [o.reason for o in outcomes]
    for outcome in outcomes:
        row = outcome.rows[0]
        messages, tools = row["conversations"], row["tools"]
        assert check_conversation(messages, tools) == []
        assert conversation_problems(messages, tools) == []
        assert all(not k.startswith("x-") for t in tools for k in t)
        roles = [m["role"] if not m.get("tool_calls") else "calls" for m in messages]
        assert roles == ["system", "user", "calls", "tool", "tool", "assistant", "user", "calls", "tool", "assistant"]
        first_calls = messages[2]["tool_calls"]
        assert len(first_calls) == 2  # A and P, independent: parallel
        assert all(isinstance(c["function"]["arguments"], str) for c in first_calls)
        # B is chained: its ref_id is a value from the first turn's results, not from the user
        chained = json.loads(messages[7]["tool_calls"][0]["function"]["arguments"])["ref_id"]
        assert chained in messages[4]["content"] or chained in messages[3]["content"]
        assert chained not in messages[6]["content"]
    # every agent round is one batch over all rows still in that phase
    assert all(size in (3, 6) for size in serving.batches), serving.batches


def test_user_agent_reply_schema_lists_the_values_the_user_gives():
    serving = FakeLLMServing(button_responder)
    MultiTurnConversationGenerator(llm_serving=serving).process_batch(mt_rows(1, sub_tasks=2), **TWO_KEYS)
    user_schemas = [s for _, s in serving.calls if s["title"] == "UserTurnReply"]
    assert len(user_schemas) == 2
    first, follow_up = (s["properties"]["values"]["properties"] for s in user_schemas)
    (name,) = first
    assert list(first[name]["properties"]) == ["query"]  # required and not fed by a result
    assert list(follow_up.values())[0]["properties"] == {}  # ref_id is chained from the first result
    assert list(user_schemas[0]["properties"]) == ["values", "message"]  # values are chosen first


def test_user_message_must_state_the_values_it_chose():
    def responder(messages, schema):
        reply = button_responder(messages, schema)
        if schema["title"] == "UserTurnReply" and "rejected" not in messages[-1]["content"]:
            reply["message"] = "Hi, can you look that up for me?"  # the chosen query is not said
        return reply

    serving = FakeLLMServing(responder)
    (outcome,) = MultiTurnConversationGenerator(llm_serving=serving).process_batch(mt_rows(1), **MT_KEYS)
    assert outcome.status == "ok", outcome.reason
    reasks = [m for m, s in serving.calls if s["title"] == "UserTurnReply" and "rejected" in m[-1]["content"]]
    assert reasks and "ungrounded_argument" in reasks[0][-1]["content"]

    stubborn = FakeLLMServing(lambda m, s: {**button_responder(m, s), "message": "Hi, can you look that up?"}
                              if s["title"] == "UserTurnReply" else button_responder(m, s))
    (outcome,) = MultiTurnConversationGenerator(llm_serving=stubborn, max_reasks=1).process_batch(mt_rows(1), **MT_KEYS)
    assert outcome.status == "failed" and outcome.reason.startswith("ungrounded_argument:"), outcome.reason


def test_invented_argument_is_reasked_then_fails():
    def responder(messages, schema):
        reply = button_responder(messages, schema)
        if calling(schema) and "INVENT" in json.dumps(messages):
            for call in reply["tool_calls"]:
                call["arguments"] = {k: ("made-up value" if k == "query" else v) for k, v in call["arguments"].items()}
        return reply

    rows = mt_rows(2)
    rows[0]["atom_task"] += " INVENT"
    serving = FakeLLMServing(responder)
    outcomes = MultiTurnConversationGenerator(llm_serving=serving, max_reasks=2).process_batch(rows, **MT_KEYS)
    assert outcomes[0].status == "failed" and outcomes[0].reason.startswith("ungrounded_argument:"), outcomes[0].reason
    assert "made-up value" in outcomes[0].reason
    assert outcomes[1].status == "ok", outcomes[1].reason


def test_multi_turn_invalid_call_is_reasked_then_accepted():
    state = {"bad": 0}

    def responder(messages, schema):
        if calling(schema) and state["bad"] == 0:
            state["bad"] += 1
            reply = button_responder(messages, schema)
            reply["tool_calls"][0]["arguments"]["query"] = 5
            return reply
        if calling(schema) and state["bad"] == 1:
            assert "rejected: invalid_call" in messages[-1]["content"]  # the re-ask carries the errors
            state["bad"] += 1
        return button_responder(messages, schema)

    (outcome,) = MultiTurnConversationGenerator(llm_serving=FakeLLMServing(responder)).process_batch(mt_rows(1), **MT_KEYS)
    assert state["bad"] == 2
    assert outcome.status == "ok", outcome.reason


def test_multi_turn_wrong_tool_fails_after_bounded_reasks():
    def responder(messages, schema):
        if calling(schema) and "BAD" in messages[-1]["content"]:
            return {"tool_calls": [{"name": "no_such_tool", "arguments": {}}], "content": ""}
        return button_responder(messages, schema)

    rows = mt_rows(2)
    rows[0]["atom_task"] += " BAD"
    serving = CountingFake(responder)
    outcomes = MultiTurnConversationGenerator(llm_serving=serving, max_reasks=2).process_batch(rows, **MT_KEYS)
    assert outcomes[0].status == "failed"
    assert outcomes[0].reason.startswith("wrong_tools:"), outcomes[0].reason
    assert outcomes[1].status == "ok"
    bad_asks = [m for m, s in serving.calls if calling(s) and "BAD" in m[-1]["content"]]
    assert len(bad_asks) == 3  # first ask + 2 re-asks


def test_assistant_schema_is_narrowed_to_the_calls_of_the_wave():
    from dataflow.operators.conversations.multi_turn import assistant_reply_schema

    serving = FakeLLMServing(button_responder)
    rows = mt_rows(1, sub_tasks=2)
    MultiTurnConversationGenerator(llm_serving=serving).process_batch(rows, **TWO_KEYS)
    schemas = [s for _, s in serving.calls if s["title"] == "AssistantTurnReply"]
    tools = rows[0]["tools"]
    assert schemas == [
        assistant_reply_schema([tools[0]], n_calls=1), assistant_reply_schema([], n_calls=0),
        assistant_reply_schema([tools[1]], n_calls=1), assistant_reply_schema([], n_calls=0),
    ]
    variant = schemas[0]["properties"]["tool_calls"]["items"]["anyOf"][0]
    assert variant["properties"]["name"]["const"] == tools[0]["function"]["name"]
    args = variant["properties"]["arguments"]
    assert args["required"] == tools[0]["function"]["parameters"]["required"]
    assert args["properties"]["query"]["maxLength"] == 100  # bounded for decoding only
    assert "maxLength" not in tools[0]["function"]["parameters"]["properties"]["query"]
    assert schemas[1]["properties"]["content"]["minLength"] > 0


def test_multi_turn_repeated_call_is_reasked_then_fails():
    rows = mt_rows(1, sub_tasks=2)
    fn = dict(rows[0]["functions"][0], **{"x-sub-tasks": [0, 1]})  # one function serves both sub-tasks
    rows[0]["functions"] = [fn]

    def responder(messages, schema):
        if calling(schema):
            reply = button_responder(messages, schema)
            first_user = next(m for m in json.loads(json.dumps(messages))[-1]["content"].splitlines() if m.startswith("USER:"))
            reply["tool_calls"][0]["arguments"]["query"] = first_user.split("the query is ")[1].rstrip(".")
            return reply
        return button_responder(messages, schema)

    (outcome,) = MultiTurnConversationGenerator(llm_serving=FakeLLMServing(responder), max_reasks=1).process_batch(rows, **TWO_KEYS)
    assert outcome.status == "failed" and outcome.reason.startswith("repeated_call:"), outcome.reason


def test_multi_turn_stops_at_the_turn_limit():
    (outcome,) = MultiTurnConversationGenerator(llm_serving=FakeLLMServing(button_responder), max_turns=2).process_batch(
        mt_rows(1), **MT_KEYS
    )
    assert outcome.status == "failed"
    assert outcome.reason.startswith("no_final_answer:") and "2 assistant turns" in outcome.reason


def test_multi_turn_answer_without_tool_call_is_not_kept():
    def responder(messages, schema):
        if calling(schema):
            return {"tool_calls": [], "content": ""}
        return button_responder(messages, schema)

    (outcome,) = MultiTurnConversationGenerator(llm_serving=FakeLLMServing(responder), max_reasks=1).process_batch(
        mt_rows(1), **MT_KEYS
    )
    assert outcome.status == "failed" and outcome.reason.startswith("no_tool_call:")


def test_answer_that_ignores_the_results_is_reasked_then_fails():
    def responder(messages, schema):
        if answering(schema):
            return {"tool_calls": [], "content": "All done, have a nice day!"}
        return button_responder(messages, schema)

    (outcome,) = MultiTurnConversationGenerator(llm_serving=FakeLLMServing(responder), max_reasks=1).process_batch(
        mt_rows(1), **MT_KEYS
    )
    assert outcome.status == "failed" and outcome.reason.startswith("answer_ignores_results"), outcome.reason


def test_tool_result_that_echoes_the_arguments_is_reasked_then_fails():
    def responder(messages, schema):
        if schema["title"] == "ToolResultReply":
            args = json.loads(messages[-1]["content"].split("Arguments: ", 1)[1].splitlines()[0])
            return {"result": {"summary": args["query"]}}
        return button_responder(messages, schema)

    rows = mt_rows(1)
    for fn in rows[0]["functions"]:
        fn["x-response"] = {"type": "object", "properties": {"summary": {"type": "string"}}, "required": ["summary"],
                            "additionalProperties": False}
    (outcome,) = MultiTurnConversationGenerator(llm_serving=FakeLLMServing(responder), max_reasks=1).process_batch(
        rows, **MT_KEYS
    )
    assert outcome.status == "failed" and outcome.reason.startswith("result_echoes_arguments"), outcome.reason


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
    MultiTurnConversationGenerator(llm_serving=serving).process_batch(mt_rows(1, sub_tasks=2), **TWO_KEYS)
    tool_schemas = [s for _, s in serving.calls if s["title"] == "ToolResultReply"]
    assert tool_schemas
    result = tool_schemas[0]["properties"]["result"]
    assert result["required"] == ["ref_id", "summary", "count"] and result["additionalProperties"] is False


def test_tool_round_sends_each_call_its_own_function_schema():
    """Two rows with different tools in one batch: each tool-agent request carries exactly its
    function's declared response shape, so a cache key never depends on the other rows."""
    serving = FakeLLMServing(button_responder)
    rows = mt_rows(2, sub_tasks=2)
    MultiTurnConversationGenerator(llm_serving=serving).process_batch(rows, **TWO_KEYS)
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
    assert outcomes[2].status == "ok", outcomes[2].reason


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
    assert "ASSISTANT CALLS: find_" in openai and "TOOL RESULT of find_" in openai
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
            return {"checks": "Nothing books the hotel.", "reason": "Missing a step.", "problem": "missing_step"}
        return button_responder(messages, schema)

    rows = [{k: v for k, v in base_row(tag).items() if k in ("composition_task", "atom_task", "subsequent_task")}
            for tag in ("a", "REJECT", "REJECT")]
    storage = _storage(tmp_path, rows)
    report = CompositionTaskFilter(llm_serving=FakeLLMServing(judge), judge_mode="enforce").run(storage.step())
    assert report.filtered_by_reason == {"rejected_missing_step": 2} and report.rows_out == 1


def test_export_writes_openai_and_hermes(tmp_path):
    messages, tools = _valid_conversation()
    broken = {"conversations": messages[:-1], "tools": tools}
    result = export_conversations([{"conversations": messages, "tools": tools}, broken], tmp_path)
    assert result.written == 1 and sum(result.skipped.values()) == 1
    (record,) = [json.loads(line) for line in open(result.paths["openai"])]
    # the canonical record: the same conversation, call ids numbered call_0, call_1, ... in order
    assert record["parallel_tool_calls"] is True  # its second turn makes two calls
    assert [m["role"] for m in record["messages"]] == [m["role"] for m in messages]
    assert [c["function"] for m in record["messages"] for c in m.get("tool_calls") or []] == \
        [c["function"] for m in messages for c in m.get("tool_calls") or []]
    assert [m.get("tool_call_id") for m in record["messages"] if m["role"] == "tool"] == ["call_0", "call_1", "call_2"]
    assert record["tools"] == tools and [m.get("content") for m in record["messages"]] == [m.get("content") for m in messages]
    (hermes,) = [json.loads(line) for line in open(result.paths["hermes"])]
    text = json.dumps(hermes)
    assert "<tool_call>" in text and "<tool_response>" in text
    records, _ = openai_records([{"conversations": json.dumps(messages), "tools": json.dumps(tools)}])
    assert records[0]["messages"] == messages


def test_para_seq_reasks_a_copied_task_once_then_fails_the_row():
    """A reply whose parallel task copies task A (even with a word or two changed) is asked again
    with feedback (a new request); a second copy fails the row as ``restated_task``, with no
    judge spent on it."""
    from dataflow.operators.conversations import ParaSeqTaskGenerator

    def responder(messages, schema):
        user = messages[-1]["content"]
        copy = "stubborn" in user or "rejected" not in user
        task = user.split("Request A:", 1)[1].split("\n", 1)[0].strip()
        return {"parallel_task": f"{task} please" if copy else f"Look up the weather for {task}",
                "subsequent_task": "Combine both results into one short report",
                "composition_task": "Do both, then write one short report"}

    serving = FakeLLMServing(responder)
    rows = [{"atom_task": "Convert 100 USD to EUR today"}, {"atom_task": "stubborn: book a table for two"}]
    outcomes = ParaSeqTaskGenerator(llm_serving=serving).process_batch(rows)
    assert [o.status for o in outcomes] == ["ok", "failed"]
    assert outcomes[0].rows[0]["parallel_task"].startswith("Look up the weather")
    assert outcomes[1].reason.startswith("restated_task: parallel_task restates task A")
    assert len(serving.calls) == 4  # two first asks, two re-asks (batched), no third round
    reasks = [m for m, _ in serving.calls[2:]]
    assert all("previous answer was rejected" in m[-1]["content"] for m in reasks)

    no_reask = FakeLLMServing(responder)
    ParaSeqTaskGenerator(llm_serving=no_reask, max_reasks=0).process_batch(rows)
    assert len(no_reask.calls) == 2


def test_sequential_follow_up_that_restates_task_a_is_reasked():
    def responder(messages, schema):
        task = messages[-1]["content"].split("Request:", 1)[1].split("\n", 1)[0].strip()
        again = "rejected" in messages[-1]["content"]
        return {"a_result": "the amount", "subsequent_task": "Split that amount among 4 friends." if again else task,
                "composition_task": f"{task} Then split it."}

    serving = FakeLLMServing(responder)
    (outcome,) = SequentialTaskGenerator(llm_serving=serving).process_batch([{"atom_task": "Convert 250 USD to EUR."}])
    assert outcome.status == "ok" and outcome.rows[0]["subsequent_task"].startswith("Split")
    assert "restated_task" in serving.calls[1][0][-1]["content"]


def test_scenario_prompt_keeps_the_user_request_after_a_long_tool_list():
    """A Hermes-style chat opens with a long system text (the tool list); the user's request must
    still reach the prompt, first, within max_chat_chars."""
    tools = "You have these tools: " + " ".join(f'{{"name": "tool_{i}", "description": "does thing {i}"}}' for i in range(80))
    chat = [{"role": "system", "content": tools}, {"role": "user", "content": "Book a table for 4 at Nopa at 7pm"},
            {"role": "assistant", "content": "Booked."}]
    serving = FakeLLMServing(button_responder)
    (outcome,) = ScenarioExtractor(llm_serving=serving, max_chat_chars=600).process_batch([{"chat": chat}])
    assert outcome.status == "ok"
    (messages, _), = serving.calls
    prompt = messages[-1]["content"]
    assert "Book a table for 4 at Nopa at 7pm" in prompt
    assert prompt.index("Book a table") < prompt.index("tool_0")
    assert len(prompt) < 600 + 200  # the budget holds, the template's own words aside

    no_user = [{"role": "system", "content": tools}, {"role": "assistant", "content": "Hello"}]
    (outcome,) = ScenarioExtractor(llm_serving=serving).process_batch([{"chat": no_user}])
    assert outcome.status == "failed" and outcome.reason.startswith("invalid_input: the chat has no user turn")


def test_sequential_follow_up_must_use_task_a_result():
    from dataflow.operators.conversations.tasks import unused_result

    assert unused_result("Split that amount among 4 friends.", "the amount in EUR") is None
    assert unused_result("Convert the price to yen.", "the price in EUR") is None  # names A's result
    assert unused_result("What's the temperature in Lisbon?", "the weather forecast").startswith("unused_result:")

    def responder(messages, schema):
        again = "rejected" in messages[-1]["content"]
        return {"a_result": "the forecast", "subsequent_task": "Pack a bag for it." if again else "What's the time in Oslo?",
                "composition_task": "Get the forecast and pack for it."}

    serving = FakeLLMServing(responder)
    (outcome,) = SequentialTaskGenerator(llm_serving=serving).process_batch([{"atom_task": "Get the Lisbon forecast."}])
    assert outcome.status == "ok" and outcome.rows[0]["subsequent_task"] == "Pack a bag for it."
    assert "unused_result" in serving.calls[1][0][-1]["content"]


def test_a_reply_that_copies_its_instructions_is_reasked_then_fails():
    def responder(messages, schema):
        again = "rejected" in messages[-1]["content"]
        follow = "Split that amount among 4 friends." if again else "convert it, compare it, book or buy with it"
        return {"a_result": "the amount", "subsequent_task": follow, "composition_task": "Convert it then split it."}

    serving = FakeLLMServing(responder)
    (outcome,) = SequentialTaskGenerator(llm_serving=serving).process_batch([{"atom_task": "Convert 250 USD to EUR."}])
    assert outcome.status == "ok" and outcome.rows[0]["subsequent_task"].startswith("Split")
    assert "copies the instructions" in serving.calls[1][0][-1]["content"]

    stubborn = FakeLLMServing(lambda m, s: {"a_result": "the amount", "subsequent_task": "convert it, compare it, book or buy with it",
                                            "composition_task": "Convert it, then split it."})
    (outcome,) = SequentialTaskGenerator(llm_serving=stubborn).process_batch([{"atom_task": "Convert 250 USD to EUR."}])
    assert outcome.status == "failed" and outcome.reason.startswith("instruction_leak: copies the instructions")


def test_function_generator_may_resemble_its_prompt_example():
    """A weather tool described like the prompt's own example is not an instruction leak."""
    reply = button_responder([{"role": "user", "content": "Sub-tasks:\n1. x\n2. y"}], {"title": "FunctionSetReply"})
    reply["functions"][0]["description"] = "Weather forecast for a city"
    (outcome,) = FunctionGenerator(llm_serving=FakeLLMServing(lambda m, s: reply)).process_batch([base_row()])
    assert outcome.status == "ok", outcome.reason
