"""Throughput of ``dataflow.validate_calls`` on a realistic tool set (the 10 example APIGen
tools: enums, bounds, patterns, formats, nested arrays, dependentRequired, if/then).

Run: ``python benchmarks/bench_validate_calls.py [--rows 20000]``. Prints calls per second for
rows of 1-3 calls, ~85% valid (the usual share after generation), against (a) one shared tool
list, (b) the tool list as a JSON string per row (xLAM rows), (c) invalid calls only.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dataflow import validate_calls  # noqa: E402

VALID = [
    {"name": "get_weather_forecast", "arguments": {"city": "Lisbon", "days": 3, "unit": "celsius"}},
    {"name": "convert_currency", "arguments": {"amount": 120.5, "from_currency": "EUR", "to_currency": "JPY"}},
    {"name": "calculate_loan_payment", "arguments": {"principal": 250000, "annual_rate_percent": 3.9, "years": 25}},
    {"name": "search_recipes", "arguments": {"ingredients": ["tomato", "basil"], "diet": "vegan", "max_results": 2}},
    {"name": "book_flight", "arguments": {"origin": "LIS", "destination": "JFK", "departure_date": "2025-06-01",
                                          "trip_type": "round_trip", "return_date": "2025-06-15", "passengers": 2}},
    {"name": "calculate_bmi", "arguments": {"weight_kg": 72.5, "height_m": 1.78}},
    {"name": "count_words", "arguments": {"text": "the cat and the hat", "top_n": 2}},
    {"name": "schedule_meeting", "arguments": {"title": "Roadmap review", "attendees": ["ana@example.com", "li@example.org"],
                                               "start_time": "2025-03-14T09:30:00Z", "duration_minutes": 45,
                                               "recurrence": "weekly", "occurrences": 4}},
    {"name": "prime_factors", "arguments": {"n": 360}},
    {"name": "convert_length", "arguments": {"value": 5.2, "from_unit": "mi", "to_unit": "km"}},
]
INVALID = [
    {"name": "get_weather_forecast", "arguments": {"city": "Lisbon", "days": 1.5}},
    {"name": "convert_currency", "arguments": {"amount": -3, "from_currency": "EUR", "to_currency": "XYZ"}},
    {"name": "book_flight", "arguments": {"origin": "LIS", "destination": "JFK", "departure_date": "2025-06-01",
                                          "trip_type": "round_trip"}},
    {"name": "schedule_meeting", "arguments": {"title": "x", "attendees": [], "start_time": "soon", "occurrences": 3}},
    {"name": "calculate_bmi", "arguments": {"weight_kg": True, "height_m": "1.8", "age": 30}},
    {"name": "delete_everything", "arguments": {}},
]


def make_rows(n: int, invalid_share: float, seed: int = 0) -> list[list[dict]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        rows.append([
            rng.choice(INVALID) if rng.random() < invalid_share else rng.choice(VALID)
            for _ in range(rng.randint(1, 3))
        ])
    return rows


def measure(label: str, rows: list, tools_for_row) -> float:
    validate_calls(rows[0], tools_for_row(0))  # compile outside the timing
    calls = sum(len(r) for r in rows)
    started, cpu0 = time.perf_counter(), time.process_time()
    errors = 0
    for i, row in enumerate(rows):
        errors += bool(validate_calls(row, tools_for_row(i)))
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu0
    rate = calls / seconds
    print(f"{label:<44} {calls:>7} calls  {seconds:6.2f}s  {rate:>10,.0f} calls/s  "
          f"({calls / cpu if cpu else 0:,.0f} per CPU second; {errors} rows with errors)")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--json", default=None, help="also write the rates as JSON here")
    args = parser.parse_args()
    tools = json.loads((ROOT / "example_data/APIGen/function_definitions.json").read_text())
    tools_text = json.dumps(tools)
    mixed = make_rows(args.rows, 0.15)
    rate = measure("shared tool list, 15% invalid", mixed, lambda i: tools)
    per_row = measure("tools as a JSON string per row (xLAM)", mixed, lambda i: tools_text)
    invalid = measure("invalid calls only (message formatting)", make_rows(max(args.rows // 4, 1), 1.0), lambda i: tools)
    print(f"validate_calls: {rate:,.0f} calls/s (target >= 20,000)")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "rows": args.rows, "shared_tools_calls_per_s": rate, "json_tools_per_row_calls_per_s": per_row,
            "invalid_only_calls_per_s": invalid,
        }, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
