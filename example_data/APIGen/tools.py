"""Example tools for the APIGen pipeline: real, executable, deterministic (no network).

Each function is written once; `dataflow` derives its OpenAI spec from the type hints and the
Google-style docstring (`function_definitions.json` holds the result). Bounds and formats live in
`Annotated[..., {...}]`; a rule spanning several arguments lives in `tool_schema_extra`.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from datetime import date, datetime, timedelta
from typing import Annotated, Literal, Optional

__all__ = [
    "get_weather_forecast", "convert_currency", "calculate_loan_payment", "search_recipes",
    "book_flight", "calculate_bmi", "count_words", "schedule_meeting", "prime_factors",
    "convert_length",
]

_RATES_TO_USD = {"USD": 1.0, "EUR": 1.08, "GBP": 1.27, "JPY": 0.0067, "CHF": 1.13, "CAD": 0.73, "INR": 0.012}
_RECIPES = [
    {"name": "Tomato basil pasta", "ingredients": ["pasta", "tomato", "basil", "garlic"], "diets": ["vegetarian", "vegan"]},
    {"name": "Chickpea curry", "ingredients": ["chickpeas", "tomato", "onion", "rice"], "diets": ["vegetarian", "vegan", "gluten_free"]},
    {"name": "Chicken stir fry", "ingredients": ["chicken", "rice", "pepper", "soy sauce"], "diets": []},
    {"name": "Omelette", "ingredients": ["egg", "cheese", "onion"], "diets": ["vegetarian", "gluten_free"]},
    {"name": "Lentil soup", "ingredients": ["lentils", "carrot", "onion", "garlic"], "diets": ["vegetarian", "vegan", "gluten_free"]},
    {"name": "Beef tacos", "ingredients": ["beef", "tortilla", "tomato", "cheese"], "diets": []},
    {"name": "Greek salad", "ingredients": ["tomato", "cucumber", "feta", "olive"], "diets": ["vegetarian", "gluten_free"]},
]
_LENGTH_IN_METRES = {"mm": 0.001, "cm": 0.01, "m": 1.0, "km": 1000.0, "in": 0.0254, "ft": 0.3048, "mi": 1609.344}


def _seed(*parts: object) -> int:
    return int(hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:8], 16)


def get_weather_forecast(
    city: Annotated[str, {"minLength": 2}],
    days: Annotated[int, {"minimum": 1, "maximum": 14}] = 1,
    unit: Literal["celsius", "fahrenheit"] = "celsius",
) -> dict:
    """Get a daily weather forecast for a city.

    Args:
        city: Name of the city, e.g. "Lisbon".
        days: Number of days to forecast, from 1 to 14.
        unit: Temperature unit.
    """
    out = []
    for day in range(days):
        celsius = 5 + _seed(city.lower(), day) % 25
        temp = celsius if unit == "celsius" else round(celsius * 9 / 5 + 32, 1)
        out.append({"day": day + 1, "high": temp, "conditions": ["sunny", "cloudy", "rain", "windy"][_seed(city, day, "c") % 4]})
    return {"city": city, "unit": unit, "forecast": out}


def convert_currency(
    amount: Annotated[float, {"exclusiveMinimum": 0}],
    from_currency: Literal["USD", "EUR", "GBP", "JPY", "CHF", "CAD", "INR"],
    to_currency: Literal["USD", "EUR", "GBP", "JPY", "CHF", "CAD", "INR"],
) -> dict:
    """Convert an amount of money between currencies at a fixed reference rate.

    Args:
        amount: Amount to convert; must be positive.
        from_currency: ISO 4217 code of the source currency.
        to_currency: ISO 4217 code of the target currency.
    """
    converted = amount * _RATES_TO_USD[from_currency] / _RATES_TO_USD[to_currency]
    return {"amount": amount, "from": from_currency, "to": to_currency, "result": round(converted, 2)}


def calculate_loan_payment(
    principal: Annotated[float, {"exclusiveMinimum": 0}],
    annual_rate_percent: Annotated[float, {"minimum": 0, "maximum": 50}],
    years: Annotated[int, {"minimum": 1, "maximum": 40}],
) -> dict:
    """Compute the fixed monthly payment of an amortised loan.

    Args:
        principal: Amount borrowed.
        annual_rate_percent: Yearly interest rate in percent, e.g. 4.5.
        years: Duration of the loan in years.
    """
    months = years * 12
    rate = annual_rate_percent / 100 / 12
    payment = principal / months if rate == 0 else principal * rate / (1 - (1 + rate) ** -months)
    return {"monthly_payment": round(payment, 2), "total_paid": round(payment * months, 2)}


def search_recipes(
    ingredients: Annotated[list[str], {"minItems": 1, "maxItems": 5}],
    diet: Literal["any", "vegetarian", "vegan", "gluten_free"] = "any",
    max_results: Annotated[int, {"minimum": 1, "maximum": 10}] = 3,
) -> list:
    """Find recipes that use the given ingredients.

    Args:
        ingredients: Ingredients the recipe should contain (1 to 5).
        diet: Dietary restriction the recipe must satisfy.
        max_results: Maximum number of recipes to return.
    """
    wanted = {i.lower().strip() for i in ingredients}
    scored = []
    for recipe in _RECIPES:
        if diet != "any" and diet not in recipe["diets"]:
            continue
        hits = len(wanted & set(recipe["ingredients"]))
        if hits:
            scored.append((-hits, recipe["name"]))
    return [name for _, name in sorted(scored)[:max_results]]


def book_flight(
    origin: Annotated[str, {"pattern": "^[A-Z]{3}$"}],
    destination: Annotated[str, {"pattern": "^[A-Z]{3}$"}],
    departure_date: Annotated[str, {"format": "date"}],
    trip_type: Literal["one_way", "round_trip"] = "one_way",
    return_date: Annotated[Optional[str], {"format": "date"}] = None,
    passengers: Annotated[int, {"minimum": 1, "maximum": 9}] = 1,
) -> dict:
    """Book a flight between two airports.

    Args:
        origin: IATA code of the departure airport, e.g. "LIS".
        destination: IATA code of the arrival airport, e.g. "JFK".
        departure_date: Departure date, YYYY-MM-DD.
        trip_type: One way or round trip; a round trip needs a return_date.
        return_date: Return date, YYYY-MM-DD (round trips only).
        passengers: Number of passengers, 1 to 9.
    """
    if origin == destination:
        raise ValueError("origin and destination must differ")
    leave = date.fromisoformat(departure_date)
    if return_date is not None and date.fromisoformat(return_date) < leave:
        raise ValueError("return_date is before departure_date")
    ref = f"{origin}{destination}{_seed(origin, destination, departure_date, passengers) % 100000:05d}"
    return {"booking_reference": ref, "trip_type": trip_type, "passengers": passengers,
            "price_eur": 80 * passengers * (2 if trip_type == "round_trip" else 1)}


book_flight.tool_schema_extra = {  # type: ignore[attr-defined]
    "if": {"properties": {"trip_type": {"const": "round_trip"}}, "required": ["trip_type"]},
    "then": {"required": ["return_date"]},
}


def calculate_bmi(
    weight_kg: Annotated[float, {"exclusiveMinimum": 0, "maximum": 500}],
    height_m: Annotated[float, {"exclusiveMinimum": 0, "maximum": 3}],
) -> dict:
    """Compute the body mass index and its WHO category.

    Args:
        weight_kg: Body weight in kilograms.
        height_m: Height in metres, e.g. 1.75.
    """
    bmi = weight_kg / (height_m ** 2)
    category = "underweight" if bmi < 18.5 else "normal" if bmi < 25 else "overweight" if bmi < 30 else "obese"
    return {"bmi": round(bmi, 1), "category": category}


def count_words(
    text: Annotated[str, {"minLength": 1, "maxLength": 5000}],
    top_n: Annotated[int, {"minimum": 1, "maximum": 50}] = 5,
    ignore_case: bool = True,
) -> dict:
    """Count the words of a text and list the most frequent ones.

    Args:
        text: The text to analyse.
        top_n: How many of the most frequent words to return.
        ignore_case: Whether "The" and "the" count as the same word.
    """
    words = re.findall(r"[\w']+", text.lower() if ignore_case else text)
    return {"total_words": len(words), "most_common": Counter(words).most_common(top_n)}


def schedule_meeting(
    title: Annotated[str, {"minLength": 3, "maxLength": 100}],
    attendees: Annotated[list[str], {"minItems": 1, "items": {"type": "string", "format": "email"}}],
    start_time: Annotated[str, {"format": "date-time"}],
    duration_minutes: Annotated[int, {"minimum": 15, "maximum": 480}] = 30,
    recurrence: Literal["none", "daily", "weekly", "monthly"] = "none",
    occurrences: Annotated[Optional[int], {"minimum": 2, "maximum": 52}] = None,
) -> dict:
    """Schedule a meeting, optionally repeating.

    Args:
        title: Meeting title.
        attendees: Email addresses of the people to invite.
        start_time: Start, ISO 8601 date-time such as 2025-03-14T09:30:00.
        duration_minutes: Length of the meeting in minutes.
        recurrence: How often the meeting repeats.
        occurrences: Number of meetings in the series; only with a recurrence.
    """
    start = datetime.fromisoformat(start_time)
    step = {"none": None, "daily": timedelta(days=1), "weekly": timedelta(weeks=1), "monthly": timedelta(days=30)}[recurrence]
    count = occurrences or 1 if step else 1
    starts = [(start + (step or timedelta(0)) * i).isoformat() for i in range(count)]
    return {"title": title, "attendees": len(attendees), "starts": starts[:5], "duration_minutes": duration_minutes}


schedule_meeting.tool_schema_extra = {"dependentRequired": {"occurrences": ["recurrence"]}}  # type: ignore[attr-defined]


def prime_factors(n: Annotated[int, {"minimum": 2, "maximum": 1_000_000_000_000}]) -> list:
    """Factorise a positive integer into primes.

    Args:
        n: The integer to factorise, from 2 to 10^12.
    """
    factors, d = [], 2
    while d * d <= n:
        while n % d == 0:
            factors.append(d)
            n //= d
        d += 1 if d == 2 else 2
    if n > 1:
        factors.append(n)
    return factors


def convert_length(
    value: float,
    from_unit: Literal["mm", "cm", "m", "km", "in", "ft", "mi"],
    to_unit: Literal["mm", "cm", "m", "km", "in", "ft", "mi"],
    precision: Annotated[int, {"minimum": 0, "maximum": 10}] = 3,
) -> float:
    """Convert a length between metric and imperial units.

    Args:
        value: The length to convert.
        from_unit: Unit of the given value.
        to_unit: Unit to convert to.
        precision: Number of decimal places in the result.
    """
    result = value * _LENGTH_IN_METRES[from_unit] / _LENGTH_IN_METRES[to_unit]
    return round(result, precision) if math.isfinite(result) else result
