"""Deterministic quality checks (dataflow.quality): each check on its own with near misses, the
labelled bad conversations (each deterministic defect caught by the right code) and correct
conversations (no check fires: a check that rejects correct data is a bug)."""

from __future__ import annotations

import pytest

from dataflow.quality import result_echoes_arguments, ungrounded_arguments

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
    ],
)
def test_near_misses_are_ungrounded(context, arguments):
    problems = ungrounded_arguments(arguments, TOOL, context)
    assert _codes(problems) == ["ungrounded_argument"], problems
    assert next(iter(arguments)) in problems[0]


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
