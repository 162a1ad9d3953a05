"""Deterministic quality checks (dataflow.quality): each check on its own with near misses, the
labelled bad conversations (each deterministic defect caught by the right code) and correct
conversations (no check fires: a check that rejects correct data is a bug)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dataflow.quality import (
    INSTRUCTION_PHRASES, answer_problems, conversation_problems, degenerate_text, instruction_leak,
    near_duplicate_tools, result_echoes_arguments, ungrounded_arguments, user_turn_problems,
)

# -- grounding ----------------------------------------------------------------------------------
TOOL = {
    "type": "function",
    "function": {
        "name": "search_hotels",
        "description": "Search hotels in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "max_price": {"type": "number"},
                "nights": {"type": "integer"},
                "sort": {"type": "string", "enum": ["price", "rating"]},
                "limit": {"type": "integer", "default": 10},
                "breakfast": {"type": "boolean"},
                "area": {"type": "string"},
                "check_in": {"type": "string"},
            },
            "required": ["city", "max_price"],
        },
    },
}


def _codes(problems):
    return [p.split(":", 1)[0] for p in problems]


@pytest.mark.parametrize(
    "context, arguments",
    [
        (["I'm in new york city"], {"city": "New York"}),
        (["My budget is $1,200 a night"], {"max_price": 1200}),
        (["My budget is 1,200"], {"max_price": 1200.0}),
        (["My budget is 1e3"], {"max_price": 1000}),
        (["My budget is 1000"], {"max_price": "1,000"}),
        (["Budget: 1.2k"], {"max_price": 1200}),
        (["for three nights"], {"nights": 3}),
        (["for twenty-five nights"], {"nights": 25}),
        (['{"total": "$86.40"}'], {"max_price": 86.4}),
        (["check in on March 15, 2024"], {"check_in": "2024-03-15"}),
        (["check in on the 15th of March"], {"check_in": "2024-03-15"}),
        (["arriving 03/15/2024"], {"check_in": "2024-03-15"}),
        (["arriving at 7pm"], {"check_in": "19:00"}),
        (["'Oslo' please"], {"city": "'oslo'"}),
        (["vegan and gluten-free please"], {"area": "vegan, gluten-free"}),
        (['{"hotels": [{"id": "H-77"}]}'], {"area": "H-77"}),
        (["book a room"], {"nights": 1}),
        (["for three days"], {"area": "3 days"}),
        (["I ran 5km"], {"area": "5 km"}),
    ],
)
def test_grounded_values_pass(context, arguments):
    assert ungrounded_arguments(arguments, TOOL, context) == []


@pytest.mark.parametrize(
    "context, arguments",
    [
        (["My budget is 10000"], {"max_price": 1000}),  # digits inside a longer number
        (["My budget is 1000"], {"max_price": 100}),
        (["Somewhere in York"], {"city": "New York"}),
        (["I'm in Oslo"], {"city": "Bergen"}),
        (["check in on March 15, 2024"], {"check_in": "2024-03-16"}),
        (["check in on March 15, 2023"], {"check_in": "2024-03-15"}),
        (["arriving at 7am"], {"check_in": "19:00"}),
        (["check in tomorrow"], {"check_in": "2024-03-15"}),
        (['{"price_id": 7}'], {"max_price": 77}),
        (["three nights"], {"nights": 30}),
        (["for three days"], {"area": "4 days"}),
        (["room 13 please"], {"area": "Room 12"}),
    ],
)
def test_near_misses_are_ungrounded(context, arguments):
    problems = ungrounded_arguments(arguments, TOOL, context)
    assert _codes(problems) == ["ungrounded_argument"], problems
    assert next(iter(arguments)) in problems[0]


# The forms in which people and tools write one value differently, as human-written answers of the
# Berkeley Function Calling Leaderboard do (benchmarks/bench_grounding_real.py): each grounds its
# value, and the near miss beside it does not.
@pytest.mark.parametrize(
    "context, value, near_miss",
    [
        ("a lawyer in Chicago", "Chicago, IL", "Chicago, Springfield"),  # place + its state
        ("hotels in Lyon", "Lyon, France", "Lyon, Paris"),  # a city is no region
        ("sales tax in Chicago, Illinois", "IL", "CA"),  # a state by code and by name
        ("somewhere in CA please", "California", "Colorado"),
        ("convert 200 British pounds", "GBP", "USD"),  # a currency by code and by name
        ("Convert 150 Euros to Canadian dollars", "CAD", "AUD"),
        ("How much are 10 dollars in yen?", "JPY", "USD"),  # a bare dollar names no currency
        ("15 kilometers into miles", "km", "m"),  # a unit by symbol and by name
        ("a circle with a radius of 5cm", "cm", "mm"),
        ("a board 24 inches long in Paris", "inch", "foot"),
        ("a hotel in Paris", "Paris", "inch"),  # the preposition "in" names no unit
        ("from July 10, 2022", "07-10-2022", "07-11-2022"),  # dates however written
        ("on Jun.20,2023", "2023-06-20", "2023-06-21"),
        ("closing March.11, 2022", "2022-03-11", "2022-03-12"),
        ("from 15th October,2023", "15-10-2023", "16-10-2023"),
        ("AQI in London 2022/08/16", "08-16-2022", "08-17-2022"),
        ("visiting next month (Feb)", "February", "March"),  # a month by name or abbreviation
        ("the top player in woman tennis", "women", "men"),  # an irregular plural
    ],
)
def test_a_value_written_in_another_form_is_grounded(context, value, near_miss):
    assert ungrounded_arguments({"v": value}, None, [context]) == []
    assert _codes(ungrounded_arguments({"v": near_miss}, None, [context])) == ["ungrounded_argument"]


@pytest.mark.parametrize(
    "context, value, near_miss",
    [
        ("cash_flows=[200,300,400,500]", 300, 350),  # a list written without spaces
        ("revenues of $1M in 2019 and $1.2M in 2020", 1200000, 1300000),
        ("rolling a six twice in a row", 2, 3),
        ("a capacitance of 100µF", 0.0001, 0.001),  # a quantity grounds its value in SI base units
        ("a track of 3 minutes", 180, 120),
        ("a run of 15 km", 15000, 1500),
        ("a permittivity of 8.854 x 10^-12 F/m", 8.854e-12, 8.854e-11),  # scientific notation as typed
        ("the offset is 0", 0, 1e-10),  # a small number is not zero
        ("movies out next week", 7, 14),  # a period word and the count it implies
        ("for three weeks", 3, 7),  # ... but not when a number counts the periods
        ("compounded quarterly", 4, 12),
        ("the car starts from rest", 0, 2),
        ("open until at least 11 PM", 23, 11.5),  # an hour as a number
    ],
)
def test_numbers_written_as_lists_scales_and_words(context, value, near_miss):
    assert ungrounded_arguments({"n": value}, None, [context]) == []
    assert _codes(ungrounded_arguments({"n": near_miss}, None, [context])) == ["ungrounded_argument"]


def test_the_ungrounded_message_names_the_context_it_was_looked_for_in():
    [problem] = ungrounded_arguments({"n": 7}, None, ["n is 5"], missing_from="the query")
    assert problem == "ungrounded_argument: n=7 is not in the query"


def test_spec_grounds_enum_default_boolean_and_empty_optional_values():
    arguments = {"city": "Oslo", "max_price": 90, "sort": "rating", "limit": 10, "breakfast": False, "area": None}
    assert ungrounded_arguments(arguments, TOOL, ["Hotels in Oslo under 90 euros"]) == []
    # a value outside the enum, a limit that is not the default, an empty required value
    bad = {"city": "", "max_price": 90, "sort": "distance", "limit": 5}
    problems = ungrounded_arguments(bad, TOOL, ["Hotels in Oslo under 90 euros"])
    assert sorted(p.split("=")[0] for p in problems) == [
        "ungrounded_argument: city", "ungrounded_argument: limit", "ungrounded_argument: sort",
    ]


def test_nested_values_are_checked_leaf_by_leaf_and_without_a_tool():
    arguments = {"stops": [{"city": "Oslo"}, {"city": "Rome"}], "note": {"text": "window seat"}}
    problems = ungrounded_arguments(arguments, None, ["Oslo then Paris, window seat please"])
    assert problems == ['ungrounded_argument: stops[1].city="Rome" appears in no earlier user turn or tool result']


def test_no_arguments_is_nothing_to_ground_but_an_empty_required_object_is_not_grounded():
    assert ungrounded_arguments({}, TOOL, ["hi"]) == []
    nested = {"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"filters": {"type": "object"}}, "required": ["filters"]}}}
    assert _codes(ungrounded_arguments({"filters": {}}, nested, ["hi"])) == ["ungrounded_argument"]


def test_json_keys_are_not_evidence():
    assert _codes(ungrounded_arguments({"area": "price"}, TOOL, ['{"price": 12}'])) == ["ungrounded_argument"]


def test_composed_message_needs_its_numbers_and_most_words_from_context():
    context = ["Tell Ann the dinner at Nopa moved to 8pm on Friday", '{"status": "confirmed"}']
    ok = {"area": "Hi Ann, the dinner at Nopa is confirmed for Friday at 8pm"}
    assert ungrounded_arguments(ok, TOOL, context) == []
    wrong_number = {"area": "Hi Ann, the dinner at Nopa is confirmed for Friday at 9pm"}
    invented = {"area": "Hello Bob, lunch tomorrow at the harbour cafe instead"}
    assert _codes(ungrounded_arguments(wrong_number, TOOL, context)) == ["ungrounded_argument"]
    assert _codes(ungrounded_arguments(invented, TOOL, context)) == ["ungrounded_argument"]


# -- echo ---------------------------------------------------------------------------------------
def test_result_that_repeats_its_arguments_is_an_echo():
    assert result_echoes_arguments({"budget_us": 1000}, '{"budget_us": 1000}').startswith("result_echoes_arguments:")
    assert result_echoes_arguments({"budget_us": 1000}, {"usd": "1,000", "done": True})
    assert result_echoes_arguments({"text": "Hello"}, "hello")


def test_result_with_a_value_of_its_own_is_not_an_echo():
    assert result_echoes_arguments({"budget_us": 1000}, '{"budget_us": 1000, "eur": 921.5}') is None
    assert result_echoes_arguments({"budget_us": 1000}, '{"budget_us": 10000}') is None
    assert result_echoes_arguments({"city": "Oslo"}, '{"ok": true}') is None
    assert result_echoes_arguments({"city": "Oslo"}, '{"forecast": "Rain", "city": "Oslo"}') is None


def test_echo_compares_strings_as_written():
    pretty = '{"formatted": "{\\n    \\"a\\": 1\\n}"}'
    assert result_echoes_arguments({"document": '{"a": 1}'}, pretty) is None


# -- degenerate text ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, fragment",
    [
        ("Baked Chicken, " + "Vegan " * 14, "'vegan' repeated 14 times"),
        ('{"recipes": "Avocado Toast, ' + "Vegan " * 14 + '"}', "'vegan' repeated 14 times"),
        ("I am sorry I am sorry I am sorry I am sorry", "'i am sorry' repeated 4 times"),
        ("Your train number is " + "3" * 120, "120-digit number"),
        ("Done!!!!!!!!!!!!!!!!!!!!!!!!", "'!' repeated"),
        ("rain and rain, rain then rain, more rain, rain rain, rain here rain", "'rain'"),
        ("The view is lovely. The pool is open. The view is lovely! Breakfast at 8. The view is lovely.", "sentence"),
    ],
)
def test_degenerate_text_is_flagged(text, fragment):
    problem = degenerate_text(text)
    assert problem is not None and problem.startswith("degenerate_text: ") and fragment in problem, problem


@pytest.mark.parametrize(
    "text",
    [
        "The forecast for Lisbon is sunny with a high of 24 degrees, then light rain on Sunday.",
        '[{"available": true, "room": "A"}, {"available": true, "room": "A"}, {"available": true, "room": "A"}]',
        '{"temperatures": [20, 20, 20, 20, 21, 22]}',
        "Readings: 0, 0, 0, 0, 0, 1, 1, 1, 1",
        "again and again and again",
        "very very very good",
        "Vegan Pasta, Vegan Soup, Vegan Salad, Vegan Curry, Vegan Stew, Vegan Cake",
        "Tracking 9400111899223197428490 is delivered",  # 22 digits: a real USPS number
        "Sunny and warm. Sunny and warm. Cloudy later. Sunny and warm.",  # short sentences may recur
        "===================================",
        "",
    ],
)
def test_normal_text_is_not_degenerate(text):
    assert degenerate_text(text) is None


# -- instruction leak ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, phrase",
    [
        ("What are some vegan recipes, keeping vegan's concrete values?", "concrete value"),
        ("This task does not require Task A's result.", "task A"),
        ("Please do the first subtask", "sub-task"),
        ("Then do the sub task", "sub-task"),
        ("Here is the composed task", "composed task"),
        ("Answer the user's request quickly", "the user's request"),
        ("Send it back as JSON", "JSON"),
        ("As an AI, I want flights", "as an AI"),
    ],
)
def test_instruction_leak_found(text, phrase):
    problem = instruction_leak(text)
    assert problem is not None and problem.startswith("instruction_leak: ") and repr(phrase) in problem


@pytest.mark.parametrize(
    "text", ["Add a task a day to my list", "Is task B-12 done? No.", "Find concrete suppliers in Oslo", "Convert user's budget"]
)
def test_ordinary_words_are_not_a_leak(text):
    assert instruction_leak(text) is None


def test_instruction_leak_extra_phrases_and_the_one_constant():
    assert "concrete value" in INSTRUCTION_PHRASES and "JSON" in INSTRUCTION_PHRASES
    assert instruction_leak("Write the scenario now") is None
    assert instruction_leak("Write the scenario now", extra_phrases=("the scenario",)) == "instruction_leak: 'the scenario'"


# -- user turns ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, code",
    [
        ("What is your budget in US dollars?", "user_asks_own_facts"),
        ("what is my budget?", "user_asks_own_facts"),
        ("What's my dietary restriction again?", "user_asks_own_facts"),
        ("Can you tell me my favorite cuisine?", "user_asks_own_facts"),
        ("Great! Is there anything else I can help you with?", "user_role_reversal"),
        ("Find recipes, keeping the concrete values", "instruction_leak"),
        ("Oslo " * 10, "degenerate_text"),
    ],
)
def test_user_turn_problems(text, code):
    assert code in _codes(user_turn_problems(text))


@pytest.mark.parametrize(
    "text",
    [
        "What is the weather in my city, Oslo?",
        "What's my account balance on card ending 4421?",
        "Where is my order 5521?",
        "My budget is $1,200. What hotels in Rome fit?",
        "What are my options for flights to Denver on June 2?",
    ],
)
def test_normal_requests_pass(text):
    assert user_turn_problems(text) == []


def test_repeated_user_turn():
    earlier = ["What is the weather in Oslo today?", "Thanks, and tomorrow?"]
    problems = user_turn_problems("what's the weather in Oslo today", earlier)
    assert _codes(problems) == ["repeated_user_turn"] and "user turn 0" in problems[0]
    assert user_turn_problems("What is the weather in Bergen next week?", earlier) == []


# -- tools --------------------------------------------------------------------------------------
def _tool(name, description=""):
    return {"type": "function", "function": {"name": name, "description": description, "parameters": {"type": "object"}}}


def test_near_duplicate_tools_by_name_suffix_and_by_name_and_description():
    tools = [_tool("search_recipes", "Find recipes"), _tool("search_recipes_2", "Look up dishes"),
             _tool("search_recipes_3", "Recipes"), _tool("get_weather", "Weather for a city")]
    assert near_duplicate_tools(tools) == ["near_duplicate_tools: search_recipes, search_recipes_2, search_recipes_3"]
    similar = [_tool("get_stock_quote", "Get the latest stock price for a ticker symbol"),
               _tool("get_stock_quotes", "Get the latest stock prices for a ticker symbol")]
    assert _codes(near_duplicate_tools(similar)) == ["near_duplicate_tools"]
    described = [_tool("fetch_price", "Get the latest share price for a stock ticker symbol"),
                 _tool("fetch_prices", "Get the latest share price for a stock ticker symbol today")]
    assert _codes(near_duplicate_tools(described)) == ["near_duplicate_tools"]


def test_a_tool_declared_twice_is_a_duplicate():
    assert near_duplicate_tools([_tool("get_weather", "a"), _tool("get_weather", "b")]) == [
        "near_duplicate_tools: get_weather, get_weather"]


def test_distinct_tools_are_not_near_duplicates():
    tools = [_tool("celsius_to_fahrenheit", "Convert a temperature from Celsius to Fahrenheit"),
             _tool("fahrenheit_to_celsius", "Convert a temperature from Fahrenheit to Celsius"),
             _tool("get_weather_forecast", "Daily weather forecast for a city"),
             _tool("suggest_packing_list", "Suggest what to pack for a weather forecast"),
             _tool("search_flights", "Search flights"), _tool("book_flight", "Book a flight")]
    assert near_duplicate_tools(tools) == []


# -- answers ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "answer, results",
    [
        ("The tip is $12.96.", ['{"tip": 12.96}']),
        ("A tip of about $13.", ['{"tip": 12.956}']),  # rounded
        ("Your total is $1,104.50.", ['{"amount": 1104.5}']),
        ("It will be 7:30 pm there.", ['{"time": "19:30"}']),
        ("It arrives on May 8.", ['{"eta": "2025-05-08"}']),
        ("Yes, the room is available.", ['{"available": true}']),
        ("Expect light rain later today.", ['{"forecast": "Light rain in the afternoon"}']),
        ("Booked at Monteverde.", ['{"ok": true}', '{"name": "Monteverde"}']),
        ("Done.", ['{"ok": null}']),  # nothing to compare
        ("Sure, here you go.", []),  # a turn without results
        ("Das Meeting ist am Montag.", ['{"translation": "Das Meeting ist am Montag."}']),  # the only result
        ("I could not find any flights on that date.", ['{"error": "No flights found"}']),
    ],
)
def test_answer_drawing_on_results_passes(answer, results):
    assert answer_problems(answer, results) is None


def test_answer_problems_codes():
    assert answer_problems("", ['{"tip": 12.96}']).startswith("missing_final_answer: ")
    assert answer_problems("   ", []).startswith("missing_final_answer: ")
    ignored = answer_problems("The cost of the dinner is $86.40.", ['{"tip": 101.95}'])
    assert ignored.startswith("answer_ignores_results: ") and "101.95" in ignored
    assert answer_problems("It costs $1000.", ['{"price": 10000}']).startswith("answer_ignores_results: ")
    assert answer_problems("You need 1 cup.", ['{"cups": 0.6}']).startswith("answer_ignores_results: ")
    copied = answer_problems("Baked chicken with tofu", ['{"recipes": "Baked chicken with tofu"}', '{"recipes": "Vegan soup"}'])
    assert copied.startswith("answer_copies_result: ") and "result 0" in copied


# -- conversations ------------------------------------------------------------------------------
DATA = Path(__file__).parent / "data" / "quality"
BAD = [json.loads(line) for line in (DATA / "bad_conversations.jsonl").read_text().splitlines() if line.strip()]
GOOD = [json.loads(line) for line in (DATA / "good_conversations.jsonl").read_text().splitlines() if line.strip()]

#: Each labelled defect (by its leading code) -> the code that must report it, or None when only a
#: judge (an LLM reading the meaning) can tell: whether a recipe is vegan, a tip smaller than its
#: bill, a price the right stock's, an argument the very value asked for, an answer sensible.
DEFECT_CODES = {
    "user_turn_asks_assistant_for_user_facts": "user_asks_own_facts",
    "ungrounded_argument": "ungrounded_argument",
    "tool_result_echoes_arguments": "result_echoes_arguments",
    "final_answer_meaningless": None,
    "template_leak_in_user_turn": "instruction_leak",
    "near_duplicate_tools": "near_duplicate_tools",
    "invented_argument": "instruction_leak",  # keep_concrete: its description is the prompt's own words
    "degenerate_tool_result": "degenerate_text",
    "tool_result_contradicts_call": None,
    "final_answer_copies_one_result_verbatim": "answer_copies_result",
    "user_turn_already_contains_the_answer": "user_states_answer",
    "argument_is_the_answer": None,
    "tool_result_contradicts_conversation": None,
    "final_answer_contradicts_user": None,
    "user_turn_lacks_the_values_needed": "ungrounded_argument",
    "implausible_tool_result": None,
    "final_answer_ignores_tool_result": "answer_ignores_results",
    "declared_tool_never_called": "unused_tool",
}


@pytest.mark.parametrize("row", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_each_bad_conversation_is_flagged_with_the_codes_of_its_defects(row):
    problems = conversation_problems(row["messages"], row["tools"])
    assert problems, "a conversation labelled wrong passed every check"
    codes = set(_codes(problems))
    for defect in row["defects"]:
        label = defect.split(":", 1)[0]
        assert label in DEFECT_CODES, f"unmapped defect {defect!r}"
        expected = DEFECT_CODES[label]
        if expected is not None:
            assert expected in codes, f"{defect!r} not caught as {expected}: {problems}"


def test_bad_conversation_details_name_the_evidence():
    budget, recipes, stock, dinner = (conversation_problems(r["messages"], r["tools"]) for r in BAD)
    assert any(p.startswith("ungrounded_argument:") and "budget_us=1000" in p for p in budget)
    assert any(p.startswith("degenerate_text:") and "'vegan' repeated 14 times" in p for p in recipes)
    assert "near_duplicate_tools: search_recipes, search_recipes_2, search_recipes_3" in recipes
    assert any(p.startswith("user_states_answer:") and "131.7" in p for p in stock)
    assert any(p.startswith("ungrounded_argument:") and "total_cost=86.4" in p for p in dinner)
    assert "unused_tool: calculate_total_cost is declared but never called" in dinner
    assert any(p.startswith("instruction_leak: tool calculate_total_cost") for p in dinner)


@pytest.mark.parametrize("row", GOOD, ids=[r["domain"] for r in GOOD])
def test_correct_conversations_pass_every_check(row):
    assert conversation_problems(row["messages"], row["tools"]) == []


def test_good_set_covers_what_correct_data_does():
    """The good set exercises what a check could wrongly reject: several domains, two user turns,
    chained and parallel calls, and values written differently in the call and the user turn."""
    assert len(GOOD) >= 12 and len({r["domain"] for r in GOOD}) == len(GOOD)
    two_turns = [r for r in GOOD if sum(m["role"] == "user" for m in r["messages"]) >= 2]
    assert len(two_turns) >= 12
    parallel = [r for r in GOOD if any(len(m.get("tool_calls") or []) > 1 for m in r["messages"])]
    assert len(parallel) >= 3
    arguments = [c["function"]["arguments"] for r in GOOD for m in r["messages"] for c in m.get("tool_calls") or []]
    users = " ".join(m["content"] for r in GOOD for m in r["messages"] if m["role"] == "user")
    for written, passed in [("$1,200", '"amount": 1200'), ("three days", '"days": 3'), ("March 15, 2025", "2025-03-15"),
                            ("7:30 pm", '"19:30"'), ("$350k", '"principal": 350000'), ("four of us", '"party_size": 4')]:
        assert written in users and any(passed in a for a in arguments), written


# Mutations of correct conversations: each breaks one rubric line, and the check for it must say so.
def _last(messages, predicate):
    return max(i for i, m in enumerate(messages) if predicate(m))


def _invent_argument(row):
    index = _last(row["messages"], lambda m: m.get("tool_calls"))
    call = row["messages"][index]["tool_calls"][0]["function"]
    arguments = json.loads(call["arguments"])
    tool = next(t for t in row["tools"] if t["function"]["name"] == call["name"])
    properties = tool["function"]["parameters"]["properties"]
    name = next(k for k, s in properties.items() if s["type"] in ("string", "number", "integer") and "enum" not in s)
    arguments[name] = "Zanzibar Harbour" if properties[name]["type"] == "string" else 987654
    call["arguments"] = json.dumps(arguments)
    return "ungrounded_argument"


def _echo_result(row):
    index = _last(row["messages"], lambda m: m["role"] == "tool")
    call_id = row["messages"][index]["tool_call_id"]
    call = next(c for m in row["messages"] for c in m.get("tool_calls") or [] if c["id"] == call_id)
    row["messages"][index]["content"] = call["function"]["arguments"]
    return "result_echoes_arguments"


def _degenerate_result(row):
    index = _last(row["messages"], lambda m: m["role"] == "tool")
    row["messages"][index]["content"] = json.dumps({"result": "Great " * 12})
    return "degenerate_text"


def _ignore_results(row):
    index = _last(row["messages"], lambda m: m["role"] == "tool")
    row["messages"][index + 1]["content"] = "I hope this helps you plan everything!"
    return "answer_ignores_results"


def _drop_final_answer(row):
    index = _last(row["messages"], lambda m: m["role"] == "tool")
    del row["messages"][index + 1:]
    return "missing_final_answer"


def _leak_second_user_turn(row):
    index = _last(row["messages"], lambda m: m["role"] == "user")
    row["messages"][index]["content"] += " Use the result of task A."
    return "instruction_leak"


def _declare_unused_tool(row):
    row["tools"].append(_tool("delete_account", "Delete the user's account"))
    return "unused_tool"


def _duplicate_a_tool(row):
    copy = json.loads(json.dumps(row["tools"][0]))
    copy["function"]["name"] += "_2"
    row["tools"].append(copy)
    return "near_duplicate_tools"


def _repeat_a_call(row):
    index = _last(row["messages"], lambda m: m.get("tool_calls"))
    calls = row["messages"][index]["tool_calls"]
    again = json.loads(json.dumps(calls[0]))
    again["id"] += "_again"
    again["function"]["arguments"] = json.dumps(dict(reversed(json.loads(again["function"]["arguments"]).items())))
    calls.append(again)
    result = next(m for m in row["messages"][index:] if m.get("tool_call_id") == calls[0]["id"])
    row["messages"].insert(index + len(calls), {**result, "tool_call_id": again["id"]})
    return "repeated_call"


MUTATIONS = [_invent_argument, _echo_result, _degenerate_result, _ignore_results, _drop_final_answer,
             _leak_second_user_turn, _declare_unused_tool, _duplicate_a_tool, _repeat_a_call]


@pytest.mark.parametrize("mutate", MUTATIONS, ids=[m.__name__.strip("_") for m in MUTATIONS])
def test_breaking_a_correct_conversation_is_caught(mutate):
    for good in GOOD:
        row = json.loads(json.dumps(good))
        expected = mutate(row)
        codes = _codes(conversation_problems(row["messages"], row["tools"]))
        assert expected in codes, f"{row['domain']}: {expected} not in {codes}"


def _user(text):
    return {"role": "user", "content": text}


def _calls(*calls):
    """An assistant message calling ``(id, name, arguments)`` for each call."""
    return {"role": "assistant", "content": None, "tool_calls": [
        {"id": i, "type": "function", "function": {"name": n, "arguments": json.dumps(a)}} for i, n, a in calls]}


def _result(call_id, value):
    return {"role": "tool", "tool_call_id": call_id, "content": json.dumps(value)}


def _answer(text):
    return {"role": "assistant", "content": text}


def test_only_what_stands_before_a_call_grounds_it():
    """A value from a later result, or from a parallel sibling's result, is not grounded."""
    tools = [_tool("search_flights", "Search flights"), _tool("book_flight", "Book a flight")]
    search = ("s", "search_flights", {"origin": "Boston", "destination": "Denver"})
    book = ("b", "book_flight", {"flight_number": "WN 2210"})
    flights = {"flights": [{"flight": "WN 2210", "price_usd": 189}]}
    chained = [_user("Flights from Boston to Denver, and book the cheapest"), _calls(search), _result("s", flights),
               _calls(book), _result("b", {"ref": "K7QX2P"}), _answer("Booked WN 2210 for $189, reference K7QX2P.")]
    assert conversation_problems(chained, tools) == []
    parallel = [*chained[:1], _calls(search, book), _result("s", flights), _result("b", {"ref": "K7QX2P"}), chained[-1]]
    problems = conversation_problems(parallel, tools)
    assert [p for p in problems if "WN 2210" in p and p.startswith("ungrounded_argument:")], problems


def test_a_user_turn_after_unanswered_results_is_a_missing_answer():
    messages = [_user("Convert 100 USD to EUR"), _calls(("c", "convert", {"amount": 100})), _result("c", {"eur": 92.1}),
                _user("And to GBP?"), _answer("Sorry, I can only convert to euros: 100 USD is 92.1 EUR.")]
    assert _codes(conversation_problems(messages, [_tool("convert", "Convert dollars to euros")])) == ["missing_final_answer"]


def test_unreadable_call_is_reported_not_guessed_at():
    call = _calls(("c", "get_weather", {}))
    call["tool_calls"][0]["function"]["arguments"] = "{oops"
    messages = [_user("Weather in Oslo"), call, _result("c", {"forecast": "Rain"}), _answer("Rain in Oslo.")]
    problems = conversation_problems(messages, [_tool("get_weather", "Weather for a city")])
    assert _codes(problems) == ["invalid_call", "unused_tool"]


def test_import_is_light():
    code = "import sys, dataflow.quality; print(any(m in sys.modules for m in ('rapidfuzz', 'dateutil', 'jsonschema')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_an_id_that_looks_like_a_huge_exponent_is_not_a_number():
    from dataflow.quality._values import numbers_in

    assert numbers_in("ref_id-8e0796-a719 and 1e3") == (1000.0,)
    assert ungrounded_arguments({"ref": "ref_id-8e0796-a719"}, None, ["the ref is ref_id-8e0796-a719"]) == []


def test_prompt_echo_catches_copied_instructions_not_shared_words():
    from dataflow.quality import prompt_echo

    instructions = ("subsequent_task: a DIFFERENT action the person wants next that takes that value as its input "
                    "(for example: convert it, compare it, book or buy with it, send it, plan with it).")
    assert prompt_echo("it, compare it, book or buy with it, send it, plan with it", instructions).startswith(
        "instruction_leak: copies the instructions")
    assert prompt_echo("Convert that price to yen and book the cheaper one.", instructions) is None
    assert prompt_echo("short", instructions) is None


def test_a_default_stated_in_the_parameter_description_is_allowed():
    """Real specs (BFCL's among them) often state a default in the description, not in ``default``."""
    tool = {"name": "area", "parameters": {"type": "object", "properties": {
        "radius": {"type": "number"},
        "unit": {"type": "string", "description": "Unit of the radius. Default is 'cm'."},
        "gravity": {"type": "number", "description": "Default value is 9.81 m/s^2, earth's gravity."},
        "z": {"type": "number", "description": "The z-coordinate. Default is zero."},
        "eps": {"type": "number", "description": "Permittivity of the medium, default is 8.854e-12."}}}}
    assert ungrounded_arguments({"radius": 3, "unit": "cm", "gravity": 9.81, "z": 0, "eps": 8.854e-12}, tool,
                                ["radius 3"]) == []
    problems = ungrounded_arguments({"radius": 3, "unit": "mm", "gravity": 9.8, "z": 1}, tool, ["radius 3"])
    assert sorted(p.split("=")[0] for p in problems) == [
        "ungrounded_argument: gravity", "ungrounded_argument: unit", "ungrounded_argument: z"]
