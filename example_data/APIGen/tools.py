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
    "convert_length", "convert_temperature", "calculate_tip", "days_between", "compound_interest",
    "percentage_change", "convert_timezone", "get_country_info", "calories_burned", "describe_numbers",
    "calculate_discount", "calculate_age", "find_hotels", "calculate_fuel_cost", "send_email", "set_reminder",
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
_UTC_OFFSET_HOURS = {"UTC": 0, "GMT": 0, "CET": 1, "EET": 2, "IST": 5.5, "CST_CHINA": 8, "JST": 9, "AEST": 10,
                     "EST": -5, "CST": -6, "MST": -7, "PST": -8}
_MET = {"walking": 3.5, "running": 9.8, "cycling": 7.5, "swimming": 6.0, "yoga": 2.5, "rowing": 7.0}
_COUNTRIES = {
    "portugal": ("Lisbon", "EUR", 10.3, "Portuguese"), "spain": ("Madrid", "EUR", 48.6, "Spanish"),
    "france": ("Paris", "EUR", 68.2, "French"), "germany": ("Berlin", "EUR", 84.5, "German"),
    "italy": ("Rome", "EUR", 58.9, "Italian"), "norway": ("Oslo", "NOK", 5.5, "Norwegian"),
    "japan": ("Tokyo", "JPY", 124.5, "Japanese"), "india": ("New Delhi", "INR", 1428.6, "Hindi"),
    "brazil": ("Brasilia", "BRL", 216.4, "Portuguese"), "canada": ("Ottawa", "CAD", 40.1, "English"),
    "mexico": ("Mexico City", "MXN", 128.5, "Spanish"), "kenya": ("Nairobi", "KES", 55.1, "Swahili"),
    "australia": ("Canberra", "AUD", 26.6, "English"), "egypt": ("Cairo", "EGP", 112.7, "Arabic"),
    "vietnam": ("Hanoi", "VND", 98.9, "Vietnamese"), "poland": ("Warsaw", "PLN", 36.7, "Polish"),
    "sweden": ("Stockholm", "SEK", 10.5, "Swedish"), "chile": ("Santiago", "CLP", 19.6, "Spanish"),
    "south korea": ("Seoul", "KRW", 51.7, "Korean"), "united kingdom": ("London", "GBP", 68.3, "English"),
    "united states": ("Washington, D.C.", "USD", 334.9, "English"), "switzerland": ("Bern", "CHF", 8.8, "German"),
}


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


def convert_temperature(
    value: float,
    from_unit: Literal["celsius", "fahrenheit", "kelvin"],
    to_unit: Literal["celsius", "fahrenheit", "kelvin"],
) -> dict:
    """Convert a temperature between Celsius, Fahrenheit and Kelvin.

    Args:
        value: The temperature to convert.
        from_unit: Unit of the given temperature.
        to_unit: Unit to convert to.
    """
    celsius = {"celsius": value, "fahrenheit": (value - 32) * 5 / 9, "kelvin": value - 273.15}[from_unit]
    if celsius < -273.15:
        raise ValueError("below absolute zero")
    result = {"celsius": celsius, "fahrenheit": celsius * 9 / 5 + 32, "kelvin": celsius + 273.15}[to_unit]
    return {"value": round(result, 2), "unit": to_unit}


def calculate_tip(
    bill_amount: Annotated[float, {"exclusiveMinimum": 0}],
    tip_percent: Annotated[float, {"minimum": 0, "maximum": 100}] = 15,
    people: Annotated[int, {"minimum": 1, "maximum": 50}] = 1,
) -> dict:
    """Work out the tip on a restaurant bill and each person's share.

    Args:
        bill_amount: The bill before the tip.
        tip_percent: Tip in percent of the bill.
        people: How many people split the bill.
    """
    tip = bill_amount * tip_percent / 100
    total = bill_amount + tip
    return {"tip": round(tip, 2), "total": round(total, 2), "per_person": round(total / people, 2)}


def days_between(
    start_date: Annotated[str, {"format": "date"}],
    end_date: Annotated[str, {"format": "date"}],
    include_end: bool = False,
) -> dict:
    """Count the days from one date to another.

    Args:
        start_date: First date, YYYY-MM-DD.
        end_date: Second date, YYYY-MM-DD.
        include_end: Whether to count the end date as well.
    """
    days = (date.fromisoformat(end_date) - date.fromisoformat(start_date)).days
    return {"days": days + (1 if include_end and days >= 0 else 0), "weeks": round(days / 7, 1)}


def compound_interest(
    principal: Annotated[float, {"exclusiveMinimum": 0}],
    annual_rate_percent: Annotated[float, {"minimum": 0, "maximum": 50}],
    years: Annotated[int, {"minimum": 1, "maximum": 100}],
    compounds_per_year: Literal[1, 4, 12, 365] = 12,
) -> dict:
    """Grow a savings deposit with compound interest.

    Args:
        principal: Amount deposited at the start.
        annual_rate_percent: Yearly interest rate in percent.
        years: Number of years the money stays invested.
        compounds_per_year: How often interest is added each year.
    """
    final = principal * (1 + annual_rate_percent / 100 / compounds_per_year) ** (compounds_per_year * years)
    return {"final_amount": round(final, 2), "interest_earned": round(final - principal, 2)}


def percentage_change(old_value: float, new_value: float) -> dict:
    """Percentage increase or decrease from an old value to a new one.

    Args:
        old_value: The starting value; must not be zero.
        new_value: The value it changed to.
    """
    if old_value == 0:
        raise ValueError("old_value must not be zero")
    change = (new_value - old_value) / abs(old_value) * 100
    return {"change_percent": round(change, 2), "direction": "up" if change > 0 else "down" if change < 0 else "none"}


def convert_timezone(
    time: Annotated[str, {"pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$"}],
    from_zone: Literal["UTC", "GMT", "CET", "EET", "IST", "CST_CHINA", "JST", "AEST", "EST", "CST", "MST", "PST"],
    to_zone: Literal["UTC", "GMT", "CET", "EET", "IST", "CST_CHINA", "JST", "AEST", "EST", "CST", "MST", "PST"],
) -> dict:
    """Convert a clock time between time zones (standard time, no daylight saving).

    Args:
        time: Clock time, HH:MM in 24-hour form.
        from_zone: Time zone of the given time.
        to_zone: Time zone to convert to.
    """
    hours, minutes = map(int, time.split(":"))
    total = hours * 60 + minutes + round((_UTC_OFFSET_HOURS[to_zone] - _UTC_OFFSET_HOURS[from_zone]) * 60)
    day_shift, total = divmod(total, 24 * 60)
    return {"time": f"{total // 60:02d}:{total % 60:02d}", "zone": to_zone, "day_shift": day_shift}


def get_country_info(country: Annotated[str, {"minLength": 2}]) -> dict:
    """Look up a country's capital, currency, population and main language.

    Args:
        country: Country name in English, e.g. "Portugal".
    """
    key = country.strip().lower()
    if key not in _COUNTRIES:
        raise ValueError(f"unknown country {country!r}")
    capital, currency, population, language = _COUNTRIES[key]
    return {"country": country.strip().title(), "capital": capital, "currency": currency,
            "population_millions": population, "main_language": language}


def calories_burned(
    activity: Literal["walking", "running", "cycling", "swimming", "yoga", "rowing"],
    duration_minutes: Annotated[int, {"minimum": 1, "maximum": 600}],
    weight_kg: Annotated[float, {"exclusiveMinimum": 0, "maximum": 500}],
) -> dict:
    """Estimate the calories burned by an exercise session.

    Args:
        activity: Kind of exercise.
        duration_minutes: Length of the session in minutes.
        weight_kg: Body weight in kilograms.
    """
    calories = _MET[activity] * 3.5 * weight_kg / 200 * duration_minutes
    return {"activity": activity, "calories": round(calories)}


def describe_numbers(numbers: Annotated[list[float], {"minItems": 1, "maxItems": 100}]) -> dict:
    """Summary statistics of a list of numbers: count, mean, median, minimum and maximum.

    Args:
        numbers: The numbers to summarise.
    """
    ordered = sorted(numbers)
    n = len(ordered)
    median = ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2
    return {"count": n, "mean": round(sum(ordered) / n, 4), "median": median, "min": ordered[0], "max": ordered[-1]}


def calculate_discount(
    original_price: Annotated[float, {"exclusiveMinimum": 0}],
    discount_percent: Annotated[float, {"minimum": 0, "maximum": 100}],
    sales_tax_percent: Annotated[float, {"minimum": 0, "maximum": 30}] = 0,
) -> dict:
    """Sale price of an item after a percentage discount, with optional sales tax on top.

    Args:
        original_price: Price before the discount.
        discount_percent: Discount in percent.
        sales_tax_percent: Sales tax in percent, added after the discount.
    """
    discounted = original_price * (1 - discount_percent / 100)
    final = discounted * (1 + sales_tax_percent / 100)
    return {"you_save": round(original_price - discounted, 2), "final_price": round(final, 2)}


def calculate_age(
    birth_date: Annotated[str, {"format": "date"}],
    on_date: Annotated[str, {"format": "date"}],
) -> dict:
    """Age in whole years of someone born on one date, as of another date.

    Args:
        birth_date: Date of birth, YYYY-MM-DD.
        on_date: The date to compute the age on, YYYY-MM-DD.
    """
    born, when = date.fromisoformat(birth_date), date.fromisoformat(on_date)
    if when < born:
        raise ValueError("on_date is before birth_date")
    years = when.year - born.year - ((when.month, when.day) < (born.month, born.day))
    return {"age_years": years}


def find_hotels(
    city: Annotated[str, {"minLength": 2}],
    check_in: Annotated[str, {"format": "date"}],
    nights: Annotated[int, {"minimum": 1, "maximum": 30}] = 1,
    max_price_per_night: Annotated[Optional[float], {"exclusiveMinimum": 0}] = None,
    min_stars: Annotated[int, {"minimum": 1, "maximum": 5}] = 1,
) -> list:
    """Find available hotels in a city for a stay.

    Args:
        city: City to stay in.
        check_in: Arrival date, YYYY-MM-DD.
        nights: Number of nights.
        max_price_per_night: Highest acceptable price per night in EUR.
        min_stars: Lowest acceptable star rating.
    """
    date.fromisoformat(check_in)
    names = ["Grand", "Central", "Riverside", "Garden", "Harbour", "Old Town"]
    out = []
    for i, name in enumerate(names):
        stars = 1 + _seed(city.lower(), name) % 5
        price = 35 + stars * 20 + _seed(city.lower(), name, "p") % 30
        if stars >= min_stars and (max_price_per_night is None or price <= max_price_per_night):
            out.append({"hotel": f"{name} Hotel {city.strip().title()}", "stars": stars, "price_per_night": price,
                        "total_price": price * nights})
    return out[:3]


def calculate_fuel_cost(
    distance_km: Annotated[float, {"exclusiveMinimum": 0}],
    consumption_l_per_100km: Annotated[float, {"exclusiveMinimum": 0, "maximum": 50}],
    price_per_litre: Annotated[float, {"exclusiveMinimum": 0}],
) -> dict:
    """Fuel needed for a car trip and what it costs.

    Args:
        distance_km: Trip distance in kilometres.
        consumption_l_per_100km: The car's fuel use in litres per 100 km.
        price_per_litre: Fuel price per litre.
    """
    litres = distance_km * consumption_l_per_100km / 100
    return {"litres": round(litres, 2), "cost": round(litres * price_per_litre, 2)}


def send_email(
    to: Annotated[str, {"format": "email"}],
    subject: Annotated[str, {"minLength": 1, "maxLength": 200}],
    body: Annotated[str, {"minLength": 1, "maxLength": 5000}],
) -> dict:
    """Send an email to one recipient.

    Args:
        to: Recipient's email address.
        subject: Subject line.
        body: Text of the message.
    """
    return {"status": "sent", "message_id": f"msg-{_seed(to, subject, body) % 10**8:08d}", "to": to}


def set_reminder(
    text: Annotated[str, {"minLength": 1, "maxLength": 300}],
    remind_at: Annotated[str, {"format": "date-time"}],
) -> dict:
    """Set a reminder that goes off at a given date and time.

    Args:
        text: What to be reminded of.
        remind_at: When to remind, ISO 8601 date-time such as 2025-03-14T09:30:00.
    """
    when = datetime.fromisoformat(remind_at)
    return {"reminder_id": f"rem-{_seed(text, remind_at) % 10**6:06d}", "remind_at": when.isoformat(), "text": text}
